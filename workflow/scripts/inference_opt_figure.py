from pathlib import Path

import pandas as pd

from saerepro.figures import plot_inference_opt, plot_inference_opt_decoders
from saerepro.snake import job

with job(snakemake) as cfg:
    table = pd.concat([pd.read_csv(p) for p in snakemake.input], ignore_index=True)
    plot_inference_opt_decoders(table, Path(snakemake.output.decoders).with_suffix(""), layer=cfg.headline)
    plot_inference_opt(table, Path(snakemake.output.frontiers).with_suffix(""), layer=cfg.headline)
