"""Caching throughput vs the bare forward it is built on, measured in the same run.

Prints two figures for the default config's hook points: tokens/s of ``cache_activations``
(forward + hooks + float16 memmap writes + the final rescale pass) and tokens/s of the bare
``stop_at_layer`` forward over the same tokens. The ratio shows the cache's overhead.

    .venv/bin/python benchmarks/bench_cache.py [--tokens 32768] [--config config/config.yaml]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train import add_allocator_option, apply_allocator_option

from saerepro import paths
from saerepro.activations import cache_activations
from saerepro.config import load_config
from saerepro.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--tokens", type=int, default=32768, help="tokens per measurement")
    parser.add_argument("--repeats", type=int, default=2)
    add_allocator_option(parser)
    args = parser.parse_args()
    allocator = apply_allocator_option(args)

    cfg = load_config(args.config)
    corpus = Path(paths.corpus_dir(cfg))
    if not (corpus / "train.npy").exists():
        raise SystemExit(f"{corpus} is missing: run `make cached` (or snakemake prepare_corpus) first")
    ctx = cfg.corpus.context_size
    tokens = np.load(corpus / "train.npy")[: max(1, args.tokens // ctx)]
    n_tok = tokens.shape[0] * (ctx - 1)
    model = load_model(cfg.spec, cfg.resources_dir)
    hook_points = cfg.hook_points()
    stop_at = max(layer for layer, _ in hook_points) + 1
    print(
        f"model {cfg.model}, hook points {hook_points}, stop_at_layer={stop_at}, "
        f"{n_tok} tokens, batch {cfg.cache.batch_size} x {ctx}, torch threads {torch.get_num_threads()}, "
        f"allocator: {allocator}"
    )

    def bare() -> None:
        with torch.no_grad():
            for s in range(0, len(tokens), cfg.cache.batch_size):
                model(torch.as_tensor(tokens[s : s + cfg.cache.batch_size], dtype=torch.long), stop_at_layer=stop_at)

    def cached() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            cache_activations(
                model,
                tokens,
                hook_points,
                [Path(tmp) / f"L{l}" / s for l, s in hook_points],
                batch_size=cfg.cache.batch_size,
                dtype=cfg.cache.dtype,
                progress=False,
            )

    bare()  # warm-up
    results = {"bare stop_at_layer forward": [], "cache_activations": []}
    for _ in range(args.repeats):  # interleaved, so drift hits both alike
        for name, fn in (("bare stop_at_layer forward", bare), ("cache_activations", cached)):
            start = time.perf_counter()
            fn()
            results[name].append(n_tok / (time.perf_counter() - start))
    for name, rates in results.items():
        print(f"{name:>28}: {max(rates):8.0f} tokens/s (best of {len(rates)}: {', '.join(f'{r:.0f}' for r in rates)})")
    ratio = max(results["cache_activations"]) / max(results["bare stop_at_layer forward"])
    print(f"{'ratio':>28}: {ratio:8.3f} (target >= 0.9)")


if __name__ == "__main__":
    main()
