"""The layers contract (.ci/layers.py, run by `make lint`): the package keeps it, the checker catches
each kind of breach, and every module imports on its own."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _checker():
    spec = importlib.util.spec_from_file_location("layers_contract", REPO / ".ci" / "layers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


layers = _checker()


def test_the_package_keeps_its_layers_and_has_no_import_cycle():
    modules = layers.read_modules()
    assert {"config", "sae.gated", "training.loop", "evaluate", "verdicts", "pipeline"} <= set(modules)
    assert layers.violations(modules) == []


def _package(root: Path, files: dict[str, str]) -> Path:
    src = root / "saerepro"
    for name, code in files.items():
        path = src / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(code))
    return src


TOY_LAYERS = (("core", ("", "config", "paths", "sites")), ("analysis", ("tables",)), ("orchestration", ("pipeline",)))


def test_the_checker_flags_an_upward_import_a_cycle_a_needless_lazy_import_and_an_unassigned_module(tmp_path):
    src = _package(
        tmp_path,
        {
            "__init__.py": "",
            "config.py": "from .tables import read\n",  # core -> analysis: upward
            "tables.py": "import torch\nfrom . import config\n",  # closes a cycle with config
            "paths.py": "X = 1\n",
            "sites.py": "def f():\n    from .paths import X\n",  # paths is light: belongs at the top
            "pipeline.py": "def g():\n    from .tables import read\n",  # tables imports torch: kept
            "extra.py": "",
        },
    )
    found = layers.violations(layers.read_modules(src), TOY_LAYERS)
    assert any("saerepro.config (core) imports saerepro.tables (analysis)" in v for v in found), found
    assert any(v.startswith("import cycle: saerepro.config -> saerepro.tables -> saerepro.config") for v in found)
    assert any(v.startswith("saerepro/sites.py:2: saerepro.paths imported inside a function") for v in found)
    assert any("saerepro.extra: in no layer" in v for v in found)
    assert not any("pipeline" in v for v in found), found
    assert len(found) == 4, found


def test_type_checking_imports_count_for_layers_but_not_as_lazy_imports(tmp_path):
    src = _package(
        tmp_path,
        {
            "__init__.py": "",
            "config.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .pipeline import Run\n",
            "pipeline.py": "from .config import X\n",
            "sites.py": "",
            "tables.py": "",
        },
    )
    modules = layers.read_modules(src)
    assert modules["config"].typing_only == {"pipeline"} and not modules["config"].lazy
    found = layers.violations(modules, TOY_LAYERS)
    assert any("saerepro.config (core) imports saerepro.pipeline (orchestration)" in v for v in found)
    assert any(v.startswith("import cycle") for v in found)


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    """Each module in a child forked before any saerepro import (third-party packages preloaded, so
    the children cost milliseconds): an import that works only after another module's fails here."""
    names = sorted("saerepro" + (f".{n}" if n else "") for n in layers.read_modules())
    code = textwrap.dedent(
        """
        import importlib, os, sys, traceback
        import numpy, pandas, torch, sae_lens, transformer_lens, matplotlib, seaborn, yaml
        failed = []
        for name in sys.argv[1:]:
            pid = os.fork()
            if pid == 0:
                try:
                    importlib.import_module(name)
                except BaseException:
                    traceback.print_exc()
                    os._exit(1)
                os._exit(0)
            if os.waitpid(pid, 0)[1] != 0:
                failed.append(name)
        print("FAILED", failed)
        sys.exit(1 if failed else 0)
        """
    )
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-1000:] + result.stderr[-3000:]
    assert "FAILED []" in result.stdout
