from pathlib import Path

from saerepro.snake import job
from saerepro.toys import write_toy_tables

with job(snakemake):
    write_toy_tables(Path(snakemake.output.shrinkage).parent, snakemake.params.machine_cache)
