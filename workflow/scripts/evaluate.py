from pathlib import Path

from saerepro.pipeline import evaluate_run, lm_precision, run_from_wildcards
from saerepro.snake import job

with job(snakemake) as cfg, lm_precision(cfg):  # activations.lm_autocast_bf16
    run = run_from_wildcards(cfg, snakemake.wildcards)
    evaluate_run(
        cfg,
        run,
        run_dir=Path(snakemake.input.info).parent,
        reference=snakemake.input.reference,
        cache_dir=Path(snakemake.input.cache).parent,
        corpus=Path(snakemake.input.corpus).parent,
        out_path=snakemake.output[0],
        clean_path=snakemake.input.clean,
    )
