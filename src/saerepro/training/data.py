"""The data a run reads: the :class:`ActivationSource` protocol, its seeded shuffle, samples and batches.

Two sources implement the protocol: :class:`saerepro.activations.CachedRows` (an activation cache
on disk) and :class:`saerepro.streaming.LMActivations` (the LM computes the rows when they are
read). The trainer never asks which one it has.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np
import torch


class ActivationSource(Protocol):
    """Normalised activations of one hook point, a ``[n_tokens, d_in]`` array read in pieces."""

    @property
    def shape(self) -> tuple[int, ...]:
        """``(n_tokens, d_in)``."""
        ...

    @property
    def sample_limit(self) -> int:
        """Samples (b_dec initialisation, resampling inputs) are drawn from the first this many rows:
        all of them for a cache; the normalisation block for an on-the-fly source, so that a sample
        costs at most that many tokens of LM forward (with the block covering all rows the sample is
        the cached mode's)."""
        ...

    def read_chunks(self, ids: np.ndarray, chunk: int) -> np.ndarray:
        """Chunks ``ids`` of ``chunk`` contiguous rows each, concatenated in the given order."""
        ...

    def __getitem__(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (an integer array)."""
        ...


class ShuffledStream:
    """Seeded, chunk-then-buffer shuffled batches from an :class:`ActivationSource` (see the package doc)."""

    def __init__(self, source: ActivationSource, batch_size: int, seed: int, buffer_tokens: int, chunk_tokens: int):
        n = int(source.shape[0])
        if n < 1:
            raise ValueError("the activation cache is empty")
        self.source = source
        self.batch_size = batch_size
        self.seed = seed
        self.chunk = min(chunk_tokens, n)
        self.n_chunks = n // self.chunk
        self.chunks_per_buffer = max(1, min(buffer_tokens // self.chunk, self.n_chunks))
        self.buffer_tokens = self.chunks_per_buffer * self.chunk
        self.epoch_tokens = self.n_chunks * self.chunk
        self._perm_epoch: int | None = None
        self._perm: np.ndarray | None = None

    def _chunk_order(self, epoch: int) -> np.ndarray:
        if self._perm_epoch != epoch:
            self._perm = np.random.default_rng([self.seed, epoch, 0]).permutation(self.n_chunks)
            self._perm_epoch = epoch
        assert self._perm is not None
        return self._perm

    def buffer(self, epoch: int, index: int) -> np.ndarray:
        """Buffer ``index`` of ``epoch``: its chunks (read in file order), shuffled token-wise."""
        ids = np.sort(self._chunk_order(epoch)[index * self.chunks_per_buffer : (index + 1) * self.chunks_per_buffer])
        buf = self.source.read_chunks(ids, self.chunk)
        order = np.random.default_rng([self.seed, epoch, index + 1]).permutation(buf.shape[0])
        return np.take(buf, order, axis=0)

    def batches(self, start_token: int = 0) -> Iterator[np.ndarray]:
        """Batches from token position ``start_token`` of the (endless) stream."""
        epoch, pos = divmod(start_token, self.epoch_tokens)
        index, offset = divmod(pos, self.buffer_tokens)
        pending: list[np.ndarray] = []
        n_pending = 0
        while True:
            buf = self.buffer(epoch, index)[offset:]
            offset = 0
            while buf.shape[0] > 0:
                take = min(self.batch_size - n_pending, buf.shape[0])
                pending.append(buf[:take])
                n_pending += take
                buf = buf[take:]
                if n_pending == self.batch_size:
                    yield pending[0] if len(pending) == 1 else np.concatenate(pending)
                    pending, n_pending = [], 0
            index += 1
            if index * self.buffer_tokens >= self.epoch_tokens:
                epoch, index = epoch + 1, 0


def batch_to_tensor(batch: np.ndarray, device: torch.device) -> torch.Tensor:
    """float16 rows -> float32 tensor on ``device`` (numpy converts ~8x faster than torch on CPU;
    accelerators get the half-size float16 copy and convert there)."""
    if device.type == "cpu":
        return torch.from_numpy(batch.astype(np.float32))
    return torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=False).float()


def sample_rows(source: ActivationSource, n: int, seed: Sequence[int]) -> torch.Tensor:
    """A seeded sample (with replacement, sorted for locality) of the source's first
    ``sample_limit`` rows, as float32."""
    idx = np.sort(np.random.default_rng(list(seed)).integers(0, source.sample_limit, size=n))
    return torch.from_numpy(np.asarray(source[idx], dtype=np.float32))
