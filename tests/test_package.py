"""`import saerepro` alone makes every trained SAE loadable by sae-lens."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from saerepro.sae import ARCHITECTURES, make_sae


@pytest.mark.parametrize(
    ("architecture", "imports"),
    [
        ("gated", "sys, torch, saerepro, sae_lens"),
        ("baseline", "sys, torch, saerepro, sae_lens"),
        ("topk", "sys, torch, saerepro, sae_lens"),
        ("jumprelu", "sys, torch, saerepro, sae_lens"),
        ("gated", "sys, torch, sae_lens, saerepro"),
        ("gated", "sys, torch, saerepro.config, sae_lens"),
    ],
)
def test_plain_import_registers_architectures_for_sae_lens(tmp_path, architecture, imports):
    extra = {"k": 4} if architecture == "topk" else {}
    torch.manual_seed(0)
    sae = make_sae(architecture, d_in=8, d_sae=16, **extra)
    sae.save_model(str(tmp_path))
    x = torch.randn(5, 8)
    torch.save({"x": x, "out": sae(x).detach()}, tmp_path / "io.pt")
    code = (
        f"import {imports}\n"
        "sae = sae_lens.SAE.load_from_disk(sys.argv[1])\n"
        "io = torch.load(sys.argv[1] + '/io.pt')\n"
        "assert type(sae).__module__.startswith('saerepro'), type(sae)\n"
        "assert torch.equal(sae(io['x']), io['out'])\n"
    )
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_config_architecture_is_registered():
    from saerepro.config import ARCHITECTURES as CONFIG_ARCHITECTURES

    assert set(CONFIG_ARCHITECTURES) == set(ARCHITECTURES)


def test_config_and_tables_import_without_torch():
    """Config validation and the tables (and with them the architecture list) need no torch."""
    code = (
        "import sys\n"
        "import saerepro.config, saerepro.tables, saerepro.architectures\n"
        "assert 'torch' not in sys.modules and 'sae_lens' not in sys.modules, sorted(sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
