"""Train saerepro SAEs on an activation source, deterministically and resumably.

The activations come from an :class:`~saerepro.activations.ActivationCache`: a cache on disk, or an
on-the-fly source (:func:`saerepro.streaming.open_lm_source`) whose rows the LM computes when they
are read; both are read through the :class:`~saerepro.training.data.ActivationSource` protocol, so
everything below (data order, checkpoints, resumption) is the same for both.

Modules, one job each: :mod:`.config` (TrainConfig and its checks), :mod:`.schedule` (LR and
coefficient schedules), :mod:`.data` (the source protocol and its seeded shuffle), :mod:`.init`
(SAE construction, b_dec initialisation), :mod:`.run` (one SAE's state and checkpoints),
:mod:`.loop` (the drivers).

One call trains one SAE (:func:`train_sae`) or several SAEs of one hook point over a single read of
the activations (:func:`train_saes`; same batches in the same order, so each SAE ends bit-identical
to training it alone). Everything is a function of the :class:`TrainConfig` and the cache.

What ``out_dir`` holds when a run completes (every file written to a temp file, then ``os.replace``)::

    cfg.json, sae_weights.safetensors   the SAE in sae-lens format (``SAE.load_from_disk(out_dir)``
                                        after ``import saerepro.sae``); cfg.metadata has hook_name,
                                        model_name, activation_scale, train_config
    loss_curve.csv                      step, tokens, lr, coefficient, loss, <each loss term>, l0,
                                        dead_fraction (every ``log_every_steps`` steps and the last)
    train_info.json                     tokens_trained, epochs (passes over the cache), steps,
                                        seconds, tokens_per_second, lr,
                                        final_losses (mean of the last 10 curve rows), dead_fraction,
                                        resamples, train_config, ... (written last: the "done" marker)

While a run is in progress ``out_dir/checkpoint.pt`` (model, Adam state, step, dead-latent counters,
loss-curve rows, elapsed time) is rewritten every ``checkpoint_every_steps`` steps, on Ctrl-C (between
steps), and at ``stop_at_step``; a later call with the same config resumes from it and ends with the same weights
as an uninterrupted run. It is deleted when the run completes (``keep_checkpoint=True`` keeps it).

Data order: the cache is cut into contiguous chunks of ``shuffle_chunk_tokens`` tokens; each epoch
visits the chunks in a seeded random order, ``shuffle_buffer_tokens // shuffle_chunk_tokens`` chunks
at a time are loaded into a buffer, the buffer is shuffled token-wise (seeded) and served in
batches. The batch at any token position is a pure function of (seed, position), which is what
makes resuming exact. The last ``n_tokens % shuffle_chunk_tokens`` tokens of the cache are never
used.

SAEs trained together (:func:`train_saes`) may differ in ``total_tokens``: they read the same
stream and each stops at its own step count, which equals training it alone.
"""

from __future__ import annotations

from ..models import resolve_device
from .config import B_DEC_INITS, TrainConfig, default_width, shuffle_chunk_tokens
from .data import ActivationSource, ShuffledStream, batch_to_tensor, sample_rows
from .init import build_sae, geometric_median
from .loop import SHARED_DATA_FIELDS, train_sae, train_saes
from .run import (
    CHECKPOINT_FILE,
    LOSS_CURVE_FILE,
    SAE_CFG_FILE,
    SAE_WEIGHTS_FILE,
    TRAIN_INFO_FILE,
    NonFiniteLossError,
    TrainingState,
)
from .schedule import coefficient_at, learning_rate

__all__ = [
    "B_DEC_INITS",
    "CHECKPOINT_FILE",
    "LOSS_CURVE_FILE",
    "SAE_CFG_FILE",
    "SAE_WEIGHTS_FILE",
    "SHARED_DATA_FIELDS",
    "TRAIN_INFO_FILE",
    "ActivationSource",
    "NonFiniteLossError",
    "ShuffledStream",
    "TrainConfig",
    "TrainingState",
    "batch_to_tensor",
    "build_sae",
    "coefficient_at",
    "default_width",
    "geometric_median",
    "learning_rate",
    "resolve_device",
    "sample_rows",
    "shuffle_chunk_tokens",
    "train_sae",
    "train_saes",
]
