"""Shared pieces of the zoo models: the base class and small layer constructors."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

from jax import lax

from models._conv import conv_general_dilated
from models._pool import pool2x2

__all__ = ["ZooModel", "count_params", "lookup", "take_channels"]


# ---- initializers ------------------------------------------------------------------------
# Outside jit, every distinct shape given to jax.random.normal / uniform costs one XLA
# compile of the whole random-bit generator (about 0.3 s on this 2-core CPU, more under
# load), which made building a model take seconds. These initializers draw a flat
# vector whose length is rounded up to a power of two (>= 1024) and keep the first
# prod(shape) values: the values are still i.i.d. with the stated distribution, the
# result is a deterministic function of the key, and all models share a handful of
# compiled generators.


def _flat_draw(key, shape, dtype, kind: str) -> jax.Array:
    n = math.prod(shape)
    padded = max(1024, 1 << (max(n, 1) - 1).bit_length())
    if kind == "normal":
        flat = jax.random.normal(key, (padded,), dtype)
    else:
        flat = jax.random.uniform(key, (padded,), dtype, -1.0, 1.0)
    return flat[:n].reshape(shape)


def _fans(shape) -> tuple[int, int]:
    # conv kernels HWIO / dense kernels (in, out): receptive field x in, receptive field x out
    receptive = math.prod(shape[:-2])
    return shape[-2] * receptive, shape[-1] * receptive


def normal_init(std_fn):
    """Normal(0, std) initializer; ``std_fn(fan_in, fan_out) -> std``."""

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = _fans(shape) if len(shape) >= 2 else (shape[0], shape[0])
        return _flat_draw(key, shape, dtype, "normal") * jnp.asarray(std_fn(fan_in, fan_out), dtype)

    return init


def uniform_init(limit_fn):
    """Uniform(-limit, limit) initializer; ``limit_fn(fan_in, fan_out) -> limit``."""

    def init(key, shape, dtype=jnp.float32):
        fan_in, fan_out = _fans(shape) if len(shape) >= 2 else (shape[0], shape[0])
        return _flat_draw(key, shape, dtype, "uniform") * jnp.asarray(
            limit_fn(fan_in, fan_out), dtype
        )

    return init


# He (Kaiming) normal, fan-in: std = sqrt(2 / fan_in), the usual init of ReLU conv nets
# (untruncated, as PyTorch's kaiming_normal_).
he_normal = normal_init(lambda fi, fo: math.sqrt(2.0 / fi))
# LeCun normal: std = sqrt(1 / fan_in).
lecun_normal = normal_init(lambda fi, fo: math.sqrt(1.0 / fi))
# Glorot (Xavier) uniform: limit = sqrt(6 / (fan_in + fan_out)).
xavier_uniform = uniform_init(lambda fi, fo: math.sqrt(6.0 / (fi + fo)))

BN_MOMENTUM = 0.9  # running-statistics decay (PyTorch's momentum=0.1)
BN_EPSILON = 1e-5


class ZooModel(nnx.Module):
    """Base class of the trainable zoo models.

    Attributes (static):
      input_shape: ``(H, W, C)`` the model was built for.
      num_classes: number of logits.
      dtype: computation dtype (activations, matmul/conv inputs); logits are
        returned as float32 whatever it is.
      param_dtype: dtype of the stored parameters.

    A model is called as ``model(x)`` with ``x`` of shape ``[B, H, W, C]`` (NHWC, any
    float dtype) and returns float32 logits ``[B, num_classes]``. Models are built in
    training mode (nnx's defaults: BatchNorm uses batch statistics, Dropout is
    active); ``model.eval()`` / ``model.train()`` switch.
    """

    def _setup(self, input_shape, num_classes, dtype, param_dtype, rngs) -> dict:
        """Check and store the common constructor arguments; return the keyword
        arguments every layer of the model takes (``dtype, param_dtype, rngs``)."""
        input_shape = tuple(input_shape)
        if len(input_shape) != 3 or not all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in input_shape
        ):
            raise ValueError(
                f"{type(self).__name__}: input_shape must be (H, W, C) positive ints, "
                f"got {input_shape!r}"
            )
        if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
            raise ValueError(
                f"{type(self).__name__}: num_classes must be a positive int, got {num_classes!r}"
            )
        self.input_shape = input_shape
        self.num_classes = num_classes
        self.dtype = jnp.dtype(dtype)
        self.param_dtype = jnp.dtype(param_dtype)
        return dict(dtype=self.dtype, param_dtype=self.param_dtype, rngs=rngs)

    def _check_input(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape:
            raise ValueError(
                f"{type(self).__name__} was built for NHWC input [B, "
                f"{', '.join(map(str, self.input_shape))}], got shape {tuple(x.shape)}; "
                f"create it with input_shape={tuple(x.shape[1:])} for other shapes"
            )
        return x.astype(self.dtype)

    def _stem_blocks_head(self, x: jax.Array, dropout=None) -> jax.Array:
        """The forward pass of a ``stem -> blocks -> global average pool -> [dropout]
        -> head`` network (the model's ``stem``, ``blocks`` and ``head`` attributes);
        float32 logits."""
        x = self.stem(self._check_input(x))
        for block in self.blocks:
            x = block(x)
        x = jnp.mean(x, axis=(1, 2))
        if dropout is not None:
            x = dropout(x)
        return self.head(x).astype(jnp.float32)


def count_params(model: nnx.Module) -> int:
    """Number of trainable scalars: the total size of every ``nnx.Param`` in ``model``.

    BatchNorm running statistics and RNG state are not counted; gate values
    (``GateParam``, a ``Param`` subclass) are, once gates with parameters are set.
    """
    state = nnx.state(model, nnx.Param)
    return int(sum(x.size for x in jax.tree_util.tree_leaves(state)))


def conv(
    cin, cout, k, stride=1, *, padding="SAME", groups=1, use_bias=True, dtype, param_dtype, rngs
) -> nnx.Conv:
    """An NHWC conv ``k x k`` with He-normal kernel init."""
    return nnx.Conv(
        cin,
        cout,
        (k, k),
        (stride, stride),
        padding=padding,
        feature_group_count=groups,
        use_bias=use_bias,
        dtype=dtype,
        param_dtype=param_dtype,
        kernel_init=he_normal,
        rngs=rngs,
        conv_general_dilated=conv_general_dilated,
    )


def linear(din, dout, *, dtype, param_dtype, rngs, init=xavier_uniform) -> nnx.Linear:
    """A dense layer (Xavier-uniform kernel, zero bias)."""
    return nnx.Linear(
        din, dout, dtype=dtype, param_dtype=param_dtype, kernel_init=init, rngs=rngs
    )


def batch_norm(n, *, dtype, param_dtype, rngs) -> nnx.BatchNorm:
    """BatchNorm over the channel (last) axis, momentum 0.9, epsilon 1e-5."""
    return nnx.BatchNorm(
        n,
        momentum=BN_MOMENTUM,
        epsilon=BN_EPSILON,
        dtype=dtype,
        param_dtype=param_dtype,
        rngs=rngs,
    )


def pool2(x: jax.Array, kind: str) -> jax.Array:
    """2x2 pooling with stride 2 (``"avg"`` or ``"max"``), NHWC (see :mod:`models._pool`)."""
    return pool2x2(x, kind)




def lookup(table, name, what: str):
    """``table[name]`` for a registry ``table`` (a mapping from names); an unknown
    ``name`` is a ValueError naming ``what`` and listing the valid names."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown {what} {name!r}; valid: {', '.join(table)}") from None


def take_channels(x: jax.Array, index) -> jax.Array:
    """``x[..., index]`` for a static tuple of in-range channel indices: one gather whose
    indices are a constant, with no index arithmetic (``jnp.take`` normalizes negative
    indices with element-wise ops, which a workload extractor would count as work). A
    gather is data movement: free on the hardware.

    Args:
      x: ``[..., C]``.
      index: a sequence of ints in ``[0, C)``.

    Returns:
      ``[..., len(index)]``.
    """
    idx = jnp.asarray(index, jnp.int32).reshape(-1, 1)
    dnums = lax.GatherDimensionNumbers(offset_dims=tuple(range(x.ndim - 1)),
                                       collapsed_slice_dims=(x.ndim - 1,),
                                       start_index_map=(x.ndim - 1,))
    return lax.gather(x, idx, dnums, x.shape[:-1] + (1,),
                      mode=lax.GatherScatterMode.PROMISE_IN_BOUNDS)
