from pathlib import Path

from saerepro.pilot import run_pilot
from saerepro.snake import job

with job(snakemake) as cfg:
    w = snakemake.wildcards
    run_pilot(
        cfg,
        int(w.layer),
        w.site,
        w.architecture,
        Path(snakemake.input.cache).parent,
        snakemake.output[0],
    )
