from pathlib import Path

import pandas as pd

from saerepro.plotting import plot_inference_opt
from saerepro.snake import job

with job(snakemake) as cfg:
    table = pd.concat([pd.read_csv(p) for p in snakemake.input], ignore_index=True)
    plot_inference_opt(table, Path(snakemake.output.png).with_suffix(""), layer=cfg.headline)
