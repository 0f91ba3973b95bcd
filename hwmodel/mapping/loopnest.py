"""Mappings: an explicit loop nest for one layer on one architecture.

A :class:`Mapping` places the layer's canonical loop nest (``G N M P Q C R S``, see
:mod:`hwmodel.workload.spec`) on an :class:`~hwmodel.Architecture`:

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

Dataflows (families of mappings) are in :mod:`hwmodel.mapping.dataflows`; tile sizes
and :func:`~hwmodel.validate_mapping` in :mod:`hwmodel.mapping.tiles`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Iterable

import numpy as np

from hwmodel.arch.architecture import Architecture
from hwmodel.arch.kinds import OPERANDS
from hwmodel.workload.spec import DIMS

__all__ = [
    "Mapping",
    "MappingStack",
    "ArchStructure",
    "arch_structure",
    "stack_mappings",
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
