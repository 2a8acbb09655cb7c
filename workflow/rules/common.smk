# Paths and target lists derived from the validated config (saerepro.paths holds the patterns).
from saerepro import paths as P
from saerepro.provenance import config_hash

CONFIG_HASH = config_hash(CFG)

MODEL_DIR = P.model_dir(CFG)
CORPUS_DIR = P.corpus_dir(CFG)
RUNS = CFG.runs()
LOGS = "logs"
# activations.mode: on_the_fly trains from the LM directly; no cache_activations job exists.
ON_THE_FLY = CFG.activations.mode == "on_the_fly"

wildcard_constraints:
    model=r"[A-Za-z0-9_.\-]+",
    layer=r"\d+",
    site="|".join(CFG.sites),
    architecture=r"[a-z_]+",
    coefficient=r"[0-9.e+\-]+",
    seed=r"\d+",


def cache_targets():
    if ON_THE_FLY:
        return []
    return [f"{P.cache_dir(CFG, l, s)}/meta.json" for l, s in CFG.hook_points()]


def reference_targets():
    return [P.REFERENCE_CE.format(model=CFG.model, layer=l, site=s) for l, s in CFG.hook_points()]


def all_targets():
    return (cache_targets() + reference_targets() + [P.METRICS_TABLE]
            + [f"{P.FIGURES}/{name}.png" for name in FIGURE_NAMES])
