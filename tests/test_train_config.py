"""Config: validation, strict (de)serialization, presets, diffs."""

from __future__ import annotations

import dataclasses
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from codesign.config import (
    PRESETS,
    RUNTIME_FIELDS,
    Config,
    ConfigError,
    config_diff,
    get_preset,
    list_presets,
)


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_round_trip_and_document_command(name):
    cfg = get_preset(name)
    assert Config.from_json(cfg.to_json()) == cfg
    doc = PRESETS[name].__doc__
    assert f"codesign train {name}" in doc, "each preset docstring gives its command"
    assert "Result:" in doc


def test_required_presets_exist():
    assert {"quickstart", "mnist", "cifar10", "vit_mnist"} <= set(list_presets())
    assert get_preset("quickstart").dataset == "mnist-5k"


@given(
    lr=st.floats(1e-6, 10.0),
    epochs=st.integers(1, 500),
    bs=st.integers(1, 4096),
    ls=st.floats(0.0, 0.99),
    opt=st.sampled_from(["sgd", "adamw"]),
    kw=st.dictionaries(st.text("abc", min_size=1, max_size=3), st.integers(0, 9), max_size=3),
)
def test_round_trip_property(lr, epochs, bs, ls, opt, kw):
    cfg = Config(learning_rate=lr, epochs=epochs, batch_size=bs, label_smoothing=ls, optimizer=opt,
                 model_kwargs=kw, data_dir="/x")
    assert Config.from_json(cfg.to_json()) == cfg
    assert Config.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"optimizer": "adam"}, r"'optimizer': unknown 'adam'; valid: sgd, adamw"),
        ({"schedule": "step"}, r"valid: constant, cosine, onecycle"),
        ({"epochs": 0}, r"'epochs': must be >= 1"),
        ({"learning_rate": 0.0}, r"'learning_rate': must be > 0"),
        ({"label_smoothing": 1.0}, r"label_smoothing"),
        ({"momentum": 1.5}, r"momentum"),
        ({"epochs": "3"}, r"'epochs': expected int, got str"),
        ({"augment": 1}, r"'augment': expected bool"),
        ({"batch_size": True}, r"'batch_size': expected int, got bool"),
        ({"learning_rate": float("nan")}, r"must be finite"),
        ({"nesterov": True, "optimizer": "adamw"}, r"nesterov"),
        ({"warmup_epochs": 20.0}, r"warmup_epochs"),
        ({"compute_dtype": "float16"}, r"'compute_dtype': unknown 'float16'; valid: float32, bfloat16"),
    ],
)
def test_invalid_values_name_the_field(kw, match):
    with pytest.raises(ConfigError, match=match):
        Config(**kw)


def test_from_dict_is_strict():
    with pytest.raises(ConfigError, match=r"x.json: unknown config key\(s\) 'lr'; valid: dataset,"):
        Config.from_dict({"lr": 0.1}, where="x.json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Config.from_json("{", where="x.json")
    assert Config.from_dict({"learning_rate": 1}).learning_rate == 1.0  # JSON int for a float field


def test_config_diff_ignores_runtime_fields():
    a = Config()
    b = a.replace(data_dir="/elsewhere", progress=False, keep_checkpoints=7, seed=3)
    assert config_diff(a, b) == {"seed": (0, 3)}
    assert "seed" not in RUNTIME_FIELDS
    assert set(config_diff(a, b, ignore=frozenset())) == {"data_dir", "progress", "keep_checkpoints", "seed"}


def test_every_field_has_help():
    for f in dataclasses.fields(Config):
        assert f.metadata.get("help"), f.name
    json.dumps(Config().to_dict())
