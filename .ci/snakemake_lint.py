"""`snakemake --lint` on the default and tiny configs; fails on every finding but one waiver.

Waived: "Specify a conda environment or container for each rule". Every rule runs the saerepro
package from the one environment that `make setup` (or environment.yml + `pip install -e .`)
builds; a per-rule environment would be the same environment ten times, and could not hold the
package under development. Any other finding fails `make lint`.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WAIVED = ("Specify a conda environment or container for each rule",)
CONFIGS = (None, "config/test/tiny.yaml")


def findings(config: str | None) -> list[str]:
    cmd = [str(Path(sys.executable).parent / "snakemake"), "--lint", "--cores", "1"]
    if config:
        cmd += ["--configfile", config]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    text = out.stdout + out.stderr
    if out.returncode not in (0, 1) or ("Lints for" not in text and out.returncode != 0):
        raise SystemExit(f"snakemake --lint failed to run ({' '.join(cmd)}):\n{text}")
    found, where = [], ""
    for line in text.splitlines():
        if line.startswith("Lints for"):
            where = line.rstrip(":")
        elif re.match(r"^\s+\* ", line):
            lint = line.strip()[2:].rstrip(":")
            if not lint.startswith(WAIVED):
                found.append(f"{where}: {lint}")
    return found


def main() -> int:
    bad = [f"[{config or 'config/config.yaml'}] {f}" for config in CONFIGS for f in findings(config)]
    print("\n".join(bad) if bad else f"snakemake --lint: clean on {len(CONFIGS)} configs (waived: {WAIVED[0]})")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
