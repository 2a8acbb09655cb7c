if not ON_THE_FLY:  # on_the_fly computes activations inside training; nothing is cached

    rule cache_activations:
        """One LM pass (stopped after the deepest layer needed) caches every hook point."""
        input:
            model=ancient(rules.prepare_model.output),
            corpus=rules.prepare_corpus.output.meta,
        output:
            cache_targets(),
        log:
            f"{LOGS}/cache_activations/{CFG.model}/{CORPUS}.log",
        threads: workflow.cores
        resources:
            mem_mb=8000,
        script:
            "../scripts/cache_activations.py"


rule reference_ce:
    """Clean CE once, zero-ablation CE per hook point, on the fixed held-out tokens; the clean pass
    is saved for every SAE evaluation to reuse."""
    input:
        model=ancient(rules.prepare_model.output),
        corpus=rules.prepare_corpus.output.meta,
    output:
        reference_targets(),
        clean=P.CLEAN_REFERENCE.format(model=CFG.model, corpus=CORPUS),
    log:
        f"{LOGS}/reference_ce/{CFG.model}/{CORPUS}.log",
    threads: workflow.cores
    resources:
        mem_mb=8000,
    params:
        config_hash=CONFIG_HASH,  # eval tokens or batch settings changed: recompute
    script:
        "../scripts/reference_ce.py"
