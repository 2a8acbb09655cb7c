"""Cross-check of saerepro's evaluation against sae-lens' own evaluation code.

One Gated SAE is trained (seconds) on the tiny 2-layer GPT-NeoX's ``blocks.1.hook_resid_post``
and evaluated on the SAME [8, 16] held-out tokens twice:

* ours: :func:`saerepro.evaluate.evaluate_sae`, with CE_clean / CE_zero from
  :func:`saerepro.lm.reference_ce`;
* sae-lens 6.54.12: :func:`sae_lens.evals.run_evals` (-> ``get_downstream_reconstruction_metrics``
  -> ``get_recons_loss`` for CE and KL, ``get_sparsity_and_variance_metrics`` for L0, γ and FVU),
  fed by a real ``ActivationsStore`` over an in-memory pre-tokenised ``datasets.Dataset`` holding
  exactly those tokens, with ONE batch of all 8 sequences per pass; plus ``get_recons_loss``
  called directly for sae-lens' per-token KL (see 6.).

Definitional differences, and how each is accounted for
-------------------------------------------------------
1. **Activation normalisation.** Our SAEs are trained on ``cache.scale * x`` (E‖x‖² = d_in);
   ``evaluate_sae`` multiplies the hook activation by ``scale`` before ``encode`` and divides the
   reconstruction by it after ``decode``. sae-lens' evals do exactly that through their own
   ``ActivationScaler(scaling_factor=scale)`` argument (``scale()`` before encode, ``unscale()``
   after decode, in both ``get_recons_loss`` and ``get_sparsity_and_variance_metrics``), so we pass
   that: no weight folding, the SAE is untouched (its ``normalize_activations`` is "none").
2. **Which positions are spliced.** Ours replaces the site at every position but 0 (BOS).
   sae-lens, with its default ``exclude_special_tokens=True``, runs the SAE everywhere and then
   ``torch.where(mask, x_hat, x)`` with mask = "token is not special", restoring BOS. The eval
   tokens never contain a special id except the BOS in column 0 (asserted), so the spliced
   positions are identical. L0, γ and FVU are averaged over the same masked (non-BOS) tokens.
3. **Which CE terms are averaged.** Both average per token (sae-lens concatenates the per-token
   losses of all batches and takes one mean), over the predictions made from positions
   0..ctx-2. But sae-lens also masks the per-token CE, i.e. DROPS the prediction made from the BOS
   position (of token 1), which ours keeps. In ours that term is identical in the clean, spliced
   and zero-ablated passes (position 0 is never touched, attention is causal), so it adds exactly
   0 to every CE *difference* while the number of terms per sequence is ctx-1 instead of ctx-2::

       ours(CE_sae − CE_clean)  = ρ · sl(CE_sae − CE_clean),    ρ = (ctx − 2)/(ctx − 1) = 14/15
       ours(CE_zero − CE_clean) = ρ · sl(CE_zero − CE_clean)     (given 4.)

   Loss recovered, a ratio of two such differences, is directly comparable. The absolute CEs
   differ; sl's CE_clean is checked against our per-token clean CE averaged over positions 1...
4. **Zero ablation.** sae-lens' ``standard_zero_ablate_hook`` zeroes the site at EVERY position,
   BOS included (it ignores the mask); ours (``zero_ablation_hook``) keeps BOS. Here the site is
   the final residual stream of the 2-layer model: only ln_final and the unembedding follow, both
   per position, so zeroing BOS changes only the prediction made from position 0, which sae-lens
   masks out (3.). The compared zero-ablation terms therefore agree (asserted via the zero gap).
   At an earlier layer this would NOT hold (later positions attend to BOS) and sae-lens' CE_zero
   would be a different quantity from ours.
5. **γ.** sae-lens' ``relative_reconstruction_bias`` (paper Eq. 10) is E‖x̂‖²/E[x·x̂] per batch,
   then averaged over batches; ours is one ratio of sums over all tokens. With one batch holding
   every eval sequence the two coincide. sae-lens computes it in model units, ours in normalised
   units; γ (like L0 and FVU = 1 − sl's ``explained_variance``) is invariant to a common rescaling
   of x and x̂, so no conversion is needed.
6. **KL positions.** sae-lens' KL is per position [batch, ctx] — it needs no target, so it also
   covers the LAST position — masked to non-BOS positions 1..ctx-1. Ours covers the predicted
   positions 0..ctx-2 (position 0 contributes exactly 0). The aggregated ``kl_div_with_sae`` is
   therefore a different average (it differed from ours by ~2% here, not by ρ); we compare ours
   with sae-lens' per-token KL from ``get_recons_loss`` over positions 0..ctx-2, and tie
   ``kl_div_with_sae`` to the same per-token tensor over positions 1..ctx-1.
7. **Precision.** Ours accumulates in float64 and computes CE with a chunked log-sum-exp; sae-lens
   uses float32 means and TransformerLens' log_softmax. Measured disagreements are ≤ ~1e-6
   (absolute, CE-scale quantities) and ~1e-7 (relative, γ); the tolerances in ``TOL`` allow ~10×
   that and are far below the effect of any of the mistakes above (the negative controls check
   that a missing scaler or sae-lens splicing BOS is caught).

Eval tokens: not ``tiny_tokens`` itself (see ``eval_tokens``) but its first 4 columns as
prompts, continued by sampling from the model.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """One thread for this module only: bit-identical reductions between the two evaluations."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# sae-lens' ActivationsStore builds each row with torch.tensor(row) from a torch-formatted dataset
pytestmark = pytest.mark.filterwarnings("ignore:To copy construct from a tensor:UserWarning")

HOOK = "blocks.1.hook_resid_post"
LAYER, SITE = 1, "resid"
N_SPECIAL = 4  # ids 0..3 are <pad>, <unk>, <bos>, <eos> in the tiny tokenizer (conftest)
COEFFICIENT = 10.0  # gated λ: L0 ≈ 2.5 of 256 latents, loss recovered ≈ 0.975, γ ≈ 0.95

#: Tolerances (see 7. in the module docstring). Measured |ours − sae-lens| in brackets.
TOL = {
    "loss_recovered": 5e-5,  # absolute [1.3e-6]; a CE-difference error of 1e-5 nats moves it 6e-5
    "ce": 5e-6,  # absolute, nats, on CE differences and CE_clean [≤ 2.2e-7]
    "kl": 1e-6,  # absolute, nats (KL ≈ 1.2e-3; the 6. mix-up is 2e-5) [~1e-9]
    "l0": 1e-4,  # absolute; one gate decision flipped would move it by 1/120 ≈ 8e-3 [2e-8]
    "gamma": 1e-5,  # relative [9e-8]
    "fvu": 1e-5,  # absolute [8e-9]
}


def sample_continuations(model, prompts: np.ndarray, ctx: int, temperature: float, seed: int) -> np.ndarray:
    """Extend ``prompts`` [n, p] to [n, ctx] by sampling from ``model`` at ``temperature``, never
    emitting a special id, so that BOS in column 0 stays the only special token."""
    g = torch.Generator().manual_seed(seed)
    toks = torch.as_tensor(np.asarray(prompts), dtype=torch.long)
    with torch.no_grad():
        while toks.shape[1] < ctx:
            logits = model(toks, return_type="logits")[:, -1].float()
            logits[:, :N_SPECIAL] = -float("inf")
            nxt = torch.multinomial(torch.softmax(logits / temperature, dim=-1), 1, generator=g)
            toks = torch.cat([toks, nxt], dim=1)
    return toks.numpy().astype(np.int32)


@pytest.fixture(scope="module")
def eval_tokens(tiny_model, tiny_tokens):
    """[8, 16]: tiny_tokens' BOS + 3 random ids as prompts, the other 12 sampled at T = 0.1.

    Not tiny_tokens itself: its ids are uniform random, which the randomly initialised tiny model
    predicts worse than the uniform distribution that zero-ablating its final residual stream
    gives, so CE_zero < CE_clean (by ~0.01 nats) and loss recovered would be a ratio of two
    noise-level numbers. On the model's own low-temperature continuations CE_zero − CE_clean
    ≈ 0.17 nats and loss recovered is well conditioned."""
    return sample_continuations(tiny_model, tiny_tokens[:, :4], tiny_tokens.shape[1], 0.1, seed=1)


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """(sae, scale): a Gated SAE trained on 64 x 16 other sampled sequences at layer-1 resid."""
    from saerepro.activations import cache_activations, open_cache
    from saerepro.sae import load_sae
    from saerepro.training import TrainConfig, train_sae

    root = tmp_path_factory.mktemp("crosscheck")
    rng = np.random.default_rng(123)
    prompts = rng.integers(N_SPECIAL, tiny_model.cfg.d_vocab, size=(64, 4))
    prompts[:, 0] = tiny_model.tokenizer.bos_token_id
    tokens = sample_continuations(tiny_model, prompts, 16, 0.1, seed=2)
    cache_activations(tiny_model, tokens, [(LAYER, SITE)], [root / "cache"], dtype="float32", progress=False)
    cache = open_cache(root / "cache")
    n = cache.n_tokens  # 64 * 15 = 960
    cfg = TrainConfig(
        architecture="gated",
        coefficient=COEFFICIENT,
        d_sae=256,
        total_tokens=40 * n,
        batch_size=96,
        lr=3e-3,
        lr_warmup_steps=20,
        shuffle_chunk_tokens=96,
        shuffle_buffer_tokens=n,
        hook_name=HOOK,
        device="cpu",
        seed=0,
        checkpoint_every_steps=0,
    )
    train_sae(cfg, cache, root / "sae", progress=False)
    sae = load_sae(str(root / "sae"))
    assert sae.cfg.normalize_activations == "none"  # the only normalisation is the scaler (1.)
    return sae, cache.scale


def run_sae_lens(model, sae, tokens: np.ndarray, scale: float | None, exclude_special_tokens=True):
    """sae-lens' evaluation of ``sae`` on exactly ``tokens``.

    Returns (run_evals metrics, the token batches its ActivationsStore served, the per-token
    ``kl_div_with_sae`` [n, ctx] from ``get_recons_loss`` with run_evals' own ignore_tokens)."""
    from datasets import Dataset
    from sae_lens.evals import EvalConfig, get_recons_loss, run_evals
    from sae_lens.training.activation_scaler import ActivationScaler
    from sae_lens.training.activations_store import ActivationsStore
    from sae_lens.util import get_special_token_ids

    n_seq, ctx = tokens.shape
    sae.cfg.metadata.hook_name = HOOK
    sae.cfg.metadata.prepend_bos = True  # the pre-tokenised rows already start with BOS
    sae.cfg.metadata.context_size = ctx
    dataset = Dataset.from_dict({"input_ids": tokens.astype(np.int64).tolist()})
    store = ActivationsStore.from_sae(
        model,
        sae,
        dataset=dataset,
        context_size=ctx,
        streaming=False,
        store_batch_size_prompts=n_seq,
        total_tokens=n_seq,
    )  # only read by training
    served: list[np.ndarray] = []
    get_batch_tokens = store.get_batch_tokens

    def recording_get_batch_tokens(*args, **kwargs):
        out = get_batch_tokens(*args, **kwargs)
        served.append(out.detach().cpu().numpy().copy())
        return out

    store.get_batch_tokens = recording_get_batch_tokens
    scaler = ActivationScaler(scaling_factor=scale)
    cfg = EvalConfig(
        batch_size_prompts=n_seq,
        n_eval_reconstruction_batches=1,
        n_eval_sparsity_variance_batches=1,
        compute_kl=True,
        compute_ce_loss=True,
        compute_l2_norms=True,
        compute_sparsity_metrics=True,
        compute_variance_metrics=True,
    )
    metrics, _ = run_evals(sae, store, model, scaler, cfg, exclude_special_tokens=exclude_special_tokens)
    # run_evals' own rule for ignore_tokens (True -> the tokenizer's special ids, False -> none)
    ignore = list(get_special_token_ids(model.tokenizer)) if exclude_special_tokens else None
    per_token = get_recons_loss(
        sae,
        model,
        scaler,
        torch.as_tensor(tokens, dtype=torch.long),
        compute_kl=True,
        compute_ce_loss=False,
        ignore_tokens=ignore,
    )
    return metrics, served, per_token["kl_div_with_sae"]


def compare(ours: dict, theirs: dict, kl_per_token: torch.Tensor, ctx: int) -> None:
    """Assert ours and sae-lens' metrics agree, after the conversions of the module docstring."""
    perf = theirs["model_performance_preservation"]
    rho = (ctx - 2) / (ctx - 1)  # (3.)
    assert ours["loss_recovered"] == pytest.approx(perf["ce_loss_score"], abs=TOL["loss_recovered"])
    sl_delta = perf["ce_loss_with_sae"] - perf["ce_loss_without_sae"]
    assert ours["delta_lm_loss"] == pytest.approx(rho * sl_delta, abs=TOL["ce"])
    sl_zero_gap = perf["ce_loss_with_ablation"] - perf["ce_loss_without_sae"]
    assert ours["ce_zero"] - ours["ce_clean"] == pytest.approx(rho * sl_zero_gap, abs=TOL["ce"])
    # KL (6.): sae-lens' aggregate is its per-token KL over positions 1..ctx-1 ...
    kl = kl_per_token.double()
    assert theirs["model_behavior_preservation"]["kl_div_with_sae"] == pytest.approx(
        float(kl[:, 1:].mean()), abs=TOL["kl"]
    )
    # ... ours is the same per-token KL over the predicted positions 0..ctx-2
    assert ours["kl"] == pytest.approx(float(kl[:, :-1].mean()), abs=TOL["kl"])
    assert ours["l0"] == pytest.approx(theirs["sparsity"]["l0"], abs=TOL["l0"])
    assert ours["gamma"] == pytest.approx(theirs["shrinkage"]["relative_reconstruction_bias"], rel=TOL["gamma"])
    assert 1.0 - ours["nmse"] == pytest.approx(theirs["reconstruction_quality"]["explained_variance"], abs=TOL["fvu"])


@pytest.fixture(scope="module")
def ours(tiny_model, eval_tokens, trained):
    from saerepro.evaluate import evaluate_sae
    from saerepro.lm import reference_ce

    sae, scale = trained
    ref = reference_ce(tiny_model, eval_tokens, [(LAYER, SITE)], batch_size=8, progress=False)
    reference = {"ce_clean": ref["ce_clean"], **ref["zero"][(LAYER, SITE)]}
    return evaluate_sae(tiny_model, sae, LAYER, SITE, scale, eval_tokens, reference, batch_size=8, progress=False)


@pytest.fixture(scope="module")
def theirs(tiny_model, eval_tokens, trained):
    sae, scale = trained
    return run_sae_lens(tiny_model, sae, eval_tokens, scale)


def test_sae_lens_sees_the_same_tokens_and_positions(tiny_model, eval_tokens, theirs):
    from sae_lens.util import get_special_token_ids

    _, served, _ = theirs
    # one batch for the CE/KL pass, one for the sparsity/variance pass: both exactly our tokens
    assert len(served) == 2
    for batch in served:
        np.testing.assert_array_equal(batch, eval_tokens)
    # sae-lens' default mask (not a special token) = "every position but 0" on these tokens (2.)
    special = np.isin(eval_tokens, get_special_token_ids(tiny_model.tokenizer))
    expected = np.zeros_like(special)
    expected[:, 0] = True
    np.testing.assert_array_equal(special, expected)


def test_metrics_agree_with_sae_lens(tiny_model, eval_tokens, ours, theirs):
    from saerepro.lm import token_ce

    metrics, _, kl_per_token = theirs
    n_seq, ctx = eval_tokens.shape
    # a real, imperfect SAE on a model where the site matters: nothing compared is trivial
    assert ours["ce_zero"] - ours["ce_clean"] > 0.1
    assert 0.5 < ours["loss_recovered"] < 0.999 and ours["delta_lm_loss"] > 1e-3
    assert 1.0 < ours["l0"] < 50 and abs(ours["gamma"] - 1.0) > 0.01 and ours["kl"] > 1e-4
    assert ours["n_eval_tokens"] == n_seq * (ctx - 1)

    # absolute clean CE (3.): sae-lens' = our per-token clean CE over predictions from positions 1..
    with torch.no_grad():
        ce_tok = token_ce(tiny_model, torch.as_tensor(eval_tokens, dtype=torch.long)).double()
    perf = metrics["model_performance_preservation"]
    assert perf["ce_loss_without_sae"] == pytest.approx(float(ce_tok[:, 1:].mean()), abs=TOL["ce"])
    assert ours["ce_clean"] == pytest.approx(float(ce_tok.mean()), abs=TOL["ce"])

    compare(ours, metrics, kl_per_token, ctx)


@pytest.mark.parametrize("mistake", ["no_activation_scaler", "sae_lens_splices_bos"])
def test_crosscheck_catches_a_mismatched_setup(tiny_model, eval_tokens, trained, ours, mistake):
    """Negative controls: the same comparison fails when sae-lens is set up unlike ours."""
    sae, scale = trained
    if mistake == "no_activation_scaler":
        metrics, _, kl = run_sae_lens(tiny_model, sae, eval_tokens, scale=None)
    else:
        metrics, _, kl = run_sae_lens(tiny_model, sae, eval_tokens, scale, exclude_special_tokens=False)
    with pytest.raises(AssertionError):
        compare(ours, metrics, kl, eval_tokens.shape[1])
