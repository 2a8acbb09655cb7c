"""Evaluation throughput against the analytic FLOP bound at the matmul peak measured in the same run.

Prints, for one SAE at the headline layer:

* the fp32 and bf16 matmul peaks of this machine (GFLOP/s, the best of a few shapes);
* tokens/s of (a) the bare full forward with TransformerLens' own loss (262k-vocab unembed, full
  logits), (b) the clean reference pass (:func:`saerepro.evaluate.clean_reference`, run once per
  hook point by ``reference_ce``) and (c) one SAE's evaluation as the pipeline runs it (spliced
  pass from the SAE's layer on the saved block inputs, CE and KL from the clean distribution's
  statistics, reconstruction and per-token statistics);
* beside each, the FLOPs per predicted token (:mod:`saerepro.costs`: blocks, unembed, SAE) and the
  resulting fraction of the fp32 peak (the evaluation runs in fp32 unless ``lm_autocast_bf16``).

Uses a trained SAE of the default run if one exists, else an untrained gated SAE (the cost does
not depend on the weights). Threads: torch's default (all cores) unless ``--threads``.

    .venv/bin/python benchmarks/bench_eval.py [--tokens 4096] [--site resid] [--threads 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import add_allocator_option, apply_allocator_option, matmul_peak

from saerepro import paths
from saerepro.config import load_config
from saerepro.costs import lm_forward_flops_per_token
from saerepro.evaluate import clean_reference, evaluate_sae
from saerepro.lm import eval_token_subset
from saerepro.models import load_model
from saerepro.sae import load_sae, make_sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--tokens", type=int, default=4096)
    parser.add_argument("--site", default="resid")
    parser.add_argument("--threads", type=int, default=None)
    add_allocator_option(parser)
    args = parser.parse_args()
    print(f"allocator: {apply_allocator_option(args)}")
    if args.threads:
        torch.set_num_threads(args.threads)

    cfg = load_config(args.config)
    corpus = Path(paths.corpus_dir(cfg))
    tokens = eval_token_subset(np.load(corpus / "eval.npy"), args.tokens)
    ctx = tokens.shape[1]
    n_pred = tokens.shape[0] * (ctx - 1)
    model = load_model(cfg.spec, cfg.resources_dir)
    layer = cfg.headline
    trained = sorted(Path("results").glob(f"{cfg.model}/L{layer}/{args.site}/gated/*/s*/cfg.json"))
    d_in = model.cfg.n_heads * model.cfg.d_head if args.site == "attn" else model.cfg.d_model
    if trained:
        sae, what = load_sae(str(trained[0].parent)), f"trained SAE {trained[0].parent}"
    else:
        sae, what = make_sae("gated", d_in, 4 * d_in), "untrained gated SAE (4x)"
    d_sae = int(sae.cfg.d_sae)
    bs = cfg.reference.batch_size
    print(
        f"{cfg.model} L{layer} {args.site}: {n_pred} predicted tokens, batch {bs} x {ctx}, {what}, "
        f"torch threads {torch.get_num_threads()}, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )

    peak32 = max(matmul_peak(torch.float32, 5).values())
    peak16 = max(matmul_peak(torch.bfloat16, 5).values())
    print(f"matmul peak: fp32 {peak32:.0f} GFLOP/s, bf16 {peak16:.0f} GFLOP/s (this run, these threads)")

    spec = cfg.spec
    # per predicted token; the forward runs on every position (BOS too): ctx / (ctx - 1)
    per_pos = ctx / (ctx - 1)
    full = lm_forward_flops_per_token(spec, spec.n_layers, ctx, logits=True) * per_pos
    spliced = (
        lm_forward_flops_per_token(spec, spec.n_layers - layer, ctx, logits=False) * per_pos
        + 2.0 * spec.d_model * spec.d_vocab
        + 2 * 2.0 * d_in * d_sae
    )
    state = {}

    def bare():
        with torch.no_grad():
            for s in range(0, len(tokens), bs):
                model(torch.as_tensor(tokens[s : s + bs], dtype=torch.long), return_type="loss")

    def clean():
        state["clean"] = clean_reference(model, tokens, [layer], batch_size=bs, progress=False)

    def sae_eval():
        evaluate_sae(
            model,
            sae,
            layer,
            args.site,
            1.0,
            tokens,
            {"ce_clean": 3.0, "ce_zero": 4.0},
            batch_size=bs,
            progress=False,
            clean=state["clean"],
            per_token=True,
        )

    # the clean pass keeps μ = E_p[W_U] per token: one more [d, V] matmul than a plain forward
    clean_flops = full + 2.0 * spec.d_model * spec.d_vocab
    print(f"{'':>34}  {'tokens/s':>8}  {'GFLOP/token':>11}  {'bound tok/s':>11}  {'% of fp32 bound':>15}")
    for name, fn, flops in (
        ("bare full forward (TL loss)", bare, full),
        ("clean reference pass", clean, clean_flops),
        ("SAE evaluation (pipeline path)", sae_eval, spliced),
    ):
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        rate, bound = n_pred / seconds, peak32 * 1e9 / flops
        print(f"{name:>34}  {rate:8.0f}  {flops / 1e9:11.3f}  {bound:11.0f}  {100 * rate / bound:14.1f}%")


if __name__ == "__main__":
    main()
