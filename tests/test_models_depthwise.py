"""The depthwise conv: its fast "taps" forward/backward against the grouped XLA conv."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

from models._depthwise import depthwise_conv, depthwise_conv_reference, depthwise_conv_taps


def _loop_reference(x, w, stride, pads):
    """Slow obvious depthwise conv in numpy: one output element at a time."""
    x, w = np.asarray(x, np.float64), np.asarray(w, np.float64)
    (pt, pb), (pl, pr) = pads
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    r_, s_ = w.shape[:2]
    p = (xp.shape[1] - r_) // stride + 1
    q = (xp.shape[2] - s_) // stride + 1
    out = np.zeros((x.shape[0], p, q, x.shape[3]))
    for b in range(x.shape[0]):
        for i in range(p):
            for j in range(q):
                for c in range(x.shape[3]):
                    win = xp[b, i * stride : i * stride + r_, j * stride : j * stride + s_, c]
                    out[b, i, j, c] = np.sum(win * w[:, :, 0, c])
    return out


@settings(max_examples=12)  # each new shape compiles: keep it small
@given(
    h=st.integers(1, 7),
    w=st.integers(1, 7),
    c=st.integers(1, 3),
    k=st.sampled_from([1, 3, 5]),
    stride=st.integers(1, 2),
    seed=st.integers(0, 2**16),
)
def test_taps_equal_the_grouped_conv_and_a_loop(h, w, c, k, stride, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, h, w, c)).astype(np.float32)
    kern = rng.normal(size=(k, k, 1, c)).astype(np.float32)
    pads = tuple(lax.padtype_to_pads((h, w), (k, k), (stride, stride), "SAME"))
    slow = _loop_reference(x, kern, stride, pads)
    taps = np.asarray(depthwise_conv_taps(jnp.asarray(x), jnp.asarray(kern), stride, pads))
    ref = np.asarray(depthwise_conv_reference(jnp.asarray(x), jnp.asarray(kern), stride, pads))
    want = (2, math.ceil(h / stride), math.ceil(w / stride), c)
    assert taps.shape == ref.shape == slow.shape == want
    np.testing.assert_allclose(taps, slow, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ref, slow, rtol=1e-5, atol=1e-5)


def test_custom_vjp_gradients_match_the_grouped_conv():
    rng = np.random.default_rng(0)
    for stride in (1, 2):
        x = jnp.asarray(rng.normal(size=(3, 9, 8, 5)), jnp.float32)
        kern = jnp.asarray(rng.normal(size=(3, 3, 1, 5)), jnp.float32)
        pads = tuple(lax.padtype_to_pads((9, 8), (3, 3), (stride, stride), "SAME"))
        cot = jnp.asarray(rng.normal(size=depthwise_conv_reference(x, kern, stride, pads).shape))

        def loss(f):
            return lambda a, b: jnp.sum(f(a, b, stride, pads) * cot)

        got = jax.jit(jax.value_and_grad(loss(depthwise_conv), (0, 1)))(x, kern)
        want = jax.value_and_grad(loss(depthwise_conv_reference), (0, 1))(x, kern)
        leaves = zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True)
        for g, w_ in leaves:
            np.testing.assert_allclose(g, w_, rtol=1e-4, atol=1e-4)


def test_jaxpr_shows_a_grouped_conv():
    x = jax.ShapeDtypeStruct((1, 8, 8, 6), jnp.float32)
    k = jax.ShapeDtypeStruct((3, 3, 1, 6), jnp.float32)
    closed = jax.make_jaxpr(lambda a, b: depthwise_conv(a, b, 2, ((0, 1), (0, 1))))(x, k)

    def convs(jaxpr):
        out = []
        for e in jaxpr.eqns:
            if e.primitive.name == "conv_general_dilated":
                out.append(e)
            for p in e.params.values():
                if isinstance(p, jax.extend.core.ClosedJaxpr):
                    out += convs(p.jaxpr)
        return out

    (conv,) = convs(closed.jaxpr)
    assert conv.params["feature_group_count"] == 6
    assert conv.params["window_strides"] == (2, 2)
