from pathlib import Path

from saerepro.pipeline import cache_activations
from saerepro.snake import hook_point_of, job

with job(snakemake) as cfg:
    out_dirs = {hook_point_of(p): str(Path(p).parent) for p in snakemake.output}
    cache_activations(cfg, Path(snakemake.input.corpus).parent, out_dirs)
