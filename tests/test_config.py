"""Config validation: every bad config fails before any job runs, naming the key."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from saerepro.config import ConfigError, load_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def with_change(path: str, value, base=DEFAULT) -> dict:
    """Copy of ``base`` with the dotted ``path`` set to ``value`` (``...`` deletes it)."""
    cfg = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = cfg
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        node.pop(last)
    else:
        node[last] = value
    return cfg


def test_every_shipped_config_is_valid():
    configs = sorted((REPO / "config").rglob("*.yaml"))
    assert configs, "no configs found"
    for path in configs:
        if "learning_curve" in yaml.safe_load(path.read_text()):  # an experiment section on top
            from saerepro.learning_curve import read_config

            cfg = read_config(path)[0]
        else:
            cfg = load_config(path)
        # with a pilot, the SAEs of piloted architectures exist once the pilot has chosen their λs
        assert cfg.runs() or cfg.pilot_points(), f"{path} defines no SAE and no pilot"


def test_defaults_are_filled_in():
    cfg = load_config(
        {
            "model": "gemma-3-270m",
            "layers": [6],
            "sites": ["resid"],
            "architectures": {"gated": {"coefficients": [1.0]}},
        }
    )
    assert cfg.seeds == (0,)
    assert cfg.corpus.context_size == 128
    assert cfg.train.adam_beta1 == 0.0 and cfg.train.adam_beta2 == 0.999
    assert cfg.architectures["gated"].d_sae(640) == 2560
    assert cfg.train.b_dec_init == "geometric_median"


def test_baseline_gets_one_and_a_half_times_the_gated_width_by_default():
    cfg = load_config(
        {
            "model": "gemma-3-270m",
            "layers": [6],
            "sites": ["resid"],
            "architectures": {"gated": {"coefficients": [1.0]}, "baseline": {"coefficients": [1.0]}},
        }
    )
    assert cfg.architectures["baseline"].d_sae(640) == 1.5 * cfg.architectures["gated"].d_sae(640)


def test_runs_cover_the_grid_and_respect_site_restrictions():
    raw = with_change("architectures.topk", {"k": [8, 32], "sites": ["resid"]})
    cfg = load_config(raw)
    topk = [r for r in cfg.runs() if r.architecture == "topk"]
    assert sorted(r.coefficient for r in topk) == [8, 32]
    assert {r.site for r in topk} == {"resid"}
    assert topk[0].run_dir == "gemma-3-270m/wiki-offline/L6/resid/topk/c8/s0"


BAD_CASES = [
    # (id, dotted key, value, words the error must contain)
    ("unknown top-level key", "learning_rate", 0.1, ["learning_rate", "allowed keys"]),
    ("unknown nested key", "train.lr_max", 0.1, ["lr_max", "train"]),
    ("unknown architecture key", "architectures.gated.lambda", [1.0], ["lambda", "architectures.gated"]),
    ("wrong type: layers", "layers", "six", ["layers", "array"]),
    ("wrong type: layer item", "layers", [6.5], ["layers.0", "integer"]),
    ("wrong type: tokens", "train.tokens", "many", ["train.tokens", "integer"]),
    ("wrong type: bf16 flag", "train.autocast_bf16", "yes", ["train.autocast_bf16", "boolean"]),
    ("unknown model", "model", "gpt-5", ["model", "gpt-5", "gemma-3-270m"]),
    ("unknown site", "sites", ["resid", "embed"], ["sites.1", "embed", "resid, mlp, attn"]),
    ("unknown architecture", "architectures.vanilla", {"coefficients": [1.0]}, ["vanilla", "gated"]),
    ("layer out of range", "layers", [18], ["layers[0]", "0..17"]),
    ("negative layer", "layers", [-1], ["layers.0", "minimum"]),
    ("empty layer grid", "layers", [], ["layers"]),
    ("empty site list", "sites", [], ["sites"]),
    ("empty coefficient grid", "architectures.gated.coefficients", [], ["architectures.gated.coefficients"]),
    ("negative coefficient", "architectures.gated.coefficients", [-0.5], ["architectures.gated.coefficients.0"]),
    ("zero train budget", "train.tokens", 0, ["train.tokens", "minimum"]),
    ("negative corpus budget", "corpus.train_tokens", -5, ["corpus.train_tokens"]),
    ("zero eval budget", "reference.eval_tokens", 0, ["reference.eval_tokens"]),
    ("zero learning rate", "train.lr", 0, ["train.lr"]),
    (
        "coefficients for topk",
        "architectures.topk",
        {"coefficients": [0.1]},
        ["architectures.topk.coefficients", "'k'"],
    ),
    ("k for gated", "architectures.gated", {"k": [32]}, ["architectures.gated.k", "coefficients"]),
    ("context above the model's", "corpus.context_size", 100000, ["corpus.context_size", "32768"]),
    ("eval shorter than a sequence", "reference.eval_tokens", 16, ["reference.eval_tokens", "context_size"]),
    (
        "per-site training tokens at a site not configured",
        "train.site_tokens",
        {"mlp_post": 4096},
        ["train.site_tokens", "mlp_post"],
    ),
    (
        "per-site eval tokens at a site not configured",
        "reference.site_eval_tokens",
        {"mlp_post": 4096},
        ["reference.site_eval_tokens", "mlp_post"],
    ),
    (
        "per-site eval tokens shorter than a sequence",
        "reference.site_eval_tokens",
        {"resid": 16},
        ["reference.site_eval_tokens.resid", "context_size"],
    ),
    (
        "site restriction outside sites",
        "architectures.topk",
        {"k": [8], "sites": ["mlp"]},
        None,
    ),  # valid: mlp is configured; replaced below
    ("missing required key", "sites", ..., ["sites"]),
    ("unknown cache dtype", "cache.dtype", "int8", ["cache.dtype", "float16, float32"]),
    ("unknown b_dec init", "train.b_dec_init", "median", ["train.b_dec_init", "geometric_median"]),
    (
        "rescale-shift without its baseline lambda",
        "architectures.baseline_rescale_shift",
        {"coefficients": [9.9]},
        ["baseline_rescale_shift", "baseline"],
    ),
    (
        "jumprelu threshold for gated",
        "architectures.gated",
        {"coefficients": [1.0], "init_threshold": 0.3},
        ["architectures.gated.init_threshold", "jumprelu"],
    ),
    (
        "negative jumprelu bandwidth",
        "architectures.jumprelu",
        {"coefficients": [1.0], "bandwidth": -0.1},
        ["architectures.jumprelu.bandwidth"],
    ),
    ("wrong type: allow_mixed_configs", "allow_mixed_configs", "sometimes", ["allow_mixed_configs", "boolean"]),
    # Keys the paper configs need (config/paper/).
    (
        "per-site width at an unknown site",
        "architectures.gated.widths",
        {"embed": 128},
        ["architectures.gated.widths", "embed", "resid, mlp, attn, mlp_post"],
    ),
    (
        "per-site width not an integer",
        "architectures.gated.widths",
        {"resid": 12.5},
        ["architectures.gated.widths.resid", "integer"],
    ),
    ("per-site width zero", "architectures.gated.widths", {"mlp": 0}, ["architectures.gated.widths.mlp", "minimum"]),
    (
        "per-site width at a site the architecture skips",
        "architectures.topk",
        {"k": [8], "sites": ["resid"], "widths": {"mlp": 64}},
        ["architectures.topk.widths.mlp", "resid"],
    ),
    (
        "resampling for topk",
        "architectures.topk",
        {"k": [8], "resample": {}},
        ["architectures.topk.resample", "baseline", "gated"],
    ),
    ("re-warm-up shape", "train.resample_rewarm_shape", "step", ["train.resample_rewarm_shape", "linear"]),
    ("re-warm-up start of 1", "train.resample_rewarm_start_factor", 1.0, ["train.resample_rewarm_start_factor"]),
    ("negative re-warm-up", "train.resample_rewarm_steps", -1, ["train.resample_rewarm_steps", "minimum"]),
    (
        "resampling: unknown key",
        "architectures.baseline.resample",
        {"every": 5},
        ["every", "architectures.baseline.resample", "every_steps"],
    ),
    (
        "resampling: zero interval",
        "architectures.baseline.resample",
        {"every_steps": 0},
        ["architectures.baseline.resample.every_steps", "minimum"],
    ),
    (
        "resampling: not a mapping",
        "architectures.baseline.resample",
        True,
        ["architectures.baseline.resample", "object"],
    ),
    (
        "per-site coefficients at a site the architecture skips",
        "architectures.jumprelu",
        {"coefficients": [0.1], "sites": ["resid"], "site_coefficients": {"mlp": [1.0]}},
        ["architectures.jumprelu.site_coefficients.mlp", "resid"],
    ),
    (
        "per-site coefficients for topk",
        "architectures.topk",
        {"k": [8], "site_coefficients": {"resid": [1.0]}},
        ["architectures.topk.site_coefficients", "'k'"],
    ),
    (
        "per-site coefficient negative",
        "architectures.gated.site_coefficients",
        {"attn": [-1.0]},
        ["architectures.gated.site_coefficients.attn.0"],
    ),
    (
        "rescale-shift without its baseline lambda at one site",
        "architectures.baseline_rescale_shift",
        {"coefficients": [0.35], "sites": ["resid"], "site_coefficients": {"resid": [0.36]}},
        ["architectures.baseline_rescale_shift.site_coefficients", "at resid"],
    ),
    (
        "per-layer coefficients at a layer the sweep skips",
        "architectures.gated.layer_coefficients",
        {3: {"resid": [1.0]}},
        ["architectures.gated.layer_coefficients.3", "[6]"],
    ),
    (
        "per-layer coefficients for topk",
        "architectures.topk",
        {"k": [8], "layer_coefficients": {6: {"resid": [1.0]}}},
        ["architectures.topk.layer_coefficients", "'k'"],
    ),
    (
        "per-layer coefficients at an unknown site",
        "architectures.gated.layer_coefficients",
        {6: {"embed": [1.0]}},
        ["architectures.gated.layer_coefficients.6", "embed"],
    ),
    ("zero shuffle buffer", "activations.shuffle_buffer_tokens", 0, ["activations.shuffle_buffer_tokens"]),
    ("dataset config not a string", "corpus.dataset_config", 3, ["corpus.dataset_config", "string"]),
    ("dataset split not a string", "corpus.split", ["train"], ["corpus.split", "string"]),
]
BAD_CASES = [c for c in BAD_CASES if c[3] is not None]


@pytest.mark.parametrize("key,value,words", [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_config_is_rejected_with_one_error_naming_the_key(key, value, words):
    with pytest.raises(ConfigError) as info:
        load_config(with_change(key, value))
    message = str(info.value)
    assert "\n" not in message.strip(), "one sentence, not a dump"
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


def test_site_restriction_must_name_a_configured_site():
    raw = with_change("sites", ["resid"])
    raw["architectures"] = {"gated": {"coefficients": [1.0]}, "topk": {"k": [8], "sites": ["mlp"]}}
    raw["train"].pop("site_tokens", None)  # the default's per-site settings name attn too
    raw["reference"].pop("site_eval_tokens", None)
    with pytest.raises(ConfigError, match=r"architectures\.topk\.sites"):
        load_config(raw)


def test_headline_layer_must_be_configured():
    with pytest.raises(ConfigError, match="headline_layer"):
        load_config(with_change("headline_layer", 3))


def test_per_site_widths_override_width_and_expansion():
    raw = with_change("architectures.gated", {"coefficients": [1.0], "width": 1000, "widths": {"mlp": 4096}})
    gated = load_config(raw).architectures["gated"]
    assert gated.d_sae(640, "mlp") == 4096
    assert gated.d_sae(640, "resid") == gated.d_sae(640) == 1000


def test_per_site_training_tokens_reach_the_trainer_and_an_architectures_own_overrides_them():
    from saerepro.training import TrainConfig

    raw = with_change("train.site_tokens", {"attn": 4096})
    raw = with_change("architectures.baseline.tokens", 2048, base=raw)
    cfg = load_config(raw)
    runs = {(r.architecture, r.site): r for r in cfg.runs()}
    tokens = {key: TrainConfig.from_run(cfg, run, d_in=640).total_tokens for key, run in runs.items()}
    assert tokens["gated", "attn"] == 4096 and tokens["gated", "mlp"] == cfg.train.tokens != 4096
    assert {t for (arch, _), t in tokens.items() if arch == "baseline"} == {2048}


def test_an_architectures_own_adam_beta1_reaches_its_trainer_only_and_leaves_the_config_hash():
    from saerepro.provenance import config_hash
    from saerepro.training import TrainConfig

    raw = with_change("architectures.baseline.adam_beta1", 0.9)
    cfg = load_config(raw)
    runs = {(r.architecture, r.site): r for r in cfg.runs()}
    assert TrainConfig.from_run(cfg, runs["baseline", "mlp"], d_in=640).adam_betas == (0.9, 0.999)
    assert TrainConfig.from_run(cfg, runs["gated", "mlp"], d_in=640).adam_betas == (0.0, 0.999)
    assert config_hash(cfg) == config_hash(load_config(copy.deepcopy(DEFAULT)))  # a per-SAE setting
    with pytest.raises(ConfigError, match="adam_beta1"):
        load_config(with_change("architectures.baseline.adam_beta1", 1.0))


def test_resampling_and_shuffle_buffer_reach_the_trainer():
    from saerepro.training import TrainConfig

    raw = with_change("architectures.baseline.resample", {"every_steps": 500})
    raw = with_change("activations.shuffle_buffer_tokens", 65536, base=raw)
    raw = with_change("architectures.baseline.widths", {"mlp": 5000}, base=raw)
    cfg = load_config(raw)
    assert cfg.architectures["baseline"].resample.max_count == 4  # schema default filled in
    runs = {(r.architecture, r.site): r for r in cfg.runs()}
    base = TrainConfig.from_run(cfg, runs["baseline", "mlp"], d_in=640)
    assert base.resample and base.resample_every_steps == 500 and base.resample_n_inputs == 819_200
    assert base.shuffle_buffer_tokens == 65536 and base.d_sae == 5000
    gated = TrainConfig.from_run(cfg, runs["gated", "mlp"], d_in=640)
    assert not gated.resample and gated.d_sae == 2560
    assert (base.resample_rewarm_shape, base.resample_rewarm_start_factor, base.resample_rewarm_steps) == (
        "linear",
        0.0,
        None,
    )


def test_gated_resampling_and_the_papers_rewarm_reach_the_trainer():
    from saerepro.provenance import config_hash
    from saerepro.training import TrainConfig

    plain = load_config(with_change("architectures.gated.resample", {"every_steps": 500}))
    raw = with_change("architectures.gated.resample", {"every_steps": 500})
    raw = with_change(
        "train",
        {
            **DEFAULT.get("train", {}),
            "resample_rewarm_shape": "cosine",
            "resample_rewarm_start_factor": 0.1,
            "resample_rewarm_steps": 1000,
        },
        base=raw,
    )
    cfg = load_config(raw)
    runs = {(r.architecture, r.site): r for r in cfg.runs()}
    gated = TrainConfig.from_run(cfg, runs["gated", "mlp"], d_in=640)
    assert gated.resample and gated.resample_every_steps == 500
    assert (gated.resample_rewarm_shape, gated.resample_rewarm_start_factor, gated.resample_rewarm_steps) == (
        "cosine",
        0.1,
        1000,
    )
    assert gated.to_dict()["resample_rewarm_shape"] == "cosine"
    # the default re-warm-up leaves the hash alone; the paper's changes it
    assert config_hash(plain) != config_hash(cfg)
    explicit = with_change(
        "train",
        {
            **DEFAULT.get("train", {}),
            "resample_rewarm_shape": "linear",
            "resample_rewarm_start_factor": 0.0,
            "resample_rewarm_steps": None,
        },
        base=with_change("architectures.gated.resample", {"every_steps": 500}),
    )
    assert config_hash(load_config(explicit)) == config_hash(plain)
    # architectures without resampling do not see the setting
    base = TrainConfig.from_run(cfg, runs["baseline", "mlp"], d_in=640)
    assert "resample_rewarm_shape" not in base.to_dict()


def test_mlp_post_needs_a_known_mlp_width(monkeypatch):
    import dataclasses

    import saerepro.models as models

    spec = dataclasses.replace(models.MODEL_REGISTRY["gemma-3-270m"], d_mlp=None)
    monkeypatch.setitem(models.MODEL_REGISTRY, "gemma-3-270m", spec)
    raw = with_change("sites", ["resid", "mlp_post"])
    raw["architectures"] = {"gated": {"coefficients": [1.0]}}
    with pytest.raises(ConfigError, match=r"config key 'sites'.*mlp_post"):
        load_config(raw)


def test_corpus_tag_names_the_dataset_configuration_only_when_set():
    from saerepro.paths import corpus_tag

    assert corpus_tag(load_config(DEFAULT)) == "wiki-offline-ctx128-n524288-e0.05"  # unchanged
    raw = with_change("corpus.source", "HuggingFaceFW/fineweb")
    raw = with_change("corpus.dataset_config", "sample-10BT", base=raw)
    assert corpus_tag(load_config(raw)).startswith("HuggingFaceFW-fineweb-sample-10BT-ctx128")


def test_site_coefficients_replace_the_grid_at_their_site():
    raw = with_change("architectures.gated.site_coefficients", {"attn": [0.5, 5.0]})
    cfg = load_config(raw)
    gated = {(r.site, r.coefficient) for r in cfg.runs() if r.architecture == "gated"}
    assert {c for s, c in gated if s == "attn"} == {0.5, 5.0}
    assert {c for s, c in gated if s == "resid"} == set(DEFAULT["architectures"]["gated"]["coefficients"])


def test_layer_coefficients_replace_the_grid_at_their_hook_points_only():
    raw = with_change("layers", [3, 6])
    raw = with_change("architectures.gated.layer_coefficients", {3: {"resid": [0.55, 1.1]}}, base=raw)
    cfg = load_config(raw)
    gated = {(r.layer, r.site, r.coefficient) for r in cfg.runs() if r.architecture == "gated"}
    assert {c for lay, s, c in gated if (lay, s) == (3, "resid")} == {0.55, 1.1}
    default = DEFAULT["architectures"]["gated"]
    assert {c for lay, s, c in gated if (lay, s) == (6, "resid")} == set(default["coefficients"])
    assert {c for lay, s, c in gated if (lay, s) == (3, "mlp")} == set(default["site_coefficients"]["mlp"])


def test_architecture_lists_agree_everywhere():
    """config, schema enum, the SAE registry, tables and the plot styles name the same architectures."""
    from saerepro import config as C
    from saerepro.figures import ARCH_STYLES
    from saerepro.sae import ARCHITECTURES as SAE_ARCHITECTURES
    from saerepro.tables import ARCHITECTURES as TABLE_ARCHITECTURES

    enum = C._load_schema()["properties"]["architectures"]["propertyNames"]["enum"]
    assert "gated_strict_aux" in C.ARCHITECTURES
    assert set(enum) == set(C.ARCHITECTURES) == set(SAE_ARCHITECTURES) == set(TABLE_ARCHITECTURES) == set(ARCH_STYLES)


@pytest.mark.parametrize("source", ["mytext.jsnol", "./data/corpus.txt", "~/nowhere/texts", "/no/such/dir"])
def test_a_corpus_path_that_does_not_exist_is_refused_at_validation(source):
    with pytest.raises(ConfigError, match=r"config key 'corpus.source'.*looks like a file or folder"):
        load_config(with_change("corpus.source", source))


def test_hub_ids_and_existing_paths_pass_corpus_validation(tmp_path):
    for source in ("HuggingFaceFW/fineweb", "allenai/c4", "bigcode/the-stack-v1.2", "wiki-offline"):
        assert load_config(with_change("corpus.source", source)).corpus.source == source
    text = tmp_path / "mine.jsonl"
    text.write_text('{"text": "hello"}\n')
    assert load_config(with_change("corpus.source", str(text))).corpus.source == str(text)


@pytest.mark.parametrize(
    "name, content, words",
    [
        ("empty.txt", "", "is empty"),
        ("blank.txt", "\n   \n\n", "holds no text"),
        ("other.jsonl", '{"body": "hello"}\n', "has no field 'text'.*it has: body"),
        ("broken.jsonl", "{not json\n", "is not JSON lines"),
        ("table.csv", "id,body\n1,hello\n", "has no column 'text'.*columns: id, body"),
    ],
)
def test_a_local_corpus_without_usable_text_is_refused_at_validation(tmp_path, name, content, words):
    """Issue 31: an empty .txt used to fail 30 s into prepare_corpus, a missing text field later still."""
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ConfigError, match=rf"config key 'corpus.source': .*{words}"):
        load_config(with_change("corpus.source", str(path)))
