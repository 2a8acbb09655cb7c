"""Names of the hook points ("sites") the paper trains SAEs on, and their TransformerLens hooks."""

from __future__ import annotations

#: Site name (as the paper and our config name it) -> TransformerLens hook suffix.
#: ``attn`` is the concatenated per-head attention output *before* W_O (``hook_z``), flattened
#: to ``n_heads * d_head``, as in the paper's attention-output SAEs. ``mlp_post`` is the MLP's
#: hidden ("neuron") activations after the nonlinearity, ``d_mlp`` wide: the site of the paper's
#: GELU-1L ablations (Figs 5, 6, 8, 9), following Bricken et al.'s one-layer-model SAEs.
SITE_HOOKS: dict[str, str] = {
    "resid": "hook_resid_post",
    "mlp": "hook_mlp_out",
    "attn": "attn.hook_z",
    "mlp_post": "mlp.hook_post",
}

#: The three sites of the paper's Pythia-2.8B and Gemma-7B sweeps, in the order tables and
#: figures show them (figures draw one panel per entry, so ``mlp_post`` is not among them: it
#: appears only when a results table holds it).
SITES: tuple[str, ...] = ("resid", "mlp", "attn")
#: Every site a config may name.
ALL_SITES: tuple[str, ...] = tuple(SITE_HOOKS)


def hook_name(layer: int, site: str) -> str:
    """TransformerLens hook name of ``site`` at ``layer``, e.g. ``blocks.6.hook_resid_post``."""
    if site not in SITE_HOOKS:
        raise ValueError(f"unknown site {site!r}; allowed sites: {', '.join(ALL_SITES)}")
    return f"blocks.{layer}.{SITE_HOOKS[site]}"


def site_dim(site: str, d_model: int, n_heads: int, d_head: int, d_mlp: int | None = None) -> int:
    """Width of the activation vector an SAE sees at ``site``."""
    if site == "attn":
        return n_heads * d_head
    if site == "mlp_post":
        if d_mlp is None:
            raise ValueError("site 'mlp_post' needs the model's d_mlp (MLP hidden width)")
        return d_mlp
    if site in SITE_HOOKS:
        return d_model
    raise ValueError(f"unknown site {site!r}; allowed sites: {', '.join(ALL_SITES)}")
