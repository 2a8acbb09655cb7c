from pathlib import Path

from saerepro.pipeline import aggregate
from saerepro.snake import job

with job(snakemake) as cfg:
    aggregate(cfg, list(snakemake.input), Path(snakemake.output.table))
