"""Estimated cost of every paper-scale config (config/paper/*.yaml): Snakemake jobs, GPU-hours,
peak GPU memory per job and disk, with activations cached to disk (what the DAG does today) and
generated on the fly (the planned mode). The paper configs pilot first: the pilot jobs, their
probe SAEs and the jobs `snakemake -n` lists before them are printed too.

    python benchmarks/estimate_paper_cost.py                      # H100 at 40% of peak
    python benchmarks/estimate_paper_cost.py --utilisation 0.3
    python benchmarks/estimate_paper_cost.py --lm-dtype bfloat16  # the LM in bf16 too
    python benchmarks/estimate_paper_cost.py config/my.yaml       # any config

Analytic FLOP and byte counts (saerepro.costs), not a measurement: nothing is downloaded or run.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from saerepro.config import load_config  # noqa: E402
from saerepro.costs import Hardware, estimate, format_table  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*", type=Path, default=sorted((REPO / "config" / "paper").glob("*.yaml")))
    parser.add_argument(
        "--utilisation",
        type=float,
        default=Hardware.utilisation,
        help="fraction of the GPU's dense peak reached (default %(default)s)",
    )
    parser.add_argument(
        "--lm-dtype",
        choices=["float32", "bfloat16"],
        default=None,
        help="run the LM in this dtype instead of its registry dtype",
    )
    args = parser.parse_args(argv)
    hardware = Hardware(utilisation=args.utilisation)
    estimates = [estimate(load_config(path), hardware, name=path.stem, lm_dtype=args.lm_dtype) for path in args.configs]
    note = args.lm_dtype or "its registry dtype (saerepro.models: float32 for every paper model)"
    print(format_table(estimates, hardware, lm_note=note))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
