"""The schema and the config dataclasses both state defaults: they must agree, key for key.

``workflow/schemas/config.schema.yaml`` fills defaults before validation (Snakemake users read it
as the reference) and :mod:`saerepro.config`'s dataclasses carry defaults for Python callers. Both
stay; this test keeps them in step, so a default changed in one place only fails here.
"""

from __future__ import annotations

import dataclasses
import typing

import pytest
import yaml

from saerepro import architectures, tables
from saerepro import config as config_module
from saerepro.config import SCHEMA_PATH, ArchitectureConfig, Config, ResampleConfig
from saerepro.sae import ARCHITECTURES
from saerepro.sites import ALL_SITES

SCHEMA = config_module._load_schema()  # the YAML, architecture names filled in from the specs


def _defaults(cls: type) -> dict[str, object]:
    out: dict[str, object] = {}
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            out[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            out[f.name] = f.default_factory()
    return out


def _section_classes() -> dict[str, type]:
    """Top-level schema key -> the dataclass of that section (from Config's type hints)."""
    hints = typing.get_type_hints(Config, vars(config_module))
    return {name: hint for name, hint in hints.items() if dataclasses.is_dataclass(hint)}


def _schema_defaults() -> list[tuple[str, object, type, str]]:
    """(dotted key, schema default, dataclass, field) for every default the schema states."""
    found = []
    sections = _section_classes()
    for key, prop in SCHEMA["properties"].items():
        if key in sections:
            for sub, sub_prop in prop.get("properties", {}).items():
                if "default" in sub_prop:
                    found.append((f"{key}.{sub}", sub_prop["default"], sections[key], sub))
        elif "default" in prop:
            found.append((key, prop["default"], Config, key))
    resample = SCHEMA["properties"]["architectures"]["additionalProperties"]["properties"]["resample"]
    for sub, sub_prop in resample["properties"].items():
        if "default" in sub_prop:
            found.append((f"architectures.*.resample.{sub}", sub_prop["default"], ResampleConfig, sub))
    return found


def _same(schema_value: object, dataclass_value: object) -> bool:
    if isinstance(schema_value, list):
        return tuple(schema_value) == tuple(dataclass_value)  # type: ignore[arg-type]
    return (schema_value == dataclass_value and type(schema_value) is type(dataclass_value)) or (
        isinstance(schema_value, (int, float))
        and not isinstance(schema_value, bool)
        and isinstance(dataclass_value, (int, float))
        and float(schema_value) == float(dataclass_value)
    )


def test_the_schema_states_its_defaults():
    assert len(_schema_defaults()) >= 26


@pytest.mark.parametrize("key, default, cls, name", _schema_defaults(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_schema_default_equals_the_dataclass_default(key, default, cls, name):
    defaults = _defaults(cls)
    assert name in defaults, f"schema default {key} has no default in {cls.__name__}.{name}"
    assert _same(default, defaults[name]), f"{key}: schema {default!r} vs {cls.__name__}.{name} {defaults[name]!r}"


def test_every_dataclass_default_of_a_section_is_in_the_schema():
    """The other direction: a section default the schema does not state would be invisible to
    Snakemake users reading the schema."""
    stated = {key for key, *_ in _schema_defaults()}
    for section, cls in _section_classes().items():
        for name in _defaults(cls):
            assert f"{section}.{name}" in stated, f"{cls.__name__}.{name} has a default the schema does not state"
    for name in _defaults(ResampleConfig):
        assert f"architectures.*.resample.{name}" in stated


def test_the_schema_lists_the_registry_architectures_and_sites():
    arch = SCHEMA["properties"]["architectures"]
    assert tuple(arch["propertyNames"]["enum"]) == tuple(ARCHITECTURES)
    assert yaml.safe_load(SCHEMA_PATH.read_text())["properties"]["architectures"]["propertyNames"]["enum"] == []
    # one list: saerepro.architectures, which the registry checks its classes against
    assert config_module.ARCHITECTURES is tables.ARCHITECTURES is architectures.ARCHITECTURES
    assert tuple(config_module.ARCHITECTURES) == tuple(ARCHITECTURES)
    site_enum = arch["additionalProperties"]["properties"]["sites"]["items"]["enum"]
    assert tuple(site_enum) == tuple(ALL_SITES)
    assert {f.name for f in dataclasses.fields(ArchitectureConfig)} >= {"name", "grid", "expansion"}


def test_config_default_width_is_the_trainers():
    """One default-width rule: a config entry without width or expansion gets default_width."""
    from saerepro.training import default_width

    for name in ARCHITECTURES:
        assert architectures.default_expansion(name) * 640 == default_width(name, 640)
    assert config_module.default_expansion is architectures.default_expansion
