# Two commands for a fresh machine (see README):
#   make repro   set up .venv on first use, then run the default reproduction
#   make test    set up .venv on first use, then run the test suite
# CI (.ci/run) runs `make lint` and then `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.saerepro-installed
# Everything here is offline: the Hugging Face Hub is never contacted by the default run.
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export MPLBACKEND := Agg

.PHONY: setup promote repro repro-long repro-extras long-resume long-partial repro-neurons repro-seeds repro-mlp-seeds repro-reseed repro-budget quick cached test test-fast lint dryrun report

setup: $(STAMP)

# torch first: the pinned CPU wheel; any other torch spec would pull GBs of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,lint]"
	touch $@

# Every run writes under runs/<name>/ (the default: runs/default/) and never over a tracked file;
# $(call timed,NAME,COMMAND) also records the command's wall seconds for the run's manifest.
timed = mkdir -p $(CURDIR)/runs/$(1) && t0=$$(date +%s) && $(2) && echo $$(( $$(date +%s) - t0 )) > $(CURDIR)/runs/$(1)/wall_seconds

repro: setup
	$(call timed,default,$(BIN)/snakemake --cores all)
	@echo "saerepro: tables in runs/default/results/tables/ (verdicts.md), figures in runs/default/figures/;"
	@echo "          make promote RUN=default copies them over the committed results/tables and figures/"

# The only step that writes committed results: runs/$(RUN)/ -> results/ and figures/, with a
# manifest.json (commits, config hash, machines, date, wall time) beside the tables.
promote: setup
	@test -n "$(RUN)" || { echo "usage: make promote RUN=default|long|extras|neurons|seed_spread|mlp_seeds|reseed|budget"; exit 2; }
	$(BIN)/python -m saerepro.manifest promote $(RUN)

# Runs in runs/<name>/ do not see workflow/profiles/default from there (Snakemake looks beside the
# working directory): name it, so a run killed mid-job resumes (--rerun-incomplete) as the default's does.
RUNS_PROFILE := --workflow-profile ../../workflow/profiles/default

# The long reproduction (config/long.yaml, issue 30's design: layers 3 and 6, gated and baseline, two
# seeds): its own working directory, then `make promote RUN=long` copies its tables and figures to
# results/long/ and figures/long/. What did not fit its 170 minutes (TopK, JumpReLU, the ablations, the
# MLP-neuron sweep, the inference-time optimisation, the learning curves) is listed in config/long.yaml;
# the previous design's results/long_previous/ still hold them.
LONG_SNAKEMAKE := ../../$(BIN)/snakemake --snakefile ../../Snakefile --cores all $(RUNS_PROFILE) \
	--configfile ../../config/long.yaml --config resources_dir=../../resources
repro-long: setup
	$(call timed,long,cd runs/long && $(LONG_SNAKEMAKE))

# What did not fit the long run's 170 minutes (issue 30), under its own 170 (config/extras.yaml):
# TopK and JumpReLU (lambdas from a pilot) at every layer-6 site, and the ablations at layer-6 resid.
# Reuses the long run's clean and zero-ablation CEs when runs/long has them (same settings and eval
# tokens). `make promote RUN=extras` copies its tables and figures to results/extras/ and figures/extras/.
repro-extras: setup
	$(call copy_reference,extras,long)
	$(call timed,extras,cd runs/extras && $(RUN_SNAKEMAKE) \
		--configfile ../../config/extras.yaml --config resources_dir=../../resources)

# The long run continued on a machine without its earlier runs/long (each session's machine starts
# without it): trains and evaluates only the SAEs results/long/tables/metrics.csv lacks, then merges
# them into the committed tables (saerepro.partial --prior; every row keeps its provenance). The
# inference-time optimisation is not rerun; for it, run `cd runs/long && $(LONG_SNAKEMAKE) -- inference_opt` first.
long-resume: setup
	mkdir -p runs/long
	targets=$$($(BIN)/python -m saerepro.partial config/long.yaml --missing-targets results/long/tables) && \
		if [ -n "$$targets" ]; then cd runs/long && $(LONG_SNAKEMAKE) -- $$targets; fi
	$(BIN)/python -m saerepro.partial config/long.yaml --run-dir runs/long \
		--tables results/long/tables --figures figures/long --prior results/long/tables

# Where the long run stands while it spans sessions: the finished SAEs' tables and figures (and any
# inference-time-optimisation tables) into results/long/ and figures/long/, the rest listed in
# results/long/tables/missing_runs.csv. Reads only finished outputs: safe beside a running repro-long.
long-partial: setup
	$(BIN)/python -m saerepro.partial config/long.yaml --run-dir runs/long \
		--tables results/long/tables --figures figures/long

# Paper Fig. 5 on the CPU model (config/experiments/neurons.yaml, 79 min on the 2-core AMX Xeon): gated and
# baseline SAEs on layer 6's MLP neurons, their lambdas chosen by a pilot; tables and figures are
# promoted by `make promote RUN=neurons`. --rerun-triggers mtime: this folder has no record
# of the prepared model it shares through resources/ (see the config's header).
repro-neurons: setup
	$(call timed,neurons,cd runs/neurons && ../../$(BIN)/snakemake --snakefile ../../Snakefile --cores all --rerun-triggers mtime $(RUNS_PROFILE) \
		--configfile ../../config/experiments/neurons.yaml --config resources_dir=../../resources)

# Seed-to-seed spread (config/experiments/seed_spread.yaml, 59 min on the 2-core AMX Xeon): 3 seeds of one gated and
# one baseline lambda per site at layer 6. Its clean and zero-ablation CEs are the long run's (same model,
# eval tokens and settings; tests/test_experiment_configs.py), copied when the long run has them (~50 min
# saved). `make promote RUN=seed_spread` copies its tables and figures into results/ and figures/.
SEED_REF := results/gemma-3-270m/wiki-offline
repro-seeds: setup
	mkdir -p runs/seed_spread
	cd runs/seed_spread && for f in clean_reference.pt L6/resid/reference_ce.json L6/mlp/reference_ce.json \
		L6/attn/reference_ce.json; do if [ -f ../long/$(SEED_REF)/$$f ] && [ ! -f $(SEED_REF)/$$f ]; then \
		mkdir -p $$(dirname $(SEED_REF)/$$f) && cp ../long/$(SEED_REF)/$$f $(SEED_REF)/$$f; fi; done
	$(call timed,seed_spread,cd runs/seed_spread && ../../$(BIN)/snakemake --snakefile ../../Snakefile --cores all --rerun-triggers mtime $(RUNS_PROFILE) \
		--configfile ../../config/experiments/seed_spread.yaml --config resources_dir=../../resources)

# Seed-aware verdicts at layer-6 mlp (config/experiments/mlp_seeds.yaml, ~50 min on the 2-core AMX Xeon): gated
# and baseline at four of the long run's mlp lambdas, 3 seeds each, so every verdict's SE includes what
# retraining moves. Reuses the long run's clean and zero-ablation CEs when runs/long has them (as repro-seeds).
# `make promote RUN=mlp_seeds` copies its tables and figures into results/ and figures/.
repro-mlp-seeds: setup
	mkdir -p runs/mlp_seeds
	cd runs/mlp_seeds && for f in clean_reference.pt L6/mlp/reference_ce.json; do \
		if [ -f ../long/$(SEED_REF)/$$f ] && [ ! -f $(SEED_REF)/$$f ]; then \
		mkdir -p $$(dirname $(SEED_REF)/$$f) && cp ../long/$(SEED_REF)/$$f $(SEED_REF)/$$f; fi; done
	$(call timed,mlp_seeds,cd runs/mlp_seeds && ../../$(BIN)/snakemake --snakefile ../../Snakefile --cores all --rerun-triggers mtime $(RUNS_PROFILE) \
		--configfile ../../config/experiments/mlp_seeds.yaml --config resources_dir=../../resources)

# A run reuses another's clean and zero-ablation CEs (same model, eval tokens and settings) when
# runs/<that one> has them: $(call copy_reference,NAME,FROM); layer 6's hook points only.
copy_reference = mkdir -p runs/$(1) && cd runs/$(1) && for f in clean_reference.pt L6/resid/reference_ce.json \
	L6/mlp/reference_ce.json L6/attn/reference_ce.json; do if [ -f ../$(2)/$(SEED_REF)/$$f ] && \
	[ ! -f $(SEED_REF)/$$f ]; then mkdir -p $$(dirname $(SEED_REF)/$$f) && cp ../$(2)/$(SEED_REF)/$$f $(SEED_REF)/$$f; fi; done
RUN_SNAKEMAKE = ../../$(BIN)/snakemake --snakefile ../../Snakefile --cores all --rerun-triggers mtime $(RUNS_PROFILE)

# The default retrained with seed 1: `make promote RUN=reseed` writes its verdicts against the
# default's intervals (results/reseed/tables/rerun_comparison.md). Its config is the default's with
# the seed list replaced (seeds are outside the config hash; `--config seeds=[1]` would pass a string).
repro-reseed: setup
	$(call copy_reference,reseed,default)
	sed 's/^seeds: \[0\]/seeds: [1]/' config/config.yaml > runs/reseed/config.yaml
	grep -q '^seeds: \[1\]' runs/reseed/config.yaml
	$(call timed,reseed,cd runs/reseed && $(RUN_SNAKEMAKE) \
		--configfile config.yaml --config resources_dir=../../resources)

# The default at twice its training tokens at resid and mlp (config/experiments/budget_2x.yaml, ~25 min):
# `make promote RUN=budget` writes, per hook point, whether the default's frontiers and verdicts settled.
repro-budget: setup
	$(call copy_reference,budget,default)
	$(call timed,budget,cd runs/budget && $(RUN_SNAKEMAKE) \
		--configfile ../../config/experiments/budget_2x.yaml --config resources_dir=../../resources)

# A first look (~10 min): its own working directory, so it never mixes with the default run's
# results/ and figures/; model weights and corpus are shared through resources/.
quick: setup
	mkdir -p runs/quick
	cd runs/quick && ../../$(BIN)/snakemake --snakefile ../../Snakefile --cores all --rerun-triggers mtime $(RUNS_PROFILE) \
		--configfile ../../config/quick.yaml --config resources_dir=../../resources

cached: setup
	$(BIN)/snakemake cached --cores all

dryrun: setup
	$(BIN)/snakemake -n --cores all

report: setup
	$(BIN)/snakemake --cores 1 --report $(CURDIR)/runs/default/report.html

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

# Versions pinned in pyproject.toml's lint extra; rule sets in pyproject.toml.
LINT_PY := src tests benchmarks workflow/scripts .ci
lint: setup
	$(BIN)/ruff check $(LINT_PY)
	$(BIN)/ruff format --check $(LINT_PY)
	$(BIN)/snakefmt --check Snakefile workflow/rules
	$(BIN)/mypy src/saerepro
	$(BIN)/python .ci/layers.py
	$(BIN)/python .ci/snakemake_lint.py
