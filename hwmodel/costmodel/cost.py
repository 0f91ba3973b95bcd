"""``hwmodel.cost``: energy, latency, data movement and area of a workload (pure JAX).

Three ways to get mappings, all ending in the same vectorized evaluation over layers:

1. ``mappings=`` given (a sequence of :class:`~hwmodel.Mapping` or a
   :class:`~hwmodel.mapping.loopnest.MappingStack`): the loop nests are fixed; everything is
   traceable in the architecture's leaves and the knobs (``jit``, ``grad``, ``vmap``).
   ``Cost.layers.legal`` says whether each mapping fits the (possibly traced)
   architecture; with a concrete architecture an illegal mapping raises.
2. neither given: the numpy mapper (:func:`hwmodel.map_workload`) runs first.  It
   needs concrete architecture values (e.g. ``jax.jit(lambda k: cost(wl, arch,
   knobs=k))`` with ``arch`` closed over: the mapper runs once, at trace time).
3. ``candidates=`` (:func:`mapping_candidates`): a static candidate set per layer
   (built from one or more concrete reference architectures).  Counts of all
   candidates are evaluated inside JAX; legality masks come from the traced sizes;
   the argmin of the objective is picked per layer.  This is the path for ``vmap``
   over architectures whose sizes differ (co-design sweeps).  With ``relaxed=True``
   the pick is a straight-through softmin: the forward value is the hard argmin
   (exact), the backward pass differentiates ``softmax(-log(objective)/tau)``
   weighted by ``sigmoid(capacity slack / sigma)`` (``tau = 0.1, sigma = 0.05``).

Hardware sizes: with ``relaxed=False`` PE rows / cols are rounded down to integers
(a fractional PE does not exist; zero gradient through the rounding); with
``relaxed=True`` they are used as continuous values (utilization, area, legality).  At
integer sizes both give identical forward values.

Knobs (:class:`Knobs`, per-layer arrays, all differentiable; None = dense defaults):

* ``keep_out`` / ``keep_in`` / ``keep_groups`` scale the layer's M / C / G: the factor
  of the *outermost* loop of that dim with factor > 1 is multiplied by the keep
  fraction (or, if the dim is purely spatial, its spatial factor: fewer PEs busy).
  Every count is a product of loop factors, so MACs scale exactly by the keep
  fractions and data movement follows the loop nest; the structure (which loop is
  innermost-relevant, sliding windows) is that of the integer mapping.  The caller
  passes the producer's ``keep_out`` as the consumer's ``keep_in``; for a depthwise
  layer (M = C = 1) channels are groups: use ``keep_groups``; for attention's
  ``Q K^T`` / ``A V`` heads are in G: ``keep_groups`` prunes heads.
* ``weight_density`` ``dw``, ``act_density`` ``da`` in [0, 1], used per
  ``arch.sparsity``: ``"none"``: nothing changes; ``"gate"``: MAC energy and every
  per-MAC operand access scale by ``g = dw * da``, cycles do not; ``"skip"``: the same
  plus compute cycles scale by ``g``.  ``macs_effective = macs * g`` (gate/skip).
  ``arch.compression`` scales the fill/drain traffic of W (by ``dw``) and I (by
  ``da``): ``"bitmask"``: ``d + 1/bits`` words per dense element (1 metadata bit per
  element); ``"rle"``: ``d * (1 + run_bits/bits)``; outputs / partial sums are never
  compressed.  For dynamic-operand matmuls (attention) the W side is an activation:
  its density is ``act_density`` and its width ``i_bits``.
* ``w_bits``, ``i_bits``, ``o_bits``: every access of an operand scales by
  ``bits / arch.word_bits`` (energies are quoted per word of the architecture's width);
  MAC energy by ``w_bits * i_bits / (word_bits_W * word_bits_I)``.  The mapper and the
  legality checks use the architecture's word widths (dense worst case): knobs never
  change the mapping.

At hard points (densities 1, keeps 1, bits = word bits, sparsity "none" or no
compression) the knob path equals the exact integer model (float32 rounding only).

Batch: MACs, compute cycles and every I and O access grow exactly linearly with the
batch when the batch is an outermost loop; W accesses grow at most linearly (a
weight tile that no W-relevant loop above a level changes stays resident across the
whole batch), and the mapper may also reuse weights across the batch or spread it over
PEs, so energy and latency per inference usually *fall* with the batch (sublinear
totals).  Dynamic matmuls carry the batch in G (each example has its own K / V), so
their W side is not shared across the batch.

Dynamic-operand matmuls (``LayerSpec.dynamic``): nothing is ever resident across
inferences in this model -- every layer reads its W side and inputs from the
outermost level and writes its outputs there -- so the dynamic W side is fetched like
any operand, per group (each batch element / head has its own); it is counted as
activation traffic, with activation density and width.  Non-MAC element-wise work
(``LayerSpec.nonmac_ops``) costs ``arch.nonmac_energy_pj`` per op (energy only; no
cycles: assumed overlapped on a separate vector unit).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from hwmodel.arch.architecture import Architecture, area_mm2, onchip_bytes
from hwmodel.costmodel.counts import counts, structure
from hwmodel.costmodel.evaluate import arch_arrays, assemble_levels, legality, metrics, safe_div
from hwmodel.costmodel.mapper import (
    MEMORY_CAP_BYTES,
    NoLegalMapping,
    best_k,
    check_args,
    layer_key,
    map_workload,
    require_concrete,
)
from hwmodel.mapping.loopnest import MappingStack, arch_structure, stack_mappings
from hwmodel.mapping.tiles import CI, GI, MI, geom_dict, geometry, tiles_only, validate_mapping
from hwmodel.workload.spec import LayerSpec, Workload

__all__ = ["Knobs", "Cost", "LayerCost", "CandidateSet", "cost", "mapping_candidates"]

TAU = 0.1
SIGMA = 0.05


def _register(cls, data, meta):
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
    return cls


# ----------------------------------------------------------------------------------
# Knobs
# ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Knobs:
    """Continuous per-layer knobs (a pytree of float arrays ``[L]``; None = default).

    Attributes:
      weight_density: fraction of nonzero weights (default 1).
      act_density: fraction of nonzero input activations (default 1).
      keep_out: kept fraction of output channels M (default 1).
      keep_in: kept fraction of input channels C (default 1).
      w_bits, i_bits, o_bits: bit widths (default: the architecture's word widths).
      keep_groups: kept fraction of groups G (depthwise channels, attention heads).
    """

    weight_density: Any = None
    act_density: Any = None
    keep_out: Any = None
    keep_in: Any = None
    w_bits: Any = None
    i_bits: Any = None
    o_bits: Any = None
    keep_groups: Any = None

    @classmethod
    def dense(cls, n_layers: int) -> "Knobs":
        """All densities and keeps 1 (arrays ``[n_layers]``), bits left at default."""
        one = jnp.ones((n_layers,), jnp.float32)
        return cls(weight_density=one, act_density=one, keep_out=one, keep_in=one,
                   keep_groups=one)


_register(Knobs, data=[f.name for f in dataclasses.fields(Knobs)], meta=[])


# ----------------------------------------------------------------------------------
# Cost
# ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LayerCost:
    """Per-layer results (arrays with a leading ``[L]`` axis; more under ``vmap``).

    Attributes:
      macs_dense: MACs after keep fractions, before sparsity.
      macs_effective: MACs actually performed (x ``dw * da`` with gate / skip).
      energy_pj: total energy of the layer, pJ.
      energy_breakdown_pj: dict ``{level name: [L], "MAC": [L], "nonMAC": [L]}`` pJ.
      energy_level_op_pj: ``[L, n_levels, 3]`` pJ per level per operand (W, I, O).
      reads, writes: ``[L, n_levels, 3]`` words (NoC: delivered / collected).
      fills: ``[L, n_levels, 3]`` words written into a level from its parent.
      drains: ``[L, n_levels, 3]`` words read out of a level back to its parent (O).
      compute_cycles: product of temporal factors (x ``dw*da`` with skip).
      bw_cycles: ``[L, n_levels]`` accesses / (bandwidth x instances).
      cycles: max of the two (the roofline); ``bound`` its argmax
        (index into ``Cost.bound_names``).
      latency_s: cycles / clock.
      utilization: MACs / (dense compute cycles x PEs): spatial use of the array.
      utilization_roofline: effective MACs / (cycles x PEs).
      dram_bytes: bytes moved at the outermost level.
      used_pes: PEs the mapping uses.
      legal: whether the mapping fits the architecture (tiles, array).
      w_bits, i_bits, o_bits: bit widths used.
    """

    macs_dense: Any
    macs_effective: Any
    energy_pj: Any
    energy_breakdown_pj: Any
    energy_level_op_pj: Any
    reads: Any
    writes: Any
    fills: Any
    drains: Any
    compute_cycles: Any
    bw_cycles: Any
    cycles: Any
    bound: Any
    latency_s: Any
    utilization: Any
    utilization_roofline: Any
    dram_bytes: Any
    used_pes: Any
    legal: Any
    w_bits: Any
    i_bits: Any
    o_bits: Any


_register(LayerCost, data=[f.name for f in dataclasses.fields(LayerCost)], meta=[])


@dataclasses.dataclass(frozen=True)
class Cost:
    """Cost of a workload on an architecture: network totals plus :class:`LayerCost`.

    Data attributes (JAX arrays; scalars unless under ``vmap``):
      energy_pj: total energy for one run of the workload (its batch), pJ.
      energy_per_inference_pj: ``energy_pj / batch``.
      energy_breakdown_pj: dict per level + ``"MAC"`` + ``"nonMAC"``, pJ.
      latency_s: sum of the layers' latencies (layer by layer), s.
      cycles: sum of the layers' cycles.
      power_w: ``energy / latency``, W.
      dram_bytes: bytes moved off-chip (outermost level) for the run.
      dram_bytes_per_inference: ``dram_bytes / batch``.
      onchip_bytes: on-chip storage of the architecture, bytes.
      area_mm2: chip area, mm^2.
      utilization: ``sum MACs / (sum dense compute cycles x PEs)``.
      macs_dense, macs_effective: totals.
      pes: PE count (rows x cols).
      clock_hz: clock.
      layers: the :class:`LayerCost`.

    Static attributes: ``model``, ``arch_name``, ``dataflow``, ``objective``, ``batch``,
    ``layer_names``, ``layer_macs`` (exact integer MACs of each layer as specified,
    before knobs), ``level_names``, ``bound_names`` (``("compute", *level_names)``),
    ``relaxed``.
    """

    energy_pj: Any
    energy_per_inference_pj: Any
    energy_breakdown_pj: Any
    latency_s: Any
    cycles: Any
    power_w: Any
    dram_bytes: Any
    dram_bytes_per_inference: Any
    onchip_bytes: Any
    area_mm2: Any
    utilization: Any
    macs_dense: Any
    macs_effective: Any
    pes: Any
    clock_hz: Any
    layers: LayerCost
    model: str = ""
    arch_name: str = ""
    dataflow: str = ""
    objective: str = "energy"
    batch: int = 1
    layer_names: tuple[str, ...] = ()
    layer_macs: tuple[int, ...] = ()
    level_names: tuple[str, ...] = ()
    relaxed: bool = False

    @property
    def bound_names(self) -> tuple[str, ...]:
        return ("compute",) + tuple(self.level_names)

    # ---- rendering --------------------------------------------------------------
    def to_dict(self) -> dict:
        """A JSON-ready dict (concrete values only).

        ``macs`` (network and per layer) is the exact integer count of the layers as
        specified; ``macs_kept`` is after keep fractions (float32), ``macs_effective``
        after sparsity too.
        """
        f = lambda v: float(np.asarray(v))  # noqa: E731
        L = self.layers
        layers = []
        for i, name in enumerate(self.layer_names):
            layers.append({
                "name": name,
                "macs": int(self.layer_macs[i]),
                "macs_kept": f(L.macs_dense[i]),
                "macs_effective": f(L.macs_effective[i]),
                "energy_pj": f(L.energy_pj[i]),
                "cycles": f(L.cycles[i]),
                "compute_cycles": f(L.compute_cycles[i]),
                "latency_s": f(L.latency_s[i]),
                "utilization": f(L.utilization[i]),
                "dram_bytes": f(L.dram_bytes[i]),
                "energy_breakdown_pj": {k: f(v[i]) for k, v in L.energy_breakdown_pj.items()},
                "bound": self.bound_names[int(np.asarray(L.bound[i]))],
                "used_pes": f(L.used_pes[i]),
                "legal": bool(np.asarray(L.legal[i])),
            })
        return {
            "model": self.model,
            "arch": self.arch_name,
            "dataflow": self.dataflow,
            "objective": self.objective,
            "batch": self.batch,
            "macs": int(sum(self.layer_macs)),
            "macs_kept": f(self.macs_dense),
            "macs_effective": f(self.macs_effective),
            "energy_pj": f(self.energy_pj),
            "energy_per_inference_pj": f(self.energy_per_inference_pj),
            "energy_breakdown_pj": {k: f(v) for k, v in self.energy_breakdown_pj.items()},
            "latency_s": f(self.latency_s),
            "cycles": f(self.cycles),
            "power_w": f(self.power_w),
            "dram_bytes": f(self.dram_bytes),
            "dram_bytes_per_inference": f(self.dram_bytes_per_inference),
            "onchip_bytes": f(self.onchip_bytes),
            "area_mm2": f(self.area_mm2),
            "utilization": f(self.utilization),
            "pes": f(self.pes),
            "clock_hz": f(self.clock_hz),
            "layers": layers,
        }

    def table(self) -> str:
        """The DESIGN.md section 4 report card: per layer and total (concrete values)."""
        return _table(self)


_register(
    Cost,
    data=["energy_pj", "energy_per_inference_pj", "energy_breakdown_pj", "latency_s",
          "cycles", "power_w", "dram_bytes", "dram_bytes_per_inference", "onchip_bytes",
          "area_mm2", "utilization", "macs_dense", "macs_effective", "pes", "clock_hz",
          "layers"],
    meta=["model", "arch_name", "dataflow", "objective", "batch", "layer_names",
          "layer_macs", "level_names", "relaxed"],
)


def _si(v: float, unit: str) -> str:
    for k, p in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(v) >= p:
            return f"{v / p:.3g} {k}{unit}"
    if v != 0 and abs(v) < 1:
        for k, p in (("m", 1e-3), ("u", 1e-6), ("n", 1e-9), ("p", 1e-12)):
            if abs(v) >= p:
                return f"{v / p:.3g} {k}{unit}"
    return f"{v:.3g} {unit}"


def _table(c: Cost) -> str:
    d = c.to_dict()
    levels = list(c.level_names)
    comp = levels + ["MAC", "nonMAC"]
    head = (f"{'layer':<28} {'MACs':>9} {'energy':>10} "
            + " ".join(f"{n[:6]:>6}" for n in comp)
            + f" {'cycles':>10} {'latency':>9} {'util':>5} {'DRAM':>9} {'bound':>7}")
    lines = [
        f"{d['model']} on {d['arch']} ({d['dataflow']} dataflow, objective {d['objective']}), "
        f"batch {d['batch']}",
        "energy breakdown columns: % of the layer's energy",
        head,
        "-" * len(head),
    ]

    def row(name: str, r: dict) -> str:  # one layer, or the total
        e = r["energy_pj"] or 1.0
        return (
            f"{name[:28]:<28} {_si(r['macs'], ''):>9} {_si(r['energy_pj'] * 1e-12, 'J'):>10} "
            + " ".join(f"{100 * r['energy_breakdown_pj'].get(n, 0.0) / e:6.1f}" for n in comp)
            + f" {r['cycles']:10.4g} {_si(r['latency_s'], 's'):>9} {100 * r['utilization']:4.0f}%"
            f" {_si(r['dram_bytes'], 'B'):>9}"
        )

    for L in d["layers"]:
        lines.append(row(L["name"], L) + f" {L['bound']:>7}" + ("" if L["legal"] else "  ILLEGAL"))
    lines.append("-" * len(head))
    lines.append(row("total", d))
    wb = np.asarray(c.layers.w_bits, dtype=np.float64)
    ib = np.asarray(c.layers.i_bits, dtype=np.float64)
    rows = [
        ("model", d["model"]),
        ("dataset / accuracy", "n/a (hardware cost only)"),
        ("bits per weight / activation",
         f"{np.mean(wb):.3g} / {np.mean(ib):.3g}" if len(wb) else "-"),
        ("batch size", str(d["batch"])),
        ("runtime per batch", _si(d["latency_s"], "s")),
        ("energy per inference", _si(d["energy_per_inference_pj"] * 1e-12, "J")),
        ("power", _si(d["power_w"], "W")),
        ("off-chip bytes per inference", _si(d["dram_bytes_per_inference"], "B")),
        ("PEs", f"{d['pes']:.0f}"),
        ("on-chip memory", _si(d["onchip_bytes"], "B")),
        ("clock", _si(d["clock_hz"], "Hz")),
        ("utilization", f"{100 * d['utilization']:.1f}%"),
        ("area", f"{d['area_mm2']:.3g} mm^2"),
        ("MACs (dense / effective)", f"{_si(d['macs'], '')} / {_si(d['macs_effective'], '')}"),
        ("simulated", "yes: analytical loop-nest model (hwmodel.cost), not measured"),
    ]
    lines.append("")
    lines.append("report card")
    w = max(len(k) for k, _ in rows)
    lines += [f"  {k:<{w}}  {v}" for k, v in rows]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------
# Candidate sets (static, for the traceable mapper path)
# ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class CandidateSet:
    """A static set of candidate mappings per layer (numpy; not a pytree).

    Attributes:
      layer_keys: the shape key of every layer it was built for (checked on use).
      stack: candidates flattened over ``[L * K]`` (row ``l * K + k``).
      valid: ``[L, K]`` bool (padding rows are False).
      dataflow: the family.
      levels: storage level names.
    """

    layer_keys: tuple
    stack: MappingStack
    valid: np.ndarray
    dataflow: str
    levels: tuple[str, ...]

    @property
    def K(self) -> int:
        return int(self.valid.shape[1])


def mapping_candidates(workload, archs, *, dataflow: str = "rs", objective: str = "energy",
                       per_layer: int = 16) -> CandidateSet:
    """Build a static candidate set for :func:`cost` (``candidates=``).

    For every layer and every reference architecture (concrete values), the mapper's
    search space is ranked by ``objective`` (each factorization with its best loop
    orders; streamed, within the mapper's memory cap) and its best ``per_layer`` are
    kept; the union over the architectures (first architecture's ranking first) is
    padded to a common ``K``.  Evaluating ``cost(..., candidates=cs)`` on one of ``archs`` then
    picks the mapper's choice (up to float32 near-ties), or a better candidate that
    came from another architecture's list (the mapper's search is pruned, see
    :mod:`hwmodel.costmodel.mapper`).

    Args:
      workload: :class:`Workload` or sequence of :class:`LayerSpec`.
      archs: one architecture or a sequence (same structure), concrete values; spread
        them over the range of sizes you will evaluate (e.g. smallest and largest).
      dataflow, objective: as :func:`hwmodel.map_layer`.
      per_layer: candidates kept per layer and reference architecture.

    Returns:
      A :class:`CandidateSet`.
    """
    check_args(dataflow, objective)
    archs = [archs] if isinstance(archs, Architecture) else list(archs)
    if not archs:
        raise ValueError("mapping_candidates: need at least one architecture")
    for a in archs:
        require_concrete(a, "mapping_candidates")
    st = arch_structure(archs[0])
    for a in archs[1:]:
        if arch_structure(a).storage_names != st.storage_names:
            raise ValueError("mapping_candidates: architectures differ in level structure")
    layers = workload.layers if isinstance(workload, Workload) else tuple(workload)
    memo: dict = {}
    per = []
    for layer in layers:
        key = layer_key(layer)
        if key not in memo:
            rows = []
            seen = set()
            for a in archs:
                try:
                    ms, _, _ = best_k(layer, a, dataflow, objective, top_k=per_layer,
                                       max_bytes=MEMORY_CAP_BYTES)
                except NoLegalMapping:
                    continue
                for i in range(len(ms)):
                    sig = (ms.T[i].tobytes(), ms.order[i].tobytes(), ms.SX[i].tobytes(),
                           ms.SY[i].tobytes(), ms.keep[i].tobytes())
                    if sig not in seen:
                        seen.add(sig)
                        rows.append(ms.take(np.array([i])))
            if not rows:
                raise ValueError(
                    f"mapping_candidates: layer {layer.name!r} has no legal {dataflow} mapping "
                    f"on any of the given architectures"
                )
            memo[key] = rows
        per.append(memo[key])
    K = max(len(r) for r in per)
    parts, valid = [], np.zeros((len(layers), K), dtype=bool)
    for li, rows in enumerate(per):
        valid[li, : len(rows)] = True
        padded = rows + [rows[0]] * (K - len(rows))
        parts.extend(padded)
    stack = MappingStack(
        np.concatenate([p.T for p in parts]), np.concatenate([p.order for p in parts]),
        np.concatenate([p.SX for p in parts]), np.concatenate([p.SY for p in parts]),
        np.concatenate([p.keep for p in parts]),
    )
    return CandidateSet(tuple(layer_key(l) for l in layers), stack, valid, dataflow,
                        st.storage_names)


# ----------------------------------------------------------------------------------
# the evaluation
# ----------------------------------------------------------------------------------
def _keep_targets(ms: MappingStack):
    """Where each keep fraction acts: ``[B, 3, n_s, 8]`` (temporal) and ``[B, 3, 8]``
    (spatial x / y) one-hot float masks, for M (keep_out), C (keep_in), G (keep_groups)."""
    B, n_s, _ = ms.T.shape
    tT = np.zeros((B, 3, n_s, 8))
    tX = np.zeros((B, 3, 8))
    tY = np.zeros((B, 3, 8))
    rows = np.arange(B)
    for slot, d in enumerate((MI, CI, GI)):
        big = ms.T[:, :, d] > 1  # [B, n_s]
        has = big.any(axis=1)
        j = np.argmax(big, axis=1)
        tT[rows[has], slot, j[has], d] = 1.0
        sx = ~has & (ms.SX[:, d] > 1)
        tX[rows[sx], slot, d] = 1.0
        sy = ~has & ~sx & (ms.SY[:, d] > 1)
        tY[rows[sy], slot, d] = 1.0
    return tT, tX, tY


def _knob(k, name, L, default):
    v = getattr(k, name) if k is not None else None
    if v is None:
        return jnp.broadcast_to(jnp.asarray(default, jnp.float32), (L,))
    v = jnp.asarray(v, jnp.float32)
    if v.ndim == 0:
        return jnp.broadcast_to(v, (L,))
    if v.shape != (L,):
        raise ValueError(f"Knobs.{name}: expected shape ({L},) (one per layer), got {v.shape}")
    return v


def _evaluate(layers, ms: MappingStack, row_layer: np.ndarray, arch: Architecture,
              knobs: Knobs | None, relaxed: bool):
    """Evaluate every row of ``ms`` (row ``b`` belongs to layer ``row_layer[b]``)."""
    st = arch_structure(arch)
    B = len(ms)
    L = len(layers)
    rl = [layers[i] for i in row_layer]
    g = geometry(rl)
    s = structure(ms, st, g)
    f32 = jnp.float32
    aa = arch_arrays(jnp, arch, relaxed=relaxed)
    wbits = aa["word_bits"]
    dyn = np.array([l.dynamic for l in rl])
    ri = jnp.asarray(row_layer)

    dw_l = _knob(knobs, "weight_density", L, 1.0)
    da_l = _knob(knobs, "act_density", L, 1.0)
    ko_l = _knob(knobs, "keep_out", L, 1.0)
    ki_l = _knob(knobs, "keep_in", L, 1.0)
    kg_l = _knob(knobs, "keep_groups", L, 1.0)
    wb_l = _knob(knobs, "w_bits", L, wbits[0])
    ib_l = _knob(knobs, "i_bits", L, wbits[1])
    ob_l = _knob(knobs, "o_bits", L, wbits[2])
    dw, da = dw_l[ri], da_l[ri]
    keeps = jnp.stack([ko_l[ri], ki_l[ri], kg_l[ri]], axis=-1)  # [B, 3]
    dynj = jnp.asarray(dyn)
    wb_eff = jnp.where(dynj, ib_l[ri], wb_l[ri])
    dw_eff = jnp.where(dynj, da, dw)
    bits = jnp.stack([wb_eff, ib_l[ri], ob_l[ri]], axis=-1)  # [B, 3]

    # keep fractions -> scaled loop factors
    tT, tX, tY = _keep_targets(ms)
    km1 = keeps - 1.0
    T = jnp.asarray(ms.T, f32) * (1.0 + jnp.einsum("bs,bsjd->bjd", km1, jnp.asarray(tT, f32)))
    SX = jnp.asarray(ms.SX, f32) * (1.0 + jnp.einsum("bs,bsd->bd", km1, jnp.asarray(tX, f32)))
    SY = jnp.asarray(ms.SY, f32) * (1.0 + jnp.einsum("bs,bsd->bd", km1, jnp.asarray(tY, f32)))
    cnt = counts(jnp, T, SX, SY, s, geom_dict(g, jnp, f32))

    ratio = bits / wbits[None, :]
    if arch.sparsity in ("gate", "skip"):
        gate = dw_eff * da
    else:
        gate = jnp.ones_like(da)
    dens = jnp.stack([dw_eff, da, jnp.ones_like(da)], axis=-1)
    if arch.compression == "bitmask":
        comp = dens + 1.0 / bits
        comp = comp.at[:, 2].set(1.0)
    elif arch.compression == "rle":
        comp = dens * (1.0 + float(arch.rle_run_bits) / bits)
        comp = comp.at[:, 2].set(1.0)
    else:
        comp = jnp.ones_like(dens)
    scale_t = ratio * comp
    scale_m = ratio * gate[:, None]
    mac_scale = gate * (bits[:, 0] * bits[:, 1]) / (wbits[0] * wbits[1])
    cycle_scale = gate if arch.sparsity == "skip" else None
    nonmac = jnp.asarray(np.array([float(l.nonmac_ops) for l in rl]), f32)
    per_pe = tuple(l.per_pe for l in arch.levels)
    met = metrics(jnp, cnt, aa, st, per_pe_level=per_pe, scale_t=scale_t, scale_m=scale_m,
                  mac_scale=mac_scale, cycle_scale=cycle_scale, nonmac_ops=nonmac)
    # legality with dense integer tiles at the architecture's word widths
    tiles = tiles_only(np, ms.T, ms.SX, ms.SY, st.first_pe, geom_dict(g))  # exact, numpy
    legal, slack = legality(jnp, {"tiles": jnp.asarray(tiles, f32)}, aa, st, ms.keep,
                            jnp.asarray(ms.SX, f32), jnp.asarray(ms.SY, f32))
    zeros_noc = jnp.zeros((B, len(st.noc), 3), f32)
    fills = assemble_levels(jnp, st, cnt["fills"], zeros_noc) * scale_t[:, None, :]
    drains = assemble_levels(jnp, st, cnt["drains"], zeros_noc) * scale_t[:, None, :]
    macs = cnt["macs"]
    out = dict(met)
    out.update(
        macs_dense=macs, macs_effective=macs * gate, fills=fills, drains=drains,
        used_pes=cnt["used_pes"], dense_cycles=cnt["cycles"], legal=legal, slack=slack,
        w_bits=bits[:, 0], i_bits=bits[:, 1], o_bits=bits[:, 2],
    )
    return out, aa


def _assemble(layers, per: dict, aa: dict, arch: Architecture, *, model: str, dataflow: str,
              objective: str, relaxed: bool) -> Cost:
    st = arch_structure(arch)
    names = tuple(l.name for l in layers)
    pes = aa["rows"] * aa["cols"]
    e_lo = per["energy_level_op"]
    breakdown = {lvl: jnp.sum(e_lo[:, i, :], axis=-1) for i, lvl in enumerate(st.level_names)}
    breakdown["MAC"] = per["energy_mac"]
    breakdown["nonMAC"] = per["energy_nonmac"]
    wbytes = aa["word_bits"] / 8.0
    dram = jnp.sum((per["reads"][:, 0, :] + per["writes"][:, 0, :]) * wbytes[None, :], axis=-1)
    latency = per["cycles"] / aa["clock"]
    util = safe_div(jnp, per["macs_dense"], per["dense_cycles"] * pes)
    util_rl = safe_div(jnp, per["macs_effective"], per["cycles"] * pes)
    lc = LayerCost(
        macs_dense=per["macs_dense"], macs_effective=per["macs_effective"],
        energy_pj=per["energy"], energy_breakdown_pj=breakdown, energy_level_op_pj=e_lo,
        reads=per["reads"], writes=per["writes"], fills=per["fills"], drains=per["drains"],
        compute_cycles=per["compute_cycles"], bw_cycles=per["bw_cycles"],
        cycles=per["cycles"], bound=per["bound"], latency_s=latency, utilization=util,
        utilization_roofline=util_rl, dram_bytes=dram, used_pes=per["used_pes"],
        legal=per["legal"], w_bits=per["w_bits"], i_bits=per["i_bits"],
        o_bits=per["o_bits"],
    )
    batch = _batch(layers)
    energy = jnp.sum(per["energy"])
    lat = jnp.sum(latency)
    arch_a = arch if relaxed else arch.replace(pe_rows=aa["rows"], pe_cols=aa["cols"])
    return Cost(
        energy_pj=energy,
        energy_per_inference_pj=energy / batch,
        energy_breakdown_pj={k: jnp.sum(v) for k, v in breakdown.items()},
        latency_s=lat,
        cycles=jnp.sum(per["cycles"]),
        power_w=safe_div(jnp, energy * 1e-12, lat),
        dram_bytes=jnp.sum(dram),
        dram_bytes_per_inference=jnp.sum(dram) / batch,
        onchip_bytes=onchip_bytes(arch_a),
        area_mm2=area_mm2(arch_a),
        utilization=safe_div(jnp, jnp.sum(per["macs_dense"]), jnp.sum(per["dense_cycles"]) * pes),
        macs_dense=jnp.sum(per["macs_dense"]),
        macs_effective=jnp.sum(per["macs_effective"]),
        pes=pes,
        clock_hz=aa["clock"],
        layers=lc,
        model=model,
        arch_name=arch.name,
        dataflow=dataflow,
        objective=objective,
        batch=batch,
        layer_names=names,
        layer_macs=tuple(int(l.macs) for l in layers),
        level_names=st.level_names,
        relaxed=relaxed,
    )


def _batch(layers) -> int:
    for l in layers:
        if l.batch:
            return int(l.batch)
    return 1


def _is_traced(arch) -> bool:
    return any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(arch))


def cost(workload, arch: Architecture, *, dataflow: str = "rs", objective: str = "energy",
         mappings=None, candidates: CandidateSet | None = None, knobs: Knobs | None = None,
         relaxed: bool = False) -> Cost:
    """Energy, latency, data movement and area of ``workload`` on ``arch``.

    Pure function of ``arch``'s leaves and ``knobs``: works under ``jit``, ``grad`` and
    ``vmap`` (see the module docstring for which mapping path does what).

    Args:
      workload: a :class:`Workload` or a sequence of :class:`LayerSpec`.
      arch: the architecture (leaves may be traced when ``mappings`` or ``candidates``
        is given).
      dataflow: one of :data:`hwmodel.DATAFLOWS` (used by the mapper).
      objective: ``"energy"`` or ``"edp"`` (mapper / candidate choice).
      mappings: one :class:`Mapping` per layer, or a stacked ``MappingStack``.
      candidates: a :class:`CandidateSet` from :func:`mapping_candidates`.
      knobs: :class:`Knobs` (per-layer arrays ``[L]``); None = dense.
      relaxed: continuous hardware sizes + straight-through candidate choice.

    Returns:
      A :class:`Cost` pytree.

    Raises:
      ValueError: bad dataflow / objective / knob shapes, mappings that do not match
        the layers, an illegal mapping on a concrete architecture, a layer with no
        legal mapping (from the mapper).
      TypeError: the mapper is needed but the architecture is traced.
    """
    check_args(dataflow, objective)
    layers = workload.layers if isinstance(workload, Workload) else tuple(workload)
    if not layers:
        raise ValueError("cost: the workload has no layers")
    for l in layers:
        if not isinstance(l, LayerSpec):
            raise TypeError(f"cost: workload items must be LayerSpec, got {type(l).__name__}")
    model = workload.name if isinstance(workload, Workload) else "workload"
    L = len(layers)
    traced = _is_traced(arch)
    st = arch_structure(arch)
    if mappings is not None and candidates is not None:
        raise ValueError("cost: pass either mappings= or candidates=, not both")
    if candidates is not None:
        keys = tuple(layer_key(l) for l in layers)
        if keys != candidates.layer_keys:
            raise ValueError("cost: the candidate set was built for a different workload")
        if candidates.levels != st.storage_names:
            raise ValueError(
                f"cost: candidate set levels {candidates.levels} != architecture storage "
                f"levels {st.storage_names}")
        K = candidates.K
        row_layer = np.repeat(np.arange(L), K)
        return _run(layers, candidates.stack, row_layer, candidates.valid, arch, knobs,
                    relaxed=relaxed, objective=objective, model=model,
                    dataflow=candidates.dataflow)
    if mappings is None:
        require_concrete(arch, "cost without mappings= or candidates= (the mapper)")
        mappings = map_workload(layers, arch, dataflow=dataflow, objective=objective)
    if isinstance(mappings, MappingStack):
        ms = mappings
        if len(ms) != L:
            raise ValueError(f"cost: {len(ms)} stacked mappings for {L} layers")
        check = [ms.mapping(i, st.storage_names) for i in range(L)]
    else:
        check = list(mappings)
        if len(check) != L:
            raise ValueError(f"cost: {len(check)} mappings for {L} layers")
        ms = stack_mappings(check)
    for layer, m in zip(layers, check):
        validate_mapping(layer, arch, m, check_capacity=not traced)
    return _run(layers, ms, np.arange(L), None, arch, knobs, relaxed=relaxed,
                objective=objective, model=model, dataflow=dataflow)


_JIT_CACHE: dict = {}
_JIT_CACHE_SIZE = 32


def _run(layers, ms: MappingStack, row_layer, valid, arch, knobs, *, relaxed, objective, model,
         dataflow) -> Cost:
    """Evaluate under ``jax.jit``, compiled once per static configuration.

    The static part (layers, integer mappings, candidate validity, options) selects a
    compiled function from a small cache (a compile cache only: results never depend
    on it); the architecture and the knobs are its traced arguments.
    """
    key = (tuple(layers), ms.T.tobytes(), ms.order.tobytes(), ms.SX.tobytes(), ms.SY.tobytes(),
           ms.keep.tobytes(), ms.T.shape, np.asarray(row_layer).tobytes(),
           None if valid is None else (valid.tobytes(), valid.shape), relaxed, objective,
           model, dataflow)
    fn = _JIT_CACHE.get(key)
    if fn is None:
        L = len(layers)

        def fn(a, k):
            per, aa = _evaluate(layers, ms, row_layer, a, k, relaxed)
            if valid is not None:
                per = _select(per, valid, L, valid.shape[1], objective, relaxed)
            return _assemble(layers, per, aa, a, model=model, dataflow=dataflow,
                             objective=objective, relaxed=relaxed)

        fn = jax.jit(fn)
        if len(_JIT_CACHE) >= _JIT_CACHE_SIZE:
            _JIT_CACHE.pop(next(iter(_JIT_CACHE)))
        _JIT_CACHE[key] = fn
    return fn(arch, knobs)


def _select(per: dict, valid: np.ndarray, L: int, K: int, objective: str, relaxed: bool):
    """Pick one candidate per layer (hard argmin; straight-through softmin if relaxed)."""
    rs = lambda v: v.reshape((L, K) + v.shape[1:])  # noqa: E731
    obj = per["energy"] if objective == "energy" else per["energy"] * per["cycles"]
    obj = rs(obj)
    ok = rs(per["legal"]) & jnp.asarray(valid)
    any_ok = jnp.any(ok, axis=1)
    masked = jnp.where(ok, obj, jnp.inf)
    idx = jnp.argmin(masked, axis=1)
    hard = jax.nn.one_hot(idx, K, dtype=obj.dtype)
    if relaxed:
        logobj = jnp.log(jnp.maximum(obj, 1e-30))
        ref = jax.lax.stop_gradient(jnp.min(jnp.where(jnp.asarray(valid), logobj, jnp.inf),
                                            axis=1, keepdims=True))
        logits = -(logobj - ref) / TAU + jax.nn.log_sigmoid(rs(per["slack"]) / SIGMA)
        logits = jnp.where(jnp.asarray(valid), logits, -jnp.inf)
        soft = jax.nn.softmax(logits, axis=1)
        w = hard + soft - jax.lax.stop_gradient(soft)
    else:
        w = hard
    out = {}
    for k, v in per.items():
        v = rs(v)
        if v.dtype in (jnp.bool_, jnp.int32, jnp.int64):
            sel = jnp.take_along_axis(v, idx.reshape((L, 1) + (1,) * (v.ndim - 2)), axis=1)[:, 0]
            if k == "legal":
                sel = sel & any_ok
            out[k] = sel
        else:
            ww = w.reshape((L, K) + (1,) * (v.ndim - 2))
            sel = jnp.sum(ww * v, axis=1)
            nanv = jnp.full_like(sel, jnp.nan)
            out[k] = jnp.where(any_ok.reshape((L,) + (1,) * (sel.ndim - 1)), sel, nanv)
    return out
