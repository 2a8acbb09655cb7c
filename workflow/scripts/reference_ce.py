from pathlib import Path

from saerepro.pipeline import lm_precision, reference_ce
from saerepro.snake import hook_point_of, job

with job(snakemake) as cfg, lm_precision(cfg):  # activations.lm_autocast_bf16
    out_paths = {hook_point_of(p): p for p in snakemake.output if p != snakemake.output.clean}
    reference_ce(cfg, Path(snakemake.input.corpus).parent, out_paths, clean_path=snakemake.output.clean)
