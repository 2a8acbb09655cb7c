# saerepro: gated vs baseline (and TopK, JumpReLU) SAEs, Rajamanoharan et al. 2024 (arXiv 2404.16014).
# Thin on purpose: config, includes and targets. Logic lives in src/saerepro/.
import os
import sys

from snakemake.utils import min_version

from saerepro.config import default_pilot_note, load_config

min_version("9.0")
from saerepro.own_model import absolute_model_path

# The default config only when none is given: Snakemake would otherwise deep-merge a
# --configfile into it, leaking the default sweep's architectures into a test config.
if not workflow.overwrite_configfiles:

    # beside this Snakefile, not in the working directory (snakemake -d elsewhere)
    configfile: os.path.join(workflow.basedir, "config/config.yaml")


# Run from the repository root, a config writes to runs/<name>/ (the default config: runs/default/),
# never over the committed results/ and figures/: those change only through an explicit
# `make promote RUN=<name>` (saerepro.manifest), so a run leaves `git status` clean.
# Relative resources_dir stays relative to the repository, so weights and corpora are shared.
_AT_ROOT = os.path.realpath(os.getcwd()) == os.path.realpath(workflow.basedir)
if _AT_ROOT:
    _default = os.path.join(workflow.basedir, "config/config.yaml")
    _configfile = str((workflow.overwrite_configfiles or [_default])[-1])
    _stem = os.path.splitext(os.path.basename(_configfile))[0]
    if os.path.realpath(_configfile) == os.path.realpath(_default):
        _stem = "default"
    # a model or corpus path is relative to where snakemake was started, not to runs/<stem>/
    if isinstance(config.get("model"), str):
        config["model"] = absolute_model_path(config["model"])
    _source = (config.get("corpus") or {}).get("source")
    if isinstance(_source, str) and os.path.exists(os.path.expanduser(_source)):
        config["corpus"]["source"] = os.path.abspath(os.path.expanduser(_source))
    _plugins = config.get("plugins")
    if isinstance(_plugins, list):
        config["plugins"] = [
            os.path.abspath(p) if isinstance(p, str) and os.path.isfile(p) else p
            for p in _plugins
        ]
    _resources = config.get("resources_dir", "resources")
    if not os.path.isabs(_resources):
        config["resources_dir"] = os.path.join(workflow.basedir, _resources)

# Validates against workflow/schemas/config.schema.yaml and the model registry; a bad config
# stops here, before any job runs and before any folder is made, with one error naming the key.
# Not snakemake.utils.validate: load_config checks the same schema (defaults filled in as Snakemake
# does) and then what a schema cannot say (a layer within the model's depth, a corpus path that
# exists and holds text, a GGUF as long as its tensor table, coefficients per site), and its errors
# name the key and the allowed values instead of a jsonschema trace.
CFG = load_config(config)
print(
    f"saerepro: {CFG.spec.name} "
    + (
        "starts each sequence with BOS"
        if CFG.spec.add_bos
        else "adds no BOS (its own convention)"
    ),
    file=sys.stderr,
)
if _note := default_pilot_note(config, CFG):
    print(f"saerepro: {_note}", file=sys.stderr)

if _AT_ROOT:
    print(
        f"saerepro: config {_stem} writes to runs/{_stem}/ (not the committed results/)",
        file=sys.stderr,
    )

    workdir: f"runs/{_stem}"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/cache.smk"
include: "workflow/rules/pilot.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"
include: "workflow/rules/inference_opt.smk"
include: "workflow/rules/toys.smk"


# A finished run prints its verdict table and where its tables and figures are.
onsuccess:
    from saerepro.manifest import run_summary

    print(run_summary(os.getcwd()), end="", file=sys.stderr)


rule all:
    default_target: True
    input:
        all_targets(),


rule cached:
    """Everything up to the activation caches and reference CEs."""
    input:
        cache_targets(),
        reference_targets(),
