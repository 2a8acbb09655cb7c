"""Evaluation throughput vs the bare full forward, measured in the same run.

Prints tokens/s of (a) the bare full forward with TransformerLens' own loss (262k-vocab
unembed, full logits), (b) our clean reference CE (chunked log-sum-exp), and (c) one SAE's full
evaluation (clean + spliced forwards, spliced CE and KL in one pass over the vocabulary, and
the reconstruction statistics). Uses a trained SAE if one exists for the hook point, else a
freshly initialised gated SAE (the cost does not depend on the weights).

    .venv/bin/python benchmarks/bench_eval.py [--tokens 2048] [--site resid]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from saerepro import paths
from saerepro.config import load_config
from saerepro.evaluate import evaluate_sae
from saerepro.lm import eval_token_subset, token_ce
from saerepro.models import load_model
from saerepro.sae import load_sae, make_sae


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--site", default="resid")
    args = parser.parse_args()

    cfg = load_config(args.config)
    corpus = Path(paths.corpus_dir(cfg))
    tokens = eval_token_subset(np.load(corpus / "eval.npy"), args.tokens)
    n_pred = tokens.shape[0] * (tokens.shape[1] - 1)
    model = load_model(cfg.spec, cfg.resources_dir)
    layer = cfg.headline
    trained = sorted(Path("results").glob(f"{cfg.model}/L{layer}/{args.site}/gated/*/s*/cfg.json"))
    if trained:
        sae, what = load_sae(str(trained[0].parent)), f"trained SAE {trained[0].parent}"
    else:
        d_in = model.cfg.n_heads * model.cfg.d_head if args.site == "attn" else model.cfg.d_model
        sae, what = make_sae("gated", d_in, 4 * d_in), "untrained gated SAE (4x)"
    bs = cfg.reference.batch_size
    print(f"{cfg.model} L{layer} {args.site}: {n_pred} predicted tokens, batch {bs} x {tokens.shape[1]}, "
          f"{what}, torch threads {torch.get_num_threads()}")

    def bare():
        with torch.no_grad():
            for s in range(0, len(tokens), bs):
                model(torch.as_tensor(tokens[s:s + bs], dtype=torch.long), return_type="loss")

    def clean():
        with torch.no_grad():
            for s in range(0, len(tokens), bs):
                token_ce(model, torch.as_tensor(tokens[s:s + bs], dtype=torch.long))

    def sae_eval():
        evaluate_sae(model, sae, layer, args.site, 1.0, tokens, {"ce_clean": 3.0, "ce_zero": 4.0},
                     batch_size=bs, progress=False)

    for name, fn in (("bare full forward (TL loss)", bare), ("clean CE, chunked", clean),
                     ("SAE evaluation (CE + KL + stats)", sae_eval)):
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        print(f"{name:>34}: {n_pred / seconds:7.0f} tokens/s ({seconds:5.1f} s)")


if __name__ == "__main__":
    main()
