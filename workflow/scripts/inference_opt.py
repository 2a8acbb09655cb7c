from pathlib import Path

from saerepro.inference_opt import run_inference_opt
from saerepro.snake import job

with job(snakemake) as cfg:
    w = snakemake.wildcards
    run_inference_opt(
        cfg,
        int(w.layer),
        w.site,
        Path(snakemake.input.corpus).parent,
        snakemake.input.clean,
        snakemake.output[0],
        ks=snakemake.params.ks,
    )
