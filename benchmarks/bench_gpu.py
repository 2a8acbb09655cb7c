"""GPU throughput of SAE training and of LM activations (the on-the-fly path), against the device's
measured bf16 matmul peak.

    .venv/bin/python benchmarks/bench_gpu.py                 # full sizes on a GPU, reduced on CPU
    .venv/bin/python benchmarks/bench_gpu.py --quick         # fewer steps
    .venv/bin/python benchmarks/bench_gpu.py --out results.json

What it measures, each in fp32 and under bf16 autocast (weights and Adam stay fp32):

* **peak**: the best of a few large bf16 matmuls (8192³ on a GPU, 1024³ on a CPU), in TFLOP/s.
  Every "% of peak" below is against this measured figure, not a datasheet number.
* **SAE training**: tokens/s of a full optimiser step of our trainer (``training.TrainingState.train_step``:
  forward, backward, decoder-norm constraint, Adam, dead-latent bookkeeping) on batches already on
  the device. GPU shapes are the paper's Pythia-2.8B residual stream (d_in 2560, gated 32768 and
  baseline 49152 latents, batch 4096); CPU shapes are the default pipeline's (d_in 640, 2560 and
  3840 latents, batch 1024). FLOPs are counted analytically as in bench_train.py (gated 7U,
  baseline 5U, U = 2·B·d_in·d_sae).
* **LM activations**: tokens/s of ``streaming.LMActivations.lm_batch`` (the on-the-fly path:
  ``stop_at_layer`` forward, hook, normalise, float16, copy to host) and the model FLOPs it
  implies (2 × parameters of the blocks run × tokens, plus attention scores). The model is the
  prepared Gemma-3-270M when its weights are under resources/, else a synthetic, randomly
  initialised GPT-NeoX-style HookedTransformer (a Pythia-1B-like shape on a GPU, a small one on a
  CPU): throughput depends on the shapes, not on the weights' values.
* **on-the-fly end to end**: one gated SAE trained for a few hundred thousand tokens
  (``train_saes`` on ``open_lm_source``) vs the same SAE on the same activations already in memory
  (cached mode without the disk), tokens/s each.

Without CUDA it says so and runs the reduced CPU version.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
FLOP_UNITS = {"gated": 7, "baseline": 5}


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``repeats`` calls after ``warmup``."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def matmul_peak(device: torch.device, dtype: torch.dtype, n: int, repeats: int) -> float:
    """TFLOP/s of the best of ``repeats`` [n, n] × [n, n] products (the device's practical peak)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


# --------------------------------------------------------------------------- SAE training


def memory_source(n_tokens: int, d_in: int, seed: int = 0):
    """An in-memory float16 "cache" of synthetic activations (a mean component, like real ones)."""
    from saerepro.activations import ActivationCache

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_tokens, d_in), dtype=np.float32)
    x[:, :8] += 3.0
    x /= np.sqrt(1 + 8 * 9 / d_in)
    meta = {
        "shape": [n_tokens, d_in],
        "dtype": "float16",
        "scale": 1.0,
        "d_in": d_in,
        "n_tokens": n_tokens,
        "hook_name": "blocks.0.hook_resid_post",
        "model": "synthetic",
    }
    return ActivationCache(path=Path("memory"), array=x.astype(np.float16), meta=meta)


def bench_sae(arch: str, d_in: int, d_sae: int, batch: int, device: torch.device, steps: int, bf16: bool) -> dict:
    from saerepro.training import TrainConfig, TrainingState

    source = memory_source(4 * batch, d_in)
    cfg = TrainConfig(
        arch,
        0.01,
        d_sae=d_sae,
        batch_size=batch,
        total_tokens=batch * 10_000,
        device=str(device),
        autocast_bf16=bf16,
        b_dec_init="zeros",
        log_every_steps=10**6,
        dead_tokens_threshold=10**9,
    )
    run = TrainingState(cfg, source, Path(tempfile.mkdtemp(prefix="bench_gpu_")), device)
    xs = [torch.from_numpy(source.array[i * batch : (i + 1) * batch].astype(np.float32)).to(device) for i in range(4)]
    state = {"i": 0}

    def step() -> None:
        run.train_step(xs[state["i"] % 4])
        state["i"] += 1

    dt = timed(step, device, steps)
    flops = FLOP_UNITS[arch] * 2 * batch * d_in * d_sae
    return {
        "arch": arch,
        "d_in": d_in,
        "d_sae": d_sae,
        "batch": batch,
        "bf16": bf16,
        "s_per_step": dt,
        "tokens_per_s": batch / dt,
        "tflops": flops / dt / 1e12,
    }


# --------------------------------------------------------------------------- LM activations


def lm_model(device: torch.device, synthetic: bool):
    """(model, description, n_layers_run, layer): Gemma-3-270M if prepared, else a synthetic LM."""
    prepared = REPO / "resources" / "models" / "gemma-3-270m" / "config.json"
    if prepared.exists() and not synthetic:
        from saerepro.models import get_spec, load_model

        model = load_model(get_spec("gemma-3-270m"), REPO / "resources", str(device))
        return model, "gemma-3-270m (prepared weights)", 7, 6
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    if device.type == "cuda":  # a Pythia-1B-like shape
        shape = dict(n_layers=16, d_model=2048, n_heads=8, d_head=256, d_mlp=8192, d_vocab=50304, n_ctx=2048)
    else:
        shape = dict(n_layers=4, d_model=256, n_heads=4, d_head=64, d_mlp=1024, d_vocab=8192, n_ctx=256)
    cfg = HookedTransformerConfig(
        **shape,
        act_fn="gelu",
        normalization_type="LN",
        positional_embedding_type="rotary",
        rotary_dim=shape["d_head"] // 4,
        parallel_attn_mlp=True,
        device=str(device),
        dtype=torch.float32,
        seed=0,
    )
    model = HookedTransformer(cfg)
    model.eval()
    layer = shape["n_layers"] // 2
    return model, f"synthetic GPT-NeoX-style {shape}", layer + 1, layer


def lm_flops_per_token(model, n_layers_run: int, ctx: int) -> float:
    """2 × block parameters (matmul weights) + attention scores and values (2·2·ctx/2·d per layer)."""
    blocks = model.blocks[:n_layers_run]
    params = sum(p.numel() for b in blocks for n, p in b.named_parameters() if p.dim() >= 2)
    attn = n_layers_run * 2 * 2 * (ctx / 2) * model.cfg.n_heads * model.cfg.d_head
    return 2 * params + attn


def bench_lm(
    model, n_layers_run: int, layer: int, device: torch.device, ctx: int, batch: int, repeats: int, bf16: bool
) -> dict:
    from saerepro.streaming import LMActivations

    rng = np.random.default_rng(0)
    tokens = rng.integers(1, model.cfg.d_vocab, size=(batch * 4, ctx)).astype(np.int32)
    array = LMActivations(
        model, tokens, layer, "resid", batch_size=batch, scale=1.0, dtype="float16", autocast_bf16=bf16
    )
    state = {"b": 0}

    def one() -> None:
        array.lm_batch(state["b"] % 4)
        state["b"] += 1

    dt = timed(one, device, repeats)
    tokens_per_s = batch * ctx / dt
    return {
        "bf16": bf16,
        "ctx": ctx,
        "batch": batch,
        "s_per_batch": dt,
        "tokens_per_s": tokens_per_s,
        "tflops": lm_flops_per_token(model, n_layers_run, ctx) * tokens_per_s / 1e12,
    }


def bench_end_to_end(
    model, layer: int, device: torch.device, ctx: int, lm_batch: int, d_sae: int, batch: int, n_tokens: int, bf16: bool
) -> dict:
    """One gated SAE on LM activations streamed on the fly vs the same activations in memory."""
    from saerepro.activations import ActivationCache
    from saerepro.streaming import open_lm_source
    from saerepro.training import TrainConfig, train_saes

    n_seq = int(np.ceil(n_tokens / (ctx - 1)))
    n_seq = int(np.ceil(n_seq / lm_batch)) * lm_batch
    rng = np.random.default_rng(1)
    tokens = rng.integers(1, model.cfg.d_vocab, size=(n_seq, ctx)).astype(np.int32)
    out = Path(tempfile.mkdtemp(prefix="bench_gpu_e2e_"))
    start = time.perf_counter()
    source = open_lm_source(
        model,
        tokens,
        layer,
        "resid",
        batch_size=lm_batch,
        norm_tokens=lm_batch * (ctx - 1),
        autocast_bf16=bf16,
        progress=False,
    )
    cfg = TrainConfig(
        "gated",
        0.01,
        d_sae=d_sae,
        batch_size=batch,
        total_tokens=(n_seq * (ctx - 1) // batch) * batch,
        device=str(device),
        autocast_bf16=bf16,
        b_dec_init="zeros",
        checkpoint_every_steps=0,
        shuffle_buffer_tokens=1_000_000,
        shuffle_chunk_tokens=lm_batch * (ctx - 1),
    )
    train_saes([cfg], source, [out / "fly"], progress=False)
    fly_s = time.perf_counter() - start
    lm_tokens, lm_seconds = source.array.lm_tokens, source.array.lm_seconds
    in_memory = ActivationCache(path=Path("memory"), array=np.asarray(source.array[:]), meta=source.meta)
    start = time.perf_counter()
    train_saes([cfg], in_memory, [out / "memory"], progress=False)
    mem_s = time.perf_counter() - start
    return {
        "tokens": cfg.total_tokens,
        "on_the_fly_tokens_per_s": cfg.total_tokens / fly_s,
        "in_memory_tokens_per_s": cfg.total_tokens / mem_s,
        "lm_tokens": lm_tokens,
        "lm_seconds": lm_seconds,
        "d_sae": d_sae,
        "bf16": bf16,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repeats and steps")
    ap.add_argument("--synthetic", action="store_true", help="use the synthetic LM even if Gemma is prepared")
    ap.add_argument("--out", help="also write the figures as JSON here")
    args = ap.parse_args()

    gpu = torch.cuda.is_available()
    device = torch.device("cuda" if gpu else "cpu")
    repeats = 3 if args.quick else 10
    result: dict = {
        "torch": torch.__version__,
        "device": str(device),
        "gpu": gpu,
        "host_threads": torch.get_num_threads(),
    }
    if gpu:
        result["device_name"] = torch.cuda.get_device_name(device)
        print(f"GPU: {result['device_name']}, torch {torch.__version__}")
    else:
        result["device_name"] = "cpu"
        print(
            f"No GPU present (torch.cuda.is_available() is False): running the reduced CPU version "
            f"on {torch.get_num_threads()} threads, torch {torch.__version__}."
        )

    n = 8192 if gpu else 1024
    peak = matmul_peak(device, torch.bfloat16, n, repeats)
    peak32 = matmul_peak(device, torch.float32, n, repeats)
    result["peak_bf16_tflops"], result["peak_fp32_tflops"] = peak, peak32
    print(
        f"\nmatmul peak at {n}^3: bf16 {peak:.2f} TFLOP/s, fp32 {peak32:.2f} TFLOP/s "
        f"(% of peak below is against bf16 {peak:.2f})"
    )

    d_in, widths, batch = (
        (2560, {"gated": 32768, "baseline": 49152}, 4096) if gpu else (640, {"gated": 2560, "baseline": 3840}, 1024)
    )
    steps = (5 if args.quick else 20) if gpu else (3 if args.quick else 6)
    print(f"\nSAE training (our trainer, one full optimiser step; d_in {d_in}, batch {batch}):")
    print(f"  {'arch':9s} {'d_sae':>6s} {'precision':>9s} {'tokens/s':>10s} {'TFLOP/s':>8s} {'% bf16 peak':>11s}")
    result["sae"] = []
    for arch, d_sae in widths.items():
        for bf16 in (False, True):
            r = bench_sae(arch, d_in, d_sae, batch, device, steps, bf16)
            result["sae"].append(r)
            print(
                f"  {arch:9s} {d_sae:6d} {'bf16' if bf16 else 'fp32':>9s} {r['tokens_per_s']:10.0f} "
                f"{r['tflops']:8.3f} {100 * r['tflops'] / peak:10.1f}%"
            )

    model, what, n_layers_run, layer = lm_model(device, args.synthetic)
    ctx, lm_batch = (1024, 16) if gpu else (128, 8)
    result["lm_model"] = what
    print(
        f"\nLM activations (on-the-fly path: stop_at_layer={n_layers_run} forward + hook + float16 to host) "
        f"of {what}, layer {layer}, batch {lm_batch} x {ctx}:"
    )
    result["lm"] = []
    for bf16 in (False, True):
        r = bench_lm(model, n_layers_run, layer, device, ctx, lm_batch, max(2, repeats // 2), bf16)
        result["lm"].append(r)
        print(
            f"  {'bf16 autocast' if bf16 else 'fp32':13s} {r['tokens_per_s']:10.0f} tokens/s  "
            f"{r['tflops']:8.3f} TFLOP/s  {100 * r['tflops'] / peak:5.1f}% of bf16 peak"
        )

    e2e_tokens = (2_000_000 if gpu else 60_000) // (4 if args.quick else 1)
    e2e_d_sae = 8 * model.cfg.d_model if gpu else 4 * model.cfg.d_model
    print(f"\nOn the fly end to end: one gated SAE ({e2e_d_sae} latents, batch {batch}) on {e2e_tokens} tokens:")
    result["end_to_end"] = []
    for bf16 in (False, True):
        r = bench_end_to_end(model, layer, device, ctx, lm_batch, e2e_d_sae, batch, e2e_tokens, bf16)
        result["end_to_end"].append(r)
        print(
            f"  {'bf16' if bf16 else 'fp32'}: on the fly {r['on_the_fly_tokens_per_s']:.0f} tokens/s "
            f"(LM {r['lm_tokens']} tokens in {r['lm_seconds']:.1f} s), same SAE on the activations in memory "
            f"{r['in_memory_tokens_per_s']:.0f} tokens/s"
        )
    if not gpu:
        print("\nNo GPU was present: these are CPU figures at reduced sizes, not GPU measurements.")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    main()
