# saerepro: gated vs baseline (and TopK, JumpReLU) SAEs, Rajamanoharan et al. 2024 (arXiv 2404.16014).
# Thin on purpose: config, includes and targets. Logic lives in src/saerepro/.
import os

from saerepro.config import load_config

# The default config only when none is given: Snakemake would otherwise deep-merge a
# --configfile into it, leaking the default sweep's architectures into a test config.
if not workflow.overwrite_configfiles:

    # beside this Snakefile, not in the working directory (snakemake -d elsewhere)
    configfile: os.path.join(workflow.basedir, "config/config.yaml")


# Validates against workflow/schemas/config.schema.yaml and the model registry; a bad config
# stops here, before any job runs, with one error naming the key.
CFG = load_config(config)

report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/cache.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"


rule all:
    input:
        all_targets(),
    default_target: True


rule cached:
    """Everything up to the activation caches and reference CEs."""
    input:
        cache_targets(),
        reference_targets(),
