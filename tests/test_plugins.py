"""An architecture added in one file (tests/plugins/tanh_relu.py) through a config's ``plugins``:
registration, validation, its maths, and (slow) the tiny config's DAG with it, figures included."""

from __future__ import annotations

import sys

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import torch
import yaml
from snakemake_cli import REPO, snakemake

from saerepro import architectures
from saerepro.config import ConfigError, load_config
from saerepro.sae import registry

PLUGIN = REPO / "tests" / "plugins" / "tanh_relu.py"


@pytest.fixture
def plugin_registered():
    """Import the plugin through a config; afterwards the registries are as before (other tests
    assert the built-in lists)."""
    specs, classes, settings = dict(architectures.SPECS), dict(registry.ARCHITECTURES), dict(registry.TRAINING_CONFIGS)
    modules = set(sys.modules)
    yield load_config(tiny(plugins=[str(PLUGIN)], architectures={"tanh_relu": {"coefficients": [0.5], "width": 256}}))
    for live, saved in ((architectures.SPECS, specs), (registry.ARCHITECTURES, classes)):
        live.clear()
        live.update(saved)
    registry.TRAINING_CONFIGS.clear()
    registry.TRAINING_CONFIGS.update(settings)
    for name in set(sys.modules) - modules:
        if name.startswith("saerepro_plugin_"):
            del sys.modules[name]


def tiny(**changes):
    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    raw.update(changes)
    return raw


def test_a_plugin_architecture_is_known_everywhere_once_its_config_names_it(plugin_registered):
    from saerepro.costs import TRAIN_PRODUCTS, sae_parameters
    from saerepro.figures import ARCH_STYLES
    from saerepro.learning_curve import SUPPORTED
    from saerepro.sae import make_sae

    cfg = plugin_registered
    assert {r.architecture for r in cfg.runs()} == {"tanh_relu"} and len(cfg.runs()) == 3  # three sites
    assert cfg.plugins == (str(PLUGIN),)
    assert architectures.ARCHITECTURES[-1] == "tanh_relu"  # after the built-in ones: tables and legends
    assert "tanh_relu" not in architectures.GATED_FAMILY and "tanh_relu" not in SUPPORTED
    assert ARCH_STYLES["tanh_relu"].label == "ReLU, tanh penalty"
    assert TRAIN_PRODUCTS["tanh_relu"] == 5
    sae = make_sae("tanh_relu", 16, 64)
    assert sae_parameters("tanh_relu", 16, 64) == (sum(p.numel() for p in sae.parameters()),) * 2
    # importing it again (every Snakemake job loads the config) registers nothing new
    load_config(tiny(plugins=[str(PLUGIN)]))
    assert list(architectures.ARCHITECTURES).count("tanh_relu") == 1


def test_the_tanh_penalty_is_what_its_docstring_says(plugin_registered):
    from saerepro.sae import make_sae

    torch.manual_seed(0)
    sae = make_sae("tanh_relu", 16, 64)
    x = torch.randn(32, 16)
    out = sae.loss_terms(x, 0.25)
    f = torch.relu((x - sae.b_dec) @ sae.W_enc + sae.b_enc)
    assert torch.allclose(out.terms["sparsity"], 0.25 * torch.tanh(f).sum(-1).mean())
    assert torch.allclose(out.total, ((x - (f @ sae.W_dec + sae.b_dec)) ** 2).sum(-1).mean() + out.terms["sparsity"])
    out.total.backward()
    assert sae.W_enc.grad is not None and sae.W_enc.grad.abs().sum() > 0
    assert torch.allclose(sae.encode(x), f, atol=1e-6)  # sae-lens' inference path gives the same latents


def test_a_plugin_name_is_refused_without_its_plugin_and_bad_plugins_are_said(tmp_path):
    with pytest.raises(
        ConfigError, match="'tanh_relu' is not allowed; allowed values: gated, baseline.*name its file under 'plugins'"
    ):
        load_config(tiny(architectures={"tanh_relu": {"coefficients": [0.5]}}))
    with pytest.raises(ConfigError, match="plugins': no file .*nowhere.py"):
        load_config(tiny(plugins=[str(tmp_path / "nowhere.py")]))
    broken = tmp_path / "broken.py"
    broken.write_text("raise RuntimeError('the plugin is broken')\n")
    with pytest.raises(ConfigError, match="importing .*broken.py' failed: RuntimeError: the plugin is broken"):
        load_config(tiny(plugins=[str(broken)]))
    with pytest.raises(ConfigError, match="plugins': expected a list"):
        load_config(tiny(plugins="tanh_relu.py"))
    with pytest.raises(ConfigError, match="importing 'no_such_module_xyz' failed: ModuleNotFoundError"):
        load_config(tiny(plugins=["no_such_module_xyz"]))


def test_a_plugin_cannot_take_a_built_in_name_or_change_a_registered_spec(plugin_registered):
    from saerepro.sae import register_architecture

    plugin = sys.modules[next(n for n in sys.modules if n.startswith("saerepro_plugin_tanh_relu"))]
    with pytest.raises(ValueError, match="registered already, with another spec"):
        register_architecture(plugin.TanhReluSAE, plugin.SPEC.__class__(**{**vars(plugin.SPEC), "color": "#000000"}))
    with pytest.raises(ValueError, match="short_name is 'tanh_relu', its spec's name 'gated'"):
        register_architecture(plugin.TanhReluSAE, architectures.SPECS["gated"])


@pytest.mark.slow
def test_a_plugin_architecture_runs_through_the_tiny_dag_figures_included(tmp_path, plugin_registered):
    """The tiny config at layer 2 resid with the plugin beside gated and baseline: trained,
    evaluated, in the tables and in the all-architecture figures."""
    from saerepro.figures.pareto import plot_dead_latents
    from saerepro.tables import aggregate_seeds

    config = tmp_path / "plugin.yaml"
    config.write_text(
        yaml.safe_dump(
            tiny(
                sites=["resid"],
                plugins=[str(PLUGIN)],
                architectures={
                    "gated": {"coefficients": [1.0], "width": 256},
                    "baseline": {"coefficients": [1.0], "width": 384},
                    "tanh_relu": {"coefficients": [0.5], "width": 256},
                },
                resources_dir=str(REPO / "resources"),
            )
        )
    )
    result = snakemake("--cores", "2", "--configfile", str(config), "-d", str(tmp_path / "run"), cwd=tmp_path)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    run = tmp_path / "run"
    table = pd.read_csv(run / "results/tables/metrics.csv")
    assert sorted(table["architecture"]) == ["baseline", "gated", "tanh_relu"]
    row = table.set_index("architecture").loc["tanh_relu"]
    assert 0 < row["l0"] < 256 and 0 < row["loss_recovered"] <= 1.05 and row["nmse"] < 1
    assert (run / "figures/dead_latents.png").stat().st_size > 5_000
    # the figures draw it in its own style: the aggregated table through the same function
    fig = plot_dead_latents(aggregate_seeds(table), tmp_path / "dead")
    lines = {line.get_gid(): line for ax in fig.axes for line in ax.get_lines()}
    labels = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
    plt.close(fig)
    assert lines["dead:tanh_relu"].get_color() == "#7F3C8D" and lines["dead:tanh_relu"].get_linestyle() == ":"
    assert "ReLU, tanh penalty" in labels, labels
