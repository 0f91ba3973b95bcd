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
compression) the knob path equals the exact integer model (float32 rounding only; the
numpy evaluator below gives the exact integers).

**Domain** (:data:`KNOB_DOMAIN`): densities and keep fractions in ``[0, 1]``, bit widths
in ``[1, arch.word_bits]`` of their operand (the mapping and its legality are those of
the architecture's words).  Concrete values outside it (negative, above the bound,
NaN, infinite) raise a ``ValueError`` naming the knob, the layer and the range
(:func:`check_knobs`).  Traced values cannot be checked in Python: the model clips them
into the domain (the result is that of the nearest bound, with zero gradient outside;
finite and non-negative; NaN stays NaN), and ``cost(..., checks=True)`` adds
``jax.experimental.checkify`` checks that report the first offending knob and layer
when the caller is wrapped in ``checkify.checkify``.

**Evaluators**: with concrete inputs (nothing traced in ``arch`` or ``knobs``) the
counts and metrics are evaluated once with numpy in float64 -- no compilation, a few
milliseconds for a whole network, the leaves of the :class:`Cost` are numpy arrays;
under ``jit`` / ``grad`` / ``vmap`` (or ``backend="jax"``) the same code runs on
``jax.numpy`` in float32 inside one compiled function per static configuration.  Both
evaluate the same formulas (:mod:`hwmodel._counts`, :mod:`hwmodel._evaluate`); they
agree to float32 rounding (tested on several networks, dataflows, architectures and
knob settings).

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

from hwmodel._util import is_traced, register_pytree
from hwmodel.arch.architecture import Architecture, area_mm2, onchip_bytes
from hwmodel.costmodel.counts import counts, structure
from hwmodel.costmodel.evaluate import (ArchArrays, Metrics, arch_arrays, assemble_levels, legality,
                                        metrics, safe_div)
from hwmodel.costmodel.mapper import (
    MEMORY_CAP_BYTES,
    NoLegalMapping,
    best_k,
    check_args,
    layer_key,
    check_exact_range,
    map_workload,
    per_distinct_layer,
    require_concrete,
)
from hwmodel.mapping.loopnest import MappingStack, arch_structure, stack_mappings
from hwmodel.mapping.tiles import CI, GI, MI, geometry, tiles_only, validate_mapping, window_steps
from hwmodel.workload.spec import LayerSpec, Workload

__all__ = ["Knobs", "Cost", "LayerCost", "CandidateSet", "cost", "mapping_candidates"]

TAU = 0.1
SIGMA = 0.05


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


register_pytree(Knobs, data=[f.name for f in dataclasses.fields(Knobs)], meta=[])


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


register_pytree(LayerCost, data=[f.name for f in dataclasses.fields(LayerCost)], meta=[])


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
      pe_rows, pe_cols: the PE array (rounded down to integers unless ``relaxed``).
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
    pe_rows: Any
    pe_cols: Any
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
            "pes": _pe_count(self.pe_rows, self.pe_cols),
            "clock_hz": f(self.clock_hz),
            "layers": layers,
        }

    def table(self) -> str:
        """The report card (docs/report_card.md): per layer and total (concrete values)."""
        return _table(self)


register_pytree(
    Cost,
    data=["energy_pj", "energy_per_inference_pj", "energy_breakdown_pj", "latency_s",
          "cycles", "power_w", "dram_bytes", "dram_bytes_per_inference", "onchip_bytes",
          "area_mm2", "utilization", "macs_dense", "macs_effective", "pes", "pe_rows",
          "pe_cols", "clock_hz", "layers"],
    meta=["model", "arch_name", "dataflow", "objective", "batch", "layer_names",
          "layer_macs", "level_names", "relaxed"],
)


def _pe_count(rows, cols) -> int | float:
    """rows x cols as an exact ``int`` when both are integers (float32 cannot hold every
    PE count: 1e6 x 1e6 would read 999999995904), else a float (relaxed sizes)."""
    r, c = float(np.asarray(rows)), float(np.asarray(cols))
    if r.is_integer() and c.is_integer():
        return int(r) * int(c)
    return r * c


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
        ("PEs", f"{d['pes']}" if isinstance(d["pes"], int) else f"{d['pes']:.4g}"),
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

    def union_of_best(layer) -> list[MappingStack]:
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
        return rows

    per = per_distinct_layer(layers, union_of_best)
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


# The knobs' domain (see the module docstring): name -> (lower, upper); ``None`` as the
# upper bound of a bit width means the architecture's word width of that operand.
KNOB_DOMAIN = {
    "weight_density": (0.0, 1.0),
    "act_density": (0.0, 1.0),
    "keep_out": (0.0, 1.0),
    "keep_in": (0.0, 1.0),
    "keep_groups": (0.0, 1.0),
    "w_bits": (1.0, 0),
    "i_bits": (1.0, 1),
    "o_bits": (1.0, 2),
}

BACKENDS = ("numpy", "jax")


def _knob_bounds(name, word_bits):
    """``(lo, hi)`` of knob ``name``; ``hi`` is ``word_bits[x]`` for bit widths."""
    lo, hi = KNOB_DOMAIN[name]
    if name.endswith("_bits"):
        hi = word_bits[hi]
    return lo, hi


def check_knobs(knobs: Knobs | None, layers, arch: Architecture) -> None:
    """Raise a clear error for concrete knob values outside their domain.

    Domain: densities and keep fractions in ``[0, 1]``; bit widths in ``[1, word bits of
    the operand]`` (the mapping and its legality assume at most the architecture's word
    width).  NaN and infinities are outside every domain.  Traced values (under ``jit``,
    ``grad``, ``vmap``) are not checked here: :func:`cost` clips them into the domain
    (or checks them with ``checks=True`` under ``checkify``).

    Raises:
      ValueError: ``Knobs.keep_out[3] (layer 'conv2') = -1: must be in [0, 1]``.
    """
    if knobs is None:
        return
    wb = None if is_traced(arch.word_bits) else np.asarray(arch.word_bits, np.float64)
    for name in KNOB_DOMAIN:
        v = getattr(knobs, name)
        if v is None or is_traced(v):
            continue
        lo, hi = _knob_bounds(name, wb if wb is not None else (np.inf,) * 3)
        a = np.asarray(v, dtype=np.float64)
        bad = ~((a >= lo) & (a <= hi))
        if not bad.any():
            continue
        hi_s = "" if not np.isfinite(hi) else f"{hi:g}"
        rng = f"[{lo:g}, {hi_s}]" if hi_s else f">= {lo:g}"
        if a.ndim == 0:
            raise ValueError(f"Knobs.{name} = {float(a):g}: must be in {rng}")
        i = int(np.flatnonzero(bad.reshape(-1))[0])
        where = f" (layer {layers[i].name!r})" if a.ndim == 1 and i < len(layers) else ""
        raise ValueError(f"Knobs.{name}[{i}]{where} = {float(a.reshape(-1)[i]):g}: "
                         f"must be in {rng}")


def _knob(xp, k, name, L, default, lo, hi, checks, layers):
    """Knob ``name`` as a ``[L]`` array, clipped into ``[lo, hi]`` (a no-op on checked
    concrete values; traced values outside the domain take the nearest bound, with a
    zero gradient; NaN stays NaN).  ``checks``: emit ``checkify`` checks (traced)."""
    ft = np.float64 if xp is np else jnp.float32
    v = getattr(k, name) if k is not None else None
    if v is None:
        return xp.broadcast_to(xp.asarray(default, ft), (L,))
    v = xp.asarray(v, ft)
    if v.ndim == 0:
        v = xp.broadcast_to(v, (L,))
    if v.shape != (L,):
        raise ValueError(f"Knobs.{name}: expected shape ({L},) (one per layer), got {v.shape}")
    if checks and xp is not np:
        from jax.experimental import checkify

        hi_s = f"{hi:g}" if isinstance(hi, float) else "{hi}"  # static, or the word width
        for i, layer in enumerate(layers):
            checkify.check((v[i] >= lo) & (v[i] <= hi),
                           f"Knobs.{name}[{i}] (layer {layer.name!r}) = {{v}}: must be in "
                           f"[{lo:g}, {hi_s}]", v=v[i], hi=jnp.asarray(hi, ft))
    # where-based clip: gradient 1 on the closed domain, 0 outside
    return xp.where(v < lo, lo, xp.where(v > hi, hi, v))


@dataclasses.dataclass(frozen=True)
class RowCosts(Metrics):
    """The evaluated rows of a stacked mapping set: what :func:`_evaluate` hands the
    candidate choice (:func:`_select`) and the report (:func:`_assemble`).

    ``R`` = rows (one per layer, or ``L * K`` candidates before the choice, ``L`` after
    it); ``n_levels`` = levels of ``arch.levels``; a last axis of 3 = operands W, I, O.
    The fields of :class:`~hwmodel.costmodel.evaluate.Metrics` (``reads``, ``writes``,
    ``energy_level_op``, ``energy_mac``, ``energy_nonmac``, ``energy``,
    ``compute_cycles``, ``cycles``, ``bw_cycles``, ``bound``; ``B`` = ``R``) with the
    knobs applied, and:

    Attributes:
      macs_dense: ``[R]`` MACs after keep fractions, before sparsity.
      macs_effective: ``[R]`` MACs performed (gated / skipped ones excluded).
      fills, drains: ``[R, n_levels, 3]`` words into a level from its parent / out of
        it back to the parent (zero at NoC levels).
      used_pes: ``[R]`` PEs the mapping uses.
      dense_cycles: ``[R]`` compute cycles before skipping (product of the factors).
      legal: ``[R]`` bool: the integer mapping fits the architecture.
      slack: ``[R]`` smallest relative margin of the fit (negative = illegal).
      w_bits, i_bits, o_bits: ``[R]`` bits per word used for W, I, O.
    """

    macs_dense: Any
    macs_effective: Any
    fills: Any
    drains: Any
    used_pes: Any
    dense_cycles: Any
    legal: Any
    slack: Any
    w_bits: Any
    i_bits: Any
    o_bits: Any


register_pytree(RowCosts, [f.name for f in dataclasses.fields(RowCosts)], [])


def _evaluate(xp, layers, ms: MappingStack, row_layer: np.ndarray, arch: Architecture,
              knobs: Knobs | None, relaxed: bool, checks: bool = False):
    """Evaluate every row of ``ms`` (row ``b`` belongs to layer ``row_layer[b]``) with
    ``xp`` (numpy: float64; jax.numpy: float32, traceable)."""
    st = arch_structure(arch)
    B = len(ms)
    L = len(layers)
    rl = [layers[i] for i in row_layer]
    g = geometry(rl)
    s = structure(ms, st, g)
    ft = np.float64 if xp is np else jnp.float32
    aa = arch_arrays(xp, arch, relaxed=relaxed)
    wbits = aa.word_bits
    dyn = np.array([l.dynamic for l in rl])
    ri = np.asarray(row_layer)

    kn = {}
    for name, default in (("weight_density", 1.0), ("act_density", 1.0), ("keep_out", 1.0),
                          ("keep_in", 1.0), ("keep_groups", 1.0), ("w_bits", wbits[0]),
                          ("i_bits", wbits[1]), ("o_bits", wbits[2])):
        lo, hi = _knob_bounds(name, wbits)
        kn[name] = _knob(xp, knobs, name, L, default, lo, hi, checks, layers)[ri]
    dw, da = kn["weight_density"], kn["act_density"]
    keeps = xp.stack([kn["keep_out"], kn["keep_in"], kn["keep_groups"]], axis=-1)  # [B, 3]
    wb_eff = xp.where(dyn, kn["i_bits"], kn["w_bits"])
    dw_eff = xp.where(dyn, da, dw)
    bits = xp.stack([wb_eff, kn["i_bits"], kn["o_bits"]], axis=-1)  # [B, 3]

    # keep fractions -> scaled loop factors
    tT, tX, tY = _keep_targets(ms)
    km1 = keeps - 1.0
    c = lambda a: xp.asarray(a, ft)  # noqa: E731
    T = c(ms.T) * (1.0 + xp.einsum("bs,bsjd->bjd", km1, c(tT)))
    SX = c(ms.SX) * (1.0 + xp.einsum("bs,bsd->bd", km1, c(tX)))
    SY = c(ms.SY) * (1.0 + xp.einsum("bs,bsd->bd", km1, c(tY)))
    cnt = counts(xp, T, SX, SY, s, window_steps(g, xp, ft))

    ratio = bits / wbits[None, :]
    if arch.sparsity in ("gate", "skip"):
        gate = dw_eff * da
    else:
        gate = xp.ones_like(da)
    dens = xp.stack([dw_eff, da, xp.ones_like(da)], axis=-1)
    o_one = np.array([[0.0, 0.0, 1.0]])  # outputs / partial sums are never compressed
    if arch.compression == "bitmask":
        comp = (dens + 1.0 / bits) * (1 - o_one) + o_one
    elif arch.compression == "rle":
        comp = dens * (1.0 + float(arch.rle_run_bits) / bits) * (1 - o_one) + o_one
    else:
        comp = xp.ones_like(dens)
    scale_t = ratio * comp
    scale_m = ratio * gate[:, None]
    mac_scale = gate * (bits[:, 0] * bits[:, 1]) / (wbits[0] * wbits[1])
    cycle_scale = gate if arch.sparsity == "skip" else None
    nonmac = c(np.array([float(l.nonmac_ops) for l in rl]))
    per_pe = tuple(l.per_pe for l in arch.levels)
    met = metrics(xp, cnt, aa, st, per_pe_level=per_pe, scale_t=scale_t, scale_m=scale_m,
                  mac_scale=mac_scale, cycle_scale=cycle_scale, nonmac_ops=nonmac)
    # legality with dense integer tiles at the architecture's word widths
    tiles = tiles_only(np, ms.T, ms.SX, ms.SY, st.first_pe, window_steps(g))  # exact, numpy
    legal, slack = legality(xp, c(tiles), aa, st, ms.keep, c(ms.SX), c(ms.SY))
    zeros_noc = xp.zeros((B, len(st.noc), 3), ft)
    fills = assemble_levels(xp, st, cnt.fills, zeros_noc) * scale_t[:, None, :]
    drains = assemble_levels(xp, st, cnt.drains, zeros_noc) * scale_t[:, None, :]
    macs = cnt.macs
    out = RowCosts(
        **{f.name: getattr(met, f.name) for f in dataclasses.fields(Metrics)},
        macs_dense=macs, macs_effective=macs * gate, fills=fills, drains=drains,
        used_pes=cnt.used_pes, dense_cycles=cnt.cycles, legal=legal, slack=slack,
        w_bits=bits[:, 0], i_bits=bits[:, 1], o_bits=bits[:, 2],
    )
    return out, aa


def _assemble(xp, layers, per: RowCosts, aa: ArchArrays, arch: Architecture, *, model: str,
              dataflow: str, objective: str, relaxed: bool) -> Cost:
    st = arch_structure(arch)
    names = tuple(l.name for l in layers)
    pes = aa.rows * aa.cols
    e_lo = per.energy_level_op
    breakdown = {lvl: xp.sum(e_lo[:, i, :], axis=-1) for i, lvl in enumerate(st.level_names)}
    breakdown["MAC"] = per.energy_mac
    breakdown["nonMAC"] = per.energy_nonmac
    wbytes = aa.word_bits / 8.0
    dram = xp.sum((per.reads[:, 0, :] + per.writes[:, 0, :]) * wbytes[None, :], axis=-1)
    latency = per.cycles / aa.clock
    util = safe_div(xp, per.macs_dense, per.dense_cycles * pes)
    util_rl = safe_div(xp, per.macs_effective, per.cycles * pes)
    lc = LayerCost(
        macs_dense=per.macs_dense, macs_effective=per.macs_effective,
        energy_pj=per.energy, energy_breakdown_pj=breakdown, energy_level_op_pj=e_lo,
        reads=per.reads, writes=per.writes, fills=per.fills, drains=per.drains,
        compute_cycles=per.compute_cycles, bw_cycles=per.bw_cycles,
        cycles=per.cycles, bound=per.bound, latency_s=latency, utilization=util,
        utilization_roofline=util_rl, dram_bytes=dram, used_pes=per.used_pes,
        legal=per.legal, w_bits=per.w_bits, i_bits=per.i_bits,
        o_bits=per.o_bits,
    )
    batch = _batch(layers)
    energy = xp.sum(per.energy)
    lat = xp.sum(latency)
    if xp is np:  # area and on-chip bytes from float64 leaves too
        arch = jax.tree_util.tree_map(lambda v: np.asarray(v, np.float64), arch)
    arch_a = arch if relaxed else arch.replace(pe_rows=aa.rows, pe_cols=aa.cols)
    return Cost(
        energy_pj=energy,
        energy_per_inference_pj=energy / float(batch),
        energy_breakdown_pj={k: xp.sum(v) for k, v in breakdown.items()},
        latency_s=lat,
        cycles=xp.sum(per.cycles),
        power_w=safe_div(xp, energy * 1e-12, lat),
        dram_bytes=xp.sum(dram),
        dram_bytes_per_inference=xp.sum(dram) / float(batch),
        onchip_bytes=onchip_bytes(arch_a),
        area_mm2=area_mm2(arch_a),
        utilization=safe_div(xp, xp.sum(per.macs_dense), xp.sum(per.dense_cycles) * pes),
        macs_dense=xp.sum(per.macs_dense),
        macs_effective=xp.sum(per.macs_effective),
        pes=pes,
        pe_rows=aa.rows,
        pe_cols=aa.cols,
        clock_hz=aa.clock,
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


def cost(workload, arch: Architecture, *, dataflow: str = "rs", objective: str = "energy",
         mappings=None, candidates: CandidateSet | None = None, knobs: Knobs | None = None,
         relaxed: bool = False, backend: str | None = None, checks: bool = False) -> Cost:
    """Energy, latency, data movement and area of ``workload`` on ``arch``.

    Pure function of ``arch``'s leaves and ``knobs``: works under ``jit``, ``grad`` and
    ``vmap`` (see the module docstring for which mapping path does what).

    Two evaluators run the same count formulas: with concrete inputs (no tracer in
    ``arch`` or ``knobs``) the default is numpy (float64, no compilation: a one-shot
    call costs milliseconds, and at hard points the counts are exact integers); with
    traced inputs JAX (float32, compiled once per static configuration).  The results
    agree to float32 rounding (tested).

    Args:
      workload: a :class:`Workload` or a sequence of :class:`LayerSpec`.
      arch: the architecture (leaves may be traced when ``mappings`` or ``candidates``
        is given).
      dataflow: one of :data:`hwmodel.DATAFLOWS` (used by the mapper).
      objective: ``"energy"`` or ``"edp"`` (mapper / candidate choice).
      mappings: one :class:`Mapping` per layer, or a stacked ``MappingStack``.
      candidates: a :class:`CandidateSet` from :func:`mapping_candidates`.
      knobs: :class:`Knobs` (per-layer arrays ``[L]``); None = dense.  Concrete values
        must lie in the knobs' domain (:func:`check_knobs`); traced values are clipped
        into it.
      relaxed: continuous hardware sizes + straight-through candidate choice.
      backend: ``None`` (numpy when nothing is traced, else JAX), ``"numpy"`` (the
        leaves of the result are numpy arrays) or ``"jax"`` (JAX arrays, compiled).
      checks: under tracing, also check the knobs' domain with
        ``jax.experimental.checkify.check`` (the caller must be wrapped in
        ``checkify.checkify``); concrete values are always checked.

    Returns:
      A :class:`Cost` pytree (numpy leaves from the numpy evaluator, JAX arrays from
      the JAX one).

    Raises:
      ValueError: bad dataflow / objective / backend / knob shapes or values, mappings
        that do not match the layers, an illegal mapping on a concrete architecture, a
        layer with no legal mapping (from the mapper), a layer beyond the exact range
        (:data:`hwmodel.MAX_EXACT_MACS` MACs).
      TypeError: the mapper is needed but the architecture is traced;
        ``backend="numpy"`` with traced inputs.
    """
    check_args(dataflow, objective)
    if backend is not None and backend not in BACKENDS:
        raise ValueError(f"cost: unknown backend {backend!r}; valid: {', '.join(BACKENDS)} "
                         "or None (numpy when nothing is traced)")
    layers, model = _workload_layers(workload)
    traced_arch = is_traced(arch)
    backend = _choose_backend(backend, traced_arch or is_traced(knobs))
    check_knobs(knobs, layers, arch)
    st = arch_structure(arch)
    if mappings is not None and candidates is not None:
        raise ValueError("cost: pass either mappings= or candidates=, not both")
    run = lambda ms, row_layer, valid, df: _run(  # noqa: E731
        layers, ms, row_layer, valid, arch, knobs, relaxed=relaxed, objective=objective,
        model=model, dataflow=df, backend=backend, checks=checks)
    if candidates is not None:
        _check_candidates(candidates, layers, st)
        return run(candidates.stack, np.repeat(np.arange(len(layers)), candidates.K),
                   candidates.valid, candidates.dataflow)
    if mappings is None:
        require_concrete(arch, "cost without mappings= or candidates= (the mapper)")
        mappings = map_workload(layers, arch, dataflow=dataflow, objective=objective)
    ms = _checked_mapping_stack(mappings, layers, arch, st, check_capacity=not traced_arch)
    return run(ms, np.arange(len(layers)), None, dataflow)


def _workload_layers(workload) -> tuple[tuple[LayerSpec, ...], str]:
    """The layers of ``workload`` (each a :class:`LayerSpec` in the exact range) and its name."""
    layers = workload.layers if isinstance(workload, Workload) else tuple(workload)
    if not layers:
        raise ValueError("cost: the workload has no layers")
    for l in layers:
        if not isinstance(l, LayerSpec):
            raise TypeError(f"cost: workload items must be LayerSpec, got {type(l).__name__}")
        check_exact_range(l)
    return layers, (workload.name if isinstance(workload, Workload) else "workload")


def _choose_backend(backend: str | None, traced: bool) -> str:
    """The evaluator to run: ``backend`` if given (numpy refused for traced inputs), else
    JAX for traced inputs and numpy for concrete ones."""
    if backend is None:
        return "jax" if traced else "numpy"
    if backend == "numpy" and traced:
        raise TypeError("cost: backend='numpy' needs concrete architecture and knobs; under "
                        "jit / grad / vmap use backend='jax' (or None)")
    return backend


def _check_candidates(candidates: CandidateSet, layers, st) -> None:
    """A candidate set must have been built for these layers and these storage levels."""
    keys = tuple(layer_key(l) for l in layers)
    if keys != candidates.layer_keys:
        raise ValueError("cost: the candidate set was built for a different workload")
    if candidates.levels != st.storage_names:
        raise ValueError(
            f"cost: candidate set levels {candidates.levels} != architecture storage "
            f"levels {st.storage_names}")


def _checked_mapping_stack(mappings, layers, arch: Architecture, st, *,
                           check_capacity: bool) -> MappingStack:
    """``mappings`` (one per layer, or a stack) as a :class:`MappingStack`, each mapping
    validated against its layer (capacities too when the architecture is concrete)."""
    L = len(layers)
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
        validate_mapping(layer, arch, m, check_capacity=check_capacity)
    return ms


_JIT_CACHE: dict = {}
_JIT_CACHE_SIZE = 32


def _evaluate_all(xp, layers, ms, row_layer, valid, arch, knobs, *, relaxed, objective, model,
                  dataflow, checks=False) -> Cost:
    per, aa = _evaluate(xp, layers, ms, row_layer, arch, knobs, relaxed, checks)
    if valid is not None:
        per = _select(xp, per, valid, len(layers), valid.shape[1], objective, relaxed)
    return _assemble(xp, layers, per, aa, arch, model=model, dataflow=dataflow,
                     objective=objective, relaxed=relaxed)


def _run(layers, ms: MappingStack, row_layer, valid, arch, knobs, *, relaxed, objective, model,
         dataflow, backend, checks) -> Cost:
    """Evaluate with numpy (one shot), or under ``jax.jit``, compiled once per static
    configuration.

    The static part (layers, integer mappings, candidate validity, options) selects a
    compiled function from a small cache (a compile cache only: results never depend
    on it); the architecture and the knobs are its traced arguments.
    """
    kw = dict(relaxed=relaxed, objective=objective, model=model, dataflow=dataflow)
    if backend == "numpy":
        c = _evaluate_all(np, layers, ms, row_layer, valid, arch, knobs, **kw)
        return jax.tree_util.tree_map(np.asarray, c)
    key = (tuple(layers), ms.T.tobytes(), ms.order.tobytes(), ms.SX.tobytes(), ms.SY.tobytes(),
           ms.keep.tobytes(), ms.T.shape, np.asarray(row_layer).tobytes(),
           None if valid is None else (valid.tobytes(), valid.shape), relaxed, objective,
           model, dataflow, checks)
    fn = _JIT_CACHE.get(key)
    if fn is None:
        fn = jax.jit(lambda a, k: _evaluate_all(jnp, layers, ms, row_layer, valid, a, k,
                                                checks=checks, **kw))
        if len(_JIT_CACHE) >= _JIT_CACHE_SIZE:
            _JIT_CACHE.pop(next(iter(_JIT_CACHE)))
        _JIT_CACHE[key] = fn
    return fn(arch, knobs)


def _select(xp, per: RowCosts, valid: np.ndarray, L: int, K: int, objective: str,
            relaxed: bool) -> RowCosts:
    """Pick one candidate per layer (hard argmin; straight-through softmin if relaxed and
    traced: numpy has no gradient, so it takes the hard pick, the same forward value)."""
    rs = lambda v: v.reshape((L, K) + v.shape[1:])  # noqa: E731
    obj = per.energy if objective == "energy" else per.energy * per.cycles
    obj = rs(obj)
    ok = rs(per.legal) & valid
    any_ok = xp.any(ok, axis=1)
    masked = xp.where(ok, obj, xp.inf)
    idx = xp.argmin(masked, axis=1)
    soft_w = None
    if xp is not np:
        hard = jax.nn.one_hot(idx, K, dtype=obj.dtype)
        if relaxed:
            logobj = jnp.log(jnp.maximum(obj, 1e-30))
            ref = jax.lax.stop_gradient(jnp.min(jnp.where(valid, logobj, jnp.inf),
                                                axis=1, keepdims=True))
            logits = -(logobj - ref) / TAU + jax.nn.log_sigmoid(rs(per.slack) / SIGMA)
            logits = jnp.where(valid, logits, -jnp.inf)
            soft = jax.nn.softmax(logits, axis=1)
            soft_w = hard + soft - jax.lax.stop_gradient(soft)
        else:
            soft_w = hard
    out = {}
    for fld in dataclasses.fields(per):
        k = fld.name
        v = rs(getattr(per, k))
        if soft_w is None or v.dtype == bool or np.issubdtype(v.dtype, np.integer):
            sel = xp.take_along_axis(v, idx.reshape((L, 1) + (1,) * (v.ndim - 2)), axis=1)[:, 0]
        else:
            sel = xp.sum(soft_w.reshape((L, K) + (1,) * (v.ndim - 2)) * v, axis=1)
        if v.dtype == bool:
            out[k] = (sel & any_ok) if k == "legal" else sel
        elif np.issubdtype(v.dtype, np.integer):
            out[k] = sel
        else:
            out[k] = xp.where(any_ok.reshape((L,) + (1,) * (sel.ndim - 1)), sel, xp.nan)
    return RowCosts(**out)
