"""Dense 2-D convolution whose backward pass trains fast on XLA's CPU backend.

The weight gradient of a convolution is itself a convolution in which the batch axis
is contracted; XLA computes it from the input activation laid out ``[C, H, W, N]``
(batch last), so it inserts a transpose of the ``[N, H, W, C]`` activation. When that
activation is the output of cheap element-wise work (BatchNorm, ReLU, a residual
addition), XLA's CPU fusion recomputes that work *inside* the transpose, reading
every producer in the transposed, cache-hostile order: in ResNet-20 those transposes
took more time than all the convolutions together
(``python benchmarks/train_throughput.py`` measures the effect; see its docstring).

:func:`conv2d` computes exactly the same convolution (its primal -- what
``jax.make_jaxpr`` shows, and what runs when it is not differentiated -- is one
``lax.conv_general_dilated``, so a jaxpr-based workload extractor sees an ordinary
conv) under a ``jax.custom_vjp`` whose backward pass is JAX's own transpose rules
(input gradient: the transposed convolution; weight gradient: the convolution over
the batch), with one difference: on CPU the saved input activation is first passed
through :func:`materialize`, a fusion boundary, so the transpose reads one stored
array instead of recomputing its producers. The gradients are the ones autodiff of
``lax.conv_general_dilated`` gives, computed by the same XLA operations.

:func:`conv_general_dilated`, the drop-in that the zoo's ``nnx.Conv`` layers use, picks
the implementation when traced: with the conv backend (``models.set_conv_backend``,
the training config's ``conv_backend``) resolving to ``"onednn"`` it runs
:func:`models._onednn.onednn_conv` (oneDNN through ``jax.ffi``; also grouped and
dilated convolutions), otherwise :func:`conv2d` for dense convolutions and
``lax.conv_general_dilated`` for the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from jax import lax

from models import _onednn

__all__ = ["conv2d", "conv_general_dilated", "materialize"]

_NHWC = ("NHWC", "HWIO", "NHWC")


def _conv(x, w, strides, pads):
    return lax.conv_general_dilated(x, w, strides, pads, dimension_numbers=_NHWC)


def _materialize_cpu(x: jax.Array) -> jax.Array:
    # A conditional is a fusion boundary for XLA (``lax.optimization_barrier`` is
    # removed before fusion on CPU). The predicate is true unless the first element
    # is NaN, in which case the result is all-NaN (non-finite values still propagate).
    first = lax.slice(x.reshape(-1), (0,), (1,))[0]
    return lax.cond(first == first, lambda v: v, lambda v: jnp.full_like(v, jnp.nan), x)


def materialize(x: jax.Array) -> jax.Array:
    """Returns ``x`` unchanged, as a stored array that XLA:CPU will not re-fuse.

    On CPU this is a ``lax.cond`` whose taken branch is the identity (an all-NaN
    array is returned only when ``x``'s first element is NaN); on other platforms it
    is the identity itself.

    Args:
      x: a floating-point array.

    Returns:
      ``x`` (same shape, dtype and values).
    """
    return lax.platform_dependent(x, cpu=_materialize_cpu, default=lambda v: v)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
           padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    """2-D convolution, NHWC input, HWIO kernel, explicit padding (see the module docstring).

    Args:
      x: ``[N, H, W, C]``.
      kernel: ``[R, S, C, M]``.
      strides: ``(stride_h, stride_w)``.
      padding: ``((top, bottom), (left, right))``.

    Returns:
      ``[N, P, Q, M]``, equal to ``lax.conv_general_dilated(x, kernel, strides, padding,
      dimension_numbers=("NHWC", "HWIO", "NHWC"))``.
    """
    return _conv(x, kernel, strides, padding)


def _conv2d_fwd(x, kernel, strides, padding):
    return _conv(x, kernel, strides, padding), (x, kernel)


def _conv2d_bwd(strides, padding, res, g):
    x, kernel = res
    x_t = jax.ShapeDtypeStruct(x.shape, x.dtype)
    k_t = jax.ShapeDtypeStruct(kernel.shape, kernel.dtype)
    (dx,) = jax.linear_transpose(lambda a: _conv(a, kernel, strides, padding), x_t)(g)
    xm = materialize(x)
    (dk,) = jax.linear_transpose(lambda b: _conv(xm, b, strides, padding), k_t)(g)
    return dx, dk


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def _is_nhwc(lhs, rhs, dimension_numbers) -> bool:
    want = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    try:
        got = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    except (TypeError, ValueError):
        return False
    return got == want


def conv_general_dilated(
    lhs: jax.Array,
    rhs: jax.Array,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers=None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision=None,
    preferred_element_type=None,
    out_sharding=None,
) -> jax.Array:
    """Drop-in for ``lax.conv_general_dilated`` that uses a faster training path when it can.

    With the conv backend resolving to ``"onednn"`` (see ``models/_onednn.py``), every
    2-D NHWC/HWIO float32 or bfloat16 convolution with default precision and output type, no
    input dilation, no batch groups and no output sharding runs on
    :func:`models._onednn.onednn_conv` (any stride, padding, kernel dilation, feature
    groups). Otherwise dense convolutions of that kind (no dilation, no groups, any
    float dtype) use :func:`conv2d`, and anything else goes to
    ``lax.conv_general_dilated`` unchanged. Pass it as ``nnx.Conv(...,
    conv_general_dilated=conv_general_dilated)``.

    Args and Returns: as ``jax.lax.conv_general_dilated``.
    """
    plain = (
        lhs.ndim == 4 and rhs.ndim == 4 and batch_group_count == 1
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and precision is None and preferred_element_type is None and out_sharding is None
        and jnp.issubdtype(lhs.dtype, jnp.floating) and lhs.dtype == rhs.dtype
        and _is_nhwc(lhs, rhs, dimension_numbers)
    )
    dense = plain and feature_group_count == 1 and all(d == 1 for d in (rhs_dilation or (1, 1)))
    if plain:
        strides = tuple(int(s) for s in window_strides)
        dil = tuple(int(d) for d in (rhs_dilation or (1, 1)))
        if isinstance(padding, str):
            eff = tuple((k - 1) * d + 1 for k, d in zip(rhs.shape[:2], dil, strict=True))
            pads = lax.padtype_to_pads(lhs.shape[1:3], eff, strides, padding)
        else:
            pads = padding
        pads = tuple((int(lo), int(hi)) for lo, hi in pads)
        if _onednn.onednn_supported(lhs.shape, lhs.dtype, rhs.shape, rhs.dtype, strides, pads,
                                    dil, feature_group_count) \
                and _onednn.resolve_conv_backend() == "onednn":
            return _onednn.onednn_conv(lhs, rhs, strides, pads, dil, int(feature_group_count))
        if dense:
            return conv2d(lhs, rhs, strides, pads)
    kw = {}
    if out_sharding is not None:
        kw["out_sharding"] = out_sharding
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type, **kw,
    )
