"""Gradient pursuit on a planted dictionary whose true sparse codes are known."""

from __future__ import annotations

import pytest
import torch

from saerepro.inference_opt import PursuitSAE, gradient_pursuit


def _planted(n=400, d=64, f=256, k=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(f, d, generator=g, dtype=torch.float64)
    D /= D.norm(dim=1, keepdim=True)
    codes = torch.zeros(n, f, dtype=torch.float64)
    for i in range(n):
        idx = torch.randperm(f, generator=g)[:k]
        codes[i, idx] = 1.0 + torch.rand(k, generator=g, dtype=torch.float64)
    return codes @ D, D, codes


def test_pursuit_recovers_planted_supports_and_codes():
    x, D, true = _planted()
    found = gradient_pursuit(x, D, k=4)
    assert ((found != 0).sum(dim=1) <= 4).all() and (found >= 0).all()
    same_support = ((found != 0) == (true != 0)).all(dim=1).float().mean()
    assert same_support > 0.95

    def fvu(codes):
        return float(((codes @ D - x) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())

    assert fvu(found) < 0.02  # right atoms, coefficients not yet least-squares optimal
    refined = gradient_pursuit(x, D, k=4, refine=30)
    assert ((refined != 0) == (found != 0)).all()  # refining never adds atoms
    assert fvu(refined) < 1e-5 and torch.allclose(refined, true, atol=1e-2)


def test_more_atoms_never_reconstruct_worse_and_too_few_cannot_be_exact():
    x, D, _ = _planted(seed=1)
    errs = [float(((gradient_pursuit(x, D, k=k) @ D - x) ** 2).sum()) for k in (1, 2, 4, 8)]
    assert errs == sorted(errs, reverse=True) and errs[0] > 10 * errs[2]


def test_signed_pursuit_and_bad_arguments():
    x, D, _ = _planted(seed=2)
    signed = gradient_pursuit(-x, D, k=4, nonnegative=False)
    assert float(((signed @ D + x) ** 2).sum()) < 1e-2 * float((x**2).sum())
    with pytest.raises(ValueError, match="k must be"):
        gradient_pursuit(x, D, k=0)
    with pytest.raises(ValueError, match="share d"):
        gradient_pursuit(x[:, :10], D, k=2)


def test_pursuit_sae_uses_the_trained_decoder_and_its_bias():
    from saerepro.sae import make_sae

    torch.manual_seed(0)
    sae = make_sae("gated", 16, 64)
    with torch.no_grad():
        sae.b_dec.copy_(torch.randn(16))
    codes = torch.zeros(32, 64)
    codes[torch.arange(32), torch.randint(0, 64, (32,))] = 2.0
    x = codes @ sae.W_dec.detach() + sae.b_dec.detach()
    wrapped = PursuitSAE(sae, k=1)
    assert wrapped.cfg.d_in == 16 and wrapped.cfg.d_sae == 64
    x_hat = wrapped.decode(wrapped.encode(x))
    assert torch.allclose(x_hat, x, atol=1e-4)


def test_inference_opt_figure_draws_both_frontiers_per_architecture(tmp_path):
    import pandas as pd

    from saerepro.plotting import plot_inference_opt

    rows = []
    for arch, shift in (("gated", 0.05), ("baseline", 0.0)):
        for coef, l0 in ((1, 20.0), (2, 10.0)):
            rows.append(
                dict(
                    layer=6,
                    site="resid",
                    architecture=arch,
                    coefficient=coef,
                    k=0,
                    l0=l0,
                    loss_recovered=0.7 + shift + 0.01 * l0,
                    loss_recovered_se=0.01,
                    l0_se=0.5,
                )
            )
            for k in (4, 8, 16):
                rows.append(
                    dict(
                        layer=6,
                        site="resid",
                        architecture=arch,
                        coefficient=coef,
                        k=k,
                        l0=k - 0.5,
                        loss_recovered=0.6 + shift + 0.015 * k,
                        loss_recovered_se=0.01,
                        l0_se=0.1,
                    )
                )
    fig = plot_inference_opt(pd.DataFrame(rows), tmp_path / "ito", layer=6)
    gids = {ln.get_gid() for ln in fig.axes[0].get_lines()}
    assert {"encoder:gated", "pursuit:gated", "encoder:baseline", "pursuit:baseline"} <= gids
    pursuit = next(ln for ln in fig.axes[0].get_lines() if ln.get_gid() == "pursuit:gated")
    assert list(pursuit.get_xdata()) == [3.5, 7.5, 15.5]
    assert (tmp_path / "ito.png").stat().st_size > 10_000


def test_inference_opt_is_planned_only_on_request(tmp_path):
    from snakemake_cli import REPO, snakemake

    args = (
        "--cores",
        "2",
        "--configfile",
        str(REPO / "config/test/tiny.yaml"),
        "--config",
        f"resources_dir={tmp_path}/resources",
    )
    default = snakemake("-n", *args, cwd=tmp_path)
    assert default.returncode == 0 and "rule inference_opt" not in default.stdout + default.stderr
    asked = snakemake("-n", "inference_opt", *args, cwd=tmp_path)
    assert asked.returncode == 0, asked.stderr[-3000:]
    out = asked.stdout + asked.stderr
    assert "inference_opt_hook_point" in out and out.count("rule inference_opt_hook_point") == 3


@pytest.mark.slow
def test_tiny_inference_opt_end_to_end(tmp_path):
    """The tiny config through the rule: pursuit codes reach L0 <= k and, at the largest k, recover
    at least as much loss as zero-ablation; the figure is written."""
    import pandas as pd
    import yaml
    from snakemake_cli import REPO, snakemake

    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    raw.update(sites=["resid"], resources_dir=str(REPO / "resources"))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = snakemake("inference_opt", "--cores", "2", "--configfile", str(config), cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    table = pd.read_csv(tmp_path / "results/tables/inference_opt/gemma-3-270m_L2_resid.csv")
    assert set(table["architecture"]) == {"gated", "baseline"}
    pursuit = table[table["k"] > 0]
    assert (pursuit["l0"] <= pursuit["k"] + 1e-9).all()
    assert (pursuit[pursuit["k"] == pursuit["k"].max()]["loss_recovered"] > 0).all()
    assert (tmp_path / "figures/fig10_inference_opt.png").exists()
