"""Gradients of every zoo model: finite, and reaching every parameter."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models

NAMES = models.list_models()


def _batch(name, n=2, seed=1):
    shape = models.get_info(name).default_input_shape
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n,) + shape), jnp.float32)


@pytest.mark.parametrize("name", NAMES)
def test_gradient_finite_and_reaches_every_parameter(name):
    m = models.create(name, rngs=nnx.Rngs(0))
    x = _batch(name)
    onehot = jnp.asarray(np.eye(10, dtype=np.float32)[[3, 7]])

    def loss_fn(model):
        return -jnp.mean(jnp.sum(jax.nn.log_softmax(model(x)) * onehot, axis=-1))

    # one jitted program (compiling it is cheaper than running the ops one by one)
    loss, grads = nnx.jit(nnx.value_and_grad(loss_fn))(m)
    assert np.isfinite(float(loss))
    flat = nnx.to_flat_state(grads)
    assert len(flat) == len(nnx.to_flat_state(nnx.state(m, nnx.Param)))
    for path, g in flat:
        g = np.asarray(g[...])
        assert np.all(np.isfinite(g)), path
        assert np.any(g != 0), f"no gradient reaches {path}"
