"""Learning curves: config section, the flattening verdict, the figure, and (slow) a real run on
the tiny config whose last budget equals the DAG's own SAE."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from snakemake_cli import REPO, snakemake

from saerepro.figures import plot_learning_curve
from saerepro.learning_curve import flattening, main, markdown, merge_parts, read_config


def _curve(change_last: float, se: float = 0.01, l0_last: float = 50.0) -> pd.DataFrame:
    rows = []
    for site in ("resid", "mlp"):
        for arch, coef in (("gated", 0.6), ("baseline", 0.9)):
            for i, budget in enumerate([300_000, 600_000, 1_000_000]):
                lr = 0.5 + 0.1 * i + (change_last if i == 2 else 0) - (0.1 if i == 2 else 0)
                rows.append(
                    dict(
                        model="m",
                        layer=6,
                        site=site,
                        architecture=arch,
                        coefficient=coef,
                        budget_tokens=budget,
                        loss_recovered=lr,
                        loss_recovered_se=se,
                        l0=[100.0, 50.0, l0_last][i],
                        l0_se=1.0,
                    )
                )
    return pd.DataFrame(rows)


def test_flattening_says_flat_only_within_two_standard_errors_and_with_l0_settled():
    flat = flattening(_curve(change_last=0.005))
    assert len(flat) == 4 and flat["flat"].all()
    assert flat["change"].to_numpy() == pytest.approx(0.005)
    rising = flattening(_curve(change_last=0.05))
    assert not rising["flat"].any() and (rising["to_tokens"] == 1_000_000).all()
    # loss recovered holds but the SAE keeps getting sparser: still moving along the frontier
    sparser = flattening(_curve(change_last=0.005, l0_last=40.0))
    assert not sparser["flat"].any() and sparser["l0_change"].to_numpy() == pytest.approx(-0.2)


def test_learning_curve_figure_has_a_line_per_sae_and_states_the_last_step(tmp_path):
    fig = plot_learning_curve(_curve(0.05), tmp_path / "lc")
    assert (tmp_path / "lc.png").stat().st_size > 20_000
    top = fig.axes[0]
    gids = {ln.get_gid() for ln in top.get_lines()}
    assert {"curve:loss_recovered:gated:0.6", "curve:loss_recovered:baseline:0.9"} <= gids
    note = [t.get_text() for t in top.texts if t.get_gid() == "flattening"][0]
    assert "+0.050" in note and "(flat)" not in note
    assert fig.axes[0].get_xscale() == "log" and fig.axes[len(fig.axes) // 2].get_yscale() == "log"


def test_merge_orders_split_runs_by_site_architecture_and_budget(tmp_path):
    curve = _curve(0.05)
    for col in ("delta_lm_loss", "delta_lm_loss_se", "kl", "nmse", "alive_frac"):
        curve[col] = 0.5
    # two processes' tables, each in its own (shuffled) order, mlp first
    parts = [curve[curve.site == "mlp"].sample(frac=1, random_state=0), curve[curve.site == "resid"][::-1]]
    paths = []
    for i, part in enumerate(parts):
        paths.append(tmp_path / f"p{i}.csv")
        part.to_csv(paths[-1], index=False)
    merged = merge_parts([pd.read_csv(p) for p in paths])
    assert list(merged.site) == ["resid"] * 6 + ["mlp"] * 6
    assert list(merged.architecture[:6]) == ["baseline"] * 3 + ["gated"] * 3
    assert list(merged.budget_tokens[:3]) == [300_000, 600_000, 1_000_000]
    text = markdown(merged, merged=True)
    assert "(m, layer 6)" in text and "one process each, and merged" in text
    assert "| resid | gated | 0.6 | 1,000,000 | 50.0 ± 1.0 | 0.650 ± 0.010 |" in text
    assert text.count("| no |") == 4  # the last doubling moved by +0.05 > 2 SE at every SAE
    with pytest.raises(ValueError, match="no learning-curve tables"):
        merge_parts([])


def test_committed_learning_curve_table_is_what_the_code_writes_from_the_committed_csv():
    committed = REPO / "results" / "learning_curve"
    table = pd.read_csv(committed / "learning_curve.csv")
    assert merge_parts([table]).equals(table), "the committed CSV is not in merge order"
    assert (committed / "learning_curve.md").read_text() == markdown(table, merged=True)


def test_config_needs_a_learning_curve_section(tmp_path):
    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    path = tmp_path / "lc.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="learning_curve"):
        read_config(path)
    raw["learning_curve"] = {"budgets": [4096, 1024, 2048]}
    path.write_text(yaml.safe_dump(raw))
    cfg, budgets, out_dir = read_config(path)
    assert budgets == [1024, 2048, 4096] and cfg.model == "gemma-3-270m"
    raw["architectures"] = {"topk": {"k": [8], "width": 256}}
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ValueError, match="not topk"):
        read_config(path)


def test_committed_learning_curve_config_is_valid():
    cfg, budgets, _ = read_config(REPO / "config/experiments/learning_curve.yaml")
    assert len(budgets) >= 5 and budgets[0] <= 300_000
    assert {a for a in (r.architecture for r in cfg.runs())} == {"gated", "baseline"}


@pytest.mark.slow
def test_tiny_learning_curve_ends_at_the_dags_own_sae(tmp_path, monkeypatch):
    """Budgets 1024, 2048, 4096 on the tiny config (4096 = its train.tokens): the last point must
    equal the metrics the DAG's evaluate rule gives the same SAE."""
    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    raw.update(sites=["resid"], resources_dir=str(REPO / "resources"))
    raw["architectures"] = {"gated": {"coefficients": [1.0], "width": 256}}
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(raw))
    target = "results/gemma-3-270m/wiki-offline/L2/resid/gated/c1/s0/metrics.json"
    result = snakemake(target, "--cores", "2", "--configfile", str(config), cwd=tmp_path, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    raw["learning_curve"] = {"budgets": [1024, 2048, 4096], "out_dir": "results/learning_curve"}
    config.write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    main([str(config), "--figures", str(tmp_path / "figures")])
    table = pd.read_csv(tmp_path / "results/learning_curve/learning_curve.csv")
    assert list(table["budget_tokens"]) == [1024, 2048, 4096]
    dag = json.loads((tmp_path / target).read_text())
    last = table.iloc[-1]
    for key in ("l0", "loss_recovered", "loss_recovered_se", "nmse", "gamma"):
        assert last[key] == pytest.approx(dag[key], rel=1e-6, abs=1e-9), key
    assert np.isfinite(table["loss_recovered"]).all() and table["l0"].nunique() == 3
    assert (tmp_path / "figures/learning_curve.png").exists()
