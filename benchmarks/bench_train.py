"""Training throughput of every saerepro architecture, against sae-lens' stock trainer and the
machine's own matmul peak.

    python benchmarks/bench_train.py             # default run, ~1-2 min on 2 CPU cores
    python benchmarks/bench_train.py --multi     # also: several SAEs per process vs processes
    python benchmarks/bench_train.py --quick     # fewer steps (smoke test)
    python benchmarks/bench_train.py --compile   # also train.compile (torch.compile) against the bf16 peak
    python benchmarks/bench_train.py --sparse    # only: dense vs sparse steps (train.sparse_step) by L0
    python benchmarks/bench_train.py --multi-only  # only: several SAEs per process, dense and sparse

Shapes are the default pipeline's: d_in = 640 (Gemma-3-270M residual stream), gated width 2560
(4×), baseline width 3840 (6×, compute-matched), batch 1024. Reported per architecture: tokens/s
of a full optimiser step of our trainer (forward, backward, decoder-norm constraint, Adam,
dead-latent bookkeeping), and the achieved matmul GFLOP/s, counted analytically:

    U = 2·B·d_in·d_sae = the FLOPs of one [B, d_in] × [d_in, d_sae] product
    baseline, jumprelu, topk (AuxK off)  5U: encoder fwd + weight grad, decoder fwd + 2 grads
    topk with AuxK active                8U: + aux decoder fwd + 2 grads
    gated (tied), gated_no_rmag          7U: + aux decoder fwd + grad w.r.t. the gate acts
    gated_unfrozen_decoder               8U: the aux decoder also gets a weight grad
    gated_untied                         9U: + W_mag fwd + weight grad
    baseline_rescale_shift               2U: frozen encoder/decoder: fwd only + grad w.r.t. acts

against a peak measured here (best of fp32 [1024×640]·[640×2560] products and a 2048³ product).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

D_IN, BATCH = 640, 1024
WIDTH = {"gated": 2560, "baseline": 3840}

FLOP_UNITS = {
    "gated": 7,
    "gated_no_rmag": 7,
    "gated_unfrozen_decoder": 8,
    "gated_untied": 9,
    "baseline": 5,
    "jumprelu": 5,
    "topk": 5,
    "topk+auxk": 8,
    "baseline_rescale_shift": 2,
}


def write_cache(path: Path, n_tokens: int, d_in: int = D_IN, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    path.mkdir(parents=True, exist_ok=True)
    arr = np.lib.format.open_memmap(path / "activations.npy", mode="w+", dtype=np.float16, shape=(n_tokens, d_in))
    for s in range(0, n_tokens, 8192):
        block = rng.standard_normal((min(8192, n_tokens - s), d_in)).astype(np.float32)
        block[:, :8] += 3.0  # a mean component, like real activations
        arr[s : s + block.shape[0]] = block / np.sqrt(1 + 8 * 9 / d_in)
    arr.flush()
    meta = {
        "shape": [n_tokens, d_in],
        "dtype": "float16",
        "scale": 1.0,
        "d_in": d_in,
        "n_tokens": n_tokens,
        "hook_name": "blocks.6.hook_resid_post",
        "model": "synthetic",
    }
    (path / "meta.json").write_text(json.dumps(meta))
    return path


def best_time(fn, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def median_step_time(step, n: int) -> float:
    """Median seconds of ``n`` calls ``step(i)`` (robust to other jobs sharing the CPU)."""
    times = []
    for i in range(n):
        t = time.perf_counter()
        step(i)
        times.append(time.perf_counter() - t)
    return float(np.median(times))


def matmul_peak(dtype: torch.dtype, repeats: int) -> dict[str, float]:
    out = {}
    for name, (m, k, n) in {"sae_shape": (BATCH, D_IN, WIDTH["gated"]), "square_2048": (2048, 2048, 2048)}.items():
        a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
        t = best_time(lambda a=a, b=b: a @ b, repeats)
        out[name] = 2 * m * k * n / t / 1e9
    return out


def bench_ours(
    arch: str, steps: int, bf16: bool = False, auxk: bool = False, compile: bool = False
) -> dict[str, float]:
    from saerepro.activations import open_cache
    from saerepro.training import TrainConfig, TrainingState

    coefficient = 32 if arch == "topk" else (1.0 if arch == "baseline_rescale_shift" else 0.01)
    extra: dict = {}
    d_sae = WIDTH["baseline"] if arch in ("baseline", "baseline_rescale_shift") else WIDTH["gated"]
    tmp = Path(tempfile.mkdtemp(prefix="bench_"))
    cache = open_cache(write_cache(tmp / "cache", 4 * BATCH))
    if arch == "baseline_rescale_shift":
        base = TrainingState(
            TrainConfig("baseline", 1.0, d_sae=d_sae, batch_size=BATCH, total_tokens=BATCH, device="cpu"),
            cache,
            tmp / "base",
            torch.device("cpu"),
        )
        base.sae.save_model(tmp / "base")
        extra["baseline_path"] = str(tmp / "base")
    cfg = TrainConfig(
        arch,
        coefficient,
        d_sae=d_sae,
        batch_size=BATCH,
        total_tokens=BATCH * 10_000,
        device="cpu",
        autocast_bf16=bf16,
        dead_tokens_threshold=1 if auxk else 10**9,
        compile=compile,
        **extra,
    )
    run = TrainingState(cfg, cache, tmp / "run", torch.device("cpu"))
    xs = [torch.from_numpy(np.asarray(cache.array[i * BATCH : (i + 1) * BATCH], dtype=np.float32)) for i in range(4)]
    for i in range(3 if compile else 2):  # compile: the first steps build the kernels
        run.train_step(xs[i % 4])
    dt = median_step_time(lambda i: run.train_step(xs[i % 4]), steps)
    units = FLOP_UNITS["topk+auxk" if auxk else arch]
    flops = units * 2 * BATCH * D_IN * d_sae
    return {"d_sae": d_sae, "s_per_step": dt, "tokens_per_s": BATCH / dt, "gflops": flops / dt / 1e9}


def _run_at_l0(arch: str, l0: float, bf16: bool, sparse: bool, tmp: Path, cache) -> tuple:
    """A TrainingState of ``arch`` whose encoder bias puts ~``l0`` latents per token above threshold on the
    benchmark's batches (the same initial weights for the dense and the sparse TrainingState)."""
    from saerepro.training import TrainConfig, TrainingState

    d_sae = WIDTH["baseline"] if arch == "baseline" else WIDTH["gated"]
    torch.manual_seed(0)
    cfg = TrainConfig(
        arch,
        round(l0) if arch == "topk" else 1e-4,
        d_sae=d_sae,
        batch_size=BATCH,
        total_tokens=BATCH * 10_000,
        device="cpu",
        autocast_bf16=bf16,
        dead_tokens_threshold=10**9,
        sparse_step=sparse,
        lr=1e-5,  # small steps: the L0 stays where it was set while timing
    )
    run = TrainingState(cfg, cache, tmp / f"{arch}-{l0}-{bf16}-{sparse}", torch.device("cpu"))
    xs = [torch.from_numpy(np.asarray(cache.array[i * BATCH : (i + 1) * BATCH], dtype=np.float32)) for i in range(4)]
    if arch == "topk":  # k is the coefficient: nothing to set
        return run, xs
    with torch.no_grad():
        z = (xs[0] - run.sae.b_dec) @ run.sae.W_enc
        threshold = torch.quantile(z.flatten()[:: max(1, z.numel() // 4_000_000)], 1 - l0 / d_sae)
        getattr(run.sae, "b_gate" if arch.startswith("gated") else "b_enc").fill_(-float(threshold))
    return run, xs


def bench_sparse(l0s: tuple[int, ...], steps: int, bf16: bool, archs: tuple[str, ...] = ("gated", "baseline")) -> None:
    """Dense against sparse steps (train.sparse_step) of gated and baseline at several L0s: tokens/s
    of each, the ratio, and the dense-equivalent FLOP rate (the dense step's FLOPs / the step's time)
    against the bf16 matmul peak measured in the same run. A sparse step beyond 100% does less work
    than the dense count, which is the point."""
    from saerepro.activations import open_cache
    from saerepro.sae import ARCHITECTURES

    for cls in ARCHITECTURES.values():  # measure every L0: each architecture's crossover is what this finds
        cls.sparse_max_density = 1.0
    peak = max(matmul_peak(torch.bfloat16 if bf16 else torch.float32, 3).values())
    tmp = Path(tempfile.mkdtemp(prefix="bench_sparse_"))
    cache = open_cache(write_cache(tmp / "cache", 4 * BATCH))
    precision = "bf16 autocast" if bf16 else "fp32"
    print(
        f"\ndense vs sparse steps ({precision}, {torch.get_num_threads()} threads; peak {peak:.0f} GFLOP/s measured now):"
    )
    print(
        f"{'arch':9s} {'L0':>6s} {'density':>8s} {'dense tok/s':>11s} {'sparse tok/s':>12s} {'ratio':>6s} {'dense-eq % peak':>16s}"
    )
    for arch in archs:
        for l0 in l0s:
            dense, xs = _run_at_l0(arch, l0, bf16, False, tmp, cache)
            sparse, _ = _run_at_l0(arch, l0, bf16, True, tmp, cache)
            sparse.density = 0.0  # sparse from the first timed step
            for i in range(2):
                dense.train_step(xs[i])
                sparse.train_step(xs[i])
            t_dense = median_step_time(lambda i, r=dense, xs=xs: r.train_step(xs[i % 4]), steps)
            t_sparse = median_step_time(lambda i, r=sparse, xs=xs: r.train_step(xs[i % 4]), steps)
            got = sparse.density * sparse.sae.cfg.d_sae
            flops = FLOP_UNITS[arch] * 2 * BATCH * D_IN * sparse.sae.cfg.d_sae  # topk: AuxK off here
            print(
                f"{arch:9s} {got:6.1f} {sparse.density:8.4f} {BATCH / t_dense:11.0f} {BATCH / t_sparse:12.0f} "
                f"{t_dense / t_sparse:6.2f} {100 * flops / t_sparse / 1e9 / peak:15.0f}%"
            )


def bench_sae_lens_stock(arch: str, steps: int) -> dict[str, float]:
    """sae-lens' own TrainingSAE + SAETrainer.step (forward, backward, grad clip, Adam, sparsity stats)."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.gated_sae import GatedTrainingSAE, GatedTrainingSAEConfig
    from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    if arch == "gated":
        d_sae = WIDTH["gated"]
        sae = GatedTrainingSAE(GatedTrainingSAEConfig(d_in=D_IN, d_sae=d_sae, l1_coefficient=0.01))
        units = 8  # its aux term also back-propagates into W_dec
    else:
        d_sae = WIDTH["baseline"]
        sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=D_IN, d_sae=d_sae, l1_coefficient=0.01))
        units = 5
    xs = [torch.randn(BATCH, D_IN) for _ in range(4)]
    cfg = SAETrainerConfig(
        total_training_samples=BATCH * 10_000,
        train_batch_size_samples=BATCH,
        lr=3e-4,
        lr_end=3e-4,
        adam_beta1=0.0,
        device="cpu",
        logger=LoggingConfig(log_to_wandb=False),
    )
    trainer = SAETrainer(cfg, sae, data_provider=iter(xs))

    def one(i: int) -> None:
        trainer.step(xs[i % 4])
        trainer.n_training_steps += 1

    for i in range(2):
        one(i)
    dt = median_step_time(one, steps)
    return {
        "d_sae": d_sae,
        "s_per_step": dt,
        "tokens_per_s": BATCH / dt,
        "gflops": units * 2 * BATCH * D_IN * d_sae / dt / 1e9,
    }


def bench_stream(n_batches: int) -> float:
    from saerepro.activations import CachedRows
    from saerepro.training import ShuffledStream, batch_to_tensor

    tmp = Path(tempfile.mkdtemp(prefix="bench_stream_"))
    arr = np.load(write_cache(tmp, 64 * BATCH) / "activations.npy", mmap_mode="r")
    it = ShuffledStream(CachedRows(arr), BATCH, 0, buffer_tokens=32 * BATCH, chunk_tokens=4096).batches(0)
    next(it)
    t = time.perf_counter()
    for _ in range(n_batches):
        batch_to_tensor(next(it), torch.device("cpu"))
    return n_batches * BATCH / (time.perf_counter() - t)


# --------------------------------------------------------------------------- multi-SAE design


def _worker(args: argparse.Namespace) -> None:
    """Subprocess: train ``--n-saes`` gated SAEs over one read of the cache, print JSON.

    Without ``--l0``: dense steps from a fresh initialisation (``train_saes`` itself). With it:
    bf16-autocast sparse steps of SAEs set to ~that L0 (as ``--sparse`` sets them), stepped over one
    shuffled stream as ``train_saes`` does, with the seconds spent producing batches counted apart.
    """
    from saerepro.training import TrainConfig, train_saes

    torch.set_num_threads(args.threads)
    if args.l0:
        from saerepro.activations import open_cache
        from saerepro.training import ShuffledStream, batch_to_tensor

        cache = open_cache(args.cache)
        tmp = Path(tempfile.mkdtemp(prefix="bench_multi_"))
        runs = [_run_at_l0("gated", args.l0, True, True, tmp / str(i), cache)[0] for i in range(args.n_saes)]
        for run in runs:
            run.density = 0.0
        c0 = runs[0].cfg
        batches = ShuffledStream(cache.source, BATCH, 0, c0.shuffle_buffer_tokens, c0.shuffle_chunk_tokens).batches(0)
        data = 0.0
        t = time.perf_counter()
        for _ in range(args.steps):
            t_data = time.perf_counter()
            x = batch_to_tensor(next(batches), torch.device("cpu"))
            data += time.perf_counter() - t_data
            for run in runs:
                run.train_step(x)
        seconds = time.perf_counter() - t
        l0 = sum(r.density * r.sae.cfg.d_sae for r in runs) / len(runs)
        print(json.dumps({"seconds": seconds, "data_seconds": data, "l0": l0}))
        return
    cfgs = [
        TrainConfig(
            "gated",
            0.01 * (i + 1),
            d_sae=WIDTH["gated"],
            batch_size=BATCH,
            total_tokens=BATCH * args.steps,
            device="cpu",
            checkpoint_every_steps=0,
            lr_warmup_steps=5,
        )
        for i in range(args.n_saes)
    ]
    out = Path(tempfile.mkdtemp(prefix="bench_multi_"))
    t = time.perf_counter()
    train_saes(cfgs, args.cache, [out / str(i) for i in range(args.n_saes)], progress=False)
    print(json.dumps({"seconds": time.perf_counter() - t}))


def bench_multi(steps: int, n_saes: int = 2, l0: float = 0.0) -> dict[str, float]:
    """SAE-tokens/s for n_saes gated SAEs: one process (all threads) vs n parallel 1-thread processes
    (the pipeline's one job per SAE) vs n sequential all-thread processes. ``l0`` > 0: sparse steps
    at that L0 (see :func:`_worker`), and the share of the one process's time spent producing
    batches. Process start-up (imports, ~5 s) is excluded by timing inside the worker."""
    tmp = Path(tempfile.mkdtemp(prefix="bench_multi_cache_"))
    cache = write_cache(tmp, 64 * BATCH)
    threads = torch.get_num_threads()

    def launch(n: int, th: int) -> subprocess.Popen:
        cmd = [sys.executable, __file__, "--worker", "--cache", str(cache), "--n-saes", str(n)]
        cmd += ["--threads", str(th), "--steps", str(steps), "--l0", str(l0)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": str(th)})

    def result(p: subprocess.Popen) -> dict[str, float]:
        out, _ = p.communicate()
        return json.loads(out.strip().splitlines()[-1])

    sae_tokens = n_saes * steps * BATCH
    one = result(launch(n_saes, threads))
    procs = [launch(1, 1) for _ in range(n_saes)]
    t0 = time.perf_counter()
    parallel = max(result(p)["seconds"] for p in procs)
    wall_parallel = time.perf_counter() - t0
    sequential = sum(result(launch(1, threads))["seconds"] for _ in range(n_saes))
    out = {
        f"one process, {n_saes} SAEs, {threads} threads": sae_tokens / one["seconds"],
        f"{n_saes} parallel processes, 1 thread each": sae_tokens / parallel,
        f"{n_saes} sequential processes, {threads} threads each": sae_tokens / sequential,
        "_wall_parallel_incl_startup_s": wall_parallel,
    }
    if "data_seconds" in one:
        out["_data_share_one_process"] = one["data_seconds"] / one["seconds"]
        out["_l0"] = one["l0"]
    return out


def add_allocator_option(parser: argparse.ArgumentParser) -> None:
    """``--default-allocator``, the same flag in every benchmark (see :func:`apply_allocator_option`)."""
    parser.add_argument(
        "--default-allocator",
        action="store_true",
        help="keep glibc's default allocator settings (as the pipeline ran before saerepro.allocator): "
        "sets $SAEREPRO_DEFAULT_ALLOCATOR=1, which subprocesses inherit",
    )


def apply_allocator_option(args: argparse.Namespace) -> str:
    """Allocator settings as the pipeline's jobs have them, unless ``--default-allocator``; says which."""
    from saerepro.allocator import OPT_OUT_ENV, keep_freed_memory

    if args.default_allocator:
        os.environ[OPT_OUT_ENV] = "1"
        return "glibc defaults (--default-allocator)"
    return "saerepro.allocator (freed memory kept)" if keep_freed_memory() else "glibc defaults (mallopt refused)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer steps")
    ap.add_argument("--multi", action="store_true", help="also measure several SAEs per process vs processes")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 autocast measurements")
    ap.add_argument(
        "--compile",
        action="store_true",
        help="also gated and baseline with train.compile (torch.compile), against the bf16 peak",
    )
    ap.add_argument("--sparse", action="store_true", help="only dense vs sparse steps by L0")
    ap.add_argument("--multi-only", action="store_true", help="only several SAEs per process vs processes")
    ap.add_argument(
        "--sparse-archs",
        default="gated,baseline",
        help="architectures of --sparse (gated and its ablations, baseline, topk, jumprelu)",
    )
    add_allocator_option(ap)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--cache", help=argparse.SUPPRESS)
    ap.add_argument("--n-saes", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--steps", type=int, default=20, help=argparse.SUPPRESS)
    ap.add_argument("--l0", type=float, default=0.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    allocator = apply_allocator_option(args)
    if args.worker:
        _worker(args)
        return

    steps = 3 if args.quick else 9
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU capability "
        f"{torch.backends.cpu.get_cpu_capability()}; d_in={D_IN}, batch={BATCH}; "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; allocator: {allocator}"
    )
    if args.multi_only:
        print_multi(steps=10 if args.quick else 30)
        return
    if args.sparse:
        l0s = (16, 64, 256) if args.quick else (16, 32, 64, 128, 256, 512)
        for bf16 in (True, False) if not args.no_bf16 else (False,):
            bench_sparse(l0s, steps, bf16, tuple(args.sparse_archs.split(",")))
        return
    peak32 = matmul_peak(torch.float32, 3 if args.quick else 5)
    peak = max(peak32.values())
    print(
        f"\nmatmul peak fp32: {peak32['sae_shape']:.1f} GFLOP/s at [1024x640]x[640x2560], "
        f"{peak32['square_2048']:.1f} GFLOP/s at 2048^3  -> peak = {peak:.1f}"
    )
    if not args.no_bf16:
        peak16 = matmul_peak(torch.bfloat16, 3)
        print(
            f"matmul bf16:      {peak16['sae_shape']:.1f} GFLOP/s at [1024x640]x[640x2560], "
            f"{peak16['square_2048']:.1f} GFLOP/s at 2048^3"
        )

    print(
        f"\nShuffledStream (fp16 cache -> fp32 batch): {bench_stream(20 if not args.quick else 5) / 1e6:.2f} M tokens/s"
    )

    rows: list[tuple[str, dict[str, float]]] = []
    from saerepro.architectures import ARCHITECTURES

    # gated_strict_aux costs what gated does (the same matmuls): not timed separately
    for arch in [a for a in ARCHITECTURES if a != "gated_strict_aux"]:
        rows.append((arch, bench_ours(arch, steps)))
    rows.append(("topk (AuxK active)", bench_ours("topk", steps, auxk=True)))
    stock = [(f"sae-lens stock {a}", bench_sae_lens_stock(a, steps)) for a in ("gated", "standard")]

    peak_end = max(matmul_peak(torch.float32, 3).values())
    if peak_end > peak:
        print(f"(fp32 matmul peak re-measured after the runs: {peak_end:.1f} GFLOP/s; using it)")
        peak = peak_end
    print(f"\n{'architecture':34s} {'d_sae':>6s} {'s/step':>8s} {'tokens/s':>9s} {'GFLOP/s':>8s} {'% peak':>7s}")
    for name, r in rows + stock:
        print(
            f"{name:34s} {r['d_sae']:6d} {r['s_per_step']:8.3f} {r['tokens_per_s']:9.0f} {r['gflops']:8.1f} "
            f"{100 * r['gflops'] / peak:6.1f}%"
        )

    bf16_rows: dict[str, dict[str, float]] = {}
    if not args.no_bf16:
        print("\nbf16 autocast (weights and Adam in fp32):")
        for arch in ("gated", "baseline"):
            fp32 = dict(rows)[arch]
            b = bench_ours(arch, steps, bf16=True)
            print(
                f"  {arch:10s} {b['tokens_per_s']:9.0f} tokens/s  (fp32 {fp32['tokens_per_s']:.0f}; "
                f"speed-up x{b['tokens_per_s'] / fp32['tokens_per_s']:.2f})"
            )
            bf16_rows[arch] = b
        peak16 = max(peak16.values())

    if args.compile:
        print("\ntrain.compile (torch.compile of the loss), bf16 autocast unless --no-bf16:")
        ref_peak = peak if args.no_bf16 else peak16
        for arch in ("gated", "baseline"):
            c = bench_ours(arch, steps, bf16=not args.no_bf16, compile=True)
            eager = bf16_rows.get(arch) or dict(rows)[arch]
            print(
                f"  {arch:10s} {c['tokens_per_s']:9.0f} tokens/s = {c['gflops']:.0f} GFLOP/s = "
                f"{100 * c['gflops'] / ref_peak:.0f}% of the {'fp32' if args.no_bf16 else 'bf16'} peak "
                f"(uncompiled {eager['tokens_per_s']:.0f} tokens/s = {100 * eager['gflops'] / ref_peak:.0f}%)"
            )

    if args.multi:
        print_multi(steps=10 if args.quick else 30)


def print_multi(steps: int) -> None:
    """Several SAEs of one hook point in one process vs one process each: dense steps from a fresh
    initialisation, then bf16 sparse steps at L0 ~32 (the default run's regime after its first steps)."""
    for l0, what in ((0.0, "dense fp32 steps"), (32.0, "sparse bf16 steps at L0 ~32")):
        print(f"\nseveral SAEs of one hook point (gated, width 2560, {what}), SAE-tokens/s, incl. data:")
        r = bench_multi(steps=steps, l0=l0)
        for name, v in r.items():
            if not name.startswith("_"):
                print(f"  {name:45s} {v:9.0f}")
        if "_data_share_one_process" in r:
            print(
                f"  (L0 {r['_l0']:.1f}; producing batches: {100 * r['_data_share_one_process']:.1f}% of the one process's time)"
            )


if __name__ == "__main__":
    main()
