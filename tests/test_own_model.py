"""``model:`` as a path: a Hugging Face folder or a GGUF file, no code edit (issue 11).

Fast tests read the shape from config.json / GGUF metadata and check what validation refuses; the
loading tests compare TransformerLens' logits with transformers'; the slow tests run the tiny
config through every rule of the DAG on each kind of path.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from saerepro.config import ConfigError, load_config
from saerepro.models import dequantise_gguf, get_spec, load_model
from saerepro.own_model import (
    ModelPathError,
    is_model_path,
    model_tag,
    read_gguf_metadata,
    spec_from_path,
)
from tests.own_model_builders import TINY_LLAMA, build_tiny_llama_folder, write_tiny_llama_gguf

REPO = Path(__file__).resolve().parents[1]
GEMMA_GGUF = REPO / "resources" / "gguf" / "gemma-3-270m-q4_k_m.gguf"


@pytest.fixture(scope="module")
def llama_folder(tmp_path_factory) -> Path:
    # "llama" in the path: TransformerLens would take the architecture from the name and fail
    return build_tiny_llama_folder(tmp_path_factory.mktemp("own") / "tiny-llama")


@pytest.fixture(scope="module")
def llama_gguf(llama_folder, tmp_path_factory) -> Path:
    return write_tiny_llama_gguf(llama_folder, tmp_path_factory.mktemp("own-gguf") / "tiny-llama-f32.gguf")


def tiny_config(model: str, **change) -> dict:
    raw = yaml.safe_load((REPO / "config/test/tiny.yaml").read_text())
    raw.update({"model": model, "layers": [1]}, **change)
    return raw


# --------------------------------------------------------------------------- spec reading


def test_folder_shape_is_read_from_config_json(llama_folder):
    spec = get_spec(str(llama_folder))
    assert spec.source == "local" and spec.location == str(llama_folder)
    assert (spec.n_layers, spec.d_model, spec.n_heads, spec.d_head) == (3, 64, 4, 16)
    assert (spec.d_mlp, spec.max_context, spec.gated_mlp, spec.tl_name) == (96, 128, True, None)
    assert spec.name.startswith("tiny-llama-") and len(spec.name) == len("tiny-llama-") + 8


def test_gguf_shape_is_read_from_the_metadata(llama_gguf):
    import gguf

    meta = read_gguf_metadata(llama_gguf)
    reader = gguf.GGUFReader(llama_gguf)
    assert meta["general.architecture"] == "llama" == reader.fields["general.architecture"].contents()
    assert meta["llama.block_count"] == 3 and meta["tokenizer.ggml.tokens"] == len(
        reader.fields["tokenizer.ggml.tokens"].data
    )
    spec = get_spec(str(llama_gguf))
    assert spec.source == "gguf_file" and spec.name.startswith("tiny-llama-f32-")
    assert (spec.n_layers, spec.d_model, spec.n_heads, spec.d_head, spec.d_mlp) == (3, 64, 4, 16, 96)
    assert spec.max_context == TINY_LLAMA["max_position_embeddings"] and spec.d_vocab == meta["llama.vocab_size"]


@pytest.mark.skipif(not GEMMA_GGUF.exists(), reason="the Gemma GGUF is assembled by make setup / prepare_model")
def test_gemma_gguf_read_by_path_has_the_registry_shape():
    by_path, registered = get_spec(str(GEMMA_GGUF)), get_spec("gemma-3-270m")
    for key in ("n_layers", "d_model", "n_heads", "d_head", "max_context", "d_mlp", "gated_mlp", "d_vocab", "tl_name"):
        assert getattr(by_path, key) == getattr(registered, key), key
    assert by_path.add_bos and registered.add_bos  # Gemma wants BOS, and its GGUF says so


def test_a_models_own_bos_convention_is_read_and_sets_the_corpus_rows(llama_folder, llama_gguf, tmp_path):
    """Issue 31: the tiny Llama's byte-level BPE tokenizer adds no BOS and its GGUF says
    add_bos_token false (as Qwen2.5's does): its rows get no prefix, and its corpus tag says so."""
    import shutil

    from saerepro.corpus import SequencePacker
    from saerepro.own_model import folder_adds_bos, gguf_adds_bos
    from saerepro.paths import corpus_tag

    assert not get_spec(str(llama_folder)).add_bos and not get_spec(str(llama_gguf)).add_bos
    assert gguf_adds_bos({"tokenizer.ggml.add_bos_token": True})
    assert gguf_adds_bos({"tokenizer.ggml.model": "llama"}) and not gguf_adds_bos({"tokenizer.ggml.model": "gpt2"})
    with_bos = tmp_path / "with-bos"
    shutil.copytree(llama_folder, with_bos)
    config = json.loads((with_bos / "tokenizer_config.json").read_text())
    (with_bos / "tokenizer_config.json").write_text(json.dumps({**config, "add_bos_token": True}))
    assert folder_adds_bos(with_bos) and not folder_adds_bos(llama_folder)
    assert corpus_tag(load_config(tiny_config(str(llama_folder)))).endswith("-nobos")
    assert not corpus_tag(load_config(tiny_config(str(with_bos)))).endswith("-nobos")
    rows = SequencePacker(4, None, [9])
    rows.add([1, 2, 3, 4, 5, 6, 7, 8])
    assert rows.array().tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]  # no prefix: every position a text token
    rows = SequencePacker(4, 0, [9])
    rows.add([1, 2, 3, 4, 5, 6, 7, 8])
    assert rows.array().tolist() == [[0, 1, 2, 3], [0, 4, 5, 6], [0, 7, 8, 9]]  # BOS, then 3 text tokens


def test_registered_names_are_not_paths():
    assert not is_model_path("gemma-3-270m") and is_model_path("owner/name") and is_model_path("x.gguf")


def test_the_tag_follows_the_weights_not_the_place(llama_folder, tmp_path):
    copy = tmp_path / "my model (v2)"
    shutil.copytree(llama_folder, copy)  # copy2: sizes and mtimes kept
    assert model_tag(copy).split("-")[-1] == model_tag(llama_folder).split("-")[-1]
    assert model_tag(copy).startswith("my-model-v2-")
    weights = copy / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # edited (or touched)
    assert model_tag(copy) != model_tag(llama_folder) and get_spec(str(copy)).name == model_tag(copy)


# --------------------------------------------------------------------------- validation


def test_config_with_a_folder_validates_and_names_results_by_tag(llama_folder):
    cfg = load_config(tiny_config(str(llama_folder)))
    assert cfg.model == model_tag(llama_folder) and cfg.model_path == str(llama_folder)
    assert cfg.spec.location == str(llama_folder)
    assert {run.model for run in cfg.runs()} == {cfg.model}
    assert "/" not in cfg.model


def test_an_own_model_without_coefficients_gets_a_pilot_aiming_at_the_papers_l0s(llama_folder):
    """Issue 31: no λ guesswork for a new model. Leaving `coefficients` out pilots that architecture
    (probes around OWN_MODEL_PROBE_GRID, targets OWN_MODEL_TARGET_L0); one given keeps its grid; a
    config's own pilot section is kept; a registered model still has to give them."""
    from saerepro.config import OWN_MODEL_PROBE_GRID, OWN_MODEL_TARGET_L0, ConfigError, default_pilot_note

    archs = {"gated": {"width": 128}, "baseline": {"coefficients": [0.5], "width": 192}, "topk": {"k": [8]}}
    raw = tiny_config(str(llama_folder), architectures=archs)
    cfg = load_config(raw)
    assert default_pilot_note(raw, cfg).startswith("no coefficients for gated (a model given by path)")
    assert cfg.pilot is not None and cfg.pilot.target_l0 == OWN_MODEL_TARGET_L0
    assert cfg.pilot_points() == [("gated", 1, site) for site in cfg.sites]
    probes = cfg.probe_coefficients("gated", cfg.sites[0])
    assert probes[0] == pytest.approx(min(OWN_MODEL_PROBE_GRID) / cfg.pilot.probe_factor)
    assert probes[-1] == pytest.approx(max(OWN_MODEL_PROBE_GRID) * cfg.pilot.probe_factor)
    assert cfg.grid("baseline", 1, cfg.sites[0]) == (0.5,) and cfg.grid("gated", 1, cfg.sites[0]) is None
    own = load_config(tiny_config(str(llama_folder), architectures=archs, pilot={"target_l0": [5, 50]}))
    assert own.pilot.target_l0 == (5.0, 50.0) and own.piloted("gated") and own.piloted("baseline")
    assert default_pilot_note(tiny_config(str(llama_folder)), load_config(tiny_config(str(llama_folder)))) is None
    with pytest.raises(ConfigError, match="architectures.gated.coefficients' is required"):
        load_config(tiny_config("gemma-3-270m", architectures=archs))


def test_config_hash_ignores_where_the_model_lies(llama_folder, tmp_path):
    from saerepro.provenance import config_hash

    copy = tmp_path / "tiny-llama"
    shutil.copytree(llama_folder, copy)
    assert config_hash(load_config(tiny_config(str(copy)))) == config_hash(load_config(tiny_config(str(llama_folder))))


def test_layer_out_of_range_is_refused_naming_the_key_and_the_path(llama_gguf):
    with pytest.raises(ConfigError) as info:
        load_config(tiny_config(str(llama_gguf), layers=[3]))
    message = str(info.value)
    assert "config key 'layers[0]'" in message and str(llama_gguf) in message
    assert "n_layers 3" in message and "0..2" in message


@pytest.mark.parametrize("model", ["/nonexistent/model.gguf", "./no-such-folder", "SomeOrg/some-model"])
def test_a_missing_path_is_refused_at_validation_not_taken_for_a_hub_id(model):
    with pytest.raises(ConfigError) as info:
        load_config(tiny_config(model))
    message = str(info.value)
    assert message.startswith("config key 'model'") and "no model folder or GGUF file at" in message


def test_an_unknown_name_suggests_a_path_not_an_inline_mapping():
    with pytest.raises(ConfigError) as info:
        load_config(tiny_config("gpt-5"))
    assert "gemma-3-270m" in str(info.value) and ".gguf" in str(info.value)
    assert "inline mapping" not in str(info.value)


@pytest.mark.parametrize(
    "breakage,expected",
    [
        ("no_config", "has no config.json"),
        ("no_weights", "no weights"),
        ("no_tokenizer", "no tokenizer"),
        ("bad_json", "not valid JSON"),
        ("unsupported", "is not one TransformerLens converts"),
    ],
)
def test_a_malformed_folder_is_refused_at_validation(llama_folder, tmp_path, breakage, expected):
    folder = tmp_path / "broken"
    shutil.copytree(llama_folder, folder)
    if breakage == "no_config":
        (folder / "config.json").unlink()
    elif breakage == "no_weights":
        (folder / "model.safetensors").unlink()
    elif breakage == "no_tokenizer":
        (folder / "tokenizer.json").unlink()
    elif breakage == "bad_json":
        (folder / "config.json").write_text("{not json")
    else:
        cfg = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps({**cfg, "architectures": ["MambaForCausalLM"]}))
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(tiny_config(str(folder)))
    assert str(info.value).startswith("config key 'model'")


def test_a_file_that_is_not_gguf_is_refused(tmp_path):
    fake = tmp_path / "weights.gguf"
    fake.write_bytes(b"not a gguf file at all, just bytes" * 4)
    with pytest.raises(ModelPathError, match="not a GGUF file"):
        spec_from_path(str(fake))
    other = tmp_path / "weights.bin"
    other.write_bytes(b"x")
    with pytest.raises(ConfigError, match="not a .gguf"):
        load_config(tiny_config(str(other)))


# --------------------------------------------------------------------------- loading


def _hf_logits(folder: Path, tokens: torch.Tensor) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(folder).eval()(tokens).logits


def test_folder_loads_into_transformer_lens_with_transformers_logits(llama_folder):
    tokens = torch.tensor([[2, 40, 50, 60, 70, 80, 90, 100, 110, 120]])
    hooked = load_model(get_spec(str(llama_folder)))
    with torch.no_grad():
        diff = (hooked(tokens) - _hf_logits(llama_folder, tokens)).abs().max()
    assert diff < 1e-4, diff


def test_gguf_dequantises_to_the_original_weights_and_logits(llama_folder, llama_gguf, tmp_path):
    from safetensors.torch import load_file

    spec = get_spec(str(llama_gguf))
    out = dequantise_gguf(llama_gguf, tmp_path / "models" / spec.name)
    ours, original = load_file(str(out / "model.safetensors")), load_file(str(llama_folder / "model.safetensors"))
    assert set(ours) == set(original) and all(torch.equal(ours[k], original[k]) for k in original)
    text = "The cat sat on the mat. Paris is the capital of France."
    from transformers import AutoTokenizer

    assert (
        AutoTokenizer.from_pretrained(out)(text).input_ids
        == AutoTokenizer.from_pretrained(llama_folder)(text).input_ids
    )
    tokens = torch.tensor([[2, 40, 50, 60, 70, 80, 90, 100, 110, 120]])
    hooked = load_model(spec, resources=tmp_path)
    with torch.no_grad():
        diff = (hooked(tokens) - _hf_logits(llama_folder, tokens)).abs().max()
    assert diff < 1e-4, diff


# --------------------------------------------------------------------------- the whole DAG


def _corpus(tmp_path: Path) -> Path:
    from tests.conftest import TINY_TEXT

    sentences = [s.strip() + "." for s in TINY_TEXT.split(".") if s.strip()]
    path = tmp_path / "text.jsonl"
    with path.open("w") as fh:
        for i in range(400):
            doc = " ".join(sentences[(i + j) % len(sentences)] for j in range(3 + i % 5))
            fh.write(json.dumps({"id": str(i), "text": doc}) + "\n")
    return path


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["folder", "gguf"])
def test_tiny_config_runs_every_rule_on_an_own_model(kind, llama_folder, tmp_path_factory):
    import pandas as pd
    from snakemake_cli import snakemake

    tmp_path = tmp_path_factory.mktemp(f"dag-{kind}")
    model = llama_folder if kind == "folder" else write_tiny_llama_gguf(llama_folder, tmp_path / "tiny.gguf", "F16")
    raw = tiny_config(
        str(model),
        resources_dir=str(tmp_path / "resources"),
        corpus={"source": str(_corpus(tmp_path)), "context_size": 32, "train_tokens": 4096},
        reference={"eval_tokens": 256, "batch_size": 4},
        architectures={
            "gated": {"coefficients": [1.0], "width": 128},
            "baseline": {"coefficients": [1.0], "width": 192},
        },
    )
    config = tmp_path / "own.yaml"
    config.write_text(yaml.safe_dump(raw))
    result = snakemake("--cores", "2", "--configfile", str(config), cwd=tmp_path, timeout=1500)
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-5000:])
    out = result.stdout + result.stderr
    for rule in ("prepare_model", "prepare_corpus", "cache_activations", "reference_ce", "train", "evaluate"):
        assert f"rule {rule}" in out or f"localrule {rule}" in out, rule
    tag = model_tag(model)
    table = pd.read_csv(tmp_path / "results/tables/metrics.csv")
    assert len(table) == 6 and set(table["model"]) == {tag}
    assert table[["l0", "loss_recovered", "nmse"]].notna().all().all()
    assert set(table["corpus"]) == {"text-jsonl"}  # the local corpus file's own name
    assert (tmp_path / f"results/{tag}/text-jsonl/L1/resid/reference_ce.json").exists()
    prepared = json.loads((tmp_path / f"resources/models/{tag}/prepared.json").read_text())
    assert prepared["source"] == ("local" if kind == "folder" else "gguf_file")
    # no BOS (the model's own convention): rows start with text, and the metrics still come from
    # every position but the first
    (corpus,) = (tmp_path / f"resources/corpus/{tag}").glob("*-nobos")
    meta = json.loads((corpus / "meta.json").read_text())
    assert meta["add_bos"] is False and meta["bos_token_id"] is None
    first = np.load(corpus / "train.npy")[:, 0]
    assert len(set(first.tolist())) > 1


GEMMA_PREPARED = REPO / "resources" / "models" / "gemma-3-270m"


@pytest.mark.slow
@pytest.mark.skipif(
    not (GEMMA_GGUF.exists() and (GEMMA_PREPARED / "model.safetensors").exists()),
    reason="needs the assembled Gemma GGUF and its prepared folder (make repro prepares both)",
)
def test_generic_gguf_path_reproduces_the_prepared_gemma_weights_bit_for_bit(tmp_path):
    """The default's weights: dequantise_gguf on the Gemma GGUF, as a path model would be prepared,
    gives the very file the committed results were computed from (~1.5 min on 2 free cores)."""
    import hashlib

    from safetensors.torch import load_file

    out = dequantise_gguf(GEMMA_GGUF, tmp_path / "gemma")
    ours, committed = out / "model.safetensors", GEMMA_PREPARED / "model.safetensors"
    assert hashlib.sha256(ours.read_bytes()).digest() == hashlib.sha256(committed.read_bytes()).digest()
    a, b = load_file(str(ours)), load_file(str(committed))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in b)
    assert (out / "tokenizer.json").read_bytes() == (GEMMA_PREPARED / "tokenizer.json").read_bytes()
    assert (out / "config.json").read_bytes() == (GEMMA_PREPARED / "config.json").read_bytes()


def test_a_truncated_gguf_is_refused_at_validation_with_its_sizes(llama_gguf, tmp_path):
    """Issue 31: a GGUF cut to half its size used to pass validation and fail 40 s into
    prepare_model ("cannot reshape array"); its tensor table says how long it must be."""
    meta = read_gguf_metadata(llama_gguf)
    assert meta["_data_bytes_needed"] == meta["_file_bytes"] == llama_gguf.stat().st_size
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(llama_gguf.read_bytes()[: llama_gguf.stat().st_size // 2])
    with pytest.raises(ConfigError, match=r"truncated: its tensor table needs [\d,]+ bytes, the file has [\d,]+"):
        load_config(tiny_config(str(cut)))


def test_a_corpus_short_of_the_budget_is_refused_naming_what_it_holds(llama_folder, tmp_path):
    """Issue 31: a corpus of 18,624 tokens for train_tokens 65,536 used to succeed (a warning in a
    log file) with a cache folder named n65536; now prepare_corpus stops and says how many there are."""
    from saerepro.pipeline import prepare_corpus

    text = tmp_path / "small.jsonl"
    text.write_text("".join(json.dumps({"text": f"the sun rises in the east {i}."}) + "\n" for i in range(40)))
    raw = tiny_config(str(llama_folder), resources_dir=str(tmp_path / "resources"))
    raw["corpus"] = {"source": str(text), "context_size": 16, "train_tokens": 65536}
    with pytest.raises(ValueError, match=r"holds only [\d,]+ training tokens, but corpus.train_tokens is 65,536"):
        prepare_corpus(load_config(raw), tmp_path / "corpus")
