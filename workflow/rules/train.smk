def _train_inputs(wildcards):
    inputs = {"cache": f"{P.cache_dir(CFG, wildcards.layer, wildcards.site)}/meta.json"}
    parent = DERIVED.get(wildcards.architecture)
    if parent is not None:  # baseline_rescale_shift freezes the trained baseline of equal lambda
        inputs["parent"] = P.TRAIN_INFO.format(**{**dict(wildcards), "architecture": parent})
    return inputs


from saerepro.config import DERIVED_ARCHITECTURES as DERIVED


rule train:
    """One SAE per (model, layer, site, architecture, coefficient, seed) on the shared cache."""
    input:
        unpack(_train_inputs),
    output:
        info=P.TRAIN_INFO,
        provenance=P.PROVENANCE,
    params:
        # A change to a shared setting (train.tokens, corpus, ...) changes the hash, and
        # Snakemake's params trigger then retrains instead of keeping stale SAEs.
        config_hash=CONFIG_HASH,
    log:
        LOGS + "/train/{model}/L{layer}/{site}/{architecture}/c{coefficient}/s{seed}.log",
    threads: 1
    resources:
        mem_mb=4000,
    script:
        "../scripts/train.py"
