from pathlib import Path

from saerepro.pipeline import prepare_corpus
from saerepro.snake import job

with job(snakemake) as cfg:
    prepare_corpus(cfg, Path(snakemake.output.meta).parent)
