"""saerepro.toys: the paper's Fig. 2 and Fig. 15 (App. F) toys, computed."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from saerepro import toys


def test_best_magnitudes_equal_a_brute_force_fit():
    p, y = toys.sample_jumprelu_toy(2_000, seed=3)
    t, d = np.array([-0.3, 0.4, 1.2]), np.array([-0.5, 0.0, 0.4])
    m, sse = toys._best_magnitudes(p, y, t, d)
    for i, ti in enumerate(t):
        for j, dj in enumerate(d):
            g = np.where(p > ti, p - dj, 0.0)
            m_ls = max(float(g @ y) / float(g @ g), 0.0)
            assert m[i, j] == pytest.approx(m_ls, rel=1e-9)
            assert sse[i, j] == pytest.approx(float(((m_ls * g - y) ** 2).sum()), rel=1e-9)


def test_toy_samples_follow_app_f():
    p, y = toys.sample_jumprelu_toy(200_000)
    on = y != 0
    assert on.mean() == pytest.approx(0.5, abs=0.005)
    assert p[on].mean() == pytest.approx(2.0, abs=0.01) and p[on].std() == pytest.approx(0.5, abs=0.01)
    assert p[~on].mean() == pytest.approx(0.0, abs=0.01) and p[~on].std() == pytest.approx(1.0, abs=0.01)
    assert np.array_equal(y[on], p[on])


@pytest.fixture(scope="module")
def jump():
    return toys.jumprelu_toy(n=100_000)


def _fitted(table: pd.DataFrame, encoder: str) -> pd.DataFrame:
    return table[(table["encoder"] == encoder) & (table["setting"] == "fitted")].set_index("t")


def test_a_jumprelu_is_never_worse_than_a_relu_at_the_same_threshold(jump):
    relu, jr = _fitted(jump, "relu"), _fitted(jump, "jumprelu")
    assert (relu.index == jr.index).all() and len(relu) == len(toys.TOY_THRESHOLDS)
    # d = t is on the JumpReLU's grid wherever t is, so it can always do what the ReLU does
    assert (jr["relative_mse"] <= relu["relative_mse"] + 1e-4).all()
    assert (jr["d"] <= jr.index + 1e-9).all()
    # the false-firing rate depends on t only
    np.testing.assert_array_equal(jr["fire_rate_off"], relu["fire_rate_off"])


def test_app_f_claim_better_at_low_false_firing_equal_at_the_relus_optimum(jump):
    relu, jr = _fitted(jump, "relu"), _fitted(jump, "jumprelu")
    sparse = relu["fire_rate_off"] < 0.1
    assert sparse.sum() >= 5
    assert (jr.loc[sparse, "relative_mse"] < relu.loc[sparse, "relative_mse"] - 0.05).all()
    assert jr["relative_mse"].min() == pytest.approx(relu["relative_mse"].min(), abs=1e-3)


def test_app_f_hand_set_jumprelu_is_not_better_than_the_best_relu_at_its_threshold(jump):
    paper = jump[(jump["encoder"] == "jumprelu") & (jump["setting"] == "app_f")].iloc[0]
    assert (paper["t"], paper["d"], paper["m"]) == (1.0, 0.0, 1.0)
    relu_t1 = _fitted(jump, "relu").loc[1.0, "relative_mse"]
    assert paper["relative_mse"] == pytest.approx(relu_t1, abs=0.005)
    assert _fitted(jump, "jumprelu").loc[1.0, "relative_mse"] < paper["relative_mse"] - 0.01


def test_shrinkage_toy_table_has_the_optimum_of_each_loss():
    table = toys.shrinkage_toy(coefficients=(0.5, 2.5))
    base = table[table["architecture"] == "baseline"].set_index("coefficient")
    assert base.loc[0.5, "optimum"] == 0.75 and base.loc[2.5, "optimum"] == 0.0  # clipped at f = 0
    gated = table[table["architecture"] == "gated"].set_index("coefficient")
    assert gated.loc[0.5, "optimum"] == 1.0 and gated.loc[2.5, "optimum"] == 0.0  # the gate closes
    assert (table["reconstruction"] - table["optimum"]).abs().max() < 1e-3


def test_write_toy_tables(tmp_path):
    paths = toys.write_toy_tables(tmp_path)
    assert [p.name for p in paths] == ["shrinkage_toy.csv", "jumprelu_toy.csv"]
    assert len(pd.read_csv(paths[1])) == 2 * len(toys.TOY_THRESHOLDS) + 2


def test_toy_tables_are_computed_once_per_machine_and_source(tmp_path, monkeypatch):
    """With a machine cache, a second run folder copies the tables instead of recomputing them; a
    change to the toys' source (another key) recomputes."""
    calls = []

    def fake(name):
        def table():
            calls.append(name)
            return pd.DataFrame({"x": [len(calls)]})

        return table

    monkeypatch.setattr(toys, "shrinkage_toy", fake("shrinkage"))
    monkeypatch.setattr(toys, "jumprelu_toy", fake("jumprelu"))
    cache = tmp_path / "resources" / "toys"
    first = toys.write_toy_tables(tmp_path / "run1", cache)
    second = toys.write_toy_tables(tmp_path / "run2", cache)
    assert calls == ["shrinkage", "jumprelu"]
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert sorted(p.name for p in (cache / toys.toys_key()).iterdir()) == sorted(toys.TOY_TABLES)
    monkeypatch.setattr(toys, "toys_key", lambda: "another")
    toys.write_toy_tables(tmp_path / "run3", cache)
    assert len(calls) == 4
    toys.write_toy_tables(tmp_path / "run4")  # no cache: always computed
    assert len(calls) == 6
