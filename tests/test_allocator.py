"""The allocator settings take effect on this (glibc) machine and change no trained weight."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from saerepro.allocator import OPT_OUT_ENV, keep_freed_memory

ROOT = Path(__file__).resolve().parents[1]

# Trains a gated and a baseline SAE for a few steps on random activations, with or without the
# allocator settings, in a fresh process (the settings cannot be undone), and saves the weights.
TRAIN = textwrap.dedent(
    """
    import sys, tempfile
    from pathlib import Path
    import numpy as np, torch
    torch.set_num_threads(1)
    from saerepro import allocator
    from saerepro.activations import open_cache
    from saerepro.training import TrainingState, TrainConfig
    assert allocator.keep_freed_memory() is (sys.argv[2] == "keep")
    sys.path.insert(0, "benchmarks")
    from bench_train import write_cache
    tmp = Path(tempfile.mkdtemp())
    cache = open_cache(write_cache(tmp / "cache", 2048, d_in=256))
    out = {}
    for arch in ("gated", "baseline"):
        cfg = TrainConfig(arch, 0.01, d_sae=2048, batch_size=512, total_tokens=512 * 100, device="cpu",
                          autocast_bf16=True)
        run = TrainingState(cfg, cache, tmp / arch, torch.device("cpu"))
        xs = torch.from_numpy(np.asarray(cache.array, dtype=np.float32)).split(512)
        for i in range(4):
            run.train_step(xs[i % len(xs)])
        out[arch] = {k: v.clone() for k, v in run.sae.state_dict().items()}
    torch.save(out, sys.argv[1])
    """
)


def test_settings_take_effect_on_glibc_and_apply_once():
    if not sys.platform.startswith("linux"):
        pytest.skip("mallopt is glibc's")
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # idempotent


def test_trained_weights_are_bit_identical_with_and_without_the_settings(tmp_path):
    if not sys.platform.startswith("linux"):
        pytest.skip("mallopt is glibc's")
    for mode in ("default", "keep"):
        env = {**os.environ, OPT_OUT_ENV: "1" if mode == "default" else "0"}
        subprocess.run([sys.executable, "-c", TRAIN, str(tmp_path / f"{mode}.pt"), mode], check=True, cwd=ROOT, env=env)
    default, keep = torch.load(tmp_path / "default.pt"), torch.load(tmp_path / "keep.pt")
    for arch, weights in default.items():
        for name, value in weights.items():
            assert torch.equal(value, keep[arch][name]), f"{arch}.{name} differs"
