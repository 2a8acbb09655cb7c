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


def _dense_pursuit(x, D, k, nonnegative, refine):
    """Gradient pursuit written over the whole dictionary: every product is [N, F] x [F, d]."""
    codes = torch.zeros(x.shape[0], D.shape[0], dtype=x.dtype)
    support = torch.zeros_like(codes, dtype=torch.bool)
    resid, rows = x.clone(), torch.arange(x.shape[0])
    for it in range(k + refine):
        corr = resid @ D.T
        if it < k:
            score = corr if nonnegative else corr.abs()
            support[rows, score.masked_fill(support, -torch.inf).argmax(dim=1)] = True
        g = torch.where(support, corr, torch.zeros(()))
        gd = g @ D
        codes += ((resid * gd).sum(dim=1) / (gd * gd).sum(dim=1))[:, None] * g
        if nonnegative:
            codes.clamp_(min=0)
        resid = x - codes @ D
    return codes


@pytest.mark.parametrize("nonnegative", [True, False])
def test_support_only_pursuit_equals_the_dense_algorithm(nonnegative):
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 32, generator=g, dtype=torch.float64)
    D = torch.randn(300, 32, generator=g, dtype=torch.float64)
    for k in (1, 5, 12):
        dense = _dense_pursuit(x, D, k, nonnegative, refine=4)
        found = gradient_pursuit(x, D, k, nonnegative=nonnegative, refine=4)
        assert ((found != 0) == (dense != 0)).all()
        torch.testing.assert_close(found, dense, rtol=1e-9, atol=1e-9)


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


def _ito_table():
    """Two SAEs per architecture; the λ=1 dictionaries (own L0 20) are the better ones under
    pursuit, and gated's beat baseline's by 0.05 at every k."""
    import pandas as pd

    rows = []
    for arch, shift in (("gated", 0.05), ("baseline", 0.0)):
        for coef, l0 in ((1, 20.0), (2, 10.0)):
            base = dict(layer=6, site="resid", architecture=arch, coefficient=coef, loss_recovered_se=0.01, l0_se=0.5)
            rows.append(dict(base, k=0, l0=l0, loss_recovered=0.7 + shift + 0.01 * l0))
            for k in (4, 8, 16):
                rows.append(dict(base, k=k, l0=k - 0.5, loss_recovered=0.6 + shift + 0.015 * k - 0.02 * (coef - 1)))
    return pd.DataFrame(rows)


def test_best_pursuit_decoder_is_the_one_with_the_highest_mean_pursuit_loss_recovered():
    from saerepro.figures import best_pursuit_decoders

    best = best_pursuit_decoders(_ito_table()).set_index("architecture")
    assert best.loc["gated", "coefficient"] == 1 and best.loc["baseline", "coefficient"] == 1
    assert best.loc["gated", "own_l0"] == 20.0
    assert best.loc["gated", "mean_loss_recovered"] - best.loc["baseline", "mean_loss_recovered"] == pytest.approx(0.05)


def test_compare_dictionaries_judges_the_best_decoder_of_each_architecture_per_k():
    from saerepro.verdicts import compare_dictionaries

    table = _ito_table()
    judged = compare_dictionaries(table)
    assert list(judged["k"]) == [4, 8, 16] and set(judged["verdict"]) == {"shown"}
    assert judged["diff"].to_numpy() == pytest.approx([0.05] * 3)
    assert judged["diff_se"].iloc[0] == pytest.approx(0.01 * 2**0.5)
    assert set(judged["gated_coefficient"]) == {1.0}
    # within 2 SE: not shown; baseline ahead beyond 2 SE: reversed
    table.loc[table["architecture"] == "gated", "loss_recovered"] -= 0.04
    assert set(compare_dictionaries(table)["verdict"]) == {"not shown"}
    table.loc[table["architecture"] == "gated", "loss_recovered"] -= 0.04
    assert set(compare_dictionaries(table)["verdict"]) == {"reversed"}


def test_inference_opt_frontier_figure_draws_own_frontier_and_best_dictionary(tmp_path):
    from saerepro.figures import plot_inference_opt

    fig = plot_inference_opt(_ito_table(), tmp_path / "ito", layer=6)
    lines = {ln.get_gid(): ln for ln in fig.axes[0].get_lines()}
    assert {"encoder:gated", "pursuit:gated", "encoder:baseline", "pursuit:baseline"} <= set(lines)
    assert list(lines["pursuit:gated"].get_xdata()) == [3.5, 7.5, 15.5]
    assert list(lines["pursuit:gated"].get_ydata()) == pytest.approx([0.71, 0.77, 0.89])  # λ=1's curve
    note = next(t for t in fig.axes[0].texts if t.get_gid() == "best_decoders").get_text()
    assert "λ=1 (own L0 20)" in note
    assert (tmp_path / "ito.png").stat().st_size > 10_000


def test_inference_opt_decoder_figure_puts_each_dictionary_at_its_training_l0(tmp_path):
    from saerepro.figures import SITE_LABELS, plot_inference_opt_decoders

    fig = plot_inference_opt_decoders(_ito_table(), tmp_path / "dec", layer=6)
    panels = [ax for ax in fig.axes if ax.get_title().startswith(f"{SITE_LABELS['resid']},")]
    assert [ax.get_title().split("k = ")[1] for ax in panels] == ["4", "8", "16"]
    lines = {ln.get_gid(): ln for ln in panels[1].get_lines()}
    gated, baseline = lines["decoders:gated:k8"], lines["decoders:baseline:k8"]
    assert list(gated.get_xdata()) == [10.0, 20.0]  # own-encoder L0s, sorted
    assert list(gated.get_ydata()) == pytest.approx([0.72 - 0.02 + 0.05, 0.72 + 0.05])
    assert all(g > b for g, b in zip(gated.get_ydata(), baseline.get_ydata(), strict=True))
    note = next(t for t in panels[1].texts if t.get_gid() == "dictionary_verdict").get_text()
    assert "+0.050 ± 0.014, shown" in note
    assert (tmp_path / "dec.png").stat().st_size > 10_000


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
    from saerepro.inference_opt import ito_code_hash

    assert set(table["ito_code"]) == {ito_code_hash()} and table["git_commit"].str.len().min() >= 40
    assert (tmp_path / "figures/fig10_inference_opt_decoders.png").exists()
    assert (tmp_path / "figures/fig11_inference_opt_frontiers.png").exists()
