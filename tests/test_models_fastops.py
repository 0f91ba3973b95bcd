"""models._conv / models._pool: the training-speed versions of conv and 2x2 pooling give
the same values and gradients as the plain JAX/Flax operations they replace."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from models._conv import conv2d, conv_general_dilated, materialize
from models._pool import pool2x2, pool2x2_reference

NHWC = ("NHWC", "HWIO", "NHWC")


def _ref_conv(x, k, strides, pads):
    return lax.conv_general_dilated(x, k, strides, pads, dimension_numbers=NHWC)


CASES = [  # (N, H, W, C, R, S, M, strides, padding)
    (2, 8, 8, 3, 3, 3, 4, (1, 1), ((1, 1), (1, 1))),
    (3, 9, 7, 2, 3, 3, 5, (2, 2), ((0, 1), (1, 1))),
    (1, 6, 6, 4, 1, 1, 3, (2, 2), ((0, 0), (0, 0))),
    (2, 7, 5, 1, 5, 3, 2, (1, 2), ((2, 2), (0, 0))),
]


@pytest.mark.parametrize("case", CASES)
def test_conv2d_value_and_gradients_match_lax(case):
    n, h, w, c, r, s, m, strides, pads = case
    kx, kk, kg = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(kx, (n, h, w, c))
    k = jax.random.normal(kk, (r, s, c, m))
    y_ref = _ref_conv(x, k, strides, pads)
    y = conv2d(x, k, strides, pads)
    np.testing.assert_array_equal(np.asarray(y), np.asarray(y_ref))
    g = jax.random.normal(kg, y.shape)

    def loss(f):
        # tanh: the conv input is the output of element-wise work, the case that
        # materialize() is for
        return lambda a, b: jnp.sum(f(jnp.tanh(a), b) * g)

    dref = jax.grad(loss(lambda a, b: _ref_conv(a, b, strides, pads)), argnums=(0, 1))(x, k)
    dour = jax.jit(jax.grad(loss(lambda a, b: conv2d(a, b, strides, pads)), argnums=(0, 1)))(x, k)
    for a, b in zip(dour, dref, strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-5)


def test_conv_general_dilated_fast_path_and_fallback():
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
    k = jax.random.normal(jax.random.key(2), (3, 3, 4, 6))
    # string padding on the fast path
    for pad in ("SAME", "VALID"):
        got = conv_general_dilated(x, k, (2, 2), pad, dimension_numbers=NHWC)
        want = lax.conv_general_dilated(x, k, (2, 2), pad, dimension_numbers=NHWC)
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    # grouped and dilated convolutions go to lax unchanged
    kg = jax.random.normal(jax.random.key(3), (3, 3, 1, 4))
    got = conv_general_dilated(x, kg, (1, 1), "SAME", dimension_numbers=NHWC, feature_group_count=4)
    want = lax.conv_general_dilated(x, kg, (1, 1), "SAME", dimension_numbers=NHWC,
                                    feature_group_count=4)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    got = conv_general_dilated(x, k, (1, 1), "SAME", rhs_dilation=(2, 2), dimension_numbers=NHWC)
    want = lax.conv_general_dilated(x, k, (1, 1), "SAME", rhs_dilation=(2, 2),
                                    dimension_numbers=NHWC)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))


def test_conv_traces_as_one_conv_primitive():
    x = jnp.zeros((1, 8, 8, 3))
    k = jnp.zeros((3, 3, 3, 4))
    text = str(jax.make_jaxpr(lambda a, b: conv2d(a, b, (1, 1), ((1, 1), (1, 1))))(x, k))
    assert text.count("conv_general_dilated") == 1


def test_materialize_is_identity_and_propagates_nan():
    x = jnp.arange(12.0).reshape(3, 4)
    np.testing.assert_array_equal(np.asarray(jax.jit(materialize)(x)), np.asarray(x))
    y = jax.jit(materialize)(x.at[0, 0].set(jnp.nan))
    assert bool(jnp.all(jnp.isnan(y)))
    y = jax.jit(materialize)(x.at[1, 2].set(jnp.nan))
    assert bool(jnp.isnan(y[1, 2])) and int(jnp.sum(jnp.isnan(y))) == 1


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("shape", [(2, 8, 8, 3), (1, 7, 5, 2)])
def test_pool2x2_value_and_gradient_match_flax(kind, shape):
    # small integers make ties in max-pool windows, where the gradient must go to the
    # first maximal element as select_and_scatter_add sends it
    x = jax.random.randint(jax.random.key(4), shape, 0, 3).astype(jnp.float32)
    y = pool2x2(x, kind)
    y_ref = pool2x2_reference(x, kind)
    np.testing.assert_allclose(np.asarray(y), np.asarray(y_ref), rtol=1e-6)
    g = jax.random.normal(jax.random.key(5), y.shape)
    d = jax.jit(jax.grad(lambda a: jnp.sum(pool2x2(a, kind) * g)))(x)
    d_ref = jax.grad(lambda a: jnp.sum(pool2x2_reference(a, kind) * g))(x)
    np.testing.assert_allclose(np.asarray(d), np.asarray(d_ref), rtol=1e-6, atol=1e-7)


def test_pool_reference_is_flax():
    x = jax.random.normal(jax.random.key(6), (1, 4, 4, 2))
    np.testing.assert_array_equal(
        np.asarray(pool2x2_reference(x, "max")),
        np.asarray(nnx.max_pool(x, window_shape=(2, 2), strides=(2, 2))))
