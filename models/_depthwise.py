"""Depthwise 2-D convolution that traces as a grouped conv but trains fast on CPU.

XLA's CPU backend runs grouped convolutions (``feature_group_count = C``) an order of
magnitude slower than the same arithmetic written as ``R*S`` shifted multiply-adds
(``python benchmarks/model_step_time.py --models mobilenet_small`` measures both in one
run). :func:`depthwise_conv` therefore has two implementations with the same numbers:

* its *primal* (what ``jax.make_jaxpr`` shows, and what runs when it is not being
  differentiated) is one ``lax.conv_general_dilated`` with ``feature_group_count = C``,
  so a jaxpr-based workload extractor sees an ordinary depthwise conv;
* under differentiation (training) a ``jax.custom_vjp`` runs the forward pass and
  the backward pass as shifted multiply-adds ("taps"), which XLA fuses well.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx
from jax import lax

from models import _onednn

IMPLS = ("auto", "taps", "onednn", "xla")

__all__ = ["DepthwiseConv", "depthwise_conv", "depthwise_conv_reference", "depthwise_conv_taps"]


def depthwise_conv_reference(x, kernel, stride, padding):
    """The grouped ``lax.conv_general_dilated`` (NHWC input, HWIO kernel ``[R, S, 1, C]``)."""
    return lax.conv_general_dilated(
        x, kernel, (stride, stride), padding,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=x.shape[-1],
    )


def depthwise_conv_taps(x, kernel, stride, padding):
    """The same convolution as ``R*S`` strided slices times per-channel weights, summed.

    Args:
      x: ``[B, H, W, C]``.
      kernel: ``[R, S, 1, C]``.
      stride: int, the same along both axes.
      padding: ``((top, bottom), (left, right))`` explicit pads.

    Returns:
      ``[B, P, Q, C]`` with ``P = (H + top + bottom - R) // stride + 1`` (likewise Q).
    """
    r_, s_ = kernel.shape[0], kernel.shape[1]
    (pt, pb), (pl, pr) = padding
    xp = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    p = (xp.shape[1] - r_) // stride + 1
    q = (xp.shape[2] - s_) // stride + 1
    w = kernel.astype(x.dtype)
    y = None
    for r in range(r_):
        for s in range(s_):
            tap = lax.slice(
                xp, (0, r, s, 0),
                (xp.shape[0], r + (p - 1) * stride + 1, s + (q - 1) * stride + 1, xp.shape[3]),
                (1, stride, stride, 1),
            )
            term = tap * w[r, s, 0].reshape(1, 1, 1, -1)
            y = term if y is None else y + term
    return y


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def depthwise_conv(x, kernel, stride, padding):
    """Depthwise conv (see the module docstring); arguments as :func:`depthwise_conv_taps`."""
    return depthwise_conv_reference(x, kernel, stride, padding)


def _dw_fwd(x, kernel, stride, padding):
    return depthwise_conv_taps(x, kernel, stride, padding), (x, kernel)


def _dw_bwd(stride, padding, res, g):
    x, kernel = res
    _, vjp = jax.vjp(lambda a, b: depthwise_conv_taps(a, b, stride, padding), x, kernel)
    return vjp(g)


depthwise_conv.defvjp(_dw_fwd, _dw_bwd)


class DepthwiseConv(nnx.Module):
    """Depthwise ``k x k`` conv, no bias, SAME padding; parameter ``kernel [k, k, 1, C]``.

    The kernel has the layout (and path suffix ``.kernel``) of an
    ``nnx.Conv(C, C, k, feature_group_count=C)``.

    Args:
      channels: C.
      k: kernel side.
      stride: 1 or 2.
      kernel_init: initializer of the kernel.
      impl: ``"auto"`` (default): ``"onednn"`` when the conv backend resolves to oneDNN
        (``models.set_conv_backend``, the training config's ``conv_backend``), else
        ``"taps"``; ``"onednn"``: :func:`models._onednn.onednn_conv` with
        ``groups = C`` (a grouped conv when traced, oneDNN's depthwise primitives when
        differentiated on CPU); ``"taps"``: :func:`depthwise_conv` (a grouped conv
        when traced, shifted multiply-adds when differentiated); ``"xla"``: the grouped
        conv everywhere (:func:`depthwise_conv_reference`). All four give the same
        numbers up to float rounding and the same traced workload.
    """

    def __init__(
        self, channels, k=3, stride=1, *, kernel_init, dtype, param_dtype, rngs, impl="auto"
    ):
        if impl not in IMPLS:
            raise ValueError(f"DepthwiseConv: impl must be one of {IMPLS}, got {impl!r}")
        self.impl = impl
        self.channels, self.k, self.stride = channels, k, stride
        self.dtype = dtype
        self.kernel = nnx.Param(kernel_init(rngs.params(), (k, k, 1, channels), param_dtype))

    def __call__(self, x: jax.Array) -> jax.Array:
        if x.shape[-1] != self.channels:
            raise ValueError(
                f"DepthwiseConv: expected {self.channels} input channels, got shape {x.shape}"
            )
        dtype = self.dtype or x.dtype
        pads = tuple(lax.padtype_to_pads(x.shape[1:3], (self.k, self.k),
                                         (self.stride, self.stride), "SAME"))
        x, kernel = x.astype(dtype), self.kernel[...].astype(dtype)
        impl = self.impl
        if impl in ("auto", "onednn"):
            ok = _onednn.onednn_supported(x.shape, x.dtype, kernel.shape, kernel.dtype,
                                          (self.stride,) * 2, pads, (1, 1), self.channels)
            if impl == "onednn" and not ok:
                raise ValueError(f"DepthwiseConv: oneDNN does not handle input {x.shape} "
                                 f"{x.dtype} with kernel {kernel.shape} {kernel.dtype}")
            if ok and (impl == "onednn" or _onednn.resolve_conv_backend() == "onednn"):
                if impl == "onednn":
                    _onednn.resolve_conv_backend("onednn")
                return _onednn.onednn_conv(x, kernel, (self.stride,) * 2, pads, (1, 1),
                                           self.channels)
            impl = "taps"
        fn = depthwise_conv if impl == "taps" else depthwise_conv_reference
        return fn(x, kernel, self.stride, pads)
