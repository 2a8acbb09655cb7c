from saerepro.figures import FIGURES, TOY_FIGURES

FIGURE_NAMES = list(FIGURES)  # one list of figures: saerepro.figures'


rule aggregate:
    """One long table (one row per SAE), the paper-style tables and the half-the-L0 table."""
    input:
        metrics=sweep_metrics,  # in pilot mode: the grids the pilot checkpoints chose
        pilots=pilot_targets(),
    output:
        table=report(
            P.METRICS_TABLE, caption="../report/metrics_table.rst", category="Tables"
        ),
        timings=f"{P.TABLES}/timings.csv",
        missing=report(
            f"{P.TABLES}/missing_runs.csv",
            caption="../report/missing_runs.rst",
            category="Tables",
        ),
        health=report(
            f"{P.TABLES}/training_health.csv",
            caption="../report/training_health.rst",
            category="Tables",
        ),
    log:
        f"{LOGS}/aggregate.log",
    script:
        "../scripts/aggregate.py"


onerror:
    # With --keep-going, every SAE that could finish has; tabulate those and list the rest
    # (results/tables/missing_runs.csv, logs/aggregate.log) instead of leaving no table at all.
    from saerepro.pipeline import aggregate_available
    from saerepro.figures import figures_from_tables
    from saerepro.snake import logging_to

    with logging_to(f"{LOGS}/aggregate.log"):
        try:
            if aggregate_available(apply_pilot(CFG), figures_dir=None) is not None:
                figures_from_tables(
                    P.TABLES, P.FIGURES, headline_layer=CFG.headline
                )
        except (
            Exception
        ):  # the run has already failed; say why this did too, don't mask it
            import logging

            logging.getLogger("saerepro").exception("partial aggregation failed")


rule figures:
    """Every Pareto and shrinkage figure, from the aggregated tables only (training_health.csv
    marks the SAEs that diverged in training)."""
    input:
        table=P.METRICS_TABLE,
        health=f"{P.TABLES}/training_health.csv",
    output:
        png=[
            report(
                f"{P.FIGURES}/{name}.png",
                caption=f"../report/{name}.rst",
                category="Figures",
            )
            for name in FIGURE_NAMES
        ],
        pdf=expand(f"{P.FIGURES}/{{name}}.pdf", name=FIGURE_NAMES),
    log:
        f"{LOGS}/figures.log",
    script:
        "../scripts/figures.py"
