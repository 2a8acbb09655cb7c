rule evaluate:
    """The paper's metrics for one SAE, spliced into the LM on the fixed held-out tokens."""
    input:
        info=P.TRAIN_INFO,
        provenance=P.PROVENANCE,
        reference=P.REFERENCE_CE,
        clean=P.CLEAN_REFERENCE,
        cache=scale_source,
        corpus=rules.prepare_corpus.output.meta,
    output:
        P.METRICS,
    log:
        f"{LOGS}/evaluate/{{model}}/{{corpus}}/L{{layer}}/{{site}}/{{architecture}}/c{{coefficient}}/s{{seed}}.log",
    threads: 1
    resources:
        mem_mb=6000,
    script:
        "../scripts/evaluate.py"
