"""Tiny overfitting runs: each model can drive the loss on 32 random images to ~0."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import models


@pytest.mark.parametrize(
    "name, lr, steps",
    [
        ("mnist_cnn", 0.02, 60),
        ("vit_tiny", 0.05, 60),
        ("resnet20", 0.1, 40),
    ],
)
def test_overfits_32_random_images(name, lr, steps):
    shape = models.get_info(name).default_input_shape
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(32,) + shape), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, size=32), jnp.int32)
    model = models.create(name, rngs=nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.sgd(lr, momentum=0.9), wrt=nnx.Param)

    def loss_fn(m):
        return optax.softmax_cross_entropy_with_integer_labels(m(x), y).mean()

    @nnx.jit
    def step(m, o):
        loss, grads = nnx.value_and_grad(loss_fn)(m)
        o.update(m, grads)
        return loss

    losses = [float(step(model, opt)) for _ in range(steps)]
    assert np.all(np.isfinite(losses))
    assert losses[0] > 1.5  # about log(10) at the start: random labels
    model.eval()  # BatchNorm running statistics (momentum 0.9: needs ~40 steps), no dropout
    final = float(nnx.jit(loss_fn)(model))
    assert final < 0.05, (losses[::5], final)
