from pathlib import Path

from saerepro.pipeline import run_from_wildcards, train_run
from saerepro.snake import job

with job(snakemake) as cfg:
    run = run_from_wildcards(cfg, snakemake.wildcards)
    parent = getattr(snakemake.input, "parent", None)
    train_run(
        cfg,
        run,
        Path(snakemake.input.cache).parent,
        Path(snakemake.output.info).parent,
        parent_dir=Path(parent).parent if parent else None,
    )
