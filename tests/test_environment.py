"""The conda environment and pyproject.toml pin the same versions; the repo has its layout."""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(requirements) -> dict[str, str]:
    pins = {}
    for req in requirements:
        match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;]+)\s*", req)
        assert match, f"not an exact pin: {req!r}"
        pins[match.group(1).lower().replace("_", "-")] = match.group(2)
    return pins


def _all_pins(project: dict) -> dict[str, str]:
    """The runtime dependencies and every extra (test, lint)."""
    pins = _pins(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        pins.update(_pins(extra))
    return pins


def test_environment_yml_pins_agree_with_pyproject():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert _all_pins(project) == _pins(pip_section)


def test_core_packages_are_pinned_and_tools_are_extras():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins(project["dependencies"])
    assert pins["torch"] == "2.13.0"
    assert pins["sae-lens"].startswith("6.54.")
    assert pins["snakemake"].startswith("9.")
    for name in ("transformers", "gguf", "pandas", "matplotlib", "seaborn"):
        assert name in pins
    extras = project["optional-dependencies"]
    assert "pytest" in _pins(extras["test"]) and "pytest" not in pins
    assert {"ruff", "snakefmt", "mypy"} <= set(_pins(extras["lint"]))


def test_installed_versions_match_the_pins():
    from importlib.metadata import version

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    for name, pinned in _all_pins(project).items():
        installed = version(name).split("+")[0]  # torch reports 2.13.0+cpu
        assert installed == pinned, f"{name}: installed {installed}, pinned {pinned}"


def test_repository_layout():
    for path in [
        "Snakefile",
        "workflow/rules",
        "workflow/scripts",
        "workflow/schemas/config.schema.yaml",
        "workflow/report",
        "workflow/profiles",
        "src/saerepro",
        "config/config.yaml",
        "results",
        "figures",
        "tests",
        "benchmarks",
        "environment.yml",
        "pyproject.toml",
        "README.md",
        ".ci/run",
        "Makefile",
    ]:
        assert (REPO / path).exists(), path


def test_every_rule_has_a_log():
    text = "\n".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk"))
    # rules may sit inside `if` blocks or loops (indented), and a loop's rules are anonymous
    # (`rule:` with a `name:` directive)
    rules = re.findall(r"^[ \t]*rule(?: (\w+))?:\n((?:[ \t]+.*\n|\n)+)", text, flags=re.M)
    assert len(rules) >= 9
    for name, body in rules:
        assert re.search(r"^\s+log:", body, flags=re.M), f"rule {name} has no log:"


@pytest.mark.parametrize(
    "target", ["repro-long", "repro-extras", "repro-neurons", "repro-reseed", "repro-budget", "quick"]
)
def test_runs_in_their_own_folder_use_the_default_profile(target):
    """Snakemake finds workflow/profiles/default only beside its working directory; the Makefile's
    runs in runs/<name>/ must name it, or a run killed mid-job stops on its incomplete files."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("no make")
    out = subprocess.run(
        ["make", "-n", "-o", ".venv/.saerepro-installed", target], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout
    line = next(ln for ln in out.splitlines() if "snakemake" in ln and "cd runs/" in ln)
    import os

    run_dir = line.split("cd runs/", 1)[1].split()[0]  # runs/<name>: need not exist yet, so resolve as text
    run_dir = "runs/" + run_dir
    profile = REPO / os.path.normpath(os.path.join(run_dir, line.split("--workflow-profile", 1)[1].split()[0]))
    assert profile == REPO / "workflow" / "profiles" / "default"
    assert "rerun-incomplete: true" in (profile / "config.yaml").read_text()


def test_the_long_run_its_extras_and_the_mlp_neuron_sweep_of_paper_fig_5_each_have_a_target():
    """Issue 12: every paper figure a CPU can make comes from a make target; Fig. 5's analogue is the
    neurons config. Issue 30 sized the long run to 170 minutes, so repro-long runs only the long
    config; TopK, JumpReLU and the ablations did not fit it (repro-extras), nor did the neuron sweep
    fit beside them (repro-neurons)."""
    import shutil

    if shutil.which("make") is None:
        pytest.skip("no make")

    def planned(target: str) -> tuple[list[str], str]:
        out = subprocess.run(
            ["make", "-n", "-o", ".venv/.saerepro-installed", target],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.replace("\\\n", " ")
        runs = [
            "runs/" + ln.split("cd runs/", 1)[1].split()[0]
            for ln in out.splitlines()
            if "cd runs/" in ln and "snakemake" in ln
        ]
        return runs, out

    long_runs, long_plan = planned("repro-long")
    assert long_runs == ["runs/long"] and "config/long.yaml" in long_plan
    extra_runs, extra_plan = planned("repro-extras")
    assert extra_runs == ["runs/extras"] and "config/extras.yaml" in extra_plan
    neuron_runs, neuron_plan = planned("repro-neurons")
    assert neuron_runs == ["runs/neurons"] and "config/experiments/neurons.yaml" in neuron_plan
