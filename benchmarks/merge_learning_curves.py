"""Merge learning-curve tables of runs split across processes into results/learning_curve/.

One learning-curve process trains its SAEs one after another on one core; the committed curves ran
as several processes (config copies with fewer sites or architectures, each with its own out_dir)
and were merged by this script, which also redraws figures/learning_curve.{png,pdf} and writes
results/learning_curve/learning_curve.md (the table and the last doubling's flattening).

    .venv/bin/python benchmarks/merge_learning_curves.py results/learning_curve/p*/learning_curve.csv
"""

import sys
from pathlib import Path

import pandas as pd

from saerepro.learning_curve import flattening
from saerepro.plotting import plot_learning_curve

parts = [pd.read_csv(p) for p in sys.argv[1:]]
if not parts:
    raise SystemExit(__doc__)
table = pd.concat(parts, ignore_index=True)
order = {"resid": 0, "mlp": 1, "attn": 2}
table = table.sort_values(
    ["site", "architecture", "budget_tokens"], key=lambda s: s.map(order) if s.name == "site" else s
)
out = Path(".")
(out / "results/learning_curve").mkdir(parents=True, exist_ok=True)
table.to_csv(out / "results/learning_curve/learning_curve.csv", index=False)
plot_learning_curve(table, out / "figures/learning_curve")
flat = flattening(table)
cols = [
    "site",
    "architecture",
    "coefficient",
    "budget_tokens",
    "l0",
    "l0_se",
    "loss_recovered",
    "loss_recovered_se",
    "delta_lm_loss",
    "delta_lm_loss_se",
    "kl",
    "nmse",
    "alive_frac",
]
print(table[[c for c in cols if c in table]].to_string(index=False))
print(flat.to_string(index=False))
md = [
    "| site | architecture | λ | tokens | L0 | loss recovered | ΔLM loss | KL | NMSE | alive |",
    "|---|---|---|---|---|---|---|---|---|---|",
]
for _, r in table.iterrows():
    md.append(
        f"| {r.site} | {r.architecture} | {r.coefficient:g} | {int(r.budget_tokens):,} | {r.l0:.1f} ± {r.l0_se:.1f} | "
        f"{r.loss_recovered:.3f} ± {r.loss_recovered_se:.3f} | {r.delta_lm_loss:.3f} ± {r.delta_lm_loss_se:.3f} | "
        f"{r.kl:.3f} | {r.nmse:.3f} | {r.alive_frac:.2f} |"
    )
md += [
    "",
    "Last budget doubling (flat: |Δ loss recovered| < 2 SE, SEs combined as if independent, and L0 within 5%):",
    "",
    "| site | architecture | from | to | Δ loss recovered | SE | L0 change | flat |",
    "|---|---|---|---|---|---|---|---|",
]
for _, r in flat.iterrows():
    md.append(
        f"| {r.site} | {r.architecture} | {r.from_tokens:,} | {r.to_tokens:,} | {r.change:+.3f} | {r.change_se:.3f} | {r.l0_change:+.0%} | {'yes' if r.flat else 'no'} |"
    )
head = [
    "# Learning curves (gemma-3-270m, layer 6)",
    "",
    "Written by `python -m saerepro.learning_curve config/experiments/learning_curve.yaml` (run split by",
    "site and architecture, one process each, and merged); same eval tokens, clean reference and paired",
    "SEs as the default run; constant LR after warm-up, so the SAE at budget B is the one a B-token run",
    "would end with. Figure: figures/learning_curve.png.",
    "",
]
(out / "results/learning_curve/learning_curve.md").write_text("\n".join(head + md) + "\n")
