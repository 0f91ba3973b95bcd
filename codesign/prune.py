"""Physical pruning: a gated network becomes a smaller dense network.

After training with gates (:class:`models.HardConcreteGate` in inference mode, or fixed
:class:`models.ScaleGate` masks), :func:`prune_model` removes every unit (channel, MLP
hidden unit, attention head) whose inference-mode gate value is 0 and returns a
smaller dense NNX model that computes the same logits, plus a :class:`PruneSpec`
saying which units were kept::

    pruned, spec = prune_model(gated_model)   # model.eval() semantics
    save_pruned(pruned, spec, "runs/mnist_cnn-pruned")             # pruned.json + params.npz
    pruned = load_pruned("runs/mnist_cnn-pruned")                   # no original needed

What is removed, per gate site (:func:`models.gate_sites`) with kept units ``K``:

* the producing layer's outputs not in ``K`` (conv / dense kernel columns and bias;
  the BatchNorm that follows it: scale, bias, running mean and variance); for a head
  gate, the heads' columns of ``q``, ``k``, ``v`` and ``num_heads`` shrinks;
* each consumer's inputs not in ``K`` (conv / dense kernel rows; a dense consumer after
  a flatten loses the rows of the removed channel at every spatial position; the
  output projection ``o`` loses the removed heads' rows).

Gate values of kept units (in (0, 1] for the learned gates) are folded into weights,
so the pruned model has no gate multiplies left:

* into the producer's BatchNorm scale and bias when there is one (the gate follows
  BN -> ReLU or BN alone, and ``relu(g z) = g relu(z)`` for ``g >= 0``): vgg_small,
  resnet20;
* into the producer's kernel and bias for gates placed with :func:`models.add_gates`
  (they act on the layer's raw output, so this is exact whatever follows);
* otherwise into the consumers' input rows (exact: the path from gate to consumer is
  linear or positively homogeneous: ReLU, average / max pooling, flatten, dropout in
  inference mode): lenet5, mnist_cnn, vit_tiny's MLP units and heads.

Residual streams (``resnet20``): a channel of the residual stream cannot be removed
(every block adds into it and the option-A shortcuts pass it on), but the layers
writing into the stream can compute only their kept channels. We chose to compute
the kept channels and scatter them into the stream rather than keep the closed
channels dense, because that is what the cost model counts
(:meth:`codesign.objective.HardwareObjective.pruned_workload` shrinks ``M`` of
``conv2`` / ``proj`` / the stem): ``blocks.i.gate2`` and ``proj_gate`` become a
:class:`StreamGate` (an identity gate followed by a scatter of its ``k`` channels
into the stream's ``n``; a scatter is free on the hardware: data movement, no
arithmetic), the stem writes its kept channels into a zero stream the same way, and
``blocks.0.conv1`` (the stem gate's consumer) gathers them back (:class:`GatherConv`).
The stream's residual additions and ReLUs stay full width, while
:meth:`~codesign.objective.HardwareObjective.pruned_workload` scales each layer's
element-wise work with its kept outputs, so the objective's exact figure is 0.05% below
the pruned network's own (measured on random gates; MACs and data movement agree).

With ``ResNet20(stream_gates=True)`` the stream itself is gated, one gate per stage
(``streams.s``), and pruning removes closed stream channels everywhere: the outputs of
the stem or of every conv2 (and projection) of the stage, with their BatchNorms (the
gate's values fold into each), and the inputs of every layer reading the stream (the
conv1s, the next stage's first conv1 and projection, the head). Where a stage begins
with an option-A shortcut, the pruned block gathers the shortcut's kept channels from
the previous stage's (``BasicBlock.short_index``) and scales them by the folded gate
values (``short_scale``, 0 for a new channel the old stream lacks; free on the
hardware, like a gate). Here the pruned network's workload is the objective's, element
for element.

Every site keeps at least one unit (the one with the largest gate value) so the
network stays connected; if its value is 0 the folded weights make it output exactly
zero, as in the gated model.

Supported: the zoo's ``mnist_cnn``, ``lenet5``, ``vit_tiny`` (heads and MLP units),
``resnet20`` (both shortcut options), ``vgg_small``, and any model gated with
:func:`models.add_gates` (nnx.Conv / nnx.Linear producers and consumers).
Not supported (a clear error): ``mobilenet_small``: a gate whose consumer is a
depthwise conv (removing an input channel of a depthwise conv removes its group, so
the two gates of a separable block interact; see :func:`prune_model`).

Saved form (:func:`save_pruned` / :func:`load_pruned`): a directory with

* ``pruned.json``: ``{"format": "codesign-pruned/1", "model": zoo name,
  "model_kwargs": models.create keyword arguments (input_shape, num_classes, options),
  "sites": {gate path: {"size": n, "kept": [unit indices]}}, "params": "params.npz"}``
* ``params.npz``: every variable of the pruned model (parameters, BatchNorm statistics,
  RNG state) by dotted path (:func:`codesign._checkpoint.flatten_state`).

Loading rebuilds the full model with ``models.create``, applies the same structural
surgery (the kept indices), and loads the parameters, checking every name and shape.
Both files are written to temporary names and renamed, ``params.npz`` first, so an
interrupted save never leaves a spec pointing at missing or partial parameters.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import models
from codesign._checkpoint import CheckpointMismatchError, flatten_state, unflatten_state
from hwmodel import atomic_write_bytes, atomic_write_text
from models._base import ZooModel, take_channels
from models._cnn import ConvBNReLU
from models._depthwise import DepthwiseConv
from models._gates import Gate
from models._resnet import BasicBlock, ResNet20, StreamScale
from models._vit import MultiHeadSelfAttention

__all__ = [
    "FORMAT",
    "GatherConv",
    "PruneSpec",
    "StreamGate",
    "is_pruned_dir",
    "load_pruned",
    "read_spec",
    "prune_model",
    "save_pruned",
]

FORMAT = "codesign-pruned/1"
SPEC_FILE = "pruned.json"
PARAMS_FILE = "params.npz"


# ---- modules a pruned network may contain ------------------------------------------------


class StreamGate(Gate):
    """Identity gate on ``k`` kept channels, scattered into a stream of ``width`` channels.

    Replaces a gate that has no consumers (resnet20's ``gate2`` / ``proj_gate``: the
    channels are added into the residual stream). ``size`` is the kept count ``k``
    (so :func:`models.gate_sites` of a pruned model sees the layer's real width);
    ``index`` the kept channels' positions in the stream. The scatter is structural:
    it is applied even inside :func:`models.gates_bypassed`.
    """

    def __init__(self, index: Sequence[int], width: int):
        super().__init__(len(index), "channel")
        self.index = tuple(int(i) for i in index)
        self.width = int(width)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x [..., k]`` -> ``[..., width]`` with zeros at the pruned channels."""
        return _scatter(x, self.index, self.width)


def _scatter(x: jax.Array, index: tuple[int, ...], width: int) -> jax.Array:
    out = jnp.zeros(x.shape[:-1] + (width,), x.dtype)
    return out.at[..., jnp.asarray(index)].set(x)


class GatherConv(nnx.Conv):
    """An ``nnx.Conv`` that first gathers its input channels ``in_index`` (a stream reader)."""

    in_index: tuple[int, ...] = ()

    def __call__(self, x: jax.Array) -> jax.Array:
        """``Conv(x[..., in_index])``."""
        return nnx.Conv.__call__(self, take_channels(x, self.in_index))


class _StreamConvBNReLU(ConvBNReLU):
    """A ConvBNReLU unit whose kept output channels are scattered into a stream."""

    out_index: tuple[int, ...] = ()
    out_width: int = 0

    def __call__(self, x: jax.Array) -> jax.Array:
        return _scatter(ConvBNReLU.__call__(self, x), self.out_index, self.out_width)


# ---- the spec -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PruneSpec:
    """Which units of which gate sites a pruned model kept.

    Attributes:
      model: the zoo model name (``models.create``), or None for a model that is not
        in the zoo (such a pruned model works in memory but cannot be saved).
      model_kwargs: ``models.create`` keyword arguments of the *unpruned* model
        (``input_shape``, ``num_classes`` and options), JSON values.
      sites: ``{gate path: kept unit indices}`` (sorted, at least one each).
      sizes: ``{gate path: units before pruning}``.
      weight_bits, act_bits: the widths of a model quantized with :func:`models.quantize`
        (quantization-aware training), which the rebuilt model is quantized at again
        (0: float).
    """

    model: str | None
    model_kwargs: dict
    sites: dict
    sizes: dict
    weight_bits: int = 0
    act_bits: int = 0

    def kept_units(self) -> dict[str, int]:
        """``{gate path: number of kept units}``."""
        return {p: len(k) for p, k in self.sites.items()}

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``pruned.json`` (without the ``params`` entry)."""
        return {
            "format": FORMAT,
            "model": self.model,
            "model_kwargs": self.model_kwargs,
            "sites": {p: {"size": self.sizes[p], "kept": list(k)} for p, k in self.sites.items()},
            "weight_bits": self.weight_bits,
            "act_bits": self.act_bits,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "spec") -> PruneSpec:
        """Parse :meth:`to_dict`'s object; ValueError naming ``where`` on anything malformed."""
        if not isinstance(d, Mapping) or d.get("format") != FORMAT:
            got = d.get("format") if isinstance(d, Mapping) else type(d).__name__
            raise ValueError(f"{where}: not a pruned-model spec (format {got!r}, expected {FORMAT!r})")
        name, kwargs, sites = d.get("model"), d.get("model_kwargs"), d.get("sites")
        if not isinstance(name, str) or name not in models.list_models():
            raise ValueError(f"{where}: 'model' must be one of {', '.join(models.list_models())}, "
                             f"got {name!r}")
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"{where}: 'model_kwargs' must be an object, got {kwargs!r}")
        if not isinstance(sites, Mapping):
            raise ValueError(f"{where}: 'sites' must be an object, got {type(sites).__name__}")
        kept, sizes = {}, {}
        for p, s in sites.items():
            ok = (isinstance(s, Mapping) and isinstance(s.get("size"), int) and s["size"] >= 1
                  and isinstance(s.get("kept"), list) and s["kept"]
                  and all(isinstance(i, int) and 0 <= i < s["size"] for i in s["kept"])
                  and list(s["kept"]) == sorted(set(s["kept"])))
            if not ok:
                raise ValueError(f"{where}: site {p!r} must be {{'size': n, 'kept': [sorted distinct "
                                 f"indices in 0..n-1, at least one]}}, got {s!r}")
            kept[p], sizes[p] = tuple(s["kept"]), s["size"]
        bits = {}
        for b in ("weight_bits", "act_bits"):  # absent in specs written before widths
            v = d.get(b, 0)
            if isinstance(v, bool) or not isinstance(v, int) or not (
                    v == 0 or models.MIN_BITS <= v <= models.MAX_BITS):
                raise ValueError(f"{where}: {b!r} must be 0 (float) or an int in "
                                 f"{models.MIN_BITS}..{models.MAX_BITS}, got {v!r}")
            bits[b] = v
        kw = dict(kwargs)
        if "input_shape" in kw:
            kw["input_shape"] = tuple(kw["input_shape"])
        return cls(name, kw, kept, sizes, **bits)


# ---- site plans ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Plan:
    """What pruning one gate site touches (module paths relative to the root)."""

    gate: str
    kind: str
    size: int
    outs: tuple[str, ...]       # layers whose outputs are the units
    norms: tuple[str, ...]      # BatchNorms over the units
    ins: tuple[str, ...]        # consumers (their inputs are the units)
    fold: str                   # "norm" | "out" | "in"
    stream: str | None = None   # "gate": the gate becomes a StreamGate; "unit": module path
    gathers: tuple[str, ...] = ()  # consumers that read the full stream


_NORM_OF = {(ConvBNReLU, "conv"): "bn", (BasicBlock, "conv1"): "bn1",
            (BasicBlock, "conv2"): "bn2", (BasicBlock, "proj"): "proj_bn"}


def _get(root: nnx.Module, path: str):
    obj = root
    for p in path.split("."):
        obj = obj[int(p)] if p.isdigit() else getattr(obj, p)
    return obj


def _set(root: nnx.Module, path: str, value) -> None:
    parts = path.split(".")
    parent = _get(root, ".".join(parts[:-1])) if len(parts) > 1 else root
    last = parts[-1]
    if last.isdigit():
        parent[int(last)] = value
    else:
        setattr(parent, last, value)


def _parent(path: str) -> tuple[str, str]:
    head, _, last = path.rpartition(".")
    return head, last


def _plans(model: nnx.Module) -> list[_Plan]:
    sites = models.gate_sites(model)
    if not sites:
        raise ValueError(f"prune_model: {type(model).__name__} has no gate sites; gate it first "
                         "(zoo models have them; models.add_gates for your own)")
    plans = []
    for s in sites:
        if not s.layer:
            raise ValueError(f"prune_model: gate {s.path!r} has no site metadata; place gates "
                             "with models.add_gates")
        where = f"prune_model: gate {s.path!r} (on {s.layer!r})"
        if s.kind == "head":
            attn = _get(model, s.layer)
            if not isinstance(attn, MultiHeadSelfAttention):
                raise ValueError(f"{where}: head gates are supported on the zoo's "
                                 f"MultiHeadSelfAttention, not {type(attn).__name__}")
            plans.append(_Plan(s.path, "head", s.size, tuple(f"{s.layer}.{n}" for n in "qkv"),
                               (), s.consumers, "in"))
            continue
        prod = _get(model, s.layer)
        if isinstance(prod, DepthwiseConv) or any(
                isinstance(_get(model, c), DepthwiseConv) for c in s.consumers):
            raise ValueError(
                f"{where}: depthwise convolutions (mobilenet_small) are not supported: removing "
                "an input channel of a depthwise conv removes its whole group, so the gates of a "
                "separable block interact")
        if not isinstance(prod, (nnx.Conv, nnx.Linear)):
            raise ValueError(f"{where}: the gated layer must be an nnx.Conv or nnx.Linear, got "
                             f"{type(prod).__name__}")
        for c in s.consumers:
            if not isinstance(_get(model, c), (nnx.Conv, nnx.Linear)):
                raise ValueError(f"{where}: consumer {c!r} must be an nnx.Conv or nnx.Linear, got "
                                 f"{type(_get(model, c)).__name__}")
        outs = (s.layer, *s.producers)
        for o in s.producers:
            if not isinstance(_get(model, o), (nnx.Conv, nnx.Linear)):
                raise ValueError(f"{where}: producer {o!r} must be an nnx.Conv or nnx.Linear, got "
                                 f"{type(_get(model, o)).__name__}")
        norms = tuple(n for n in map(_norm_of, [model] * len(outs), outs) if n)
        ppath, last = _parent(s.layer)
        parent = _get(model, ppath) if ppath else model
        if s.producers and len(norms) != len(outs):
            raise ValueError(f"{where}: a gate with several producing layers is supported when a "
                             "BatchNorm follows each of them (its values fold into them)")
        if norms:
            fold = "norm"
        elif s.path == f"{s.layer}.out_gate":  # models.add_gates: the gate is on the raw output
            fold = "out"
        elif s.consumers:
            fold = "in"
        else:
            raise ValueError(f"{where}: a gate with no consumers and no BatchNorm to fold into is "
                             "not supported")
        stream, gathers = None, ()
        if isinstance(model, ResNet20) and model.stream_gated:
            if s.path.startswith("streams."):
                stream = "stage"  # identity after pruning; shortcuts wired by _wire_streams
        elif isinstance(model, ResNet20):
            if isinstance(parent, BasicBlock) and last in ("conv2", "proj"):
                stream = "gate"
            elif s.layer == "stem.conv":
                stream, gathers = "stem", tuple(s.consumers)
        plans.append(_Plan(s.path, "channel", s.size, outs, norms, s.consumers, fold,
                           stream, gathers))
    return plans


def _norm_of(model: nnx.Module, layer: str) -> str | None:
    """The path of the BatchNorm that follows ``layer`` in a zoo unit, or None."""
    ppath, last = _parent(layer)
    parent = _get(model, ppath) if ppath else model
    if not isinstance(parent, (ConvBNReLU, BasicBlock)):
        return None
    norm = _NORM_OF.get((type(parent), last))
    return f"{ppath}.{norm}" if norm else None


def _wire_streams(model: nnx.Module, kept: Mapping[str, Sequence[int]],
                  values: Mapping[str, np.ndarray] | None = None) -> None:
    """Stream-gated resnet20 (option A): where a stage begins, the pruned block gathers
    its shortcut from the previous stage's kept channels (``BasicBlock.short_index``)
    and scales it by the new stage gate's values there (``short_scale``; 0 for a new
    channel the old stream does not have). ``values``: the stage gates' inference values
    (``None``: ones, placeholders that loading replaces)."""
    if not (isinstance(model, ResNet20) and model.stream_gated):
        return
    n = len(model.blocks) // len(model.streams)
    for st in range(1, len(model.streams)):
        block = model.blocks[st * n]
        if block.project:
            continue  # option B: the projection's kernel and BatchNorm were pruned
        prev = {c: j for j, c in enumerate(kept[f"streams.{st - 1}"])}
        v = None if values is None else values[f"streams.{st}"]
        off = (block.cout - block.cin) // 2
        index, scale = [], []
        for c in kept[f"streams.{st}"]:
            j = prev.get(c - off)
            index.append(0 if j is None else j)
            scale.append(0.0 if j is None else (1.0 if v is None else float(v[c])))
        block.short_index = tuple(index)
        block.short_scale = StreamScale(jnp.asarray(scale, jnp.float32))


# ---- array surgery ------------------------------------------------------------------------


def _take_out(a: np.ndarray, keep: np.ndarray, kind: str, size: int) -> np.ndarray:
    """Keep units ``keep`` of the last axis (heads: blocks of ``last / size``)."""
    if kind == "head":
        r = a.shape[-1] // size
        return a.reshape(a.shape[:-1] + (size, r))[..., keep, :].reshape(a.shape[:-1] + (len(keep) * r,))
    return a[..., keep]


def _take_in(a: np.ndarray, keep: np.ndarray, kind: str, size: int) -> np.ndarray:
    """Keep units ``keep`` of a kernel's input axis (-2): channel-last flatten for
    channels (``[positions, size]``), head-major for heads (``[size, head_dim]``)."""
    lead, n, out = a.shape[:-2], a.shape[-2], a.shape[-1]
    r = n // size
    if kind == "head":
        b = a.reshape(lead + (size, r, out))[..., keep, :, :]
    else:
        b = a.reshape(lead + (r, size, out))[..., keep, :]
    return b.reshape(lead + (len(keep) * r, out))


def _scale_in(a: np.ndarray, v: np.ndarray, kind: str, size: int) -> np.ndarray:
    lead, n, out = a.shape[:-2], a.shape[-2], a.shape[-1]
    r = n // size
    ones = (1,) * len(lead)
    if kind == "head":
        return (a.reshape(lead + (size, r, out)) * v.reshape(ones + (size, 1, 1))).reshape(a.shape)
    return (a.reshape(lead + (r, size, out)) * v.reshape(ones + (1, size, 1))).reshape(a.shape)


def _check_divisible(n: int, size: int, where: str) -> None:
    if n % size:
        raise ValueError(f"{where}: {n} input features are not a multiple of the {size} gated units")


def _fold(model: nnx.Module, plan: _Plan, v: np.ndarray) -> None:
    """Multiply gate values ``v [size]`` (numpy) into the weights (before any slicing)."""
    if plan.fold == "norm":
        for n in plan.norms:
            bn = _get(model, n)
            for var in (bn.scale, bn.bias):
                a = np.asarray(var[...])
                var[...] = jnp.asarray(a * v.astype(a.dtype))
    elif plan.fold == "out":
        for o in plan.outs:
            lay = _get(model, o)
            k = np.asarray(lay.kernel[...])
            lay.kernel[...] = jnp.asarray(k * v.astype(k.dtype))
            if getattr(lay, "bias", None) is not None:
                b = np.asarray(lay.bias[...])
                lay.bias[...] = jnp.asarray(b * v.astype(b.dtype))
    else:
        for c in plan.ins:
            lay = _get(model, c)
            k = np.asarray(lay.kernel[...])
            _check_divisible(k.shape[-2], plan.size, f"prune_model: consumer {c!r}")
            lay.kernel[...] = jnp.asarray(_scale_in(k, v.astype(k.dtype), plan.kind, plan.size))


def _shrink(model: nnx.Module, plan: _Plan, keep: Sequence[int]) -> None:
    """Remove every unit not in ``keep`` (structure and parameters)."""
    keep = np.asarray(keep, np.int64)
    k = len(keep)
    for o in plan.outs:
        lay = _get(model, o)
        lay.kernel = nnx.Param(jnp.asarray(_take_out(np.asarray(lay.kernel[...]), keep, plan.kind,
                                                     plan.size)))
        if getattr(lay, "bias", None) is not None:
            lay.bias = nnx.Param(jnp.asarray(_take_out(np.asarray(lay.bias[...]), keep, plan.kind,
                                                       plan.size)))
        lay.out_features = lay.kernel.shape[-1]
    for n in plan.norms:
        bn = _get(model, n)
        for attr in ("scale", "bias", "mean", "var"):
            var = getattr(bn, attr, None)
            if var is not None:
                setattr(bn, attr, type(var)(jnp.asarray(np.asarray(var[...])[keep])))
        bn.num_features = k
    for c in plan.ins:
        lay = _get(model, c)
        _check_divisible(lay.kernel.shape[-2], plan.size, f"consumer {c!r}")
        lay.kernel = nnx.Param(jnp.asarray(_take_in(np.asarray(lay.kernel[...]), keep, plan.kind,
                                                    plan.size)))
        lay.in_features = lay.kernel.shape[-2] * getattr(lay, "feature_group_count", 1)
    if plan.kind == "head":
        attn = _get(model, _parent(plan.outs[0])[0])
        attn.num_heads = k
    old = _get(model, plan.gate)
    new = StreamGate(keep.tolist(), plan.size) if plan.stream == "gate" else Gate(k, plan.kind)
    new.site_layer, new.site_consumers, new.site_producers, new.site_order = (
        old.site_layer, old.site_consumers, old.site_producers, old.site_order)
    _set(model, plan.gate, new)
    if plan.stream == "stem":
        unit = _get(model, _parent(plan.outs[0])[0])
        unit.__class__ = _StreamConvBNReLU
        unit.out_index, unit.out_width = tuple(keep.tolist()), plan.size
        for g in plan.gathers:
            conv = _get(model, g)
            conv.__class__ = GatherConv
            conv.in_index = tuple(keep.tolist())


# ---- gate values --------------------------------------------------------------------------


def _gate_values(gate: Gate, path: str) -> np.ndarray:
    """Inference-mode values ``[size]`` of a gate (float64 numpy)."""
    if isinstance(gate, models.HardConcreteGate):
        v = gate.values()
    elif isinstance(gate, models.ScaleGate):
        v = gate.values[...]
    elif type(gate) is Gate or isinstance(gate, StreamGate):
        v = jnp.ones((gate.size,), jnp.float32)
    else:
        raise ValueError(f"prune_model: gate {path!r} is a {type(gate).__name__}; supported: "
                         "HardConcreteGate (inference values), ScaleGate (fixed values), the "
                         "identity Gate")
    v = np.asarray(v, np.float64)
    if v.shape != (gate.size,) or not np.all(np.isfinite(v)) or np.any(v < 0):
        raise ValueError(f"prune_model: gate {path!r} has values outside [0, inf) or of the wrong "
                         f"shape (shape {v.shape}, min {np.min(v) if v.size else None}); gate values "
                         "must be finite and >= 0")
    return v


def _kept(v: np.ndarray) -> np.ndarray:
    keep = np.flatnonzero(v > 0)
    if keep.size == 0:
        keep = np.array([int(np.argmax(v))])
    return keep


# ---- public API ---------------------------------------------------------------------------


def _zoo_name(model: nnx.Module) -> str | None:
    for name in models.list_models():
        if type(model) is models.get_info(name).model_class:
            return name
    return None


def prune_model(model: nnx.Module, *, name: str | None = None,
                model_kwargs: Mapping[str, Any] | None = None) -> tuple[nnx.Module, PruneSpec]:
    """Remove every closed unit of a gated model: a smaller dense model, same logits.

    Args:
      model: a gated model (zoo model with gates set, or a model gated with
        :func:`models.add_gates`); not modified. Gates are read in inference mode
        (``HardConcreteGate.values()``, ``ScaleGate`` values); a unit is kept when
        its value is > 0, and at least one unit per site is kept.
      name: the zoo name of the model (default: found from its class); None for a
        model outside the zoo (the result cannot be saved then).
      model_kwargs: the ``models.create`` keyword arguments the model was built with
        (default: ``input_shape`` and ``num_classes`` read from the model; pass the
        run's ``model_kwargs`` when other options were used).

    Returns:
      ``(pruned, spec)``: the pruned model in inference mode (``.eval()``), whose
      remaining gates are identity gates of the kept sizes (``StreamGate`` on
      resnet20's residual writers), and the :class:`PruneSpec`.

    Raises:
      ValueError: a model with no gate sites, an unsupported site (depthwise consumer,
        unknown gate type, negative gate values), a name that is not a zoo model.
    """
    if name is None:
        name = _zoo_name(model)
    elif name not in models.list_models():
        raise ValueError(f"prune_model: unknown zoo model {name!r}; valid: "
                         f"{', '.join(models.list_models())}")
    kwargs = dict(model_kwargs or {})
    if name is not None and isinstance(model, ZooModel):
        kwargs.setdefault("input_shape", tuple(model.input_shape))
        kwargs.setdefault("num_classes", int(model.num_classes))
    plans = _plans(model)
    pruned = nnx.clone(model)
    _drop_training_state(pruned)
    pruned.eval()
    kept, sizes, values = {}, {}, {}
    for p in plans:
        v = _gate_values(_get(pruned, p.gate), p.gate)
        keep = _kept(v)
        _fold(pruned, p, v)
        kept[p.gate], sizes[p.gate], values[p.gate] = tuple(int(i) for i in keep), p.size, v
    for p in plans:
        _shrink(pruned, p, kept[p.gate])
    _wire_streams(pruned, kept, values)
    pruned.eval()
    # a quantized model stays quantized (the clone keeps its layers' widths); the spec
    # records them when they are uniform, as models.quantize makes them
    widths = set(models.quantized_layers(pruned).values())
    wb, ab = widths.pop() if len(widths) == 1 else (0, 0)
    return pruned, PruneSpec(name, kwargs, kept, sizes, wb, ab)


def _drop_training_state(model: nnx.Module) -> None:
    """Removes what an energy-aware run adds to a model besides the network (the budget
    multiplier and step count, a co-design run's hardware knobs:
    :func:`codesign.energy.prepare_model`), so that a trained run's pruned model is the
    network alone and :func:`save_pruned` can rebuild it from its spec."""
    from codesign.energy import HardwareDesign, HardwareDual

    for name in [k for k, v in vars(model).items()
                 if isinstance(v, (HardwareDual, HardwareDesign))]:
        delattr(model, name)


def _rebuild(spec: PruneSpec) -> nnx.Module:
    """The pruned model's structure from its spec (parameters are placeholders)."""
    model = models.create(spec.model, rngs=nnx.Rngs(0), **spec.model_kwargs)
    plans = {p.gate: p for p in _plans(model)}
    if set(plans) != set(spec.sites):
        raise ValueError(f"pruned spec: its sites {sorted(spec.sites)} are not the gate sites of "
                         f"{spec.model} {sorted(plans)}")
    for path, keep in spec.sites.items():
        if plans[path].size != spec.sizes[path]:
            raise ValueError(f"pruned spec: site {path!r} has {plans[path].size} units in "
                             f"{spec.model}, the spec says {spec.sizes[path]}")
        _shrink(model, plans[path], keep)
    _wire_streams(model, spec.sites)
    if spec.weight_bits or spec.act_bits:
        models.quantize(model, weight_bits=spec.weight_bits, act_bits=spec.act_bits)
    model.eval()
    return model


def save_pruned(pruned: nnx.Module, spec: PruneSpec, directory: str | os.PathLike) -> Path:
    """Write ``pruned.json`` and ``params.npz`` into ``directory`` (created if missing).

    The spec is checked first by rebuilding the model from it and comparing every
    variable's name and shape with ``pruned`` (a wrong ``model_kwargs`` is an error
    here, not at load time). ``params.npz`` is written (temp + rename) before
    ``pruned.json`` (temp + rename).

    Returns:
      The directory path.

    Raises:
      ValueError: a spec without a zoo model name, non-JSON ``model_kwargs``, or a
        spec that does not rebuild ``pruned``'s structure.
    """
    if spec.model is None:
        raise ValueError("save_pruned: the model is not a zoo model, so the pruned model cannot "
                         "be rebuilt from a spec; keep it in memory (or nnx.state it yourself)")
    d = spec.to_dict()
    try:
        text = json.dumps({**d, "params": PARAMS_FILE}, indent=2) + "\n"
    except TypeError as e:
        raise ValueError(f"save_pruned: model_kwargs must be JSON values: {e}") from None
    flat = flatten_state(nnx.state(pruned))
    try:
        rebuilt = _rebuild(PruneSpec.from_dict(json.loads(text)))
    except ValueError as e:
        raise ValueError(f"save_pruned: the spec does not rebuild this model (model_kwargs "
                         f"{spec.model_kwargs}): {e}") from None
    like = flatten_state(nnx.state(rebuilt))
    bad = sorted(k for k in set(flat) | set(like)
                 if k not in flat or k not in like or flat[k].shape != like[k].shape)
    if bad:
        raise ValueError(f"save_pruned: the spec does not rebuild this model (model_kwargs "
                         f"{spec.model_kwargs}); mismatched variables: {bad[:6]}")
    got = models.quantized_layers(pruned)
    want = models.quantized_layers(rebuilt)
    if got != want:
        raise ValueError(
            f"save_pruned: the spec does not rebuild this model's quantization (spec: "
            f"{spec.weight_bits} / {spec.act_bits} bits on {len(want)} layers; the model: "
            f"{sorted(set(got.values())) or 'float'} on {len(got)} layers); valid: a model "
            "quantized with models.quantize at one width before prune_model, or a float one")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, **flat)
    atomic_write_bytes(directory / PARAMS_FILE, buf.getvalue())
    atomic_write_text(directory / SPEC_FILE, text)
    return directory


def is_pruned_dir(directory: str | os.PathLike) -> bool:
    """True when ``directory`` holds a ``pruned.json``."""
    return (Path(directory) / SPEC_FILE).is_file()


def read_spec(directory: str | os.PathLike) -> PruneSpec:
    """The :class:`PruneSpec` of a saved pruned model (ValueError when malformed)."""
    path = Path(directory) / SPEC_FILE
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{directory}: no {SPEC_FILE} (not a pruned model directory)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: cannot read the spec: {e}") from None
    return PruneSpec.from_dict(d, where=str(path))


def load_pruned(directory: str | os.PathLike) -> nnx.Module:
    """Load a pruned model saved by :func:`save_pruned` (no original model needed).

    Returns:
      The pruned model in inference mode.

    Raises:
      ValueError: a missing or malformed ``pruned.json`` / ``params.npz``, or
        parameters that do not match the spec (names the variables).
    """
    directory = Path(directory)
    spec = read_spec(directory)
    model = _rebuild(spec)
    path = directory / PARAMS_FILE
    try:
        with np.load(path, allow_pickle=False) as z:
            flat = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise ValueError(f"{directory}: {SPEC_FILE} but no {PARAMS_FILE}") from None
    except (OSError, ValueError) as e:
        raise ValueError(f"{path}: cannot read the parameters: {e}") from None
    state = nnx.state(model)
    try:
        new = unflatten_state(flat, state, where=str(path))
    except CheckpointMismatchError as e:
        raise ValueError(str(e)) from None
    nnx.update(model, jax.tree_util.tree_map(jnp.asarray, new))
    return model
