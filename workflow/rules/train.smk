if not ON_THE_FLY:

    rule train:
        """One SAE per (model, layer, site, architecture, coefficient, seed) on the shared cache."""
        input:
            unpack(train_inputs),
        output:
            info=P.TRAIN_INFO,
            provenance=P.PROVENANCE,
        log:
            f"{LOGS}/train/{{model}}/{{corpus}}/L{{layer}}/{{site}}/{{architecture}}/c{{coefficient}}/s{{seed}}.log",
        threads: 1
        resources:
            mem_mb=4000,
        params:
            # A change to a shared setting (train.tokens, corpus, ...) changes the hash, and
            # Snakemake's params trigger then retrains instead of keeping stale SAEs.
            config_hash=CONFIG_HASH,
        script:
            "../scripts/train.py"

else:
    # activations.mode: on_the_fly. One job per hook point runs the LM and trains every SAE of that
    # hook point on the stream (saerepro.on_the_fly.train_on_the_fly); nothing is cached. Its outputs
    # differ per hook point (architectures may be restricted to sites/layers), so it is one rule per
    # hook point, named train_on_the_fly_L<layer>_<site>.
    for _layer, _site in CFG.hook_points():
        _runs = hook_point_runs(CFG, _layer, _site)
        if not _runs:
            continue

        rule:
            name:
                f"train_on_the_fly_L{_layer}_{_site}"
            input:
                model=ancient(rules.prepare_model.output),
                corpus=rules.prepare_corpus.output.meta,
            output:
                info=[P.fill(P.TRAIN_INFO, run) for run in _runs],
                provenance=[P.fill(P.PROVENANCE, run) for run in _runs],
            log:
                f"{LOGS}/train_on_the_fly/{CFG.model}/{CORPUS}/L{_layer}/{_site}.log",
            threads: workflow.cores
            resources:
                mem_mb=8000,
            params:
                layer=_layer,
                site=_site,
                config_hash=CONFIG_HASH,
            script:
                "../scripts/train_on_the_fly.py"
