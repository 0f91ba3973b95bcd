"""The hardware objective: one object that joins a network's gates to the cost model.

:class:`HardwareObjective` is built once, outside ``jit``, from a model, its input
shape, an architecture and a dataflow. It extracts the model's workload (gates bypassed:
a gate is free on the hardware, its keep fraction reaches the cost model as a knob),
maps every layer once with the exact mapper, and binds every gate site
(:func:`models.gate_sites`) to the per-layer knobs it controls, by layer path:

* a channel gate on layer ``X`` scales ``keep_out`` of ``X`` and of each of the site's
  further ``producers`` (a residual stream's writers; ``keep_groups`` when depthwise) and
  ``keep_in`` of each consumer (``keep_groups`` for a depthwise consumer);
* a head gate on attention module ``X`` scales ``keep_out`` of the static projections
  under ``X`` (``q``, ``k``, ``v``), ``keep_groups`` of its dynamic matmuls (``qk``,
  ``av``: heads are groups) and ``keep_in`` of its consumers (``o``).

Several gates acting on one knob multiply (independent gates). Its methods are pure
functions of the model's gate values, usable inside a jitted train step::

    obj = HardwareObjective(model, (28, 28, 1), arch="eyeriss", dataflow="rs")
    def loss(model, x, y):
        task = cross_entropy(model(x), y)
        return task + lam * obj.relative(model)      # E(model) / E(dense)

Objectives (``HW_OBJECTIVES``): ``energy`` (pJ per inference), ``latency`` (s per
inference batch), ``edp`` (energy x latency), ``dram`` (off-chip bytes per inference),
``macs`` (MACs after keep fractions: the FLOPs-penalty baseline, MorphNet style).

Costing batch: weights are fetched once per batch, so the hardware figures depend on
the batch at which the network is costed (``batch``, default 1: one inference at a
time, the edge setting of the reports).

What the in-loss figure is: the cost of the *dense* mappings with the loop bounds
scaled by the expected keep fractions (the knob path of :func:`hwmodel.cost`). After
training, a pruned network is smaller and the mapper may choose other tilings:
:meth:`HardwareObjective.pruned_workload` builds the integer pruned workload and
:meth:`HardwareObjective.exact_cost` re-maps and costs it. The two differ by a few
percent (measured -10% to +4% on the Flax tutorial CNN); reports give both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import hwmodel
import models
from codesign._config import HW_OBJECTIVES

__all__ = ["HW_OBJECTIVES", "GateBinding", "HardwareObjective", "bit_knobs", "objective_value"]



def objective_value(cost: hwmodel.Cost, objective: str) -> jax.Array:
    """The scalar ``objective`` of a :class:`hwmodel.Cost` (see :data:`HW_OBJECTIVES`).

    Units: energy pJ per inference; latency s (whole costing batch); edp pJ*s per
    inference; dram bytes per inference; macs MACs (after keep fractions) of the batch.
    """
    if objective == "energy":
        return cost.energy_per_inference_pj
    if objective == "latency":
        return cost.latency_s
    if objective == "edp":
        return cost.energy_per_inference_pj * cost.latency_s
    if objective == "dram":
        return cost.dram_bytes_per_inference
    if objective == "macs":
        return cost.macs_dense
    raise ValueError(f"unknown hardware objective {objective!r}; valid: {', '.join(HW_OBJECTIVES)}")


@dataclasses.dataclass(frozen=True)
class GateBinding:
    """Which knobs one gate site controls (layer indices into the workload).

    Attributes:
      path: the gate's module path.
      layer: the layer (or attention module) whose output it gates.
      size: number of gated units.
      keep_out, keep_in, keep_groups: indices of the layers whose ``keep_out`` /
        ``keep_in`` / ``keep_groups`` knob the gate's keep fraction scales.
    """

    path: str
    layer: str
    size: int
    keep_out: tuple[int, ...]
    keep_in: tuple[int, ...]
    keep_groups: tuple[int, ...]


def _is_depthwise(spec: hwmodel.LayerSpec) -> bool:
    return spec.G > 1 and spec.M == 1 and spec.C == 1 and not spec.dynamic


def _bind(sites, layers: Sequence[hwmodel.LayerSpec]) -> tuple[GateBinding, ...]:
    index = {l.name: i for i, l in enumerate(layers)}

    def find(name: str, site, role: str) -> int:
        if name not in index:
            near = [n for n in index if n.split(".")[0] == name.split(".")[0]] or list(index)
            raise ValueError(
                f"gate {site.path!r}: its {role} {name!r} matches no layer of the extracted "
                f"workload; layers: {', '.join(near[:12])}{' ...' if len(near) > 12 else ''}"
            )
        return index[name]

    out = []
    for s in sites:
        if not s.layer:
            raise ValueError(
                f"gate {s.path!r} has no site metadata (which layer it gates): place gates "
                "with models.add_gates(model, {layer: consumers}) or models.place_gate"
            )
        ko, ki, kg = [], [], []
        if s.kind == "head":
            prefix = s.layer + "."
            under = [i for n, i in index.items() if n.startswith(prefix)]
            if not under:
                find(s.layer + ".qk", s, "attention module")
            cons = set(s.consumers)
            for i in under:
                if layers[i].dynamic:
                    kg.append(i)
                elif layers[i].name in cons:
                    ki.append(i)
                else:
                    ko.append(i)
            for c in s.consumers:
                i = find(c, s, "consumer")
                if i not in ki:
                    ki.append(i)
        else:
            for name, role in [(s.layer, "layer")] + [(p, "producer") for p in s.producers]:
                i = find(name, s, role)
                (kg if _is_depthwise(layers[i]) else ko).append(i)
            for c in s.consumers:
                j = find(c, s, "consumer")
                (kg if _is_depthwise(layers[j]) else ki).append(j)
        out.append(GateBinding(s.path, s.layer, s.size, tuple(sorted(ko)), tuple(sorted(ki)),
                               tuple(sorted(kg))))
    return tuple(out)


def _layer_bits(model: nnx.Module, layers, word_bits, arch_name: str
                ) -> dict[str, tuple[int, int]]:
    """``{workload layer: (weight bits, input bits)}`` of the model's quantized layers
    (a float operand of a quantized layer keeps the word width)."""
    q = models.quantized_layers(model)
    names = {l.name for l in layers}
    out = {}
    for path, (wb, ab) in q.items():
        if path not in names:
            raise ValueError(f"quantized layer {path!r} matches no layer of the workload "
                             f"(layers: {', '.join(sorted(names))})")
        bits = (wb or word_bits[0], ab or word_bits[1])
        for x, b, w in zip(("weight", "input"), bits, word_bits):
            if b > w:
                raise ValueError(f"quantized layer {path!r}: {x} bits {b} exceed the {x} word "
                                 f"width of {arch_name!r} ({w} bits); valid: bits <= {w}, or "
                                 "an architecture with wider words")
        out[path] = bits
    return out


def bit_knobs(model: nnx.Module, workload: hwmodel.Workload, arch: hwmodel.Architecture
              ) -> hwmodel.Knobs | None:
    """The ``w_bits`` / ``i_bits`` knobs ``[L]`` that charge ``model``'s quantized layers
    (:func:`models.quantize`) at their bits on ``arch`` (the other layers at its word
    widths); None for a float model. ``workload``: the model's
    (:func:`models.model_workload`).

    Raises:
      ValueError: a quantized layer wider than ``arch``'s words, or one the workload
        does not have.
    """
    words = tuple(int(round(float(b))) for b in np.asarray(arch.word_bits)[:2])
    bits = _layer_bits(model, workload.layers, words, arch.name)
    if not bits:
        return None
    w, i = _costed_bits(bits, workload.layers, words)
    return hwmodel.Knobs(w_bits=w, i_bits=i)


def _costed_bits(bits, layers, words) -> tuple[np.ndarray, np.ndarray]:
    """``[L]`` weight and input bits charged per layer: ``bits`` (:func:`_layer_bits`)
    where the layer is quantized, else the word widths ``words``."""
    costed = np.array([bits.get(l.name, words) for l in layers], np.float32).reshape(-1, 2)
    return costed[:, 0], costed[:, 1]


def _gate_keeps(model: nnx.Module, hard: bool) -> dict[str, jax.Array]:
    keeps = {}
    for s in models.gate_sites(model):
        g = s.gate
        keeps[s.path] = g.hard_keep() if hard else g.keep()
    return keeps


class HardwareObjective:
    """A model's gates joined to the hardware cost model (built once, outside jit).

    Args:
      model: any Flax NNX model whose prunable sites carry gates (zoo models have
        them; for your own model see :func:`models.add_gates`). Not modified.
      input_shape: per-example input shape (``(H, W, C)`` for images).
      arch: a preset name, a YAML path or an :class:`hwmodel.Architecture`.
      dataflow: one of :data:`hwmodel.DATAFLOWS`.
      objective: one of :data:`HW_OBJECTIVES`.
      batch: the batch at which the hardware cost is counted (default 1).
      mapper_objective: what the mapper minimizes per layer (``energy`` or ``edp``).
      reference_value: what :meth:`relative` divides by (default: ``dense_value``, the
        dense model on ``arch``). A co-design run (:mod:`codesign.joint`) passes the dense
        model's value on its *starting* hardware, so that "relative" keeps one meaning
        while the hardware changes.

    Quantized layers (:func:`models.quantize`: quantization-aware training) are charged
    at their bits: their ``w_bits`` / ``i_bits`` knobs are the layer's weight / input
    widths (accesses scale by ``bits / word bits``, MACs by the width product; see
    :func:`hwmodel.cost`), the other layers at the architecture's word widths.

    Attributes:
      workload (its layers' ``w_bits`` / ``i_bits`` / ``o_bits`` are the bits the cost
      model charges: a quantized layer's widths, else the architecture's word widths),
      arch, mappings, bindings; ``layer_bits`` (``{layer: (weight bits, input bits)}``
      of the quantized layers, empty for a float model); ``dense_cost`` (the model with
      every gate open, *unquantized*: every operand at the architecture's word widths,
      the float baseline the reports compare against) and ``dense_value`` (its
      objective value, a Python float); ``reference_value`` (a Python float).

    Raises:
      ValueError: unknown objective / dataflow / arch, a gate whose layer or consumer
        matches no layer of the workload, bad batch, a quantized layer wider than the
        architecture's words.
    """

    def __init__(self, model: nnx.Module, input_shape: Sequence[int], *,
                 arch: str | hwmodel.Architecture = "eyeriss", dataflow: str = "rs",
                 objective: str = "energy", batch: int = 1, mapper_objective: str = "energy",
                 reference_value: float | None = None):
        if objective not in HW_OBJECTIVES:
            raise ValueError(
                f"unknown hardware objective {objective!r}; valid: {', '.join(HW_OBJECTIVES)}")
        if dataflow not in hwmodel.DATAFLOWS:
            raise ValueError(
                f"unknown dataflow {dataflow!r}; valid: {', '.join(hwmodel.DATAFLOWS)}")
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"hardware cost batch must be a positive int, got {batch!r}")
        self.objective = objective
        self.dataflow = dataflow
        self.batch = batch
        self.input_shape = tuple(input_shape)
        self.mapper_objective = mapper_objective
        self.arch = arch if isinstance(arch, hwmodel.Architecture) else hwmodel.load_arch(arch)
        traced = models.model_workload(model, batch=batch, input_shape=self.input_shape)
        # The cost model charges every operand at the architecture's word widths (the
        # traced dtypes are float32): record the bits actually costed in the layers.
        wb, ib, ob = (int(round(float(b))) for b in np.asarray(self.arch.word_bits))
        self.layer_bits = _layer_bits(model, traced.layers, (wb, ib), self.arch.name)
        costed = _costed_bits(self.layer_bits, traced.layers, (wb, ib))
        self.workload = dataclasses.replace(traced, layers=tuple(
            dataclasses.replace(l, w_bits=int(w), i_bits=int(i), o_bits=ob)
            for l, w, i in zip(traced.layers, *costed)))
        self.layers = tuple(self.workload.layers)
        self._bits = costed if self.layer_bits else None
        self.sites = models.gate_sites(model)
        self.bindings = _bind(self.sites, self.layers)
        self.mappings = hwmodel.stack_mappings(hwmodel.map_workload(
            self.workload, self.arch, dataflow=dataflow, objective=mapper_objective))
        self.dense_cost = hwmodel.cost(self.workload, self.arch, mappings=self.mappings)
        self.dense_value = float(objective_value(self.dense_cost, objective))
        if reference_value is not None and not (np.isfinite(reference_value) and reference_value > 0):
            raise ValueError(f"reference_value must be a positive number, got {reference_value!r}")
        self.reference_value = (self.dense_value if reference_value is None
                                else float(reference_value))

    # ---- knobs ---------------------------------------------------------------------
    def knobs(self, model_or_keeps: nnx.Module | Mapping[str, Any], *, hard: bool = False,
              weight_density: Any = None) -> hwmodel.Knobs:
        """Per-layer :class:`hwmodel.Knobs` from the gates' keep values.

        Args:
          model_or_keeps: the (gated) model, or a dict ``{gate path: keep [size]}``.
          hard: use the gates' inference-mode keep indicators (what a pruned model
            keeps) instead of their differentiable expected keeps.
          weight_density: optional per-layer weight densities ``[L]`` (or a dict
            ``{layer name: density}``), for unstructured pruning.

        Returns:
          Knobs with ``keep_out``, ``keep_in``, ``keep_groups`` (and ``weight_density``)
          arrays ``[L]``.

        Raises:
          ValueError: a keep dict that names an unknown gate or misses one, a keep of
            the wrong size, a density dict naming an unknown layer.
        """
        if isinstance(model_or_keeps, nnx.Module):
            keeps = _gate_keeps(model_or_keeps, hard)
        else:
            keeps = dict(model_or_keeps)
        known = {b.path for b in self.bindings}
        extra = sorted(set(keeps) - known)
        missing = sorted(known - set(keeps))
        if extra or missing:
            raise ValueError(
                f"gate keeps do not match the objective's gates: unknown {extra}, missing "
                f"{missing}; gates: {sorted(known)}")
        L = len(self.layers)
        one = jnp.ones((), jnp.float32)
        fac = {"keep_out": [one] * L, "keep_in": [one] * L, "keep_groups": [one] * L}
        for b in self.bindings:
            k = jnp.asarray(keeps[b.path], jnp.float32)
            if k.shape != (b.size,):
                raise ValueError(f"gate {b.path!r}: keep must have shape ({b.size},), got {k.shape}")
            f = jnp.mean(k)
            for knob, idx in (("keep_out", b.keep_out), ("keep_in", b.keep_in),
                              ("keep_groups", b.keep_groups)):
                for i in idx:
                    fac[knob][i] = fac[knob][i] * f
        ko, ki, kg = (jnp.stack(fac[k]) for k in ("keep_out", "keep_in", "keep_groups"))
        dw = None
        if weight_density is not None:
            dw = self._per_layer(weight_density, "weight_density")
        return hwmodel.Knobs(weight_density=dw, keep_out=ko, keep_in=ki, keep_groups=kg,
                             **self._bit_knobs())

    def _bit_knobs(self) -> dict[str, Any]:
        """``w_bits`` / ``i_bits`` knobs ``[L]`` of a quantized model (else none)."""
        if self._bits is None:
            return {}
        return {"w_bits": jnp.asarray(self._bits[0]), "i_bits": jnp.asarray(self._bits[1])}

    def _per_layer(self, values, what: str) -> jax.Array:
        if isinstance(values, Mapping):
            names = [l.name for l in self.layers]
            bad = sorted(set(values) - set(names))
            if bad:
                raise ValueError(f"{what}: unknown layers {bad}; layers: {', '.join(names)}")
            arr = jnp.ones((len(names),), jnp.float32)
            for k, v in values.items():
                arr = arr.at[names.index(k)].set(jnp.asarray(v, jnp.float32))
            return arr
        arr = jnp.asarray(values, jnp.float32)
        if arr.shape != (len(self.layers),):
            raise ValueError(f"{what}: expected shape ({len(self.layers)},), got {arr.shape}")
        return arr

    # ---- costs ----------------------------------------------------------------------
    def cost(self, model_or_keeps, *, hard: bool = False, weight_density: Any = None
             ) -> hwmodel.Cost:
        """The relaxed cost (dense mappings, knobs from the gates): pure, jit-able."""
        knobs = self.knobs(model_or_keeps, hard=hard, weight_density=weight_density)
        return hwmodel.cost(self.workload, self.arch, mappings=self.mappings, knobs=knobs)

    def value(self, model_or_keeps, *, hard: bool = False, weight_density: Any = None
              ) -> jax.Array:
        """The objective's value (units: see :func:`objective_value`)."""
        return objective_value(self.cost(model_or_keeps, hard=hard,
                                         weight_density=weight_density), self.objective)

    def relative(self, model_or_keeps, *, hard: bool = False, weight_density: Any = None
                 ) -> jax.Array:
        """``value / reference_value`` (by default ``dense_value``: 1 for the dense model),
        the loss term's scale."""
        return (self.value(model_or_keeps, hard=hard, weight_density=weight_density)
                / self.reference_value)

    def relative_of(self, cost: hwmodel.Cost) -> float:
        """The objective of a concrete ``cost`` (e.g. :meth:`exact_cost`'s) divided by
        ``reference_value``: the exact counterpart of :meth:`relative`."""
        return float(objective_value(cost, self.objective)) / self.reference_value

    # ---- the exact pruned figure -------------------------------------------------------
    def kept_units(self, model_or_keeps) -> dict[str, int]:
        """Kept units per gate (inference-mode indicators, at least 1 per gate)."""
        keeps = (_gate_keeps(model_or_keeps, True) if isinstance(model_or_keeps, nnx.Module)
                 else model_or_keeps)
        return {p: max(1, int(np.sum(np.asarray(k) > 0))) for p, k in keeps.items()}

    def pruned_workload(self, model_or_keeps) -> hwmodel.Workload:
        """The integer workload of the pruned network (closed units removed).

        Each gate with ``k`` of ``n`` units kept scales the dims it controls by
        ``k / n`` exactly (``M`` of its layer, ``C`` of its consumers, ``G`` of
        depthwise layers and attention's dynamic matmuls); non-MAC element-wise work
        scales with the layer's outputs. A gate keeps at least one unit.
        """
        kept = self.kept_units(model_or_keeps)
        L = len(self.layers)
        fo = [1.0] * L
        fi = [1.0] * L
        fg = [1.0] * L
        for b in self.bindings:
            f = kept[b.path] / b.size
            for i in b.keep_out:
                fo[i] *= f
            for i in b.keep_in:
                fi[i] *= f
            for i in b.keep_groups:
                fg[i] *= f
        new = []
        for i, l in enumerate(self.layers):
            M = max(1, round(l.M * fo[i]))
            C = max(1, round(l.C * fi[i]))
            G = max(1, round(l.G * fg[i]))
            frac_out = (M * G) / (l.M * l.G)
            new.append(dataclasses.replace(l, M=M, C=C, G=G,
                                           nonmac_ops=int(round(l.nonmac_ops * frac_out))))
        return hwmodel.Workload(tuple(new), name=self.workload.name + "-pruned",
                                batch=self.workload.batch)

    def exact_cost(self, model_or_keeps, *, weight_density: Any = None) -> hwmodel.Cost:
        """Cost of :meth:`pruned_workload`, re-mapped by the exact mapper (outside jit)."""
        wl = self.pruned_workload(model_or_keeps)
        maps = hwmodel.map_workload(wl, self.arch, dataflow=self.dataflow,
                                    objective=self.mapper_objective)
        knobs = None
        if weight_density is not None or self._bits is not None:
            dw = (None if weight_density is None
                  else self._per_layer(weight_density, "weight_density"))
            knobs = hwmodel.Knobs(weight_density=dw, **self._bit_knobs())
        return hwmodel.cost(wl, self.arch, mappings=maps, knobs=knobs)
