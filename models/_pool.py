"""2x2 / stride-2 pooling that traces as ``reduce_window`` but trains fast on CPU.

XLA's CPU backend runs the gradients of ``lax.reduce_window`` pooling slowly (average
pooling: a windowed sum over a padded, dilated cotangent; max pooling:
``select_and_scatter_add``), and fuses the forward window sum with a materialized
all-zeros array. Pooling 2x2 windows with stride 2 is the same as reshaping
``[B, H, W, C]`` to ``[B, H/2, 2, W/2, 2, C]`` and reducing the two window axes, whose
gradient is a broadcast. :func:`pool2x2` therefore traces (``jax.make_jaxpr``, and
when not differentiated) as the ``reduce_window`` of ``nnx.avg_pool`` /
``nnx.max_pool`` -- so a jaxpr-based extractor sees a pooling layer -- and runs the
reshape form under a ``jax.custom_vjp`` when differentiated. Both give the same
numbers: the window sum runs in the same order, and the max-pool gradient goes to the
first maximal element of each window in row-major order, as ``select_and_scatter_add``
does.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["pool2x2", "pool2x2_reference", "pool2x2_reshape"]

KINDS = ("avg", "max")


def pool2x2_reference(x: jax.Array, kind: str) -> jax.Array:
    """``nnx.avg_pool`` / ``nnx.max_pool`` with 2x2 windows, stride 2, VALID (NHWC)."""
    f = nnx.avg_pool if kind == "avg" else nnx.max_pool
    return f(x, window_shape=(2, 2), strides=(2, 2))


def _windows(x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    x = x[:, : h // 2 * 2, : w // 2 * 2, :]  # VALID: an odd last row/column is dropped
    return x.reshape(b, h // 2, 2, w // 2, 2, c)


def pool2x2_reshape(x: jax.Array, kind: str) -> jax.Array:
    """The same pooling as a reshape to ``[B, H/2, 2, W/2, 2, C]`` and a reduction."""
    win = _windows(x)
    if kind == "avg":
        return jnp.sum(win, axis=(2, 4)) / jnp.asarray(4, x.dtype)
    return jnp.max(win, axis=(2, 4))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def pool2x2(x: jax.Array, kind: str) -> jax.Array:
    """2x2, stride-2 average (``kind="avg"``) or max (``"max"``) pooling of NHWC ``x``.

    Args:
      x: ``[B, H, W, C]``, floating point.
      kind: ``"avg"`` or ``"max"``.

    Returns:
      ``[B, H // 2, W // 2, C]``.
    """
    return pool2x2_reference(x, kind)


def _pool_fwd(x, kind):
    y = pool2x2_reshape(x, kind)
    return y, (x, y)


def _pool_bwd(kind, res, g):
    x, y = res
    b, h, w, c = x.shape
    if kind == "avg":
        gw = jnp.broadcast_to((g / jnp.asarray(4, g.dtype))[:, :, None, :, None, :],
                              (b, h // 2, 2, w // 2, 2, c))
    else:
        # the first maximal element of each window (row-major) gets the gradient
        hit = _windows(x) == y[:, :, None, :, None, :]
        flat = hit.reshape(b, h // 2, 2, w // 2, 2, c)
        taken = jnp.zeros_like(flat[:, :, 0, :, 0, :])
        masks = []
        for i in range(2):
            for j in range(2):
                m = flat[:, :, i, :, j, :] & ~taken
                taken = taken | m
                masks.append(m)
        first = jnp.stack(masks, axis=-1).reshape(b, h // 2, w // 2, c, 2, 2)
        first = jnp.transpose(first, (0, 1, 4, 2, 5, 3))  # [B, H/2, 2, W/2, 2, C]
        gw = jnp.where(first, g[:, :, None, :, None, :], jnp.zeros((), g.dtype))
    dx = gw.reshape(b, h // 2 * 2, w // 2 * 2, c)
    if dx.shape != x.shape:  # odd H or W: the dropped row/column gets no gradient
        dx = jnp.pad(dx, ((0, 0), (0, h - dx.shape[1]), (0, w - dx.shape[2]), (0, 0)))
    return (dx,)


pool2x2.defvjp(_pool_fwd, _pool_bwd)
