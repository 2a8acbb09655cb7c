from pathlib import Path

from saerepro.on_the_fly import train_on_the_fly
from saerepro.snake import job

with job(snakemake) as cfg:
    train_on_the_fly(
        cfg,
        int(snakemake.params.layer),
        snakemake.params.site,
        Path(snakemake.input.corpus).parent,
        out_dirs=[Path(p).parent for p in snakemake.output.info],
    )
