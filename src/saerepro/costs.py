"""Analytic cost estimate of a sweep: jobs, GPU-hours, peak GPU memory per job, disk.

Nothing here runs a model: FLOPs and bytes follow from the config and the model's shapes
(:class:`saerepro.model_spec.ModelSpec`), and time from an *assumed* throughput
(:class:`Hardware`: peak FLOP/s per precision × a utilisation). The numbers are estimates for
planning, to be replaced by measured tokens/s where a GPU measurement exists.

Counting rules (per token; d = SAE input width, m = latents; one matmul [d]x[d, m] = 2dm FLOPs):

* SAE training, in products U = 2dm (the count of ``benchmarks/bench_train.py``; the input needs
  no gradient, so the encoder's backward is its weight gradient only): baseline, topk, jumprelu
  5U (encoder forward + weight grad, decoder forward + both grads); gated, gated_no_rmag and
  gated_strict_aux 7U (+ the aux term's frozen decoder forward + its input grad), 1.4 × a
  baseline of equal width (the paper's compute match says ~1.5); gated_unfrozen_decoder 8U (the
  aux decoder also gets a weight grad); gated_untied 9U (+ W_mag forward and weight grad);
  baseline_rescale_shift 3U (frozen weights: both forwards + the decoder's input grad).
* LM forward = 2 × (weights of the blocks run) + attention 2 · ctx · n_heads · d_head per block
  (QKᵀ and AV under a causal mask: ctx/2 keys on average) + the unembedding 2 · d_model · d_vocab
  when logits are needed. Attention uses n_heads for K and V too (no grouped-query saving): an
  over-estimate for GQA models.
* ``cached`` mode (what the DAG does today): one LM pass over the training corpus, stopped after
  the deepest layer, writes every hook point's activations to disk; every SAE then reads them.
* ``on_the_fly`` mode (planned, issue 6): no activation cache; one LM pass per hook point over one
  SAE's token budget feeds every SAE of that hook point, all trained in one job.
* Pilot mode (a ``pilot:`` section, :mod:`saerepro.pilot`; cached mode only): one ``pilot`` job per
  (layer, site, piloted architecture) trains its probe SAEs together for ``pilot.tokens`` each, on
  one GPU; the SAEs it then chooses, ``pilot.n_coefficients`` per point, are counted like any
  other (their λs do not change the cost). A dry run lists the pilots but not yet those SAEs.

Memory per job: fp32 weights (4 bytes/parameter), fp32 gradients and Adam moments (12 bytes per
trainable parameter), saved activations of one batch (``ACTIVATION_TENSORS`` × batch × m × 4
bytes) and a fixed CUDA context allowance. Evaluation and reference jobs hold the LM (its registry
dtype), one batch of logits in float32 and the SAE. A pilot job holds the state of all its probes
and the saved activations of one of them (they step one after another on each batch).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .architectures import SPECS, SpecMap
from .config import Config, pilot_key
from .models import ModelSpec
from .sites import site_dim

GIB = 2**30

#: [B, d] x [d, m]-sized products of one training step, per architecture (module docstring).
TRAIN_PRODUCTS: SpecMap[int] = SpecMap(lambda spec: spec.train_products)
#: [batch, m] float32 tensors a training step keeps for the backward pass.
ACTIVATION_TENSORS: SpecMap[int] = SpecMap(lambda spec: spec.activation_tensors)
#: Per-GPU memory the CUDA context, allocator slack and small tensors take.
CONTEXT_BYTES = 2 * GIB
DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


@dataclass(frozen=True)
class Hardware:
    """The assumed accelerator."""

    name: str = "NVIDIA H100 SXM (80 GB)"
    """Shown in the output."""
    peak_flops: dict[str, float] = field(default_factory=lambda: {"bfloat16": 989e12, "float32": 67e12})
    """Dense peak FLOP/s per compute dtype (H100 SXM datasheet: bf16 tensor cores 989 TFLOP/s
    without sparsity; plain fp32 67 TFLOP/s, which PyTorch uses for float32 matmuls unless TF32
    is enabled)."""
    utilisation: float = 0.4
    """Fraction of peak reached (assumed: large matmuls, plus the elementwise and optimiser work
    around them)."""
    memory_bytes: int = 80 * 10**9
    """GPU memory, for the "fits" check."""

    def __post_init__(self) -> None:
        if not 0 < self.utilisation <= 1:
            raise ValueError(f"utilisation must be in (0, 1], got {self.utilisation}")

    def seconds(self, flops: float, dtype: str) -> float:
        """Time for ``flops`` FLOPs in ``dtype`` at the assumed utilisation."""
        return flops / (self.peak_flops[dtype] * self.utilisation)


# --------------------------------------------------------------------------- FLOPs and sizes


def sae_parameters(architecture: str, d: int, m: int) -> tuple[int, int]:
    """(all, trainable) parameters of one SAE, from its spec's [d, m] matrices and [m] vectors,
    plus b_dec."""
    spec = SPECS[architecture]
    total = spec.weight_matrices * d * m + spec.latent_vectors * m + d
    if spec.trainable_latent_vectors is not None:
        return total, spec.trainable_latent_vectors * m
    return total, total


def sae_train_flops_per_token(architecture: str, d: int, m: int) -> float:
    """Training FLOPs per token (forward + backward, see the module docstring)."""
    return TRAIN_PRODUCTS[architecture] * 2.0 * d * m


def lm_block_parameters(spec: ModelSpec) -> int:
    """Weights of one transformer block (attention + MLP; norms and biases ignored)."""
    attn = 4 * spec.d_model * spec.n_heads * spec.d_head
    mlp = (3 if spec.gated_mlp else 2) * spec.d_model * (spec.d_mlp or 4 * spec.d_model)
    return attn + mlp


def lm_parameters(spec: ModelSpec) -> int:
    """All weights, embeddings included (embedding and unembedding counted separately)."""
    return spec.n_layers * lm_block_parameters(spec) + 2 * spec.d_model * (spec.d_vocab or 0)


def lm_forward_flops_per_token(spec: ModelSpec, n_blocks: int, context: int, logits: bool) -> float:
    """Forward FLOPs per token through the first ``n_blocks`` blocks (+ unembedding if ``logits``)."""
    per_block = 2.0 * lm_block_parameters(spec) + 2.0 * context * spec.n_heads * spec.d_head
    unembed = 2.0 * spec.d_model * (spec.d_vocab or 0) if logits else 0.0
    return n_blocks * per_block + unembed


# --------------------------------------------------------------------------- the estimate


@dataclass(frozen=True)
class Estimate:
    """One sweep's estimated costs, in both activation modes."""

    config_name: str
    """Label (the config file's stem)."""
    jobs: int
    """Snakemake jobs of the whole cached-mode sweep, the target rule ``all`` and any pilots included."""
    saes: int
    """SAEs trained (in pilot mode, ``pilot.n_coefficients`` per piloted point; probes not counted)."""
    hook_points: int
    """(layer, site) pairs."""
    gpu_hours: dict[str, float]
    """Mode -> estimated GPU-hours (``cached``, ``on_the_fly``)."""
    gpu_hours_by_stage: dict[str, dict[str, float]]
    """Mode -> stage (lm, train, reference, evaluate) -> GPU-hours."""
    peak_memory_bytes: dict[str, int]
    """Mode -> the largest GPU memory one job needs."""
    peak_memory_job: dict[str, str]
    """Mode -> which job that is."""
    disk_bytes: dict[str, int]
    """Mode -> bytes on disk when the sweep is done (corpus, caches, SAE weights, probe weights)."""
    dry_run_jobs: int
    """Jobs ``snakemake -n`` lists before any pilot has run: the pilots, but not yet the train and
    evaluate jobs of the SAEs they choose (Snakemake adds those once the pilots are done).
    Equals ``jobs`` without pilot mode."""
    pilots: int
    """``pilot`` jobs: one per (layer, site, piloted architecture); 0 without pilot mode."""
    probes: int
    """Probe SAEs those pilots train."""
    longest_job_hours: dict[str, float]
    """Rule (``train``, and ``pilot`` in pilot mode) -> estimated GPU-hours of its longest job, cached mode."""


def with_planned_grids(cfg: Config) -> Config:
    """``cfg`` with a placeholder grid of ``pilot.n_coefficients`` λs at every piloted point that
    has no chosen grid yet, so that ``runs()`` lists every SAE the sweep will train once the pilots
    have chosen (only their number matters for the cost). ``cfg`` itself without pilot mode."""
    if cfg.pilot is None:
        return cfg
    placeholder = tuple(float(i + 1) for i in range(cfg.pilot.n_coefficients))
    grids = {pilot_key(a, layer, site): placeholder for a, layer, site in cfg.pilot_points()}
    return dataclasses.replace(cfg, pilot_grids={**grids, **(cfg.pilot_grids or {})})


def estimate(cfg: Config, hardware: Hardware = Hardware(), name: str = "", lm_dtype: str | None = None) -> Estimate:
    """The analytic costs of ``cfg`` on ``hardware`` (see the module docstring); ``lm_dtype``
    overrides the LM's registry dtype (``bfloat16`` to see what running it in bf16 would save)."""
    spec = cfg.spec
    ctx = cfg.corpus.context_size
    lm_dtype = lm_dtype or spec.dtype
    sae_dtype = "bfloat16" if cfg.train.autocast_bf16 else "float32"
    hooks = cfg.hook_points()
    dims = {(layer, site): site_dim(site, spec.d_model, spec.n_heads, spec.d_head, spec.d_mlp) for layer, site in hooks}
    runs = with_planned_grids(cfg).runs()

    # Tokens: what the cache holds (BOS positions skipped) and what each SAE reads.
    cached_tokens = cfg.corpus.train_tokens // ctx * (ctx - 1)

    def eval_tokens(site: str) -> int:
        return max(1, cfg.reference.tokens_for(site) // ctx) * ctx

    batch = cfg.train.batch_size

    train_s, train_longest_s, eval_s, sae_bytes = 0.0, 0.0, 0.0, 0
    train_mem, eval_mem = 0, 0
    sae_state: dict[tuple[int, str], int] = {h: 0 for h in hooks}  # on-the-fly: all SAEs of a hook
    sae_act: dict[tuple[int, str], int] = {h: 0 for h in hooks}
    full_lm = lm_forward_flops_per_token(spec, spec.n_layers, ctx, logits=True)
    lm_weight_bytes = lm_parameters(spec) * DTYPE_BYTES[lm_dtype]
    logits_bytes = cfg.reference.batch_size * ctx * (spec.d_vocab or 0) * 4
    for run in runs:
        arch = cfg.architectures[run.architecture]
        d = dims[(run.layer, run.site)]
        m = arch.d_sae(d, run.site)
        tokens = arch.tokens or cfg.train.tokens_for(run.site)
        seconds = hardware.seconds(sae_train_flops_per_token(run.architecture, d, m) * tokens, sae_dtype)
        train_s += seconds
        train_longest_s = max(train_longest_s, seconds)
        # Evaluation: the SAE spliced into a full LM forward over the eval tokens (the clean
        # pass is reference_ce's, reused).
        eval_s += hardware.seconds(full_lm * eval_tokens(run.site), lm_dtype)
        eval_s += hardware.seconds(4.0 * d * m * eval_tokens(run.site), sae_dtype)
        total, trainable = sae_parameters(run.architecture, d, m)
        sae_bytes += 4 * total
        state = 4 * total + 12 * trainable
        act = ACTIVATION_TENSORS[run.architecture] * batch * m * 4
        train_mem = max(train_mem, CONTEXT_BYTES + state + act)
        eval_mem = max(eval_mem, CONTEXT_BYTES + lm_weight_bytes + logits_bytes + 4 * total)
        sae_state[(run.layer, run.site)] += state
        sae_act[(run.layer, run.site)] = max(sae_act[(run.layer, run.site)], act)

    # Pilot jobs: every probe of one (layer, site, architecture) trained together on one GPU.
    # Their weights stay on disk beside pilot.json.
    pilot_s, pilot_longest_s, pilot_mem, probes, probe_bytes = 0.0, 0.0, 0, 0, 0
    for piloted, layer, site in cfg.pilot_points():
        assert cfg.pilot is not None
        d = dims[(layer, site)]
        m = cfg.architectures[piloted].d_sae(d, site)
        n = len(cfg.probe_coefficients(piloted, site))
        probes += n
        seconds = hardware.seconds(sae_train_flops_per_token(piloted, d, m) * cfg.pilot.tokens * n, sae_dtype)
        pilot_s += seconds
        pilot_longest_s = max(pilot_longest_s, seconds)
        total, trainable = sae_parameters(piloted, d, m)
        probe_bytes += n * 4 * total
        state = 4 * total + 12 * trainable
        pilot_mem = max(pilot_mem, CONTEXT_BYTES + n * state + ACTIVATION_TENSORS[piloted] * batch * m * 4)

    deepest = max(layer for layer, _ in hooks) + 1
    # the clean pass over the largest set, one zero-ablation pass per hook point over its own
    ref_s = hardware.seconds(
        full_lm * (max(eval_tokens(site) for _, site in hooks) + sum(eval_tokens(site) for _, site in hooks)), lm_dtype
    )
    cache_s = hardware.seconds(
        lm_forward_flops_per_token(spec, deepest, ctx, False) * cfg.corpus.train_tokens, lm_dtype
    )
    tokens_per_sae = max((cfg.architectures[r.architecture].tokens or cfg.train.tokens_for(r.site)) for r in runs)
    otf_lm_s = sum(
        hardware.seconds(
            lm_forward_flops_per_token(spec, layer + 1, ctx, False) * tokens_per_sae * ctx / (ctx - 1), lm_dtype
        )
        for layer, _ in hooks
    )
    lm_batch_bytes = cfg.cache.batch_size * ctx * max(spec.d_model, spec.d_mlp or 0) * 4 * 4
    lm_job_mem = CONTEXT_BYTES + lm_weight_bytes + lm_batch_bytes
    ref_mem = CONTEXT_BYTES + lm_weight_bytes + logits_bytes

    corpus_bytes = (cfg.corpus.train_tokens + max(4 * cfg.reference.max_tokens(cfg.sites), 65536)) * 4
    cache_bytes = sum(cached_tokens * d * DTYPE_BYTES[cfg.cache.dtype] for d in dims.values())
    otf_job = {h: lm_job_mem + sae_state[h] + sae_act[h] for h in hooks}
    worst_hook = max(otf_job, key=otf_job.__getitem__)

    def peak(candidates: dict[str, int]) -> tuple[int, str]:
        job = max(candidates, key=candidates.__getitem__)
        return candidates[job], job

    cached_jobs = {"train": train_mem, "evaluate": eval_mem, "cache_activations": lm_job_mem, "reference_ce": ref_mem}
    if probes:
        cached_jobs["pilot"] = pilot_mem
    cached_peak = peak(cached_jobs)
    otf_peak = peak(
        {
            f"train (all SAEs of L{worst_hook[0]}/{worst_hook[1]} + LM)": otf_job[worst_hook],
            "evaluate": eval_mem,
            "reference_ce": ref_mem,
        }
    )
    # Pilot mode needs the cache: the on-the-fly figures are those of the same SAEs without pilots.
    stages = {
        "cached": {
            "lm": cache_s / 3600,
            "pilot": pilot_s / 3600,
            "train": train_s / 3600,
            "reference": ref_s / 3600,
            "evaluate": eval_s / 3600,
        },
        "on_the_fly": {
            "lm": otf_lm_s / 3600,
            "pilot": 0.0,
            "train": train_s / 3600,
            "reference": ref_s / 3600,
            "evaluate": eval_s / 3600,
        },
    }
    # prepare_model, prepare_corpus, cache_activations, reference_ce, aggregate, figures,
    # toy_tables, toy_figures, all;
    # one train and one evaluate per SAE; one job per pilot. Before the pilots ran, Snakemake knows
    # only the SAEs of unpiloted architectures (cfg.runs()).
    pilots = len(cfg.pilot_points())
    jobs = 2 * len(runs) + 9 + pilots
    dry_run_jobs = 2 * len(cfg.runs()) + 9 + pilots
    longest = {"train": train_longest_s / 3600}
    if pilots:
        longest["pilot"] = pilot_longest_s / 3600
    return Estimate(
        config_name=name or cfg.model,
        jobs=jobs,
        saes=len(runs),
        hook_points=len(hooks),
        gpu_hours={mode: sum(s.values()) for mode, s in stages.items()},
        gpu_hours_by_stage=stages,
        peak_memory_bytes={"cached": cached_peak[0], "on_the_fly": otf_peak[0]},
        peak_memory_job={"cached": cached_peak[1], "on_the_fly": otf_peak[1]},
        disk_bytes={
            "cached": corpus_bytes + cache_bytes + sae_bytes + probe_bytes,
            "on_the_fly": corpus_bytes + sae_bytes,
        },
        dry_run_jobs=dry_run_jobs,
        pilots=pilots,
        probes=probes,
        longest_job_hours=longest,
    )


def human_bytes(n: float) -> str:
    """1.5 TB, 300 GB, 12 MB (decimal units, as disks are sold)."""
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.0f} B"


def format_table(
    estimates: list[Estimate], hardware: Hardware, lm_note: str = "its registry dtype (saerepro.models)"
) -> str:
    """A plain-text table of ``estimates`` and the assumptions behind them."""
    header = (
        "config",
        "jobs",
        "SAEs",
        "pilots (probes)",
        "GPU-h cached",
        "GPU-h on-the-fly",
        "peak GPU mem/job cached",
        "peak GPU mem/job on-the-fly",
        "disk cached",
        "disk on-the-fly",
    )
    rows = [header]
    for e in estimates:
        rows.append(
            (
                e.config_name,
                str(e.jobs),
                str(e.saes),
                f"{e.pilots} ({e.probes})" if e.pilots else "-",
                f"{e.gpu_hours['cached']:,.0f}",
                f"{e.gpu_hours['on_the_fly']:,.0f}",
                f"{e.peak_memory_bytes['cached'] / GIB:.0f} GiB ({e.peak_memory_job['cached']})",
                f"{e.peak_memory_bytes['on_the_fly'] / GIB:.0f} GiB",
                human_bytes(e.disk_bytes["cached"]),
                human_bytes(e.disk_bytes["on_the_fly"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    peaks = ", ".join(f"{k} {v / 1e12:,.0f} TFLOP/s" for k, v in hardware.peak_flops.items())
    notes = [
        "",
        f"Assumed GPU: {hardware.name}, dense peak {peaks}, at {hardware.utilisation:.0%} utilisation.",
        f"SAE matmuls in bf16 where the config sets train.autocast_bf16, else fp32; the LM in {lm_note}.",
        "Analytic FLOP counts (saerepro.costs), not measurements; CPU-only stages (tokenising the "
        "corpus, aggregate, figures) are not counted.",
        "on-the-fly: planned mode, one LM pass per hook point feeding all its SAEs in one job "
        "(the peak column is that job).",
    ]
    if any(e.pilots for e in estimates):
        notes.append(
            "pilots: `pilot` jobs (one per layer, site and piloted architecture) and the probe SAEs they train, "
            "all of a job's probes on one GPU; cached mode only (on the fly needs the pilot section removed: "
            "that column counts the same SAEs without pilots). `snakemake -n` lists the pilots but not yet "
            "the train/evaluate jobs of the SAEs they choose; the jobs column counts the whole sweep."
        )
    for e in estimates:
        parts = ", ".join(
            f"{k} {v:,.0f}" for k, v in e.gpu_hours_by_stage["cached"].items() if k != "pilot" or e.pilots
        )
        otf_lm = e.gpu_hours_by_stage["on_the_fly"]["lm"]
        notes.append(f"{e.config_name}: cached GPU-h by stage: {parts}; on-the-fly LM passes {otf_lm:,.0f}.")
        if e.pilots:
            stages = e.gpu_hours_by_stage["cached"]
            notes.append(
                f"{e.config_name}: `snakemake -n` lists {e.dry_run_jobs} of its {e.jobs} jobs before the pilots ran; "
                f"the probes cost {stages['pilot'] / stages['train']:.1%} of the SAE-training GPU-h "
                f"({stages['pilot'] / e.gpu_hours['cached']:.1%} of the total); longest pilot job "
                f"{e.longest_job_hours['pilot']:,.1f} GPU-h, longest train job {e.longest_job_hours['train']:,.1f}."
            )
    over_cached = [
        f"{e.config_name} ({e.peak_memory_job['cached']})"
        for e in estimates
        if e.peak_memory_bytes["cached"] > hardware.memory_bytes
    ]
    if over_cached:
        notes.append(
            f"Cached-mode jobs above {hardware.memory_bytes / 1e9:.0f} GB of GPU memory: {', '.join(over_cached)} "
            "(a larger GPU for them, or fewer probes per pilot: pilot.n_probes)."
        )
    over = [e.config_name for e in estimates if e.peak_memory_bytes["on_the_fly"] > hardware.memory_bytes]
    if over:
        notes.append(
            f"On-the-fly jobs above {hardware.memory_bytes / 1e9:.0f} GB of GPU memory: "
            f"{', '.join(over)} (split a hook point's SAEs over several GPUs or jobs)."
        )
    return "\n".join(lines + notes)
