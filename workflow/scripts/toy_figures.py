from pathlib import Path

from saerepro.figures import toy_figures_from_tables
from saerepro.snake import job

with job(snakemake):
    toy_figures_from_tables(Path(snakemake.input[0]).parent, Path(snakemake.output.shrinkage).parent)
