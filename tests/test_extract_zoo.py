"""The trainable zoo is countable like the reference networks (``models.model_workload``)."""

from __future__ import annotations

import math

import jax
import pytest
from flax import nnx

import models
from models._workload import model_workload


def _kernel_params(module) -> dict[str, int]:
    """Every parameter named ``kernel`` (conv/dense weights), by dotted path -> size."""
    state = nnx.state(module, nnx.Param)
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(state)[0]:
        keys = [str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k)))) for k in path]
        if keys and keys[-1] == "value":
            keys = keys[:-1]
        if keys[-1] == "kernel":
            out[".".join(keys)] = math.prod(leaf.shape)
    return out


@pytest.mark.parametrize("name", models.list_models())
def test_zoo_model_counts(name):
    wl = models.model_workload(name)
    assert wl.unrecognized == ()
    assert wl.name == name and wl.batch == 1
    module = nnx.eval_shape(lambda: models.create(name, rngs=nnx.Rngs(0)))
    kernels = _kernel_params(module)
    # every static layer is fed by exactly one kernel, named after its module path
    static = [layer for layer in wl.layers if not layer.dynamic]
    assert sorted(layer.weight_param for layer in static) == sorted(kernels)
    for layer in static:
        assert layer.name == layer.weight_param.rsplit(".", 1)[0]
        assert layer.weights == kernels[layer.weight_param]
    assert wl.total_weights == sum(kernels.values()) <= models.count_params(module)


def test_zoo_attention_is_dynamic_and_named():
    wl = models.model_workload("vit_tiny")
    att = [layer for layer in wl.layers if layer.dynamic]
    assert att and all(layer.category == "attention" for layer in att)
    assert [layer.name for layer in att[:2]] == ["blocks.0.attn.qk", "blocks.0.attn.av"]


def test_zoo_input_shape_and_batch():
    a = model_workload("resnet20")
    b = model_workload("resnet20", batch=3, input_shape=(64, 64, 3))
    sa, sb = a.summary(), b.summary()
    assert sb["conv_macs"] == 3 * 4 * sa["conv_macs"]  # batch 3, 4x the pixels
    assert sb["fc_macs"] == 3 * sa["fc_macs"]  # after global pooling
    assert b.total_weights == a.total_weights
    with pytest.raises(ValueError, match="resnet20"):
        model_workload("resnet20", input_shape=(32, 32))


def test_module_needs_an_input_shape():
    module = nnx.eval_shape(lambda: models.create("lenet5", rngs=nnx.Rngs(0)))
    with pytest.raises(ValueError, match="input_shape is required"):
        model_workload(module)
    wl = model_workload(module, input_shape=(28, 28, 1), batch=2)
    assert wl.total_macs == 2 * model_workload("lenet5").total_macs
