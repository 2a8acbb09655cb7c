"""Names of the hook points ("sites") the paper trains SAEs on, and their TransformerLens hooks."""

from __future__ import annotations

#: Site name (as the paper and our config name it) -> TransformerLens hook suffix.
#: ``attn`` is the concatenated per-head attention output *before* W_O (``hook_z``), flattened
#: to ``n_heads * d_head``, as in the paper's attention-output SAEs.
SITE_HOOKS: dict[str, str] = {
    "resid": "hook_resid_post",
    "mlp": "hook_mlp_out",
    "attn": "attn.hook_z",
}

SITES: tuple[str, ...] = tuple(SITE_HOOKS)


def hook_name(layer: int, site: str) -> str:
    """TransformerLens hook name of ``site`` at ``layer``, e.g. ``blocks.6.hook_resid_post``."""
    if site not in SITE_HOOKS:
        raise ValueError(f"unknown site {site!r}; allowed sites: {', '.join(SITES)}")
    return f"blocks.{layer}.{SITE_HOOKS[site]}"


def site_dim(site: str, d_model: int, n_heads: int, d_head: int) -> int:
    """Width of the activation vector an SAE sees at ``site``."""
    if site == "attn":
        return n_heads * d_head
    if site in SITE_HOOKS:
        return d_model
    raise ValueError(f"unknown site {site!r}; allowed sites: {', '.join(SITES)}")
