from pathlib import Path

from saerepro.aggregate import aggregate
from saerepro.snake import job

with job(snakemake) as cfg:
    aggregate(cfg, list(snakemake.input.metrics), Path(snakemake.output.table))
