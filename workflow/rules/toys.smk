# The paper's two toy settings (Figs. 2 and 15), computed: no model, no cache, ~1 min on a CPU, once per
# machine (resources/toys/, keyed by saerepro.toys' source) and copied into each run folder after that.
TOYS = f"{P.TABLES}/toys"


rule toy_tables:
    """Fig. 2: our single-feature baseline and gated SAEs trained at several λ; Fig. 15 (App. F):
    ReLU and JumpReLU encoders fitted to the toy at every threshold (saerepro.toys)."""
    output:
        shrinkage=f"{TOYS}/shrinkage_toy.csv",
        jumprelu=f"{TOYS}/jumprelu_toy.csv",
    log:
        f"{LOGS}/toy_tables.log",
    params:
        # computed once per machine (and toys source), copied into every run folder after that
        machine_cache=f"{CFG.resources_dir}/toys",
    script:
        "../scripts/toy_tables.py"


rule toy_figures:
    """The toy figures, from the toy tables only."""
    input:
        rules.toy_tables.output,
    output:
        shrinkage=report(
            f"{P.FIGURES}/fig2_shrinkage_toy.png",
            caption="../report/fig2_shrinkage_toy.rst",
            category="Figures",
        ),
        shrinkage_pdf=f"{P.FIGURES}/fig2_shrinkage_toy.pdf",
        jumprelu=report(
            f"{P.FIGURES}/fig15_jumprelu_toy.png",
            caption="../report/fig15_jumprelu_toy.rst",
            category="Figures",
        ),
        jumprelu_pdf=f"{P.FIGURES}/fig15_jumprelu_toy.pdf",
    log:
        f"{LOGS}/toy_figures.log",
    script:
        "../scripts/toy_figures.py"
