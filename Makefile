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

.PHONY: setup promote repro $(NAMED_RUNS:%=repro-%) long-resume long-partial quick cached test test-fast lint dryrun report

setup: $(STAMP)

# torch first: the pinned CPU wheel; any other torch spec would pull GBs of CUDA wheels.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[test,lint]"
	touch $@

# Every run writes under runs/<name>/ (the default: runs/default/) and never over a tracked file;
# $(call timed,NAME,COMMAND) also appends the command's wall seconds to runs/NAME/wall_seconds, one
# line per call, failed ones too (a resumed or extended run then sums every call that worked on it;
# its manifest lists them).
timed = mkdir -p $(CURDIR)/runs/$(1) && t0=$$(date +%s); ( $(2) ); s=$$?; \
	echo $$(( $$(date +%s) - t0 )) >> $(CURDIR)/runs/$(1)/wall_seconds; exit $$s

repro: setup
	$(call timed,default,$(BIN)/snakemake --cores all)
	@echo "saerepro: tables in runs/default/results/tables/ (verdicts.md), figures in runs/default/figures/;"
	@echo "          make promote RUN=default copies them over the committed results/tables and figures/"

# The only step that writes committed results: runs/$(RUN)/ -> results/ and figures/, with a
# manifest.json (commits, config hash, machines, date, wall time) beside the tables.
promote: setup
	@test -n "$(RUN)" || { echo "usage: make promote RUN=default|long|extras|neurons|reseed|budget"; exit 2; }
	$(BIN)/python -m saerepro.manifest promote $(RUN)

# Runs in runs/<name>/ do not see workflow/profiles/default from there (Snakemake looks beside the
# working directory): name it, so a run killed mid-job resumes (--rerun-incomplete) as the default's does.
RUNS_PROFILE := --workflow-profile ../../workflow/profiles/default

# The long run continued on a machine without its earlier runs/long (each session's machine starts
# without it): trains and evaluates only the SAEs results/long/tables/metrics.csv lacks, then merges
# them into the committed tables (saerepro.partial --prior; every row keeps its provenance). The
# inference-time optimisation is not rerun; for it, run `cd runs/long && $(call run_snakemake,long) -- inference_opt` first.
long-resume: setup
	mkdir -p runs/long
	targets=$$($(BIN)/python -m saerepro.partial config/long.yaml --missing-targets results/long/tables) && \
		if [ -n "$$targets" ]; then cd runs/long && $(call run_snakemake,long) -- $$targets; fi
	$(BIN)/python -m saerepro.partial config/long.yaml --run-dir runs/long \
		--tables results/long/tables --figures figures/long --prior results/long/tables

# Where the long run stands while it spans sessions: the finished SAEs' tables and figures (and any
# inference-time-optimisation tables) into results/long/ and figures/long/, the rest listed in
# results/long/tables/missing_runs.csv. Reads only finished outputs: safe beside a running repro-long.
long-partial: setup
	$(BIN)/python -m saerepro.partial config/long.yaml --run-dir runs/long \
		--tables results/long/tables --figures figures/long

# The named runs: each works in runs/<name>/ (`make repro-<name>`) with its config, and, where
# REF_<name> names another run, first copies that run's clean and zero-ablation CEs from runs/<that>
# when it has them (same model, eval tokens and settings). `make promote RUN=<name>` then copies its
# tables and figures to results/<name>/ and figures/<name>/ with a manifest. --rerun-triggers mtime
# input: the run folders share prepared models and corpora through resources/, which they hold no
# record of (so not code or params); input, so that λs added to a config are trained and aggregated
# (with mtime alone, `make repro-extras` after adding a λ said "Nothing to be done", 2026-12-08).
#   long     config/long.yaml: layers 3 and 6, gated and baseline, two seeds (issue 30); what did not
#            fit its 170 minutes is listed in the config (the previous design's results/long_previous/
#            still hold TopK, JumpReLU, the ablations and the inference-time optimisation)
#   extras   config/extras.yaml: TopK and JumpReLU at every layer-6 site, the ablations at resid
#   neurons  paper Fig. 5 on layer 6's MLP neurons, lambdas from a pilot (79 min on the AMX Xeon)
#   reseed   the default retrained with seed 1 (its config is the default's with the seed replaced:
#            seeds are outside the config hash; `--config seeds=[1]` would pass a string); promoting
#            it writes its verdicts against the default's intervals (rerun_comparison.md)
#   budget   the default at twice its training tokens at resid and mlp (~25 min): whether it settled
#   quick    a first look (~10 min; `make quick`)
#   jumprelu_theta  JumpReLU with its threshold starting at 0.5, not 0.001 (4 SAEs, the extras run's
#            settings and reference CEs; docs/architectures.md)
NAMED_RUNS := long extras neurons reseed budget quick jumprelu_theta
CONFIG_long := config/long.yaml
CONFIG_extras := config/extras.yaml
REF_extras := long
CONFIG_neurons := config/experiments/neurons.yaml
CONFIG_reseed := runs/reseed/config.yaml
REF_reseed := default
CONFIG_budget := config/experiments/budget_2x.yaml
REF_budget := default
CONFIG_quick := config/quick.yaml
CONFIG_jumprelu_theta := config/experiments/jumprelu_theta.yaml
REF_jumprelu_theta := long
# $(call run_snakemake,NAME): snakemake in runs/NAME/ with NAME's config and the shared resources/.
run_snakemake = $(RUN_SNAKEMAKE) --configfile ../../$(CONFIG_$(1)) --config resources_dir=../../resources

$(NAMED_RUNS:%=repro-%): repro-%: setup
	$(if $(REF_$*),$(call copy_reference,$*,$(REF_$*)),mkdir -p runs/$*)
	$(call timed,$*,cd runs/$* && $(call run_snakemake,$*))

repro-reseed: runs/reseed/config.yaml
runs/reseed/config.yaml: config/config.yaml
	mkdir -p runs/reseed
	sed 's/^seeds: \[0\]/seeds: [1]/' config/config.yaml > $@
	grep -q '^seeds: \[1\]' $@

quick: repro-quick

REF_DIR := results/gemma-3-270m/wiki-offline
# A run reuses another's clean and zero-ablation CEs (same model, eval tokens and settings) when
# runs/<that one> has them: $(call copy_reference,NAME,FROM); layer 6's hook points only.
copy_reference = mkdir -p runs/$(1) && cd runs/$(1) && for f in clean_reference.pt L6/resid/reference_ce.json \
	L6/mlp/reference_ce.json L6/attn/reference_ce.json; do if [ -f ../$(2)/$(REF_DIR)/$$f ] && \
	[ ! -f $(REF_DIR)/$$f ]; then mkdir -p $$(dirname $(REF_DIR)/$$f) && cp ../$(2)/$(REF_DIR)/$$f $(REF_DIR)/$$f; fi; done
RUN_SNAKEMAKE = ../../$(BIN)/snakemake --snakefile ../../Snakefile --cores all --rerun-triggers mtime input $(RUNS_PROFILE)

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
