"""Export a workload and an architecture to ZigZag's input formats (and import ZigZag hardware).

`ZigZag <https://github.com/KULeuven-MICAS/zigzag>`_ (``pip install zigzag-dse``, the
``zigzag`` optional extra of this project) is an analytical DNN-accelerator cost model
with its own mapping search (LOMA).  It is used here as a *peer check* of
``hwmodel.cost`` (``benchmarks/zigzag_compare.py``).  This module is plain Python
(PyYAML, no ``zigzag`` import): it turns

* a :class:`~hwmodel.Workload` into ZigZag's workload YAML (one entry per layer,
  equation ``O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]`` with the
  stride/dilation relations ``ix=V*ox+Dw*fx``, ``iy=U*oy+Dh*fy``);
* an :class:`~hwmodel.Architecture` into ZigZag's accelerator YAML (memories with
  size in bits, ``r_cost``/``w_cost`` in pJ per port access, ports with bandwidth in
  bits per cycle, served dimensions, and the operational array);
* a dataflow name into ZigZag's mapping YAML (spatial-unrolling hints per array
  dimension, or explicit per-layer spatial unrollings) and into the accelerator's
  per-PE memories (only the operands the dataflow keeps in the PE get one; see
  :data:`ZIGZAG_DATAFLOWS`);

and, the other way, :func:`architecture_from_zigzag` reads a ZigZag accelerator YAML
(e.g. its ``eyeriss_like.yaml``) into an :class:`~hwmodel.Architecture` so that both
tools can be run on the same hardware.

Vocabulary (ours -> ZigZag): ``G->G, N->B, M->K, C->C, P->OY, Q->OX, R->FY, S->FX``;
operands ``W->I2, I->I1, O->O`` (ZigZag's memory operands); PE rows -> ``D1``,
PE columns -> ``D2``.

Conversion rules (what is exact, what is not; see ``benchmarks/ZIGZAG.md``):

* Energy: ZigZag charges ``r_cost``/``w_cost`` per *port access* of
  ``bandwidth_max`` bits (``ceil(bits moved per period / bandwidth)`` accesses per
  transfer period).  Our energies are per word of ``word_bits``.  The exporter keeps
  the energy per *bit* equal: ``r_cost = read_energy_pj / word_bits * bandwidth_bits``.
  A ZigZag memory has one ``r_cost`` for all the operands it stores, so operands that
  share a memory must have the same energy per bit.
* Bandwidth: a shared level gets one read/write port of ``bandwidth_words *
  max(word_bits of the held operands)`` bits, shared by all directions (our
  bandwidth bound is on the total of a level's reads and writes).  Unlimited
  (``inf``) bandwidth cannot be written (ZigZag needs an integer and would charge a
  whole access of that width per transfer): pass ``default_bandwidth_bits``.  A
  per-PE level gets, per ZigZag memory, one read and one write port one word wide
  (its MAC reads one word at a time; a wider port would be charged per access), so a
  word costs exactly its energy; its ``bandwidth_words`` is not written.
* Capacity: a level partitioned per operand becomes one ZigZag memory per operand
  (``<level>_<operand>``, each given the level's whole bandwidth: ours is one number
  per level); a pooled level (``shared_bits``) becomes one memory with
  all its operands; both at once only if the pool is not binding.
* A ``"noc"`` level: ZigZag has no interconnect energy; exporting one with non-zero
  energy is an error unless ``noc="drop"`` (then that energy is knowingly left out).
* Sparsity / compression other than ``"none"``: not expressible (error).
* The input operand is the padded window (no ``padding`` entry), as in our model.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping as _MappingABC
from pathlib import Path
from typing import Any, Literal

import yaml

from hwmodel._util import atomic_write_text, is_traced
from hwmodel.arch.architecture import Architecture, AreaModel, MemoryLevel, as_leaf
from hwmodel.arch.kinds import OPERANDS, level_kind
from hwmodel.mapping.dataflows import DATAFLOW_SPECS
from hwmodel.workload.spec import DIMS, LayerSpec, Workload

__all__ = [
    "ZIGZAG_DIMS",
    "ZIGZAG_DATAFLOWS",
    "ZigZagDataflow",
    "ZigZagFiles",
    "zigzag_workload",
    "zigzag_accelerator",
    "zigzag_mapping",
    "export_zigzag",
    "architecture_from_zigzag",
]

ZIGZAG_DIMS: dict[str, str] = {
    "G": "G",
    "N": "B",
    "M": "K",
    "P": "OY",
    "Q": "OX",
    "C": "C",
    "R": "FY",
    "S": "FX",
}
"""Our loop dimension name -> ZigZag's layer dimension name."""

_MEM_OPERAND = {"W": "I2", "I": "I1", "O": "O"}
_FROM_MEM_OPERAND = {v: k for k, v in _MEM_OPERAND.items()}

# ZigZag operator types that are also mapping-entry names (a layer with such a name
# would be confused with the per-operator / default mapping entries).
_RESERVED_NAMES = frozenset(
    {"default", "Max", "Conv", "Pooling", "Add", "Conv_downsample", "Gemm", "Pool",
     "MaxPool", "AveragePool", "GlobalAveragePool"}
)

@dataclasses.dataclass(frozen=True)
class ZigZagDataflow:
    """How one of our dataflow families is written for ZigZag.

    ZigZag has no named dataflows.  A family is expressed by (1) which operands have a
    per-PE register file (the others get no per-PE memory in the exported accelerator,
    so they stream from the shared buffers every cycle, as our mapper's ``pe_keep``)
    and (2) which loops may be spread over each PE-array dimension (ZigZag's
    ``spatial_mapping_hint``; D1 = PE rows, D2 = PE columns).  Loop orders and tile
    sizes are then ZigZag's own (LOMA) search.

    Attributes:
      pe_keep: operands kept in per-PE storage (subset of ``W I O``).
      rows: our dims that may be spread over PE rows (``D1``).
      cols: our dims that may be spread over PE columns (``D2``).
    """

    pe_keep: tuple[str, ...]
    rows: tuple[str, ...]
    cols: tuple[str, ...]

    def hints(self, kind: str) -> dict[str, list[str]]:
        """ZigZag ``spatial_mapping_hint`` for a ``"conv"`` or ``"matmul"`` layer."""
        allowed = set(DIMS) if kind == "conv" else {"G", "N", "M", "C"}
        out = {}
        for oa, dims in (("D1", self.rows), ("D2", self.cols)):
            zz = [ZIGZAG_DIMS[d] for d in dims if d in allowed]
            out[oa] = zz or [ZIGZAG_DIMS["C"] if oa == "D1" else ZIGZAG_DIMS["M"]]
        return out


ZIGZAG_DATAFLOWS: dict[str, ZigZagDataflow] = {
    name: ZigZagDataflow(pe_keep=spec.pe_keep, rows=spec.spatial_y, cols=spec.spatial_x)
    for name, spec in DATAFLOW_SPECS.items()
}
"""Dataflow name -> how it is exported (see :class:`ZigZagDataflow`), derived from the
mapper's :data:`~hwmodel.DATAFLOW_SPECS` (the same families: what stays in the PE, what
is spread over PE rows and columns).  ZigZag combines
several dims on one array dimension only with mixed spatial mappings enabled
(``enable_mix_spatial_mapping``); without it, it unrolls one of them."""

_DRAM_BITS = 2**44  # "unbounded" off-chip capacity written for infinite sizes (2 TiB)


@dataclasses.dataclass(frozen=True)
class ZigZagFiles:
    """Paths of the files written by :func:`export_zigzag`.

    Attributes:
      workload: ZigZag workload YAML (list of layers).
      accelerator: ZigZag accelerator (hardware) YAML.
      mapping: ZigZag mapping YAML (spatial mapping / hints, operand links).
    """

    workload: Path
    accelerator: Path
    mapping: Path


# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------
def _concrete(x, what: str) -> float:
    """``x`` as a Python float; a traced or non-scalar value is a TypeError naming ``what``."""
    if not is_traced(x):
        try:
            return float(x)
        except (TypeError, ValueError):
            pass
    raise TypeError(
        f"{what}: needs a concrete number to export to ZigZag, got {type(x).__name__} "
        "(call the exporter outside jit/grad/vmap)"
    )


def _vec3(x, what: str) -> list[float]:
    return _vec_n(x, 3, what, "W, I, O")


def _as_int(x: float, what: str) -> int:
    r = round(x)
    if not math.isfinite(x) or abs(x - r) > 1e-6 * max(1.0, abs(x)):
        raise ValueError(f"{what}: ZigZag needs an integer, got {x!r}")
    return int(r)


def _num(x: float) -> float:
    """A YAML-friendly float (ZigZag's schema wants floats for costs), rounded to 7
    significant digits (our leaves are float32: more digits would be noise)."""
    return float(f"{float(x):.7g}")


def _atomic_write_yaml(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None,
                                           width=100))


def _check_names(workload: Workload) -> None:
    for i, layer in enumerate(workload.layers):
        if layer.name in _RESERVED_NAMES:
            raise ValueError(
                f"layer {i} of workload {workload.name!r} is named {layer.name!r}, which ZigZag "
                f"reserves for mapping entries; rename it (reserved: {sorted(_RESERVED_NAMES)})"
            )


# ----------------------------------------------------------------------------------
# workload
# ----------------------------------------------------------------------------------
def _layer_precision(layer: LayerSpec, arch: Architecture | None, precision: str) -> dict[str, int]:
    if precision == "arch":
        if arch is None:
            raise ValueError("precision='arch' needs the architecture (its word_bits)")
        wb = [_as_int(b, f"architecture {arch.name!r} word_bits") for b in _vec3(arch.word_bits, "word_bits")]
        w, i, o = wb
    elif precision == "layer":
        w, i, o = layer.w_bits, layer.i_bits, layer.o_bits
    else:
        raise ValueError(f"precision must be 'arch' or 'layer', got {precision!r}")
    return {"W": int(w), "I": int(i), "O": int(o), "O_final": int(o)}


def _zigzag_layer(layer: LayerSpec, idx: int, prev: int | None, prec: dict[str, int]) -> dict:
    src_i = idx if prev is None else prev
    # A weight operand is constant (ZigZag: its source is the layer itself); a dynamic
    # operand (attention's K, V) comes from the previous layer where there is one.
    src_w = idx if (not layer.dynamic or prev is None) else prev
    if layer.kind == "conv":
        (u, v), (dh, dw) = layer.stride, layer.dilation
        dims = ["B", "G", "K", "C", "OY", "OX", "FY", "FX"]
        sizes = [layer.N, layer.G, layer.M, layer.C, layer.P, layer.Q, layer.R, layer.S]
        return {
            "id": idx,
            "name": layer.name,
            "operator_type": "Conv",
            "equation": "O[b][g][k][oy][ox]+=W[g][k][c][fy][fx]*I[b][g][c][iy][ix]",
            "dimension_relations": [f"ix={v}*ox+{dw}*fx", f"iy={u}*oy+{dh}*fy"],
            "loop_dims": dims,
            "loop_sizes": sizes,
            "operand_precision": dict(prec),
            "operand_source": {"W": src_w, "I": src_i},
        }
    # matmul: [G] x ([N x C] @ [C x M]); P = Q = R = S = 1 by construction.
    if (layer.P, layer.Q, layer.R, layer.S) != (1, 1, 1, 1):
        raise ValueError(
            f"layer {layer.name!r}: a matmul must have P = Q = R = S = 1, got "
            f"P={layer.P} Q={layer.Q} R={layer.R} S={layer.S}"
        )
    return {
        "id": idx,
        "name": layer.name,
        "operator_type": "Gemm",
        "equation": "O[g][b][k]+=W[g][k][c]*I[g][b][c]",
        "dimension_relations": [],
        "loop_dims": ["G", "B", "K", "C"],
        "loop_sizes": [layer.G, layer.N, layer.M, layer.C],
        "operand_precision": dict(prec),
        "operand_source": {"W": src_w, "I": src_i},
    }


def zigzag_workload(
    workload: Workload,
    arch: Architecture | None = None,
    *,
    precision: Literal["arch", "layer"] = "arch",
) -> list[dict]:
    """ZigZag's workload description (the content of its workload YAML) for our layers.

    Args:
      workload: the layers (conv incl. strided, dilated, grouped/depthwise; matmul).
      arch: the architecture whose ``word_bits`` give the operand precisions
        (``precision="arch"``, the default: what the hardware moves).
      precision: ``"arch"`` (``W, I, O = arch.word_bits``) or ``"layer"`` (each
        layer's traced ``w_bits, i_bits, o_bits``).  ZigZag's ``O`` (partial sums)
        and ``O_final`` are both set to the output width: our model has one output
        width.

    Returns:
      A list of layer dicts (ids in workload order; each layer's input comes from the
      previous layer, its weights are constant unless the layer is ``dynamic``).

    Raises:
      ValueError: empty workload, a layer name ZigZag reserves, a malformed matmul.
    """
    if len(workload.layers) == 0:
        raise ValueError(f"workload {workload.name!r} has no layers to export")
    _check_names(workload)
    out = []
    for i, layer in enumerate(workload.layers):
        prec = _layer_precision(layer, arch, precision)
        out.append(_zigzag_layer(layer, i, None if i == 0 else i - 1, prec))
    return out


# ----------------------------------------------------------------------------------
# accelerator
# ----------------------------------------------------------------------------------
def _level_memories(
    lvl: MemoryLevel,
    word_bits: list[float],
    arch_name: str,
    default_bandwidth_bits: int | None,
    area_mm2_per_kb: float,
) -> list[tuple[str, dict]]:
    """ZigZag memories (name, spec) for one storage level, in our operand order."""
    where = f"architecture {arch_name!r}, level {lvl.name!r}"
    held = [op for op in OPERANDS if op in lvl.holds]
    if not held:
        raise ValueError(f"{where}: holds no operand (valid: a non-empty subset of {OPERANDS})")
    cap = _vec3(lvl.capacity_bits, f"{where} capacity_bits")
    shared = _concrete(lvl.shared_bits, f"{where} shared_bits")
    rd = _vec3(lvl.read_energy_pj, f"{where} read_energy_pj")
    wr = _vec3(lvl.write_energy_pj, f"{where} write_energy_pj")
    bw_words = _concrete(lvl.bandwidth_words, f"{where} bandwidth_words")
    groups = _capacity_groups(lvl, held, cap, shared, where)
    return [(mem_name, _memory_spec(lvl, ops, size_bits, word_bits, rd, wr, bw_words,
                                    default_bandwidth_bits, area_mm2_per_kb,
                                    f"{where} (ZigZag memory {mem_name!r})"))
            for mem_name, ops, size_bits in groups]


def _capacity_groups(lvl: MemoryLevel, held: list[str], cap: list[float], shared: float,
                     where: str) -> list[tuple[str, list[str], int]]:
    """How a level's capacity splits into ZigZag memories: ``(name, operands, bits)``
    (one memory pooled by its operands, or one per operand)."""
    k = {op: OPERANDS.index(op) for op in held}
    if not level_kind(lvl.kind).on_chip:  # off chip: may be unbounded
        return [(lvl.name, held, _DRAM_BITS if not math.isfinite(min(shared, *[cap[k[o]] for o in held]))
                 else _as_int(min(shared, sum(cap[k[o]] for o in held)), f"{where} capacity"))]
    if math.isfinite(shared) and all(
        (not math.isfinite(cap[k[o]])) or cap[k[o]] >= shared for o in held
    ):
        return [(lvl.name, held, _as_int(shared, f"{where} shared_bits"))]
    if all(math.isfinite(cap[k[o]]) for o in held):
        if math.isfinite(shared) and sum(cap[k[o]] for o in held) > shared * (1 + 1e-9):
            raise ValueError(
                f"{where}: per-operand capacities {[cap[k[o]] for o in held]} bits inside a shared "
                f"pool of {shared} bits cannot be expressed in ZigZag (a memory is either shared by "
                "its operands or per operand); make the pool infinite or the partitions sum <= pool"
            )
        if len(held) == 1:
            return [(lvl.name, held, _as_int(cap[k[held[0]]], f"{where} capacity_bits"))]
        return [(f"{lvl.name}_{o}", [o], _as_int(cap[k[o]], f"{where} capacity_bits[{o}]"))
                for o in held]
    raise ValueError(
        f"{where}: on-chip capacity is unbounded for {[o for o in held if not math.isfinite(cap[k[o]])]} "
        "(capacity_bits inf and shared_bits inf); ZigZag needs a finite size for on-chip memories"
    )


def _memory_spec(lvl: MemoryLevel, ops: list[str], size_bits: int, word_bits: list[float],
                 rd: list[float], wr: list[float], bw_words: float,
                 default_bandwidth_bits: int | None, area_mm2_per_kb: float,
                 mwhere: str) -> dict:
    """One ZigZag memory's spec: size, ports, cost per port access, area."""
    k = {op: OPERANDS.index(op) for op in ops}
    wbits = [word_bits[k[o]] for o in ops]
    if lvl.per_pe:
        # A per-PE register file is accessed one word at a time by its MAC, and
        # ZigZag charges a whole port access per transfer: ports one word wide
        # (one read + one write port), so a word costs exactly its energy.
        port_bits = _as_int(max(wbits), f"{mwhere} word_bits")
        ports = [("r_port_1", "read", ("tl", "th")), ("w_port_1", "write", ("fh", "fl"))]
    else:
        if math.isfinite(bw_words):
            port_bits = _as_int(bw_words * max(wbits), f"{mwhere} bandwidth_words x word_bits")
        elif default_bandwidth_bits is not None:
            port_bits = int(default_bandwidth_bits)
        else:
            raise ValueError(
                f"{mwhere}: bandwidth_words is inf; ZigZag needs a finite port width in bits "
                "(and charges one access of that width per transfer): pass default_bandwidth_bits"
            )
        ports = [("rw_port_1", "read_write", ("fh", "tl", "fl", "th"))]
    if port_bits < 1:
        raise ValueError(f"{mwhere}: port width {port_bits} bits < 1")
    # energy per bit must be one number per memory (ZigZag: one r_cost / w_cost)
    per_bit_r = [rd[k[o]] / word_bits[k[o]] for o in ops]
    per_bit_w = [wr[k[o]] / word_bits[k[o]] for o in ops]
    for label, vals in (("read", per_bit_r), ("write", per_bit_w)):
        if max(vals) - min(vals) > 1e-6 * max(1e-30, max(abs(v) for v in vals)):
            raise ValueError(
                f"{mwhere}: {label} energy per bit differs between operands {ops} "
                f"({vals} pJ/bit); ZigZag has one cost per memory: split the level per operand"
            )

    def alloc(dirs):
        return [
            f"{_MEM_OPERAND[o]}, {d}"
            for o in ops
            for d in dirs
            if o == "O" or d in ("fh", "tl")  # inputs are only written from above, read below
        ]

    return {
        "size": int(size_bits),
        "r_cost": _num(per_bit_r[0] * port_bits),
        "w_cost": _num(per_bit_w[0] * port_bits),
        "area": _num(area_mm2_per_kb * size_bits / 8192.0 if level_kind(lvl.kind).has_area else 0.0),
        "latency": 1,
        "operands": [_MEM_OPERAND[o] for o in ops],
        "ports": [
            {
                "name": pname,
                "type": ptype,
                "bandwidth_min": port_bits,
                "bandwidth_max": port_bits,
                "allocation": alloc(dirs),
            }
            for pname, ptype, dirs in ports
        ],
        "served_dimensions": [] if lvl.per_pe else ["D1", "D2"],
    }


def zigzag_accelerator(
    arch: Architecture,
    *,
    dataflow: str | None = None,
    noc: Literal["error", "drop"] = "error",
    default_bandwidth_bits: int | None = None,
) -> dict:
    """ZigZag's accelerator description (the content of its hardware YAML).

    Args:
      arch: the architecture (concrete values; not under ``jit``).
      dataflow: if given (a key of ``ZIGZAG_DATAFLOWS``), per-PE levels keep only the
        dataflow's ``pe_keep`` operands (the others stream from the shared buffers,
        as in our mapper); ``None`` writes every per-PE partition.
      noc: what to do with a ``"noc"`` level that has non-zero energy: ``"error"``
        (default) or ``"drop"`` (leave the NoC energy out; ZigZag has no interconnect
        cost).  A zero-energy NoC level is always dropped.
      default_bandwidth_bits: port width in bits written for a level whose
        ``bandwidth_words`` is ``inf`` (else such a level is an error).

    Returns:
      ``{"name", "memories", "operational_array"}`` with memories listed innermost
      first (ZigZag's order).

    Raises:
      ValueError / TypeError: anything ZigZag cannot express (see the module doc),
      with the level and the reason.
    """
    _check_exportable(arch, noc)
    word_bits = _vec3(arch.word_bits, f"architecture {arch.name!r} word_bits")
    rows = _as_int(_concrete(arch.pe_rows, "pe_rows"), f"architecture {arch.name!r} pe_rows")
    cols = _as_int(_concrete(arch.pe_cols, "pe_cols"), f"architecture {arch.name!r} pe_cols")
    memories = _zigzag_memories(arch, dataflow, noc, word_bits, default_bandwidth_bits)
    _check_memories(arch, memories)
    return {
        "name": arch.name,
        "memories": {name: spec for name, spec in reversed(memories)},
        "operational_array": {
            "unit_energy": _num(_concrete(arch.mac_energy_pj, "mac_energy_pj")),
            "unit_area": _num(_concrete(arch.area.pe_mm2, "area.pe_mm2")),
            "dimensions": ["D1", "D2"],
            "sizes": [rows, cols],
        },
    }


def _check_exportable(arch: Architecture, noc: str) -> None:
    """Refuse what ZigZag cannot model at all: sparse or compressed execution, a bad ``noc``."""
    if arch.sparsity != "none" or arch.compression != "none":
        raise ValueError(
            f"architecture {arch.name!r}: sparsity={arch.sparsity!r}, compression={arch.compression!r}; "
            "ZigZag models dense execution only (valid: sparsity='none', compression='none')"
        )
    if noc not in ("error", "drop"):
        raise ValueError(f"noc must be 'error' or 'drop', got {noc!r}")


def _zigzag_memories(arch: Architecture, dataflow: str | None, noc: str, word_bits,
                     default_bandwidth_bits: int | None) -> list[tuple[str, dict]]:
    """ZigZag's ``(name, spec)`` memories of ``arch``'s storage levels, outermost first.

    Per-PE levels keep only the dataflow's ``pe_keep`` operands (a level left with none
    is skipped); NoC levels are skipped after :func:`_check_noc_level`.
    """
    area_per_kb = _vec_n(
        arch.area.sram_mm2_per_kb, len(arch.levels), f"architecture {arch.name!r} area.sram_mm2_per_kb"
    )
    keep = None if dataflow is None else _get_dataflow(dataflow).pe_keep
    memories: list[tuple[str, dict]] = []
    for li, lvl in enumerate(arch.levels):
        stores = level_kind(lvl.kind).holds_data
        if lvl.per_pe and keep is not None and stores:
            held = tuple(o for o in lvl.holds if o in keep)
            if not held:
                continue
            lvl = dataclasses.replace(lvl, holds=held)
        if not stores:
            _check_noc_level(arch, lvl, noc)
            continue
        memories.extend(
            _level_memories(lvl, word_bits, arch.name, default_bandwidth_bits, area_per_kb[li])
        )
    return memories


def _check_noc_level(arch: Architecture, lvl, noc: str) -> None:
    """A NoC level with energy cannot be exported (ZigZag has no interconnect cost)
    unless ``noc="drop"``."""
    energies = _vec3(lvl.read_energy_pj, "noc read_energy_pj") + _vec3(
        lvl.write_energy_pj, "noc write_energy_pj"
    )
    if any(e != 0.0 for e in energies) and noc == "error":
        raise ValueError(
            f"architecture {arch.name!r}, level {lvl.name!r}: a NoC with energy "
            f"{energies[:3]} pJ/word cannot be expressed in ZigZag (no interconnect cost); "
            "pass noc='drop' to export without it"
        )


def _check_memories(arch: Architecture, memories: list[tuple[str, dict]]) -> None:
    """ZigZag memory names must be unique and every operand must have a memory."""
    names = [n for n, _ in memories]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"architecture {arch.name!r}: ZigZag memory names collide: {dup}")
    for op in OPERANDS:
        if not any(_MEM_OPERAND[op] in spec["operands"] for _, spec in memories):
            raise ValueError(f"architecture {arch.name!r}: no level holds operand {op!r}")


def _get_dataflow(dataflow: str) -> ZigZagDataflow:
    if dataflow not in ZIGZAG_DATAFLOWS:
        raise ValueError(
            f"dataflow {dataflow!r} cannot be exported to ZigZag; valid: {sorted(ZIGZAG_DATAFLOWS)}"
        )
    return ZIGZAG_DATAFLOWS[dataflow]


def _vec_n(x, n: int, what: str, items: str = "one per level") -> list[float]:
    try:
        vals = [float(v) for v in list(x)]
    except Exception as e:
        raise TypeError(
            f"{what}: needs {n} concrete numbers ({items}) to export to ZigZag, got {x!r} "
            "(call the exporter outside jit/grad/vmap)"
        ) from e
    if len(vals) != n:
        raise ValueError(f"{what}: expected {n} values ({items}), got {len(vals)}")
    return vals


# ----------------------------------------------------------------------------------
# mapping
# ----------------------------------------------------------------------------------
SpatialSpec = _MappingABC[str, _MappingABC[str, int]]
"""Explicit spatial unrolling of one layer: ``{"D1": {dim: factor}, "D2": {...}}`` with
our dim names (``G N M P Q C R S``); D1 = PE rows, D2 = PE columns."""


def zigzag_mapping(
    workload: Workload,
    arch: Architecture,
    *,
    dataflow: str = "rs",
    spatial: _MappingABC[str, SpatialSpec] | None = None,
    pin_temporal: bool = False,
) -> list[dict]:
    """ZigZag's mapping description (its mapping YAML) for a dataflow.

    Args:
      workload: the layers (one mapping entry per layer, matched by name).
      arch: the architecture (PE array rows x cols, to check explicit unrollings).
      dataflow: one of ``ZIGZAG_DATAFLOWS`` (``ws, os, is, rs, nlr``): its
        ``rows``/``cols`` dims are written as spatial-mapping hints; ZigZag then picks
        the unrolling factors and searches the temporal mapping (loop order and
        memory allocation) itself.  (Its ``pe_keep`` goes into the accelerator.)
      spatial: optional explicit spatial unrollings per layer name,
        ``{layer: {"D1": {"R": 3, "C": 4}, "D2": {"P": 14}}}`` (our dim names; D1 =
        PE rows, D2 = PE columns), or ``{layer: mapping}`` with any object carrying
        ``spatial_y``/``spatial_x`` factors in ``DIMS`` order (e.g. the
        ``hwmodel.Mapping`` our mapper chose); those layers get a fixed
        ``spatial_mapping`` instead of hints.  Each factor must be at most the dim's
        bound and their product per array dimension must fit the array.
      pin_temporal: also write the mapping objects' temporal loop nest (their
        ``temporal`` factors and ``order`` per level, outer to inner) as ZigZag's
        ``temporal_ordering`` (innermost first).  ZigZag then skips its loop-order
        search, but still assigns the loops to its memories itself (greedily, filling
        each memory bottom-up), so the level boundaries can differ from ours.

    Returns:
      A list of mapping entries: one ``default`` entry plus one per layer.

    Raises:
      ValueError: unknown dataflow, unknown layer or dimension names, or an unrolling larger than the array.
    """
    df = _get_dataflow(dataflow)
    _check_names(workload)
    rows = _as_int(_concrete(arch.pe_rows, "pe_rows"), "pe_rows")
    cols = _as_int(_concrete(arch.pe_cols, "pe_cols"), "pe_cols")
    spatial = dict(spatial or {})
    names = {layer.name for layer in workload.layers}
    unknown = sorted(set(spatial) - names)
    if unknown:
        raise ValueError(f"spatial: unknown layer names {unknown}; valid: {sorted(names)}")
    links = {"O": "O", "W": "I2", "I": "I1"}
    out: list[dict] = [
        {
            "name": "default",
            "spatial_mapping_hint": df.hints("conv"),
            "memory_operand_links": dict(links),
        }
    ]
    for layer in workload.layers:
        entry: dict[str, Any] = {"name": layer.name}
        if layer.name in spatial:
            entry["spatial_mapping"] = _explicit_spatial(layer, spatial[layer.name], rows, cols)
            if pin_temporal:
                entry["temporal_ordering"] = _temporal_ordering(layer, spatial[layer.name])
        else:
            entry["spatial_mapping_hint"] = df.hints(layer.kind)
        entry["memory_operand_links"] = dict(links)
        out.append(entry)
    return out


def _spatial_spec(spec) -> SpatialSpec:
    """A spatial spec from a dict, or from a mapping object with ``spatial_y`` (PE
    rows) and ``spatial_x`` (PE columns) factor tuples in ``DIMS`` order (such as
    ``hwmodel.Mapping``)."""
    if hasattr(spec, "spatial_x") and hasattr(spec, "spatial_y"):
        return {
            "D1": {d: int(f) for d, f in zip(DIMS, spec.spatial_y) if int(f) > 1},
            "D2": {d: int(f) for d, f in zip(DIMS, spec.spatial_x) if int(f) > 1},
        }
    if not isinstance(spec, _MappingABC):
        raise TypeError(
            f"spatial: expected {{'D1': {{dim: factor}}, 'D2': {{...}}}} or a mapping with "
            f"spatial_x/spatial_y, got {type(spec).__name__}"
        )
    bad = sorted(set(spec) - {"D1", "D2"})
    if bad:
        raise ValueError(f"spatial: unknown array dimensions {bad}; valid: ['D1', 'D2']")
    return spec


def _temporal_ordering(layer: LayerSpec, m) -> list[list]:
    """ZigZag ``temporal_ordering`` (innermost loop first) of a mapping object."""
    if not (hasattr(m, "temporal") and hasattr(m, "order")):
        raise TypeError(
            f"pin_temporal: the spatial entry of layer {layer.name!r} has no temporal/order "
            f"loop nest (got {type(m).__name__}); pass a mapping such as hwmodel.Mapping"
        )
    nest = []
    for factors, order in zip(m.temporal, m.order):
        f = dict(zip(DIMS, (int(x) for x in factors)))
        nest += [[ZIGZAG_DIMS[d], f[d]] for d in order if f[d] > 1]
    sx = dict(zip(DIMS, (int(x) for x in m.spatial_x)))
    sy = dict(zip(DIMS, (int(x) for x in m.spatial_y)))
    for d in DIMS:
        tot = math.prod(x for name, x in nest if name == ZIGZAG_DIMS[d]) * sx[d] * sy[d]
        if tot != layer.bounds[d]:
            raise ValueError(
                f"pin_temporal: layer {layer.name!r}: the mapping's factors of {d} multiply to "
                f"{tot}, the layer's bound is {layer.bounds[d]}"
            )
    return nest[::-1]


def _explicit_spatial(layer: LayerSpec, spec, rows: int, cols: int) -> dict:
    spec = _spatial_spec(spec)
    allowed = set(DIMS) if layer.kind == "conv" else {"G", "N", "M", "C"}
    res: dict[str, list[str]] = {}
    for oa, size in (("D1", rows), ("D2", cols)):
        factors = dict(spec.get(oa, {}))
        bad = sorted(set(factors) - allowed)
        if bad:
            raise ValueError(
                f"spatial[{layer.name!r}][{oa!r}]: dimensions {bad} not valid for a {layer.kind} "
                f"layer; valid: {sorted(allowed)}"
            )
        prod = 1
        for d, f in factors.items():
            if not isinstance(f, int) or f < 1 or f > layer.bounds[d]:
                raise ValueError(
                    f"spatial[{layer.name!r}][{oa!r}][{d!r}] = {f!r}: must be an int in "
                    f"[1, {layer.bounds[d]}]"
                )
            prod *= f
        if prod > size:
            raise ValueError(
                f"spatial[{layer.name!r}][{oa!r}]: unrolling {prod} exceeds the array "
                f"dimension ({size} PEs)"
            )
        res[oa] = [f"{ZIGZAG_DIMS[d]}, {f}" for d, f in factors.items() if f > 1] or [
            f"{ZIGZAG_DIMS['C']}, 1"
        ]
    return res


# ----------------------------------------------------------------------------------
# files
# ----------------------------------------------------------------------------------
def export_zigzag(
    workload: Workload,
    arch: Architecture,
    outdir: str | os.PathLike,
    *,
    dataflow: str = "rs",
    precision: Literal["arch", "layer"] = "arch",
    noc: Literal["error", "drop"] = "error",
    spatial: _MappingABC[str, SpatialSpec] | None = None,
    pin_temporal: bool = False,
    default_bandwidth_bits: int | None = None,
) -> ZigZagFiles:
    """Write ZigZag's workload, accelerator and mapping YAML files for our model.

    Run ZigZag on them with
    ``zigzag.api.get_hardware_performance_zigzag(files.workload, files.accelerator,
    files.mapping, opt="energy")`` (strings of the paths).

    Args:
      workload: the layers to export.
      arch: the architecture to export (concrete values).
      outdir: directory to write ``workload.yaml``, ``accelerator.yaml``,
        ``mapping.yaml`` into (created if missing; each file written to a temporary
        file and renamed, so no half-written file is left behind).
      dataflow: see :func:`zigzag_mapping` (hints) and :func:`zigzag_accelerator`
        (per-PE operands).
      spatial, pin_temporal: see :func:`zigzag_mapping`.
      precision: see :func:`zigzag_workload`.
      noc, default_bandwidth_bits: see :func:`zigzag_accelerator`.

    Returns:
      The :class:`ZigZagFiles` written.

    Raises:
      ValueError / TypeError: anything ZigZag cannot express, before any file is
      written.
    """
    wl = zigzag_workload(workload, arch, precision=precision)
    acc = zigzag_accelerator(
        arch, dataflow=dataflow, noc=noc, default_bandwidth_bits=default_bandwidth_bits
    )
    mp = zigzag_mapping(workload, arch, dataflow=dataflow, spatial=spatial, pin_temporal=pin_temporal)
    out = Path(outdir)
    files = ZigZagFiles(
        workload=out / "workload.yaml",
        accelerator=out / "accelerator.yaml",
        mapping=out / "mapping.yaml",
    )
    _atomic_write_yaml(files.workload, wl)
    _atomic_write_yaml(files.accelerator, acc)
    _atomic_write_yaml(files.mapping, mp)
    return files


# ----------------------------------------------------------------------------------
# import: ZigZag accelerator YAML -> Architecture
# ----------------------------------------------------------------------------------
def _load_zigzag_yaml(src) -> tuple[dict, str]:
    if isinstance(src, _MappingABC):
        return dict(src), "<dict>"
    path = Path(src)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"cannot read ZigZag accelerator file {str(path)!r}: {e}") from e
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data, str(path)


@dataclasses.dataclass(frozen=True)
class _ZigZagMemory:
    """One memory of a ZigZag accelerator YAML, read and checked."""

    name: str
    ops: tuple[str, ...]  # our operands (W, I, O) it holds
    per_pe: bool  # served_dimensions: [] (one instance per PE)
    size: float  # bits
    port_bits: tuple[int, ...]  # bandwidth_max of each port, bits
    r_cost: float  # pJ per read port access
    w_cost: float  # pJ per write port access
    area: float  # ZigZag's area units


@dataclasses.dataclass
class _LevelDraft:
    """A level being assembled from one or more ZigZag memories (lists: W, I, O)."""

    names: list[str]
    kind: str
    ops: set[str]
    cap: list[float]  # bits per operand (inf: not held, or no bound)
    shared: float  # bits all operands share (inf: no pooled bound)
    rd: list[float]  # pJ per word read
    wr: list[float]  # pJ per word written
    bw: float  # words per cycle
    area: float  # ZigZag's area units
    bits: float  # total bits of its memories


def _zigzag_array(data: dict, where: str) -> tuple[dict, int, int]:
    """The operational array (checked) and its rows and columns of PEs."""
    for key in ("memories", "operational_array"):
        if key not in data:
            raise ValueError(f"{where}: missing key {key!r} (valid top-level keys: name, memories, operational_array)")
    oa = data["operational_array"]
    if oa.get("is_imc", False):
        raise ValueError(f"{where}: operational_array.is_imc is true; only digital PE arrays are supported")
    sizes = oa.get("sizes")
    if not isinstance(sizes, list) or not 1 <= len(sizes) <= 2:
        raise ValueError(f"{where}: operational_array.sizes must list 1 or 2 array dimensions, got {sizes!r}")
    return oa, int(sizes[0]), int(sizes[1]) if len(sizes) == 2 else 1


def _read_memory(where: str, mname: str, m: dict) -> _ZigZagMemory:
    """One entry of ``memories``, with a clear error naming the file and key."""
    def field(what, d, key):
        if key not in d or d[key] is None:
            raise ValueError(f"{where}: memories.{what}: missing {key!r}")
        return d[key]

    try:
        ops = tuple(_FROM_MEM_OPERAND[o] for o in m["operands"])
    except KeyError as e:
        raise ValueError(
            f"{where}: memories.{mname}.operands: {m.get('operands')!r}; valid: I1, I2, O"
        ) from e
    per_pe = len(field(mname, m, "served_dimensions")) == 0
    size = float(field(mname, m, "size"))
    ports = field(mname, m, "ports")
    pbits = tuple(int(field(f"{mname}.ports[{i}]", p, "bandwidth_max")) for i, p in enumerate(ports))
    return _ZigZagMemory(
        name=mname, ops=ops, per_pe=per_pe, size=size, port_bits=pbits,
        r_cost=float(field(mname, m, "r_cost")), w_cost=float(field(mname, m, "w_cost")),
        area=float(m.get("area") or 0.0),
    )


def _add_rf_partition(rf: _LevelDraft | None, mem: _ZigZagMemory, wb: list[float],
                      where: str) -> _LevelDraft:
    """Add a per-PE memory to the one per-PE RF level as the partition of its operand
    (a word costs ``cost * ceil(b / port)``: the MAC reads one word at a time)."""
    if rf is None:
        rf = _LevelDraft(names=[], kind="rf", ops=set(), cap=[math.inf] * 3, shared=math.inf,
                         rd=[0.0] * 3, wr=[0.0] * 3, bw=0.0, area=0.0, bits=0.0)
    if len(mem.ops) != 1:
        raise ValueError(
            f"{where}: memories.{mem.name}: a per-PE memory holding {list(mem.ops)} cannot be a "
            "per-operand RF partition (one operand per per-PE memory)"
        )
    op = mem.ops[0]
    k = OPERANDS.index(op)
    if math.isfinite(rf.cap[k]):
        raise ValueError(f"{where}: memories.{mem.name}: a second per-PE memory for operand {op}")
    bw_max = max(mem.port_bits)
    rf.names.append(mem.name)
    rf.cap[k] = mem.size
    rf.rd[k] = mem.r_cost * math.ceil(wb[k] / bw_max)
    rf.wr[k] = mem.w_cost * math.ceil(wb[k] / bw_max)
    rf.bw += sum(b / wb[k] for b in mem.port_bits)
    rf.area += mem.area
    rf.bits += mem.size
    return rf


def _shared_level(mem: _ZigZagMemory, outermost: bool, wb: list[float]) -> _LevelDraft:
    """A shared memory as one level (``dram`` if outermost, else ``sram``): blocks of
    ``port`` bits, so a word of ``b`` bits costs ``cost * b / port``; several operands
    pool its size."""
    k = [OPERANDS.index(o) for o in mem.ops]
    kind = level_kind("dram" if outermost else "sram")  # the outermost memory is off chip
    bound = mem.size if kind.needs_size else math.inf
    cap = [math.inf] * 3
    if len(mem.ops) == 1:
        cap[k[0]] = bound
        shared = math.inf
    else:
        shared = bound
    rd = [0.0] * 3
    wr = [0.0] * 3
    for kk in k:
        rd[kk] = mem.r_cost * wb[kk] / max(mem.port_bits)
        wr[kk] = mem.w_cost * wb[kk] / max(mem.port_bits)
    return _LevelDraft(
        names=[mem.name], kind=kind.name, ops=set(mem.ops), cap=cap, shared=shared, rd=rd,
        wr=wr, bw=float(sum(mem.port_bits)) / max(wb[kk] for kk in k),
        area=mem.area if kind.has_area else 0.0, bits=mem.size,
    )


def _merge_partitions(drafts: list[_LevelDraft]) -> list[_LevelDraft]:
    """Merge consecutive on-chip single-operand levels of different operands into one
    level with per-operand partitions (same sizes, energies; bandwidths add)."""
    merged: list[_LevelDraft] = []
    for sp in drafts:
        prev = merged[-1] if merged else None
        if (
            prev is not None and sp.kind == prev.kind and level_kind(sp.kind).on_chip
            and len(sp.ops) == 1 and not math.isfinite(sp.shared)
            and not math.isfinite(prev.shared) and not (sp.ops & prev.ops)
        ):
            (k1,) = [OPERANDS.index(o) for o in sp.ops]
            prev.names += sp.names
            prev.ops |= sp.ops
            prev.cap[k1] = sp.cap[k1]
            prev.rd[k1] = sp.rd[k1]
            prev.wr[k1] = sp.wr[k1]
            prev.bw += sp.bw
            prev.area += sp.area
            prev.bits += sp.bits
        else:
            merged.append(dataclasses.replace(sp, names=list(sp.names), ops=set(sp.ops),
                                              cap=list(sp.cap), rd=list(sp.rd), wr=list(sp.wr)))
    return merged


def _memory_level(d: _LevelDraft, per_pe: bool) -> tuple[MemoryLevel, float]:
    """The :class:`MemoryLevel` of a draft and its SRAM area per KB (0 without area)."""
    if per_pe:
        name = "RF" if len(d.names) > 1 else d.names[0]
        holds = tuple(o for o in OPERANDS if math.isfinite(d.cap[OPERANDS.index(o)]))
    else:
        name = "+".join(d.names)
        holds = tuple(o for o in OPERANDS if o in d.ops)
    level = MemoryLevel(
        name=name,
        kind=d.kind,
        holds=holds,
        per_pe=per_pe,
        capacity_bits=as_leaf(d.cap),
        shared_bits=as_leaf(d.shared),
        read_energy_pj=as_leaf(d.rd),
        write_energy_pj=as_leaf(d.wr),
        bandwidth_words=as_leaf(d.bw),
    )
    per_kb = d.area / (d.bits / 8192.0) if level_kind(d.kind).has_area else 0.0
    return level, per_kb


def _zigzag_levels(mems: dict, wb: list[float], where: str,
                   merge_partitions: bool) -> tuple[list[MemoryLevel], list[float]]:
    """Levels outermost first (ZigZag lists its memories innermost first) and their SRAM
    area per KB: one level per shared memory (merged if asked), then the per-PE RF."""
    shared: list[_LevelDraft] = []
    rf: _LevelDraft | None = None
    for idx, (mname, m) in enumerate(list(mems.items())[::-1]):
        mem = _read_memory(where, mname, m)
        if mem.per_pe:
            rf = _add_rf_partition(rf, mem, wb, where)
            continue
        if rf is not None:
            raise ValueError(
                f"{where}: memories.{mname} (shared) is listed below a per-PE memory; "
                "per-PE memories must be the innermost"
            )
        shared.append(_shared_level(mem, idx == 0, wb))
    if merge_partitions:
        shared = _merge_partitions(shared)
    built = [_memory_level(d, False) for d in shared]
    if rf is not None:
        built.append(_memory_level(rf, True))
    levels = [lv for lv, _ in built]
    for op in OPERANDS:
        if not any(op in lvl.holds for lvl in levels):
            raise ValueError(f"{where}: no memory holds operand {op} ({_MEM_OPERAND[op]})")
    return levels, [a for _, a in built]


def architecture_from_zigzag(
    src: str | os.PathLike | _MappingABC,
    *,
    word_bits: tuple[int, int, int] = (8, 8, 16),
    clock_hz: float = 200e6,
    nonmac_energy_pj: float = 0.0,
    name: str | None = None,
    merge_partitions: bool = True,
) -> Architecture:
    """Read a ZigZag accelerator YAML into an :class:`Architecture` (same hardware).

    Rules (documented in ``benchmarks/ZIGZAG.md``):

    * Memories are taken outermost first (ZigZag lists them innermost first).  The
      memories served per PE (``served_dimensions: []``) become ONE per-PE ``"rf"``
      level with per-operand partitions; every other memory is one level (``"dram"``
      for the outermost, ``"sram"`` otherwise) holding its operands, pooled
      (``shared_bits`` = its size) when it holds more than one; consecutive
      single-operand SRAMs of different operands are merged (``merge_partitions``).
    * Energy per word: ZigZag's ``r_cost``/``w_cost`` are per port access of
      ``bandwidth_max`` bits.  A shared memory moves blocks, so one word of ``b`` bits
      costs ``cost * b / bandwidth``; a per-PE register file is accessed one word at a
      time by its MAC, so a word costs ``cost * ceil(b / bandwidth)``.
    * Bandwidth in words per cycle: for a shared memory, the sum of its port widths
      (each port counted once) over the widest word it holds; for the merged RF, the
      sum over its memories and ports of ``port_bits / word_bits`` (of that memory's
      operand), i.e. the words it can move per cycle.
    * ZigZag has no clock and no NoC cost: ``clock_hz`` is a parameter (cycles are
      what compares) and no NoC level is created.  The area model is the memories'
      ``area`` and the operational array's ``unit_area`` (ZigZag's units).

    Args:
      src: path to the YAML file, or its parsed content.
      word_bits: operand widths (W, I, O) in bits to express per-word quantities in
        (use the precisions the ZigZag workload will use: 8, 8, 16 for its examples).
      clock_hz: clock in Hz.
      nonmac_energy_pj: energy per non-MAC op (ZigZag does not count them: 0).
      name: architecture name (default: the YAML's ``name``).
      merge_partitions: merge consecutive shared memories that each store one
        operand, different ones (e.g. eyeriss_like's 64 KB weight SRAM and 8 KB output
        SRAM), into one level ``"a+b"`` with per-operand partitions, energies and the
        sum of their bandwidths.  Same sizes and energies; it only drops the
        constraint, which a linear level list would add and ZigZag does not have,
        that one of them sits above the other (and keeps the mapper's search small).

    Returns:
      The :class:`Architecture`.

    Raises:
      ValueError: with the file and key, for anything that does not fit (missing
      keys, an IMC array, more than two array dimensions, overlapping per-PE
      memories, a memory whose operand is not I1/I2/O).
    """
    data, where = _load_zigzag_yaml(src)
    wb = [float(b) for b in word_bits]
    if len(wb) != 3 or any(b <= 0 for b in wb):
        raise ValueError(f"word_bits must be three positive ints (W, I, O), got {word_bits!r}")
    oa, rows, cols = _zigzag_array(data, where)
    mems = data["memories"]
    if not isinstance(mems, dict) or not mems:
        raise ValueError(f"{where}: memories must be a non-empty mapping")
    levels, area_per_kb = _zigzag_levels(mems, wb, where, merge_partitions)
    return Architecture(
        name=name or str(data.get("name", "zigzag")),
        levels=tuple(levels),
        pe_rows=as_leaf(rows),
        pe_cols=as_leaf(cols),
        clock_hz=as_leaf(clock_hz),
        word_bits=as_leaf(wb),
        mac_energy_pj=as_leaf(float(oa.get("unit_energy", 0.0))),
        nonmac_energy_pj=as_leaf(nonmac_energy_pj),
        area=AreaModel(
            pe_mm2=as_leaf(float(oa.get("unit_area", 0.0))),
            sram_mm2_per_kb=as_leaf(area_per_kb),
            fixed_mm2=as_leaf(0.0),
        ),
        description=(
            f"imported from ZigZag accelerator {where} by hwmodel.architecture_from_zigzag "
            f"(word_bits W,I,O = {tuple(int(b) for b in wb)}; see benchmarks/ZIGZAG.md)"
        ),
    )
