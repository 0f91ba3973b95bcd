"""Mappings: an explicit loop nest for one layer on one architecture, and dataflows.

A :class:`Mapping` places the layer's canonical loop nest (``G N M P Q C R S``, see
:mod:`hwmodel._workload`) on an :class:`~hwmodel.Architecture`:

* **Storage levels** are the architecture's levels whose ``kind`` is not ``"noc"``,
  outermost first (e.g. DRAM, GLB, RF).  Each storage level ``j`` owns eight
  *temporal* loop factors ``temporal[j][d]`` (one per dim, canonical order) and a loop
  order ``order[j]`` (a permutation of the dims, outer to inner).  The loops "of"
  level ``j`` iterate over the sub-tiles of level ``j``'s tile: the tile a level holds
  spans its own loops and every loop inside it.
* **Spatial factors** ``spatial_x[d]`` (spread over PE columns) and ``spatial_y[d]``
  (over PE rows) form one parallel loop level that sits just above the first per-PE
  storage level (or just above the MAC units when no storage level is per PE).
  ``prod(spatial_x) <= pe_cols`` and ``prod(spatial_y) <= pe_rows``.
* **Perfect factorization**: for every dim, the product of all its temporal and
  spatial factors equals the layer's bound exactly (so an under-used PE array shows
  up as a real utilization below 100%).
* **Keep** (bypass): ``keep[j]`` lists the operands level ``j`` stores in this mapping;
  it must be a subset of what the architecture lets the level hold (``holds``), and
  the outermost level keeps all three.  A bypassed operand moves directly between the
  nearest keeping levels above and below.

The full nest, outermost first, is: level 0's loops in ``order[0]``, level 1's loops,
..., the spatial loops, then the per-PE levels' loops, then the MAC.  Each dim's
index is mixed-radix: the sum over its loops of the loop index times the product of
that dim's factors of all loops inside it.

Dataflows (:data:`DATAFLOWS`) are *families* of mappings: each fixes what the
per-PE levels keep ("what stays in the RF"), which dims may be spread over PE rows and
columns, which dims may have loops inside the PE, and the loop-order template of the
shared level just above the array.  See :data:`DATAFLOW_SPECS` for each family and
its source.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import numpy as np

from hwmodel._arch import OPERANDS, Architecture
from hwmodel._workload import DIMS, LayerSpec

__all__ = [
    "DATAFLOWS",
    "DATAFLOW_SPECS",
    "DataflowSpec",
    "Mapping",
    "MappingStack",
    "ArchStructure",
    "arch_structure",
    "validate_mapping",
    "stack_mappings",
    "ORDER_TEMPLATES",
]

DIM_INDEX = {d: i for i, d in enumerate(DIMS)}
OP_INDEX = {x: i for i, x in enumerate(OPERANDS)}

# Relevance of each dim to each operand (rows W, I, O; columns G N M P Q C R S).
# I depends on P, Q, R, S through the sliding window (p*U + r*Dh, q*V + s*Dw).
RELEVANT = np.array(
    [
        # G  N  M  P  Q  C  R  S
        [1, 0, 1, 0, 0, 1, 1, 1],  # W[g, m, c, r, s]
        [1, 1, 0, 1, 1, 1, 1, 1],  # I[g, n, c, p*U + r*Dh, q*V + s*Dw]
        [1, 1, 1, 1, 1, 0, 0, 0],  # O[g, n, m, p, q]
    ],
    dtype=bool,
)

# Loop-order templates (outer to inner) named by the operand they keep stationary at
# the level below: the dims irrelevant to that operand are innermost, so the tile of
# that operand at the next level down is not refetched while they iterate.
ORDER_TEMPLATES: dict[str, tuple[str, ...]] = {
    # W stationary: N P Q innermost (Q last: the input window slides along a row).
    "W": ("G", "M", "C", "R", "S", "N", "P", "Q"),
    # I stationary: M innermost.
    "I": ("G", "N", "C", "P", "R", "Q", "S", "M"),
    # O stationary: the reduction dims C R S innermost.
    "O": ("G", "N", "M", "P", "Q", "C", "R", "S"),
}


@dataclasses.dataclass(frozen=True)
class DataflowSpec:
    """A dataflow: a family of mappings (what stays in the PE, what is spatial).

    Attributes:
      name: short name (``"rs"``...).
      title: long name.
      pe_keep: operands the per-PE storage levels (RF) keep; the others bypass the
        PE and are fetched through the NoC every cycle (multicast / spatially
        reduced), intersected with what the architecture lets each level hold.
      spatial_x: dims that may be spread over PE columns.
      spatial_y: dims that may be spread over PE rows.
      pe_dims: dims that may have temporal loops at per-PE levels.
      array_orders: loop-order templates (keys of :data:`ORDER_TEMPLATES`) tried for
        the shared level just above the PE array; outer shared levels try all three.
      source: where the family comes from.
    """

    name: str
    title: str
    pe_keep: tuple[str, ...]
    spatial_x: tuple[str, ...]
    spatial_y: tuple[str, ...]
    pe_dims: tuple[str, ...]
    array_orders: tuple[str, ...]
    source: str


DATAFLOW_SPECS: dict[str, DataflowSpec] = {
    "ws": DataflowSpec(
        name="ws",
        title="weight stationary",
        pe_keep=("W",),
        spatial_x=("M",),
        spatial_y=("C", "R", "S"),
        pe_dims=("M", "C", "R", "S"),
        array_orders=("W",),
        source=(
            "Chen et al., ISCA 2016, Sec. V-A (WS: each PE keeps weights in its RF; "
            "ifmaps are broadcast and psums accumulate across the array; e.g. "
            "NeuFlow); Sze et al., Proc. IEEE 2017, Sec. V-B (TPU-like: filters "
            "over columns, input channels over rows)."
        ),
    ),
    "os": DataflowSpec(
        name="os",
        title="output stationary",
        pe_keep=("O",),
        spatial_x=("Q", "M"),
        spatial_y=("P", "N"),
        pe_dims=("N", "M", "P", "Q"),
        array_orders=("O",),
        source=(
            "Chen et al., ISCA 2016, Sec. V-A (OS: each PE accumulates its own "
            "outputs' psums in the RF; ShiDianNao-like, output pixels / channels "
            "spread over the array); Sze et al., Proc. IEEE 2017, Sec. V-B."
        ),
    ),
    "is": DataflowSpec(
        name="is",
        title="input stationary",
        pe_keep=("I",),
        spatial_x=("Q", "N"),
        spatial_y=("C", "P"),
        pe_dims=("N", "C", "P", "Q", "R", "S"),
        array_orders=("I",),
        source=(
            "Sze et al., Proc. IEEE 2017, Sec. V-B and the ISCA 2017 tutorial "
            "(input stationary: ifmap pixels stay in the RF while filters stream; "
            "e.g. SCNN, Parashar et al. ISCA 2017)."
        ),
    ),
    "rs": DataflowSpec(
        name="rs",
        title="row stationary (Eyeriss)",
        pe_keep=("W", "I", "O"),
        spatial_x=("P", "M"),
        spatial_y=("R", "C"),
        pe_dims=("S", "Q", "C", "M", "N"),
        array_orders=("W",),
        source=(
            "Chen et al., ISCA 2016, Sec. IV (row stationary: a PE runs a 1-D row "
            "convolution with a filter row, an input window and a psum row in its "
            "RF; filter rows over PE rows, output rows over PE columns, folded with "
            "channels and filters; inputs reused diagonally, psums accumulated "
            "vertically); Chen et al., JSSC 2017 (Eyeriss chip)."
        ),
    ),
    "nlr": DataflowSpec(
        name="nlr",
        title="no local reuse",
        pe_keep=(),
        spatial_x=("M",),
        spatial_y=("C",),
        pe_dims=(),
        array_orders=("W", "I", "O"),
        source=(
            "Chen et al., ISCA 2016, Sec. V-A (NLR: no RF data reuse; every operand "
            "comes from the global buffer, psums reduced across the array; "
            "DianNao / DaDianNao-like)."
        ),
    ),
}

DATAFLOWS: tuple[str, ...] = tuple(DATAFLOW_SPECS)
"""Names of the dataflow families: ws, os, is, rs, nlr."""


# ---------------------------------------------------------------------------------
# Architecture structure (static): which levels store data, where the array is.
# ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ArchStructure:
    """The static skeleton of an architecture as the cost model sees it.

    Attributes:
      level_names: all level names (outermost first).
      storage: indices (into ``level_names``) of the storage levels (kind != noc).
      storage_names: their names.
      n_storage: number of storage levels.
      first_pe: storage index of the first per-PE storage level (``n_storage`` if none):
        the spatial fan-out sits just above it.
      holds: ``[n_storage, 3]`` bool: operands each storage level may hold.
      noc: indices (into ``level_names``) of the NoC levels.
      noc_below: for each NoC level, the storage index of the first storage level
        below it (``n_storage`` if it sits above the MAC units only): a word moving
        between storage levels ``p < noc_below <= c`` crosses it.
    """

    level_names: tuple[str, ...]
    storage: tuple[int, ...]
    storage_names: tuple[str, ...]
    n_storage: int
    first_pe: int
    holds: tuple[tuple[bool, bool, bool], ...]
    noc: tuple[int, ...]
    noc_below: tuple[int, ...]

    @property
    def holds_array(self) -> np.ndarray:
        return np.array(self.holds, dtype=bool).reshape(self.n_storage, 3)


def arch_structure(arch: Architecture) -> ArchStructure:
    """Extract (and check) the static skeleton of ``arch``.

    Raises:
      ValueError: when the outermost level is not a shared storage level holding all
        three operands, when a shared storage level sits below a per-PE one, or when
        there is no storage level.
    """
    names = tuple(lvl.name for lvl in arch.levels)
    if not names:
        raise ValueError(f"architecture {arch.name!r}: no memory levels")
    storage, noc, noc_below = [], [], []
    for i, lvl in enumerate(arch.levels):
        if lvl.kind == "noc":
            noc.append(i)
        else:
            storage.append(i)
    for i in noc:
        noc_below.append(sum(1 for j in storage if j < i))
    if not storage:
        raise ValueError(f"architecture {arch.name!r}: no storage level (only NoC levels)")
    lv0 = arch.levels[storage[0]]
    if lv0.per_pe or set(lv0.holds) != set(OPERANDS) or storage[0] != 0:
        raise ValueError(
            f"architecture {arch.name!r}: the outermost level {names[0]!r} must be a "
            f"shared (per_pe=False) storage level holding W, I and O (it is the backing "
            f"store); got kind={arch.levels[0].kind!r}, per_pe={arch.levels[0].per_pe}, "
            f"holds={arch.levels[0].holds}"
        )
    first_pe = len(storage)
    for s, i in enumerate(storage):
        lvl = arch.levels[i]
        bad = [x for x in lvl.holds if x not in OPERANDS]
        if bad:
            raise ValueError(
                f"architecture {arch.name!r}, level {lvl.name!r}: unknown operands "
                f"{bad} in holds; valid: {list(OPERANDS)}"
            )
        if lvl.per_pe and first_pe == len(storage):
            first_pe = s
        if not lvl.per_pe and first_pe < len(storage):
            raise ValueError(
                f"architecture {arch.name!r}: shared level {lvl.name!r} sits below the "
                f"per-PE level {arch.levels[storage[first_pe]].name!r}; shared levels "
                "must all be above the PE array"
            )
    holds = tuple(
        tuple(x in arch.levels[i].holds for x in OPERANDS) for i in storage
    )
    return ArchStructure(
        level_names=names,
        storage=tuple(storage),
        storage_names=tuple(names[i] for i in storage),
        n_storage=len(storage),
        first_pe=first_pe,
        holds=holds,
        noc=tuple(noc),
        noc_below=tuple(noc_below),
    )


# ---------------------------------------------------------------------------------
# Mapping
# ---------------------------------------------------------------------------------
def _dims_tuple(values, what: str) -> tuple[int, ...]:
    if isinstance(values, dict):
        bad = [k for k in values if k not in DIM_INDEX]
        if bad:
            raise ValueError(f"{what}: unknown dims {bad}; valid: {list(DIMS)}")
        return tuple(int(values.get(d, 1)) for d in DIMS)
    values = tuple(int(v) for v in values)
    if len(values) != 8:
        raise ValueError(f"{what}: need 8 factors (G N M P Q C R S), got {len(values)}")
    return values


@dataclasses.dataclass(frozen=True)
class Mapping:
    """An explicit loop nest for one layer (see the module docstring).

    Attributes:
      levels: storage level names, outermost first (must equal the architecture's
        non-NoC levels).
      temporal: per storage level, 8 temporal factors in ``DIMS`` order.
      order: per storage level, the loop order: a permutation of ``DIMS``, outer
        to inner.
      spatial_x: 8 factors spread over PE columns.
      spatial_y: 8 factors spread over PE rows.
      keep: per storage level, the operands stored there (subset of ``OPERANDS``).
      dataflow: the family this mapping belongs to (free text, ``"custom"``).
    """

    levels: tuple[str, ...]
    temporal: tuple[tuple[int, ...], ...]
    order: tuple[tuple[str, ...], ...]
    spatial_x: tuple[int, ...]
    spatial_y: tuple[int, ...]
    keep: tuple[tuple[str, ...], ...]
    dataflow: str = "custom"

    def __post_init__(self):
        object.__setattr__(self, "levels", tuple(self.levels))
        n = len(self.levels)
        temporal = tuple(
            _dims_tuple(t, f"Mapping.temporal[{self.levels[j] if j < n else j}]")
            for j, t in enumerate(self.temporal)
        )
        object.__setattr__(self, "temporal", temporal)
        object.__setattr__(self, "order", tuple(tuple(o) for o in self.order))
        object.__setattr__(self, "spatial_x", _dims_tuple(self.spatial_x, "Mapping.spatial_x"))
        object.__setattr__(self, "spatial_y", _dims_tuple(self.spatial_y, "Mapping.spatial_y"))
        object.__setattr__(self, "keep", tuple(tuple(k) for k in self.keep))
        if not (len(temporal) == len(self.order) == len(self.keep) == n):
            raise ValueError(
                f"Mapping: levels ({n}), temporal ({len(temporal)}), order "
                f"({len(self.order)}) and keep ({len(self.keep)}) must have equal length"
            )
        for j, o in enumerate(self.order):
            if sorted(o) != sorted(DIMS):
                raise ValueError(
                    f"Mapping.order[{self.levels[j]!r}] = {o} is not a permutation of {DIMS}"
                )
        for j, k in enumerate(self.keep):
            bad = [x for x in k if x not in OPERANDS]
            if bad:
                raise ValueError(
                    f"Mapping.keep[{self.levels[j]!r}]: unknown operands {bad}; "
                    f"valid: {list(OPERANDS)}"
                )
        for f, v in (("spatial_x", self.spatial_x), ("spatial_y", self.spatial_y)):
            if any(x < 1 for x in v):
                raise ValueError(f"Mapping.{f}: factors must be >= 1, got {v}")
        for j, t in enumerate(temporal):
            if any(x < 1 for x in t):
                raise ValueError(
                    f"Mapping.temporal[{self.levels[j]!r}]: factors must be >= 1, got {t}"
                )

    # ---- derived -------------------------------------------------------------------
    @property
    def spatial(self) -> tuple[int, ...]:
        """Combined spatial factor per dim (columns x rows)."""
        return tuple(a * b for a, b in zip(self.spatial_x, self.spatial_y))

    @property
    def used_pes(self) -> int:
        """PEs the mapping uses: prod(spatial_x) * prod(spatial_y)."""
        return math.prod(self.spatial_x) * math.prod(self.spatial_y)

    @property
    def compute_cycles(self) -> int:
        """Product of all temporal factors (one MAC per PE per cycle)."""
        return math.prod(math.prod(t) for t in self.temporal)

    def bounds(self) -> dict[str, int]:
        """The loop bounds this mapping factorizes, per dim."""
        out = {}
        for i, d in enumerate(DIMS):
            v = self.spatial_x[i] * self.spatial_y[i]
            for t in self.temporal:
                v *= t[i]
            out[d] = v
        return out

    def loops(self, first_pe: int) -> list[tuple[str, str, int, str]]:
        """The full nest outer to inner: (level, dim, factor, 'temporal'|'spatial_x'|'spatial_y').

        Args:
          first_pe: storage index of the first per-PE level (spatial loops go above it).
        """
        out = []
        for j, name in enumerate(self.levels):
            if j == first_pe:
                for i, d in enumerate(DIMS):
                    if self.spatial_x[i] > 1:
                        out.append(("array", d, self.spatial_x[i], "spatial_x"))
                for i, d in enumerate(DIMS):
                    if self.spatial_y[i] > 1:
                        out.append(("array", d, self.spatial_y[i], "spatial_y"))
            for d in self.order[j]:
                f = self.temporal[j][DIM_INDEX[d]]
                out.append((name, d, f, "temporal"))
        if first_pe >= len(self.levels):
            for i, d in enumerate(DIMS):
                if self.spatial_x[i] > 1:
                    out.append(("array", d, self.spatial_x[i], "spatial_x"))
            for i, d in enumerate(DIMS):
                if self.spatial_y[i] > 1:
                    out.append(("array", d, self.spatial_y[i], "spatial_y"))
        return out

    def describe(self, first_pe: int | None = None) -> str:
        """A readable loop nest (loops with factor 1 omitted).

        Args:
          first_pe: storage index of the first per-PE level; default: the last level.
        """
        fp = len(self.levels) - 1 if first_pe is None else first_pe
        lines = [f"mapping ({self.dataflow}):"]
        depth = 0
        cur = None
        for lvl, d, f, kind in self.loops(fp):
            if f == 1:
                continue
            if lvl != cur:
                keep = ""
                if lvl in self.levels:
                    keep = " keeps " + ("".join(self.keep[self.levels.index(lvl)]) or "-")
                lines.append("  " * depth + f"[{lvl}{keep}]")
                cur = lvl
            word = "for" if kind == "temporal" else f"par_{kind[-1]}"
            lines.append("  " * depth + f"  {word} {d.lower()} in {f}")
            depth += 1
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready dict (round-trips through :meth:`from_dict`)."""
        return {
            "levels": list(self.levels),
            "temporal": {
                name: dict(zip(DIMS, t)) for name, t in zip(self.levels, self.temporal)
            },
            "order": {name: "".join(o) for name, o in zip(self.levels, self.order)},
            "spatial_x": dict(zip(DIMS, self.spatial_x)),
            "spatial_y": dict(zip(DIMS, self.spatial_y)),
            "keep": {name: "".join(k) for name, k in zip(self.levels, self.keep)},
            "dataflow": self.dataflow,
        }

    @classmethod
    def from_dict(cls, d: dict) -> "Mapping":
        levels = tuple(d["levels"])
        return cls(
            levels=levels,
            temporal=tuple(d["temporal"][n] for n in levels),
            order=tuple(tuple(d["order"][n]) for n in levels),
            spatial_x=d["spatial_x"],
            spatial_y=d["spatial_y"],
            keep=tuple(tuple(d["keep"][n]) for n in levels),
            dataflow=d.get("dataflow", "custom"),
        )


def _word_bits(arch: Architecture) -> np.ndarray:
    return np.asarray(arch.word_bits, dtype=np.float64).reshape(3)


def validate_mapping(layer: LayerSpec, arch: Architecture, mapping: Mapping,
                     *, check_capacity: bool = True, check_model: bool = True) -> None:
    """Check that ``mapping`` is a legal loop nest for ``layer`` on ``arch``.

    Checks: level names, perfect factorization of every dim, spatial factors within
    the array, keep within what each level may hold (outermost keeps everything), and
    (``check_capacity``) every kept tile fits its level at the architecture's word
    widths.  The array-size and capacity checks are skipped when the architecture's
    leaves are traced (under jit/vmap): :attr:`hwmodel.Cost` then reports ``legal``.
    ``check_model`` also rejects the rare mappings outside the closed form's domain
    (:func:`hwmodel._counts.uncovered`; the simulator handles them).

    Raises:
      ValueError: saying what is wrong, for which layer, level and dim.
    """
    from hwmodel._counts import tile_words_single  # local import: no cycle at import

    st = arch_structure(arch)
    where = f"layer {layer.name!r} on {arch.name!r}"
    if tuple(mapping.levels) != st.storage_names:
        raise ValueError(
            f"{where}: mapping levels {list(mapping.levels)} != the architecture's storage "
            f"levels {list(st.storage_names)}"
        )
    got = mapping.bounds()
    for d in DIMS:
        if got[d] != getattr(layer, d):
            raise ValueError(
                f"{where}: dim {d}: the product of the mapping's factors is {got[d]} but "
                f"the layer's bound is {getattr(layer, d)} (factors must multiply to the "
                "bound exactly)"
            )
    import jax

    traced = any(isinstance(v, jax.core.Tracer) for v in jax.tree_util.tree_leaves(arch))
    if traced:
        check_capacity = False
    cols = float("inf") if traced else float(np.asarray(arch.pe_cols))
    rows = float("inf") if traced else float(np.asarray(arch.pe_rows))
    if math.prod(mapping.spatial_x) > cols:
        raise ValueError(
            f"{where}: spatial_x uses {math.prod(mapping.spatial_x)} PE columns "
            f"({dict(zip(DIMS, mapping.spatial_x))}) but the array has {cols:g}"
        )
    if math.prod(mapping.spatial_y) > rows:
        raise ValueError(
            f"{where}: spatial_y uses {math.prod(mapping.spatial_y)} PE rows "
            f"({dict(zip(DIMS, mapping.spatial_y))}) but the array has {rows:g}"
        )
    for j, name in enumerate(st.storage_names):
        allowed = [x for x, h in zip(OPERANDS, st.holds[j]) if h]
        bad = [x for x in mapping.keep[j] if x not in allowed]
        if bad:
            raise ValueError(
                f"{where}: level {name!r} cannot hold {bad} (it may hold {allowed})"
            )
    if set(mapping.keep[0]) != set(OPERANDS):
        raise ValueError(
            f"{where}: the outermost level {st.storage_names[0]!r} must keep W, I and O, "
            f"mapping keeps {list(mapping.keep[0])}"
        )
    from hwmodel._counts import uncovered

    if check_model and uncovered(stack_mappings([mapping]), st)[0]:
        raise ValueError(
            f"{where}: unsupported mapping: I bypasses a per-PE level that has P/R/Q/S "
            "loops while the same dims are spread spatially (the PEs' input windows "
            "would be strided; the cost model's closed form does not cover it). Move "
            "those loops to the level that keeps I, or above the array"
        )
    if not check_capacity:
        return
    wb = _word_bits(arch)
    tiles = tile_words_single(layer, mapping, st)  # [n_s, 3] words per instance
    for j, name in enumerate(st.storage_names):
        if j == 0:
            continue
        lvl = arch.levels[st.storage[j]]
        cap = np.asarray(lvl.capacity_bits, dtype=np.float64).reshape(3)
        shared = float(np.asarray(lvl.shared_bits))
        bits = {x: tiles[j][i] * wb[i] for i, x in enumerate(OPERANDS) if x in mapping.keep[j]}
        for i, x in enumerate(OPERANDS):
            if x in bits and bits[x] > cap[i]:
                raise ValueError(
                    f"{where}: level {name!r}: the {x} tile is {tiles[j][i]} words x "
                    f"{wb[i]:g} b = {bits[x]:g} b but the {x} capacity is {cap[i]:g} b"
                )
        if sum(bits.values()) > shared:
            raise ValueError(
                f"{where}: level {name!r}: tiles "
                + ", ".join(f"{x}={b:g} b" for x, b in bits.items())
                + f" total {sum(bits.values()):g} b > shared capacity {shared:g} b"
            )


# ---------------------------------------------------------------------------------
# Stacked integer arrays (over layers or over candidates)
# ---------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class MappingStack:
    """Mappings stacked into integer arrays over a leading batch axis ``[B]``.

    Attributes:
      T: ``[B, n_s, 8]`` int64 temporal factors (storage levels, ``DIMS`` order).
      order: ``[B, n_s, 8]`` int64: dim index at each nest position (outer to inner).
      SX, SY: ``[B, 8]`` int64 spatial factors (columns, rows).
      keep: ``[B, n_s, 3]`` bool.
    """

    T: np.ndarray
    order: np.ndarray
    SX: np.ndarray
    SY: np.ndarray
    keep: np.ndarray

    def __len__(self) -> int:
        return int(self.T.shape[0])

    def take(self, idx) -> "MappingStack":
        """Select rows (numpy fancy index) -> a new stack."""
        return MappingStack(self.T[idx], self.order[idx], self.SX[idx], self.SY[idx],
                            self.keep[idx])

    def mapping(self, i: int, levels: tuple[str, ...], dataflow: str = "custom") -> Mapping:
        """Row ``i`` as a :class:`Mapping`."""
        return Mapping(
            levels=levels,
            temporal=tuple(tuple(int(v) for v in row) for row in self.T[i]),
            order=tuple(tuple(DIMS[k] for k in row) for row in self.order[i]),
            spatial_x=tuple(int(v) for v in self.SX[i]),
            spatial_y=tuple(int(v) for v in self.SY[i]),
            keep=tuple(tuple(x for x, k in zip(OPERANDS, row) if k) for row in self.keep[i]),
            dataflow=dataflow,
        )


def stack_mappings(mappings: Iterable[Mapping]) -> MappingStack:
    """Stack mappings (same levels) into a :class:`MappingStack`."""
    mappings = list(mappings)
    if not mappings:
        raise ValueError("stack_mappings: no mappings")
    levels = mappings[0].levels
    for m in mappings:
        if m.levels != levels:
            raise ValueError(f"stack_mappings: levels differ: {m.levels} vs {levels}")
    T = np.array([m.temporal for m in mappings], dtype=np.int64)
    order = np.array([[[DIM_INDEX[d] for d in o] for o in m.order] for m in mappings],
                     dtype=np.int64)
    SX = np.array([m.spatial_x for m in mappings], dtype=np.int64)
    SY = np.array([m.spatial_y for m in mappings], dtype=np.int64)
    keep = np.array([[[x in k for x in OPERANDS] for k in m.keep] for m in mappings],
                    dtype=bool)
    return MappingStack(T, order, SX, SY, keep)
