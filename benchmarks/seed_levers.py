"""What makes layer-6 mlp SAEs seed-sensitive (the runs issue, point 1): the seed SD of loss
recovered at one fixed λ under the training levers the paper and its peers use.

Each lever is the default run's settings (config/config.yaml: its mlp cache, 1,048,576 training
tokens, bf16 autocast, sparse steps) with one thing changed. Every lever trains ``--seeds`` SAEs of
each ``--arch`` at its λ and evaluates them on the first ``--eval-tokens`` held-out tokens with one
LM (``saerepro.api.evaluate``: the paired, sequence-aware SEs of metrics.csv). At mlp the seed SD
(0.05-0.10 in the three-seed mlp run of 2026-12-04, retired: git history) is several times the eval SE at 8k tokens (~0.015), so a short
evaluation suffices to compare spreads.

It also splits each SAE's reconstruction error between the top principal directions of the
activations (``--top-dims``, 6 by default: they hold ~91% of Var(x) at mlp) and the rest, because
the loss recovered may depend on which directions a seed spends its latents on.

    .venv/bin/python benchmarks/seed_levers.py [--levers default,resample,...] [--seeds 0 1 2 3]
        [--arch gated] [--out runs/seed_levers]

Run it after ``make repro`` (it reads the default run's mlp cache and corpus). Writes
``<out>/seed_levers.csv`` (one row per SAE) and prints, per lever and architecture, the mean and
seed SD of loss recovered, L0 and alive fraction, with the pooled eval SE beside them.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

#: lever name -> TrainConfig fields it changes from the default run's settings (None: it changes none).
LEVERS: dict[str, dict[str, object]] = {
    "default": {},
    # the paper resamples dead latents (Anthropic's procedure) every 25k steps early on; at our
    # 1,024 steps, every 250
    "resample": {"resample": True, "resample_every_steps": 250, "resample_max_count": 3},
    "lr_1e-3": {"lr": 1e-3},
    "lr_warmup_300": {"lr_warmup_steps": 300},
    "l1_warmup_250": {"coefficient_warmup_steps": 250},
    "batch_4096": {"batch_size": 4096},
    "b_dec_zeros": {"b_dec_init": "zeros"},
}
#: λ per architecture: the default grid's mlp λ nearest L0 25 (results/tables/metrics.csv).
COEFFICIENT = {"gated": 1.5, "baseline": 0.9}


def train_config(cfg, layer: int, arch: str, seed: int, cache_d_in: int, lever: dict[str, object]):
    from saerepro.config import SaeKey
    from saerepro.training import TrainConfig

    run = SaeKey(cfg.model, layer, "mlp", arch, COEFFICIENT[arch], seed, cfg.corpus.name)
    base = TrainConfig.from_run(cfg, run, cache_d_in)
    return dataclasses.replace(base, checkpoint_every_steps=0, **lever)


def error_split(sae_run, cache, top_dims: int, n_tokens: int = 65536) -> dict[str, float]:
    """Share of the SAE's squared reconstruction error (normalised inputs) along the top
    ``top_dims`` principal directions of ``cache``'s first ``n_tokens`` activations, and the
    share of Var(x) those directions hold."""
    x = torch.from_numpy(np.asarray(cache.array[:n_tokens], dtype=np.float32)) * sae_run.scale
    xc = x - x.mean(0)
    _, s, vh = torch.linalg.svd(xc, full_matrices=False)
    top = vh[:top_dims]
    with torch.no_grad():
        err = x - sae_run.sae(x)
    along = (err @ top.T).pow(2).sum(1).mean()
    total = err.pow(2).sum(1).mean()
    return {
        "err_top_share": float(along / total),
        "var_top_share": float(s[:top_dims].pow(2).sum() / s.pow(2).sum()),
        "mse_total": float(total),
        "mse_rest": float(total - along),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="config/config.yaml")
    ap.add_argument("--levers", default=",".join(LEVERS), help=f"comma-separated, of {', '.join(LEVERS)}")
    ap.add_argument("--arch", default="gated", help="comma-separated: gated, baseline")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    ap.add_argument("--tokens", type=int, default=None, help="training tokens (default: the config's)")
    ap.add_argument("--eval-tokens", type=int, default=8192)
    ap.add_argument("--layer", type=int, default=6)
    ap.add_argument("--top-dims", type=int, default=6)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default="runs/seed_levers")
    args = ap.parse_args()

    from saerepro import api, paths
    from saerepro.activations import open_cache
    from saerepro.config import load_config
    from saerepro.provenance import provenance
    from saerepro.sae.export import export_sae_lens
    from saerepro.training import train_sae

    cfg = load_config(args.config)
    cache_dir = paths.cache_dir(cfg, args.layer, "mlp")
    cache = open_cache(cache_dir)
    out = Path(args.out)
    levers = args.levers.split(",")
    unknown = sorted(set(levers) - set(LEVERS))
    if unknown:
        raise SystemExit(f"unknown lever(s) {unknown}; known: {sorted(LEVERS)}")
    trained = []
    for lever in levers:
        for arch in args.arch.split(","):
            for seed in args.seeds:
                run_dir = out / lever / arch / f"s{seed}"
                if not (run_dir / "train_info.json").exists():
                    tcfg = train_config(cfg, args.layer, arch, seed, cache.d_in, LEVERS[lever])
                    if args.tokens:
                        tcfg = dataclasses.replace(tcfg, total_tokens=args.tokens)
                    t = time.perf_counter()
                    api.set_threads(args.threads)
                    train_sae(tcfg, cache, run_dir, progress=False)
                    export_sae_lens(run_dir)
                    print(f"trained {lever} {arch} seed {seed} in {time.perf_counter() - t:.0f} s", flush=True)
                trained.append((lever, arch, seed, run_dir))
    lm = api.load_lm(cfg.spec.name if cfg.model_path is None else cfg.model_path)
    tokens = api.eval_tokens(paths.corpus_dir(cfg), args.eval_tokens)
    runs = [api.load_run(d) for *_, d in trained]
    t = time.perf_counter()
    table, _ = api.evaluate(runs, tokens, lm=lm, threads=args.threads, progress=False)
    print(f"evaluated {len(runs)} SAEs on {tokens.size} tokens in {time.perf_counter() - t:.0f} s", flush=True)
    table["lever"] = [lv for lv, *_ in trained]
    table["seed"] = [s for _, _, s, _ in trained]
    splits = pd.DataFrame([error_split(r, cache, args.top_dims) for r in runs])
    table = pd.concat([table.reset_index(drop=True), splits], axis=1)
    prov = provenance(cfg, cache.meta.get("array_sha256"))
    table["git_commit"] = prov.get("git_commit")
    table["cpu_model"] = prov.get("cpu_model")
    table["cpu_capability"] = prov.get("cpu_capability")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "seed_levers.csv", index=False)
    summary = table.groupby(["lever", "architecture"], sort=False).agg(
        n=("seed", "size"),
        loss_recovered=("loss_recovered", "mean"),
        seed_sd=("loss_recovered", "std"),
        eval_se=("loss_recovered_se", lambda s: float(np.sqrt((s**2).mean()))),
        l0=("l0", "mean"),
        l0_sd=("l0", "std"),
        alive=("alive_frac", "mean"),
        err_top_share=("err_top_share", "mean"),
    )
    print(summary.round(4).to_string())
    corr = table.groupby(["lever", "architecture"]).apply(
        lambda g: g["loss_recovered"].corr(g["mse_rest"]) if len(g) > 2 else float("nan"), include_groups=False
    )
    print("\ncorrelation across seeds of loss recovered with the error outside the top directions:")
    print(corr.round(3).to_string())
    print(f"\nwrote {out / 'seed_levers.csv'}")


if __name__ == "__main__":
    main()
