from saerepro.pipeline import prepare_model
from saerepro.snake import job

with job(snakemake) as cfg:
    prepare_model(cfg, snakemake.output[0])
