"""Which reruns are byte-identical: SAE training and LM activations at 1 and 2 threads, fp32 and bf16.

On the tiny config's cache (config/test/tiny.yaml; run its DAG or the test suite once first), for
each of gated and baseline at resid: trains the SAE in a fresh process under each (threads,
precision) and prints the SHA-256 of its weights, then says which settings agree bit for bit. It
also captures the LM's layer-2 residual stream for 16 sequences at 1 and 2 threads, in fp32 and
under bf16 autocast, and compares those. Prints the CPU and torch's CPU capability: results are
about this machine (other CPUs, e.g. with AMX-bf16, may differ).

    .venv/bin/python benchmarks/determinism.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

WORKER = r"""
import hashlib, json, sys, torch, numpy as np, yaml
threads, arch, precision, out = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
torch.set_num_threads(threads)
from saerepro.config import load_config
from saerepro import paths
raw = yaml.safe_load(open(sys.argv[5]))
raw.setdefault("train", {})["autocast_bf16"] = precision == "bf16"
cfg = load_config(raw)
if arch == "lm":
    from saerepro.models import load_model
    from saerepro.streaming import capture, lm_autocast
    model = load_model(cfg.spec, cfg.resources_dir, "cpu")
    tokens = np.load(f"{paths.corpus_dir(cfg)}/train.npy")[:16]
    with lm_autocast("cpu", precision == "bf16"):
        act = capture(model, tokens, "blocks.2.hook_resid_post", 3)
    print(json.dumps({"sha": hashlib.sha256(act.numpy().tobytes()).hexdigest()}))
else:
    from saerepro.activations import open_cache
    from saerepro.training import TrainConfig, train_sae
    run = next(r for r in cfg.runs() if r.site == "resid" and r.architecture == arch)
    cache = open_cache(paths.cache_dir(cfg, 2, "resid"))
    train_sae(TrainConfig.from_run(cfg, run, cache.d_in), cache, out, progress=False)
    data = open(f"{out}/sae_weights.safetensors", "rb").read()
    print(json.dumps({"sha": hashlib.sha256(data).hexdigest()}))
"""


def main() -> None:
    import torch
    import yaml

    from saerepro.provenance import cpu_capability, cpu_model

    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    raw["resources_dir"] = str(REPO / "resources")
    tmp = Path(tempfile.mkdtemp(prefix="determinism_"))
    config = tmp / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, capability {cpu_capability()}")
    for what in ("gated", "baseline", "lm"):
        shas = {}
        for precision in ("fp32", "bf16"):
            for threads in (1, 2):
                out = tmp / f"{what}-{precision}-{threads}"
                res = subprocess.run(
                    [sys.executable, "-c", WORKER, str(threads), what, precision, str(out), str(config)],
                    capture_output=True,
                    text=True,
                    cwd=REPO,
                )
                if res.returncode != 0:
                    raise SystemExit(res.stderr[-3000:])
                shas[precision, threads] = json.loads(res.stdout.strip().splitlines()[-1])["sha"]
        label = "LM activations (layer 2 resid)" if what == "lm" else f"{what} SAE weights"
        for precision in ("fp32", "bf16"):
            same = shas[precision, 1] == shas[precision, 2]
            print(
                f"{label:32s} {precision}: 1 vs 2 threads {'byte-identical' if same else 'DIFFER'} "
                f"({shas[precision, 1][:12]} / {shas[precision, 2][:12]})"
            )
        print(
            f"{label:32s} fp32 vs bf16 (1 thread): "
            f"{'identical' if shas['fp32', 1] == shas['bf16', 1] else 'differ (expected)'}"
        )


if __name__ == "__main__":
    main()
