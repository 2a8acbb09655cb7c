from pathlib import Path

from saerepro.figures import figures_from_tables
from saerepro.snake import job

with job(snakemake) as cfg:
    figures_from_tables(
        Path(snakemake.input.table).parent,
        Path(snakemake.output.png[0]).parent,
        headline_layer=cfg.headline,
    )
