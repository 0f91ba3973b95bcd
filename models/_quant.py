"""Fake quantization for quantization-aware training (QAT) of any Flax NNX model.

:func:`quantize` makes every ``nnx.Conv`` and ``nnx.Linear`` of a model (in place)
compute with its **weights** rounded to ``weight_bits`` and its **inputs** rounded to
``act_bits``, in float32 ("fake" quantization: the values a ``bits``-wide integer
datapath would see, times their scale). The gradient passes through the rounding as if
it were the identity (the straight-through estimator, STE), so the network learns
weights that survive the rounding. The model's parameters stay float32: the rounding
happens in the forward pass, at the layer's ``conv_general_dilated`` / ``dot_general``
(the hooks ``nnx.Conv`` and ``nnx.Linear`` call), so nothing else changes (checkpoints,
gates, pruning, the oneDNN convolution path).

Schemes (the usual ones for 4 to 8 bits; stated so that the cost model's bits mean
something definite):

* **weights**: symmetric, per output channel: ``s = max|w| / (2**(b-1) - 1)`` over
  every axis but the last (the kernel's output channels), ``q = clip(round(w / s),
  -(2**(b-1) - 1), 2**(b-1) - 1) * s``;
* **inputs (activations)**: per example (no statistic crosses examples, so an image's
  logits do not depend on its batch), dynamic: ``s = max|x| / L`` over the example,
  with ``L = 2**b - 1`` levels when the example is non-negative (after a ReLU: the
  sign bit is not needed) and ``2**(b-1) - 1`` (symmetric) otherwise. Computing one
  maximum per example is element-wise work the hardware figures do not count.

The scales are constants for the gradient (``stop_gradient``): the STE passes
``d loss / d q`` to the float value unchanged where it lies inside the clipping range
(the range is the value's own maximum, so nothing is clipped).

What is not quantized: attention's ``Q K^T`` and ``A V`` (two activations, no weights),
element-wise work (ReLU, pooling, residual additions, normalization) and the depthwise
convolutions of :class:`models.DepthwiseConv` (:func:`quantize` raises on a model that
has them, rather than leave them in float silently).

The workload extractor (:func:`models.model_workload`) traces a quantized model inside
:func:`quant_bypassed`: the rounding is not arithmetic the accelerator does (it
computes on integers), so it is not counted as element-wise work; the bit widths reach
the cost model as its ``w_bits`` / ``i_bits`` knobs instead
(:class:`codesign.objective.HardwareObjective` reads them from the model with
:func:`quantized_layers`).
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["MIN_BITS", "MAX_BITS", "fake_quant_weight", "fake_quant_input", "quantize",
           "quantized_layers", "quant_bypassed"]

MIN_BITS = 2
"""Narrowest width :func:`quantize` accepts (a 1-bit symmetric code has no nonzero level)."""
MAX_BITS = 16
"""Widest width :func:`quantize` accepts (the presets' words are 16 bits)."""

_BYPASS: contextvars.ContextVar[bool] = contextvars.ContextVar("quant_bypassed", default=False)


@contextlib.contextmanager
def quant_bypassed():
    """Within this context quantized layers compute in float (trace-time only): used
    when extracting a quantized model's workload, where rounding is not counted."""
    token = _BYPASS.set(True)
    try:
        yield
    finally:
        _BYPASS.reset(token)


def _ste(x: jax.Array, q: jax.Array) -> jax.Array:
    """``q`` forward, identity backward."""
    return x + jax.lax.stop_gradient(q - x)


def fake_quant_weight(w: jax.Array, bits: int) -> jax.Array:
    """``w`` rounded to ``bits`` (symmetric, one scale per output channel = last axis),
    with a straight-through gradient. Shape and dtype of ``w``."""
    levels = float(2 ** (bits - 1) - 1)
    axes = tuple(range(w.ndim - 1))
    m = jax.lax.stop_gradient(jnp.max(jnp.abs(w), axis=axes, keepdims=True))
    s = jnp.where(m > 0, m / levels, 1.0)
    q = jnp.clip(jnp.round(w / s), -levels, levels) * s
    return _ste(w, q.astype(w.dtype))


def fake_quant_input(x: jax.Array, bits: int) -> jax.Array:
    """``x`` rounded to ``bits`` per example (axis 0 is the batch): unsigned when the
    example is non-negative, symmetric otherwise; straight-through gradient."""
    axes = tuple(range(1, x.ndim))
    xs = jax.lax.stop_gradient(x)
    m = jnp.max(jnp.abs(xs), axis=axes, keepdims=True)
    unsigned = jnp.min(xs, axis=axes, keepdims=True) >= 0
    levels = jnp.where(unsigned, float(2 ** bits - 1), float(2 ** (bits - 1) - 1))
    s = jnp.where(m > 0, m / levels, 1.0)
    q = jnp.clip(jnp.round(x / s), jnp.where(unsigned, 0.0, -levels), levels) * s
    return _ste(x, q.astype(x.dtype))


@dataclasses.dataclass(frozen=True)
class _Quantized:
    """A layer's ``conv_general_dilated`` / ``dot_general`` with its operands rounded.

    ``fn(lhs, rhs, *args, **kwargs)``: ``lhs`` is the input, ``rhs`` the kernel (the
    call convention of ``nnx.Conv`` and ``nnx.Linear``). A frozen dataclass, so that
    it is a hashable static attribute of the module (the graph definition compares it).
    """

    fn: Any
    weight_bits: int
    act_bits: int

    def __call__(self, lhs, rhs, *args, **kwargs):
        if not _BYPASS.get():
            if self.act_bits:
                lhs = fake_quant_input(lhs, self.act_bits)
            if self.weight_bits:
                rhs = fake_quant_weight(rhs, self.weight_bits)
        return self.fn(lhs, rhs, *args, **kwargs)


def _hook_name(m: nnx.Module) -> str | None:
    if isinstance(m, nnx.Conv):
        return "conv_general_dilated"
    if isinstance(m, nnx.Linear):
        return "dot_general"
    return None


def _check_bits(name: str, bits: Any) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not (
            bits == 0 or MIN_BITS <= bits <= MAX_BITS):
        raise ValueError(f"quantize: {name} = {bits!r}; valid: 0 (float, not quantized) or "
                         f"an int in [{MIN_BITS}, {MAX_BITS}]")
    return bits


def quantize(model: nnx.Module, *, weight_bits: int = 0, act_bits: int = 0) -> list[str]:
    """Make ``model``'s convolutions and dense layers quantization-aware, in place.

    Args:
      model: any Flax NNX module (zoo or not).
      weight_bits: bits of every conv / dense kernel (0: float).
      act_bits: bits of every conv / dense input (0: float).

    Returns:
      The dotted paths of the quantized layers (the names their layers have in
      :func:`models.model_workload`).

    Raises:
      ValueError: a width outside ``{0} U [2, 16]``; a model with no conv / dense
        layer; a model with depthwise convolutions (not supported); a layer quantized
        already at other widths (layers quantized at the same widths are left as they
        are, so quantizing twice, e.g. after :func:`codesign.prune.prune_model`, is
        harmless).
    """
    from models._depthwise import DepthwiseConv

    wb, ab = _check_bits("weight_bits", weight_bits), _check_bits("act_bits", act_bits)
    mods = [(".".join(map(str, p)), m) for p, m in nnx.iter_modules(model)]
    dw = [p for p, m in mods if isinstance(m, DepthwiseConv)]
    if dw and (wb or ab):
        raise ValueError(f"quantize: {type(model).__name__} has depthwise convolutions "
                         f"({', '.join(dw[:3])}{', ...' if len(dw) > 3 else ''}), which "
                         "quantization-aware training does not support yet; valid: models "
                         "of nnx.Conv / nnx.Linear layers")
    done = []
    for path, m in mods:
        hook = _hook_name(m)
        if hook is None:
            continue
        fn = getattr(m, hook)
        if isinstance(fn, _Quantized):
            if (fn.weight_bits, fn.act_bits) != (wb, ab):
                raise ValueError(f"quantize: layer {path!r} is quantized already at "
                                 f"{fn.weight_bits} / {fn.act_bits} bits, not {wb} / {ab}; "
                                 "quantize a freshly built model")
            done.append(path)  # idempotent: e.g. after pruning copied some layers
            continue
        if wb or ab:
            setattr(m, hook, _Quantized(fn, wb, ab))
        done.append(path)
    if not done:
        raise ValueError(f"quantize: {type(model).__name__} has no nnx.Conv or nnx.Linear "
                         "layer to quantize")
    return done if (wb or ab) else []


def quantized_layers(model: nnx.Module) -> dict[str, tuple[int, int]]:
    """``{layer path: (weight_bits, act_bits)}`` of the layers :func:`quantize` made
    quantization-aware (empty for a float model)."""
    out = {}
    for p, m in nnx.iter_modules(model):
        hook = _hook_name(m)
        fn = getattr(m, hook, None) if hook else None
        if isinstance(fn, _Quantized):
            out[".".join(map(str, p))] = (fn.weight_bits, fn.act_bits)
    return out
