from pathlib import Path

from saerepro.inference_opt import run_inference_opt
from saerepro.snake import job

with job(snakemake) as cfg:
    if cfg.reference.site_eval_tokens:
        raise ValueError(
            "inference_opt reads the clean pass of reference.eval_tokens' set; with "
            "reference.site_eval_tokens set (one set per site) it is not supported yet"
        )
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
