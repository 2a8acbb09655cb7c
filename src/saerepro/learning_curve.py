"""Learning curves: the paper's metrics of one SAE per (hook point, architecture) at several budgets.

Each SAE is trained once, to the largest budget; at every smaller budget training stops, the SAE
is evaluated exactly as the DAG's ``evaluate`` rule does (same eval tokens, clean reference and
paired, sequence-aware SEs), and training resumes from its checkpoint. With a constant LR after
warm-up (``lr_decay_fraction`` 0) the SAE at budget B is the SAE a run of B tokens would end with,
so one run gives the whole curve.

Input: a config like the default (its caches and ``reference_ce`` outputs must exist: run
``snakemake cached --configfile <config>`` first, or the default run) plus a ``learning_curve:``
section, read here and not part of the validated config::

    learning_curve:
      budgets: [300000, 600000, 1048576, 2097152, 4194304]   # tokens per SAE
      out_dir: results/learning_curve

Output: ``<out_dir>/learning_curve.csv`` (one row per SAE and budget: the metrics.csv columns that
apply, plus ``budget_tokens``), ``<out_dir>/learning_curve.md`` (the table and the last doubling's
flattening) and ``figures/learning_curve.{png,pdf}`` (:func:`plot_learning_curve`).

    .venv/bin/python -m saerepro.learning_curve config/experiments/learning_curve.yaml
    # one core per process: split the config by site or architecture, then merge the tables
    .venv/bin/python -m saerepro.learning_curve config/experiments/learning_curve.yaml --merge part*/learning_curve.csv
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import pandas as pd
import yaml

from . import paths
from .activations import open_cache
from .architectures import SpecNames
from .config import Config, load_config
from .io import array_sha256
from .models import load_model, resolve_device
from .pipeline import held_out_tokens, load_clean_reference
from .tables import flattening

log = logging.getLogger("saerepro")

#: Architectures whose SAE can be rebuilt from a checkpoint without extra config fields.
#: torch threads for the whole curve: the DAG's train and evaluate rules' ``threads: 1``. On CPUs
#: whose kernels split work by thread count (measured: AMX-bf16 Xeon, a baseline SAE's bf16 weights
#: differ between 1 and 2 threads), other counts give other numbers, and the curve's last point would
#: no longer be the DAG's own SAE.
THREADS = 1

#: Architectures whose curves this module trains (their specs say so: the gated family and the baseline).
SUPPORTED = SpecNames(lambda spec: spec.learning_curve)


def read_config(path: str | Path) -> tuple[Config, list[int], Path]:
    """The validated config, the sorted budgets and the output folder of a learning-curve YAML."""
    raw = yaml.safe_load(Path(path).read_text())
    section = raw.pop("learning_curve", None)
    if not section or "budgets" not in section:
        raise ValueError(f"{path}: needs a 'learning_curve:' section with 'budgets' (tokens per SAE)")
    budgets = sorted(int(b) for b in section["budgets"])
    cfg = load_config(raw)
    if budgets[0] < cfg.train.batch_size:
        raise ValueError(f"{path}: learning_curve.budgets must be >= train.batch_size ({cfg.train.batch_size})")
    bad = sorted({r.architecture for r in cfg.runs()} - set(SUPPORTED))
    if bad:
        raise ValueError(f"{path}: learning curves support {', '.join(SUPPORTED)}; not {', '.join(bad)}")
    return cfg, budgets, Path(section.get("out_dir", "results/learning_curve"))


def run_learning_curve(cfg: Config, budgets: list[int], out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """Train and evaluate every SAE of ``cfg`` at each budget, at :data:`THREADS` torch threads;
    returns (and writes) the table."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(THREADS)
    try:
        return _run_learning_curve(cfg, budgets, out_dir, progress)
    finally:
        torch.set_num_threads(threads)


def _run_learning_curve(cfg: Config, budgets: list[int], out_dir: Path, progress: bool) -> pd.DataFrame:
    import dataclasses

    import torch

    from .evaluate import evaluate_sae, paired_metrics, subset_clean
    from .sae import make_sae
    from .training import CHECKPOINT_FILE, TrainConfig, train_sae

    device = str(resolve_device(cfg.device))
    corpus = Path(paths.corpus_dir(cfg))
    all_tokens = held_out_tokens(cfg, corpus)
    clean_path = Path(paths.CLEAN_REFERENCE.format(model=cfg.model, corpus=cfg.corpus.name))
    if not clean_path.exists():
        raise FileNotFoundError(
            f"{clean_path} is missing: run the reference_ce stage of this config first "
            "(snakemake cached --configfile <config>)"
        )
    clean_all = load_clean_reference(clean_path, all_tokens)
    model = load_model(cfg.spec, cfg.resources_dir, device, tokenizer=False)
    rows = []
    out_dir.mkdir(parents=True, exist_ok=True)
    for layer, site in cfg.hook_points():
        ref_path = Path(paths.REFERENCE_CE.format(model=cfg.model, corpus=cfg.corpus.name, layer=layer, site=site))
        ref = json.loads(ref_path.read_text())
        eval_tokens = held_out_tokens(cfg, corpus, site)
        clean = subset_clean(clean_all, len(eval_tokens), eval_tokens.shape[1] - 1)
        if ref["eval_tokens_sha256"] != array_sha256(eval_tokens):
            raise RuntimeError(f"{ref_path} was computed on other eval tokens; rerun reference_ce")
        cache = open_cache(paths.cache_dir(cfg, layer, site))
        for run in [r for r in cfg.runs() if r.layer == layer and r.site == site]:
            tcfg = dataclasses.replace(
                TrainConfig.from_run(cfg, run, cache.d_in), total_tokens=budgets[-1], lr_decay_fraction=0.0
            )
            run_dir = out_dir / f"L{layer}" / site / run.architecture / f"c{run.coefficient:g}" / f"s{run.seed}"
            for budget in budgets:
                start = time.time()
                info = train_sae(
                    tcfg,
                    cache,
                    run_dir,
                    progress=progress,
                    stop_at_step=budget // tcfg.batch_size,
                    keep_checkpoint=True,
                )
                state = torch.load(run_dir / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
                sae = make_sae(run.architecture, cache.d_in, tcfg.resolve_d_sae(cache.d_in), device=device)
                sae.load_state_dict(state["model"])
                metrics, per_token = evaluate_sae(
                    model,
                    sae,
                    layer,
                    site,
                    cache.scale,
                    eval_tokens,
                    ref,
                    batch_size=cfg.reference.batch_size,
                    clean=clean,
                    per_token=True,
                    progress=progress,
                )
                metrics.update(paired_metrics(per_token, clean, layer, site, eval_tokens.shape[1] - 1))
                steps = int(state["step"])
                rows.append(
                    {
                        "model": cfg.model,
                        "layer": layer,
                        "site": site,
                        "architecture": run.architecture,
                        "coefficient": run.coefficient,
                        "seed": run.seed,
                        "width": int(sae.cfg.d_sae),
                        "budget_tokens": steps * tcfg.batch_size,
                        "epochs": steps * tcfg.batch_size / int(cache.array.shape[0]),
                        "lr": tcfg.lr,
                        **{k: v for k, v in metrics.items() if not isinstance(v, dict)},
                    }
                )
                log.info(
                    "%s L%s/%s %s c%g: %d tokens, L0 %.1f, loss recovered %.3f ± %.3f (%.0f s)",
                    cfg.model,
                    layer,
                    site,
                    run.architecture,
                    run.coefficient,
                    rows[-1]["budget_tokens"],
                    metrics["l0"],
                    metrics["loss_recovered"],
                    metrics["loss_recovered_se"],
                    time.time() - start,
                )
                # written after every evaluation: a run of hours that is interrupted keeps its rows
                pd.DataFrame(rows).to_csv(out_dir / "learning_curve.csv", index=False)
                del info
            (run_dir / CHECKPOINT_FILE).unlink(missing_ok=True)
    table = pd.DataFrame(rows)
    table.to_csv(out_dir / "learning_curve.csv", index=False)
    return table


#: Site order of the tables (the paper's: residual stream, MLP output, attention output).
SITE_ORDER = {"resid": 0, "mlp": 1, "attn": 2}

_MD_COLUMNS = "| site | architecture | λ | tokens | L0 | loss recovered | ΔLM loss | KL | NMSE | alive |"


def merge_parts(parts: list[pd.DataFrame]) -> pd.DataFrame:
    """One table from learning-curve tables of runs split across processes (e.g. one per site), in
    site, architecture and budget order."""
    if not parts:
        raise ValueError("no learning-curve tables to merge")
    table = pd.concat(parts, ignore_index=True)
    return table.sort_values(
        ["site", "architecture", "budget_tokens"],
        key=lambda s: s.map(lambda v: SITE_ORDER.get(v, len(SITE_ORDER))) if s.name == "site" else s,
    ).reset_index(drop=True)


def markdown(table: pd.DataFrame, merged: bool = False) -> str:
    """``learning_curve.md``: every (SAE, budget) row, then the last doubling's flattening verdict."""
    models, layers = sorted(set(table["model"])), sorted(set(table["layer"]))
    where = f"{', '.join(models)}, layer{'s' if len(layers) > 1 else ''} {', '.join(str(v) for v in layers)}"
    split = " (run split by site and architecture, one process each, and merged)" if merged else ""
    lines = [
        f"# Learning curves ({where})",
        "",
        f"Written by `python -m saerepro.learning_curve config/experiments/learning_curve.yaml`{split}.",
        "Same eval tokens, clean reference and paired SEs as the default run; constant LR after warm-up, so",
        "the SAE at budget B is the one a B-token run would end with. Figure: figures/learning_curve.png.",
        "",
        _MD_COLUMNS,
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in table.iterrows():
        lines.append(
            f"| {r.site} | {r.architecture} | {r.coefficient:g} | {int(r.budget_tokens):,} | {r.l0:.1f} ± {r.l0_se:.1f} | "
            f"{r.loss_recovered:.3f} ± {r.loss_recovered_se:.3f} | {r.delta_lm_loss:.3f} ± {r.delta_lm_loss_se:.3f} | "
            f"{r.kl:.3f} | {r.nmse:.3f} | {r.alive_frac:.2f} |"
        )
    lines += [
        "",
        "Last budget doubling (flat: |Δ loss recovered| < 2 SE, SEs combined as if independent, and L0 within 5%):",
        "",
        "| site | architecture | from | to | Δ loss recovered | SE | L0 change | flat |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, r in flattening(table).iterrows():
        lines.append(
            f"| {r.site} | {r.architecture} | {r.from_tokens:,} | {r.to_tokens:,} | {r.change:+.3f} | {r.change_se:.3f} | "
            f"{r.l0_change:+.0%} | {'yes' if r.flat else 'no'} |"
        )
    return "\n".join(lines) + "\n"


def write_outputs(table: pd.DataFrame, out_dir: Path, figures: Path, merged: bool = False) -> None:
    """``<out_dir>/learning_curve.{csv,md}`` and ``<figures>/learning_curve.{png,pdf}``."""
    from .figures import plot_learning_curve

    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "learning_curve.csv", index=False)
    (out_dir / "learning_curve.md").write_text(markdown(table, merged=merged))
    plot_learning_curve(table, figures / "learning_curve")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="a config with a learning_curve: section")
    parser.add_argument("--figures", default=paths.FIGURES, help="folder for learning_curve.{png,pdf}")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--plot-only", action="store_true", help="redraw the figure and table from the saved CSV")
    mode.add_argument(
        "--merge",
        nargs="+",
        metavar="CSV",
        help="merge the learning_curve.csv of runs split across processes into the config's out_dir",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg, budgets, out_dir = read_config(args.config)
    if args.merge:
        table = merge_parts([pd.read_csv(p) for p in args.merge])
    elif args.plot_only:
        table = pd.read_csv(out_dir / "learning_curve.csv")
    else:
        table = run_learning_curve(cfg, budgets, out_dir)
    write_outputs(table, out_dir, Path(args.figures), merged=bool(args.merge))
    print(flattening(table).to_string(index=False))


if __name__ == "__main__":
    main()
