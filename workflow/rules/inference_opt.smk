# Paper Figs. 10-11: gradient-pursuit codes on each trained gated and baseline SAE's frozen decoder.
# Not part of `all` (it costs one spliced pass per SAE and k): `snakemake inference_opt --cores all`;
# `make repro-long` asks for it. Headline layer only: the figure draws that layer.
from saerepro.inference_opt import DEFAULT_KS


rule inference_opt_hook_point:
    """Pursuit codes at every k of saerepro.inference_opt.DEFAULT_KS, and each SAE's own encoder,
    on a prefix of the eval tokens."""
    input:
        saes=ito_saes,
        clean=with_corpus(P.CLEAN_REFERENCE),
        reference=with_corpus(P.REFERENCE_CE),
        corpus=rules.prepare_corpus.output.meta,
    output:
        f"{P.TABLES}/inference_opt/{{model}}_L{{layer}}_{{site}}.csv",
    log:
        f"{LOGS}/inference_opt/{{model}}/{CORPUS}/L{{layer}}/{{site}}.log",
    threads: workflow.cores
    params:
        ks=list(DEFAULT_KS),
    script:
        "../scripts/inference_opt.py"


rule inference_opt:
    """Figs. 10-11 analogue: each dictionary's pursuit loss recovered at fixed k (Fig. 10), and the
    best dictionary's pursuit frontier beside the SAEs' own (Fig. 11), gated vs baseline.
    """
    input:
        [
            f"{P.TABLES}/inference_opt/{CFG.model}_L{layer}_{site}.csv"
            for layer, site in CFG.hook_points()
            if layer == CFG.headline
        ],
    output:
        decoders=report(
            f"{P.FIGURES}/fig10_inference_opt_decoders.png",
            caption="../report/fig10_inference_opt_decoders.rst",
            category="Figures",
        ),
        decoders_pdf=f"{P.FIGURES}/fig10_inference_opt_decoders.pdf",
        frontiers=report(
            f"{P.FIGURES}/fig11_inference_opt_frontiers.png",
            caption="../report/fig11_inference_opt_frontiers.rst",
            category="Figures",
        ),
        frontiers_pdf=f"{P.FIGURES}/fig11_inference_opt_frontiers.pdf",
    log:
        f"{LOGS}/inference_opt/figure.log",
    script:
        "../scripts/inference_opt_figure.py"
