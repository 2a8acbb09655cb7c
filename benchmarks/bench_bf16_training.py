"""Does bf16 autocast change what an SAE learns? Train the same SAEs in float32 and under bf16
autocast on the default run's real activation cache, evaluate both with the pipeline's own
evaluation, and print the metrics side by side with the speed-up.

    python benchmarks/bench_bf16_training.py                       # 4 SAEs at resid, ~15 min on 2 cores
    python benchmarks/bench_bf16_training.py --site mlp --tokens 100000

Needs the default config's cache and reference CE (``make cached`` or a ``make repro``).
Everything is written under a temporary folder; nothing in results/ is touched.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))


def main() -> None:
    import numpy as np
    import torch

    from saerepro import paths
    from saerepro.activations import open_cache
    from saerepro.config import SaeKey, load_config
    from saerepro.evaluate import evaluate_sae
    from saerepro.lm import eval_token_subset
    from saerepro.models import load_model
    from saerepro.sae import load_sae
    from saerepro.training import TrainConfig, train_sae

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(ROOT / "config/config.yaml"))
    ap.add_argument("--site", default="resid")
    ap.add_argument(
        "--runs", default="gated:0.6,gated:1.5,baseline:0.35,baseline:0.9", help="architecture:coefficient pairs"
    )
    ap.add_argument("--tokens", type=int, default=None, help="tokens per SAE (default: the config's)")
    ap.add_argument("--b-dec-init", default="geometric_median")
    args = ap.parse_args()

    torch.set_num_threads(1)
    cfg = load_config(args.config)
    layer = cfg.headline
    cache = open_cache(paths.cache_dir(cfg, layer, args.site))
    ref_path = (
        Path(paths.HOOK_DIR.format(model=cfg.model, corpus=cfg.corpus.name, layer=layer, site=args.site))
        / "reference_ce.json"
    )
    reference = json.loads(ref_path.read_text())
    eval_tokens = eval_token_subset(np.load(Path(paths.corpus_dir(cfg)) / "eval.npy"), cfg.reference.eval_tokens)
    model = load_model(cfg.spec, cfg.resources_dir, "cpu")

    cols = ["l0", "loss_recovered", "delta_lm_loss", "nmse", "gamma", "gamma_c", "alive_frac", "kl"]
    print(f"{'run':<18} {'precision':<9} {'tok/s':>7} " + " ".join(f"{c:>14}" for c in cols))
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.runs.split(","):
            arch, coef = spec.split(":")
            run = SaeKey(
                model=cfg.model, layer=layer, site=args.site, architecture=arch, coefficient=float(coef), seed=0
            )
            rows = {}
            for bf16 in (False, True):
                tcfg = TrainConfig.from_run(cfg, run, cache.d_in)
                tcfg = dataclasses.replace(
                    tcfg, autocast_bf16=bf16, b_dec_init=args.b_dec_init, total_tokens=args.tokens or tcfg.total_tokens
                )
                out = Path(tmp) / f"{arch}-{coef}-{'bf16' if bf16 else 'fp32'}"
                start = time.time()
                info = train_sae(tcfg, cache, out)
                tps = info["tokens_trained"] / (time.time() - start)
                sae = load_sae(str(out), device="cpu")
                m = evaluate_sae(
                    model,
                    sae,
                    layer,
                    args.site,
                    cache.scale,
                    eval_tokens,
                    reference,
                    batch_size=cfg.reference.batch_size,
                    progress=False,
                )
                rows[bf16] = m
                print(
                    f"{spec:<18} {'bf16' if bf16 else 'fp32':<9} {tps:7.0f} " + " ".join(f"{m[c]:14.4f}" for c in cols),
                    flush=True,
                )
            print(
                f"{spec:<18} {'bf16-fp32':<9} {'':>7} "
                + " ".join(f"{rows[True][c] - rows[False][c]:+14.4f}" for c in cols),
                flush=True,
            )
    print(
        "Standard errors for comparison: loss recovered and ΔLM carry the eval-token SE "
        "(ce_sae_se / (ce_zero − ce_clean)); seed-to-seed spread is larger."
    )


if __name__ == "__main__":
    main()
