# Pilot mode (config `pilot:`; saerepro.pilot): short probe SAEs over a wide lambda range at each
# (layer, site, architecture) choose the grid whose L0s span the target range. A checkpoint: once
# its pilot.json exists, the train/evaluate/aggregate inputs list the chosen coefficients.
if PILOT:

    checkpoint pilot:
        """Probe SAEs over a lambda range on the hook point's cache; pilot.json holds the chosen grid."""
        input:
            cache=pilot_cache,
        output:
            P.PILOT,
        log:
            f"{LOGS}/pilot/{{model}}/{{corpus}}/L{{layer}}/{{site}}/{{architecture}}.log",
        threads: 1
        resources:
            mem_mb=4000,
        params:
            config_hash=CONFIG_HASH,
            pilot=str(CFG.pilot),  # changed targets or probes: choose again
        script:
            "../scripts/pilot.py"
