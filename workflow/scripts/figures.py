from pathlib import Path

from saerepro.pipeline import make_figures
from saerepro.snake import job

with job(snakemake) as cfg:
    make_figures(cfg, Path(snakemake.input.table), Path(snakemake.output.png[0]).parent)
