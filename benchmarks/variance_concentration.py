"""How much of Var(x) the largest few dimensions of an activation cache hold.

Prints, for each cached hook point of a config, the share of the total variance (trace of the
covariance) carried by the k highest-variance coordinates, k = 1, 3, 6, 10, and the share of the
mean square norm E‖x‖² that lies along the mean. This is why NMSE (which divides by Var(x)) can be
small while the loss recovered is poor: an SAE that gets a few massive dimensions right explains
most of the variance whatever it does with the rest.

    .venv/bin/python benchmarks/variance_concentration.py [--config config/config.yaml] [--tokens 131072]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from saerepro import paths
from saerepro.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="config/config.yaml")
    parser.add_argument("--tokens", type=int, default=131072, help="the first N cached tokens")
    args = parser.parse_args()
    cfg = load_config(args.config)
    for layer in cfg.layers:
        for site in cfg.sites:
            folder = Path(paths.cache_dir(cfg, layer, site))
            if not (folder / "activations.npy").exists():
                print(f"L{layer} {site}: no cache at {folder}")
                continue
            meta = json.loads((folder / "meta.json").read_text())
            x = np.load(folder / "activations.npy", mmap_mode="r")[: args.tokens].astype(np.float64)
            var = x.var(axis=0)
            share = np.sort(var)[::-1].cumsum() / var.sum()
            mean_sq = (x**2).sum(axis=1).mean()
            along_mean = (x.mean(axis=0) ** 2).sum() / mean_sq
            top = ", ".join(f"top {k}: {share[k - 1]:.1%}" for k in (1, 3, 6, 10))
            print(
                f"L{layer} {site} ({meta['hook_name']}, {len(x):,} tokens): share of Var(x) in the "
                f"highest-variance dims: {top}; share of E|x|^2 along the mean: {along_mean:.1%}"
            )


if __name__ == "__main__":
    main()
