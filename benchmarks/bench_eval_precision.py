"""Evaluation in float32 vs ``reference.precision: bfloat16``: speed and what it moves.

On the default model and eval tokens (the first ``--sequences``), for each trained SAE given with
``--sae`` (a run folder: evaluated exactly as the DAG does, both precisions), or else for the
final hidden states perturbed by Gaussian noise of a few relative sizes (an SAE-like error), it
prints the seconds of each precision, the share of vocabulary columns the bf16 path recomputes in
float32, and the bf16 − fp32 change of the mean CE and KL in units of their paired,
sequence-aware SE. Issue 10's bar: |change| ≤ 0.1 SE for every metric.

    .venv/bin/python benchmarks/bench_eval_precision.py [--sequences 32] [--sae results/runs/...]
"""

from __future__ import annotations

import argparse
import re
import time

import numpy as np
import torch

from saerepro import evaluate as E
from saerepro.config import load_config
from saerepro.lm import eval_token_subset
from saerepro.metrics import sequence_mean_and_se
from saerepro.models import load_model


def _change(a: torch.Tensor, b: torch.Tensor, spread: torch.Tensor, n_pred: int) -> str:
    diff, diff_se = sequence_mean_and_se((b - a).double().reshape(-1, n_pred))
    se = sequence_mean_and_se(spread.double().reshape(-1, n_pred))[1]
    return f"{diff:+.2e} ± {diff_se:.1e} = {diff / se:+.4f} SE"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--sequences", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sae", nargs="*", default=[], help="run folders (L<layer>/<site>/... of the default run)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    from saerepro import paths

    model = load_model(cfg.spec, cfg.resources_dir, "cpu")
    corpus = paths.corpus_dir(cfg)
    tokens = eval_token_subset(np.load(f"{corpus}/eval.npy"), args.sequences * cfg.corpus.context_size)
    n_pred = tokens.shape[1] - 1
    layers = sorted(set(cfg.layers))
    clean = E.clean_reference(model, tokens, layers, progress=False)
    print(f"{len(tokens)} sequences, {tokens.size} tokens, {args.threads} thread(s)")
    if not args.sae:
        W_U_T = model.W_U.T.contiguous()
        g = torch.Generator().manual_seed(0)
        targets = torch.as_tensor(tokens[:, 1:].reshape(-1))
        h = clean["hidden"]
        for rel in (0.02, 0.1, 0.3):
            hs = h + rel * h.std() * torch.randn(h.shape, generator=g)
            out = {}
            for name in ("float32", "bfloat16"):
                low = E.LowPrecisionUnembed(W_U_T, model.b_U) if name == "bfloat16" else None
                start = time.time()
                out[name] = E.spliced_ce_and_kl_from_stats(
                    hs, clean["stats"], W_U_T, model.b_U, targets, low_precision=low
                )
                seconds = time.time() - start
                share = f", exact share {low.exact_columns / low.columns:.3f}" if low else ""
                print(f"noise {rel}: {name} {seconds:.1f} s{share}")
            (ce32, kl32), (ce16, kl16) = out["float32"], out["bfloat16"]
            print(f"  CE {_change(ce32, ce16, ce32 - clean['ce'], n_pred)};  KL {_change(kl32, kl16, kl32, n_pred)}")
        return
    from pathlib import Path

    from saerepro.pipeline import activation_scale
    from saerepro.sae import load_sae

    for run_dir in args.sae:
        found = re.search(r"/L(\d+)/([a-z_]+)/", f"/{Path(run_dir).as_posix()}/")
        if not found:
            raise SystemExit(f"{run_dir}: expected a run folder .../L<layer>/<site>/<architecture>/...")
        layer, site = int(found.group(1)), found.group(2)
        sae = load_sae(run_dir, device="cpu")
        scale = activation_scale(paths.cache_dir(cfg, layer, site))
        ref = {"ce_clean": float(clean["ce"].mean()), "ce_zero": float("nan")}
        out = {}
        for name in ("float32", "bfloat16"):
            start = time.time()
            out[name] = E.evaluate_sae(
                model, sae, layer, site, scale, tokens, ref, clean=clean, per_token=True, progress=False, precision=name
            )
            print(f"{run_dir}: {name} {time.time() - start:.1f} s")
        (_, p32), (_, p16) = out["float32"], out["bfloat16"]
        print(
            f"  CE {_change(p32['ce_sae'], p16['ce_sae'], p32['ce_sae'] - clean['ce'], n_pred)};  "
            f"KL {_change(p32['kl'], p16['kl'], p32['kl'], n_pred)}"
        )


if __name__ == "__main__":
    main()
