"""Conventions, pure loss terms and the shared base of every saerepro SAE.

Conventions (a loss coefficient means something only under these):

* **Inputs** ``x`` are normalised so that E‖x‖² = d_in over the training tokens (the activation
  cache stores them that way, see :mod:`saerepro.activations`): each coordinate has mean square 1.
* **Reconstruction term** = squared error *summed* over the d_in coordinates, *averaged* over the
  batch: mean_b ‖x_b − x̂_b‖². (d_in times the per-coordinate MSE; a zero reconstruction scores
  ≈ d_in.)
* **Sparsity terms** are summed over latents and averaged over the batch: λ·mean_b ‖·‖₁ for the L1
  SAEs, λ·mean_b ‖f_b‖₀ for JumpReLU.
* **Layout** follows sae-lens: ``W_enc`` is [d_in, d_sae] (``x @ W_enc``), ``W_dec`` is
  [d_sae, d_in] (``f @ W_dec``). The papers' "decoder columns" are the *rows* of ``W_dec`` here.
* **Pre-encoder bias**: every encoder sees ``x − b_dec`` (sae-lens ``apply_b_dec_to_input=True``).
* **Unit-norm decoder** (every architecture with ``unit_norm_decoder = True``): before each
  optimiser step the component of each ``W_dec`` row's gradient parallel to that row is removed;
  after the step each row is divided by its norm (:meth:`SaeReproMixin.remove_parallel_decoder_grad_`,
  :meth:`SaeReproMixin.normalize_decoder_`).
* **Initialisation**: ``W_dec`` rows are Kaiming-uniform draws rescaled to unit norm, the encoder is
  initialised to ``W_dec.T`` (Anthropic April 2024 update; Gao et al. 2024), every bias is 0.

Loss terms are returned already weighted by their coefficient, so they sum to the total loss; the
trainer logs each of them (see :class:`LossOutput`).
"""

from __future__ import annotations

import functools
import math
import operator
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from .sparse import ActivePairs

#: Prefix of every architecture name saerepro registers with sae-lens (its own names such as
#: ``gated`` or ``topk`` are taken by sae-lens' stock, different, implementations).
SAE_LENS_PREFIX = "saerepro_"


# --------------------------------------------------------------------------- pure loss terms


def _at_least_f32(t: torch.Tensor) -> torch.Tensor:
    return t if t.dtype in (torch.float32, torch.float64) else t.float()


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """mean_b ‖x_b − x̂_b‖²: squared error summed over d_in, averaged over the batch (≥ float32)."""
    return (_at_least_f32(x) - _at_least_f32(x_hat)).pow(2).sum(dim=-1).mean()


def l1_penalty(acts: torch.Tensor) -> torch.Tensor:
    """mean_b ‖a_b‖₁ summed over latents, averaged over the batch (unweighted, ≥ float32)."""
    return _at_least_f32(acts).abs().sum(dim=-1).mean()


def sparse_output(
    terms: dict[str, torch.Tensor], pairs: ActivePairs, values: torch.Tensor, x_hat: torch.Tensor
) -> LossOutput:
    """A sparse step's :class:`LossOutput`: the terms' sum, the latents as a [batch, d_sae] sparse
    COO tensor (no dense copy) and as (pairs, values)."""
    feature_acts = torch.sparse_coo_tensor(
        torch.stack([pairs.rows, pairs.cols]), values.detach(), (pairs.batch, pairs.width), check_invariants=False
    )
    total = functools.reduce(operator.add, terms.values())  # in the terms' order, as the dense steps add them
    return LossOutput(total=total, terms=terms, feature_acts=feature_acts, x_hat=x_hat, active=(pairs, values))


def l1_penalty_active(values: torch.Tensor, batch: int) -> torch.Tensor:
    """:func:`l1_penalty` of latents given by their non-zero ``values`` [nnz] over ``batch`` rows."""
    return _at_least_f32(values).abs().sum() / batch


def l0_norm(acts: torch.Tensor) -> torch.Tensor:
    """mean_b ‖a_b‖₀: number of non-zero latents per token, averaged over the batch (a metric)."""
    return (acts != 0).sum(dim=-1, dtype=torch.float32).mean()


@dataclass
class LossOutput:
    """What :meth:`SaeReproMixin.loss_terms` returns.

    ``terms`` maps each term's name to its *weighted* value (they sum to ``total``); ``feature_acts``
    are the latents the SAE would output (used for L0 and dead-latent tracking), ``x_hat`` the
    reconstruction.
    """

    total: torch.Tensor
    terms: dict[str, torch.Tensor]
    feature_acts: torch.Tensor
    x_hat: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)
    active: tuple[ActivePairs, torch.Tensor] | None = None
    """A sparse step's latents as (pairs, values); ``feature_acts`` is then a sparse COO tensor."""

    def fired(self) -> torch.Tensor:
        """[d_sae] bool: latents active on some token of the batch (every architecture's latents are >= 0)."""
        if self.active is not None:
            pairs, values = self.active
            return pairs.fired(values.detach())
        return self.feature_acts.detach().amax(dim=0) > 0

    def l0(self) -> float:
        """Mean number of active latents per token."""
        if self.active is not None:
            pairs, values = self.active
            return float(pairs.l0(values.detach()))
        return float(l0_norm(self.feature_acts.detach()))


# --------------------------------------------------------------------------- shared behaviour


@dataclass
class ArchTrainingConfig:
    """Training settings that only one architecture reads: the ``arch`` of
    :class:`saerepro.training.TrainConfig`, validated here and nowhere else.

    A subclass lives beside its SAE class (``training_config_class``) and declares its fields with
    their defaults and docstrings, checks them in ``__post_init__`` and maps them to its sae-lens
    config's keyword arguments in :meth:`sae_kwargs`.
    """

    #: The field's key in ``TrainConfig.to_dict()`` where it differs from the field's name. The
    #: keys stay flat, as they were before these classes existed, so that config hashes,
    #: train_info.json and checkpoints stay comparable.
    flat_keys: ClassVar[dict[str, str]] = {}

    def sae_kwargs(self, coefficient: float) -> dict[str, Any]:
        """Keyword arguments of the architecture's sae-lens config (see ``make_sae``)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def check_coefficient(cls, coefficient: float, d_sae: int | None) -> float:
        """The run's coefficient (a finite number >= 0) as this architecture reads it; raises
        ValueError naming ``TrainConfig.coefficient`` if it cannot be one."""
        return coefficient

    @classmethod
    def flat_key(cls, name: str) -> str:
        return cls.flat_keys.get(name, name)

    def to_flat_dict(self) -> dict[str, Any]:
        """The fields under their ``TrainConfig.to_dict()`` keys."""
        return {self.flat_key(f.name): getattr(self, f.name) for f in fields(self)}

    @classmethod
    def flat_defaults(cls) -> dict[str, Any]:
        return cls().to_flat_dict()

    @classmethod
    def from_flat_dict(cls, d: dict[str, Any]) -> ArchTrainingConfig:
        """Build from the keys of :meth:`to_flat_dict` (absent ones take their defaults)."""
        return cls(**{f.name: d[cls.flat_key(f.name)] for f in fields(cls) if cls.flat_key(f.name) in d})

    def _bad(self, name: str, value: Any, allowed: str) -> None:
        raise ValueError(f"TrainConfig.{self.flat_key(name)} must be {allowed}; got {value!r}")

    @staticmethod
    def _finite(x: Any) -> bool:
        return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


class SaeReproMixin:
    """Training-side behaviour shared by every saerepro SAE (mixed into a sae-lens ``SAE``).

    Subclasses set the class attributes below and implement :meth:`loss_terms`. Inference
    (``encode``/``decode``/``forward``/``save_model``/``SAE.load_from_disk``) is sae-lens'.
    """

    if TYPE_CHECKING:  # provided by the torch / sae-lens classes every subclass also derives from

        def to(self, *args: Any, **kwargs: Any) -> Any: ...
        def state_dict(self, *args: Any, **kwargs: Any) -> Any: ...
        def load_state_dict(self, *args: Any, **kwargs: Any) -> Any: ...
        def save_model(self, *args: Any, **kwargs: Any) -> Any: ...

    #: Name of the architecture in saerepro configs and results (``gated``, ``topk``, ...).
    short_name: ClassVar[str]
    #: The sae-lens config class of this architecture.
    config_class: ClassVar[type]
    #: Names of the (weighted) loss terms, in the order they are logged.
    loss_term_names: ClassVar[tuple[str, ...]]
    #: The architecture's own training settings (None: it has none beyond TrainConfig's).
    training_config_class: ClassVar[type[ArchTrainingConfig] | None] = None
    #: Whether W_dec rows are held at unit norm during training.
    unit_norm_decoder: ClassVar[bool] = True
    #: Whether :meth:`loss_terms` needs the dead-latent mask (TopK's AuxK).
    needs_dead_mask: ClassVar[bool] = False
    #: Parameters that are never trained (the frozen baseline under a rescale & shift).
    frozen_parameter_names: ClassVar[tuple[str, ...]] = ()

    W_enc: nn.Parameter
    W_dec: nn.Parameter
    b_dec: nn.Parameter
    cfg: Any
    dtype: torch.dtype

    def loss_terms(
        self,
        x: torch.Tensor,
        coefficient: float,
        dead_mask: torch.Tensor | None = None,
    ) -> LossOutput:
        """The training loss on a batch ``x`` [batch, d_in] of normalised activations."""
        raise NotImplementedError

    #: Whether :meth:`sparse_loss_terms` exists (the same loss, computed on the active pairs).
    has_sparse_step: ClassVar[bool] = False
    #: A sparse step runs while the previous step's share of active (row, latent) pairs is at most
    #: this; above it the dense step is as fast or faster. Measured per architecture under bf16
    #: autocast by ``benchmarks/bench_train.py --sparse`` (docs/performance.md): ~0.06-0.09 for
    #: most, so 0.06 unless an architecture's own crossover is lower.
    sparse_max_density: ClassVar[float] = 0.06

    def sparse_loss_terms(
        self,
        x: torch.Tensor,
        coefficient: float,
        dead_mask: torch.Tensor | None = None,
    ) -> LossOutput:
        """:meth:`loss_terms`'s value and gradients, with everything after the encoder product
        computed on the active (row, latent) pairs (:mod:`saerepro.sae.sparse`); its output has
        :attr:`LossOutput.active` set and a sparse ``feature_acts``."""
        raise NotImplementedError(f"{type(self).__name__} has no sparse training step")

    # -- helpers used by the subclasses

    def _check_cfg(self) -> None:
        if not self.cfg.apply_b_dec_to_input:
            raise ValueError(f"{type(self).__name__} requires apply_b_dec_to_input=True")
        if self.cfg.normalize_activations != "none":
            raise ValueError(
                f"{type(self).__name__} requires normalize_activations='none' (inputs are "
                "normalised by the activation cache)"
            )

    def _center(self, x: torch.Tensor) -> torch.Tensor:
        """x − b_dec, without sae-lens' hooks and hook_z reshaping (training path)."""
        return x.to(self.dtype) - self.b_dec

    def _init_unit_decoder(self) -> None:
        """W_dec rows Kaiming-uniform then unit norm, W_enc = W_dec.T, b_dec = 0."""
        d_in, d_sae = self.cfg.d_in, self.cfg.d_sae
        w_dec = torch.empty(d_sae, d_in, dtype=self.dtype, device=self.device)  # type: ignore[attr-defined]
        nn.init.kaiming_uniform_(w_dec)
        if w_dec.device.type != "meta":
            w_dec /= w_dec.norm(dim=-1, keepdim=True)
        self.W_dec = nn.Parameter(w_dec)
        self.W_enc = nn.Parameter(w_dec.T.clone().contiguous())
        self.b_dec = nn.Parameter(torch.zeros(d_in, dtype=self.dtype, device=self.device))  # type: ignore[attr-defined]

    def _linear_decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        """f @ W_dec + b_dec through sae-lens' hooks (same as its stock decoders)."""
        sae_out = feature_acts @ self.W_dec + self.b_dec
        sae_out = self.hook_sae_recons(sae_out)  # type: ignore[attr-defined]
        sae_out = self.run_time_activation_norm_fn_out(sae_out)  # type: ignore[attr-defined]
        return self.reshape_fn_out(sae_out, self.d_head)  # type: ignore[attr-defined]

    # -- training interface

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters the optimiser updates (all but :attr:`frozen_parameter_names`)."""
        return [
            p
            for name, p in self.named_parameters()  # type: ignore[attr-defined]
            if name not in self.frozen_parameter_names
        ]

    def freeze_frozen_parameters_(self) -> None:
        """Set requires_grad=False on :attr:`frozen_parameter_names`."""
        for name, p in self.named_parameters():  # type: ignore[attr-defined]
            if name in self.frozen_parameter_names:
                p.requires_grad_(False)

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Remove from each W_dec row's gradient its component along that row (call before step)."""
        grad = self.W_dec.grad
        if grad is None:
            return
        w = self.W_dec.data
        coef = (grad * w).sum(dim=-1, keepdim=True) / w.pow(2).sum(dim=-1, keepdim=True)
        grad.sub_(coef * w)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Divide each W_dec row by its norm (call after the optimiser step)."""
        self.W_dec.data.div_(self.W_dec.data.norm(dim=-1, keepdim=True))


def zero_like_loss(like: torch.Tensor) -> torch.Tensor:
    """A scalar zero with ``like``'s dtype and device (for loss terms that are switched off)."""
    return torch.zeros((), dtype=like.dtype, device=like.device)
