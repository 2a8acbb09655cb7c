# Paths and target lists derived from the validated config (saerepro.paths holds the patterns).
from saerepro import paths as P
from saerepro.config import DERIVED_ARCHITECTURES as DERIVED
from saerepro.on_the_fly import hook_point_runs
from saerepro.pilot import apply_pilot
from saerepro.provenance import config_hash

CONFIG_HASH = config_hash(CFG)

MODEL_DIR = P.model_dir(CFG)
CORPUS_DIR = P.corpus_dir(CFG)
CORPUS = P.corpus_name(CFG)  # the {corpus} level of result and log paths
RUNS = CFG.runs()
LOGS = "logs"
# activations.mode: on_the_fly trains from the LM directly; no cache_activations job exists.
ON_THE_FLY = CFG.activations.mode == "on_the_fly"
# pilot: (saerepro.pilot) piloted architectures train the grids their pilot checkpoints choose.
PILOT = CFG.pilot is not None


wildcard_constraints:
    model=r"[A-Za-z0-9_.\-]+",
    corpus=r"[A-Za-z0-9\-]+",
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
    return [
        P.REFERENCE_CE.format(model=CFG.model, corpus=CORPUS, layer=l, site=s)
        for l, s in CFG.hook_points()
    ]


def pilot_targets():
    """Every pilot.json (none without pilot mode); listed up front so the pilots run in parallel."""
    return [
        P.PILOT.format(model=CFG.model, corpus=CORPUS, layer=l, site=s, architecture=a)
        for a, l, s in CFG.pilot_points()
    ]


def pilot_cache(wildcards):
    return f"{P.cache_dir(CFG, wildcards.layer, wildcards.site)}/meta.json"


def sweep_runs():
    """Every SAE of the sweep. In pilot mode, waits for every pilot checkpoint (Snakemake
    re-evaluates the DAG once they are done), then lists the coefficients they chose."""
    if not PILOT:
        return RUNS
    for a, l, s in CFG.pilot_points():
        checkpoints.pilot.get(
            model=CFG.model, corpus=CORPUS, layer=l, site=s, architecture=a
        )
    return apply_pilot(CFG).runs()


def sweep_metrics(wildcards):
    return [P.fill(P.METRICS, run) for run in sweep_runs()]


def all_targets():
    return (
        cache_targets()
        + reference_targets()
        + pilot_targets()
        + [P.METRICS_TABLE]
        + [f"{P.FIGURES}/{name}.png" for name in FIGURE_NAMES]
        + [f"{P.FIGURES}/{name}.png" for name in TOY_FIGURES]  # paper Figs. 2 and 15
    )


def scale_source(wildcards):
    """What evaluate reads the activation scale from: the cache's meta.json (cached) or the run's
    own train_info.json (on_the_fly records the scale there); see pipeline.activation_scale.
    """
    if ON_THE_FLY:
        return P.TRAIN_INFO.format(**dict(wildcards))
    return f"{P.cache_dir(CFG, wildcards.layer, wildcards.site)}/meta.json"


def train_inputs(wildcards):
    """The cache of the run's hook point; derived architectures also their parent's SAE."""
    inputs = {"cache": f"{P.cache_dir(CFG, wildcards.layer, wildcards.site)}/meta.json"}
    parent = DERIVED.get(wildcards.architecture)
    if (
        parent is not None
    ):  # baseline_rescale_shift freezes the trained baseline of equal lambda
        inputs["parent"] = P.TRAIN_INFO.format(
            **{**dict(wildcards), "architecture": parent}
        )
    return inputs


def with_corpus(pattern):
    """``pattern`` with this config's corpus filled in (rules whose outputs do not name it)."""
    return pattern.replace("{corpus}", CORPUS)


def ito_saes(wildcards):
    """inference_opt's inputs: every gated and baseline SAE of the hook point, trained (the pursuit
    needs their decoders, not their evaluation)."""
    return [
        P.fill(P.TRAIN_INFO, run)
        for run in sweep_runs()
        if run.layer == int(wildcards.layer)
        and run.site == wildcards.site
        and run.architecture in ("gated", "baseline")
    ]
