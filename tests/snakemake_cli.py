"""Running this repository's Snakefile from tests: offline, headless, in a chosen working folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile")]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "MPLBACKEND": "Agg"}


def snakemake(*args, cwd: Path, timeout: int = 1800) -> subprocess.CompletedProcess:
    """``snakemake <args>`` in ``cwd``, output captured."""
    return subprocess.run([*SNAKEMAKE, *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout)
