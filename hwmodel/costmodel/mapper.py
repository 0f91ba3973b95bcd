"""The mapper: for each layer and dataflow, the best legal mapping of a defined search space.

The search space :math:`S` (``candidate_mappings`` materializes it; ``map_layer`` searches
it without materializing it) for a layer, an architecture and a dataflow family
(:data:`hwmodel.DATAFLOW_SPECS`) is defined declaratively; ``A`` is the first per-PE
storage level, level 0 the outermost (backing store):

1. **Keep** (fixed per level): a shared level keeps what it may hold; a per-PE level
   keeps what it may hold among the family's ``pe_keep``; level 0 keeps everything.
2. **Spatial** ``SX``/``SY``: divisors of the bounds of the family's column dims with
   product <= ``pe_cols``, and of its row dims (not already column dims) with product
   <= ``pe_rows``; per axis only the assignments that are *maximal* (no dim can grow to
   its next divisor without overflowing the axis) or use at least ``1/NEAR_MAXIMAL`` of
   the best axis product.  [heuristic H1; when nothing below is legal, every
   assignment is retried]
3. **Temporal factors**: a perfect factorization (every dim's temporal and spatial
   factors multiply to its bound); per-PE levels have loops only over the family's
   ``pe_dims`` and none at all if they keep nothing; every kept tile fits its level
   (per-operand and pooled capacity, :func:`hwmodel.validate_mapping`'s rule); and at
   every level ``j >= 1`` the tile is **maximal** given the levels inside it: no dim
   relevant to an operand the level keeps can grow its factor at ``j`` to the next
   divisor of what is left of its bound and still fit.  [heuristic H2: a bigger tile
   at a level does not always cost less -- it leaves fewer loops above]
4. **Loop orders**: per-PE levels use the family's first ``array_orders`` template; the
   shared level just above the array (when it is not level 0) tries the family's
   ``array_orders`` (these fixed orders are part of what defines the dataflow family);
   every other level tries *every* loop order up to orders with identical counts: the
   three stationarity templates :data:`hwmodel.mapping.loopnest.ORDER_TEMPLATES` plus the 32
   representatives :data:`ORDER_CLASSES`, which realize every order signature of the
   8! permutations (tested exhaustively).
5. Mappings outside the closed form's domain (:func:`hwmodel.costmodel.counts.uncovered`) are
   excluded.

``map_layer`` returns a member of :math:`S` with the minimum objective (``"energy"``
in pJ, or ``"edp"`` = energy x cycles), **exactly** (up to float64 rounding), while
pruning only soundly:

* **Level-by-level factor enumeration with capacity pruning**: levels are filled
  innermost first, one dim at a time; a partial tile that does not fit is dropped
  before any further dim is expanded (tiles only grow with their extents); only
  divisors of what is left of each bound are tried; the last dim relevant to a kept
  operand takes directly its largest fitting divisor (maximality), the other relevant
  dims are checked for maximality once set.
* **Equivalent loop orders are evaluated once**: given the factors, a level's order
  only matters through, per operand, the set of non-unit loops from the level's
  outermost loop through the innermost loop relevant to that operand (and, for the
  input, which dim that innermost loop is: sliding windows).  Templates with the same
  signature give identical counts.
* **Orders are chosen per level** (energy): given the factors, the counts of each
  (operand, child level) pair depend on the order of exactly one level -- the nearest
  level above the child with a non-unit loop relevant to that operand (the innermost
  such loop is what the fill count and the sliding step depend on).  Energy is
  therefore a sum of per-level terms, ``E(o) = E(o_0) + sum_j [E(o_0 with o_j) -
  E(o_0)]``, and the best combination is found with ``1 + sum_j (n_j - 1)`` evaluations
  instead of ``prod_j n_j`` (used when that is cheaper; the full product otherwise).
  For ``"edp"`` the bandwidth terms are separable the same way: a factorization is
  decided per level only if, for every order combination, no level's bandwidth term
  can exceed the compute cycles (then cycles are the compute cycles and EDP is
  compute x energy); otherwise all its order combinations are evaluated.
* **Memory bound**: candidates are generated and evaluated in chunks (a generator
  pipeline, depth-first); only the running best (top-k) is kept.  The working set is
  bounded by ``max_bytes`` (default :data:`MEMORY_CAP_BYTES` = 1 GiB) whatever the
  number of levels: chunk sizes are derived from it.
* **Caching**: results are memoized per (layer shape, architecture values and
  structure, dataflow, objective, spatial set) in a bounded LRU cache
  (:func:`clear_cache`); :func:`map_workload` maps identical layer shapes once.

**Ties** (equal objective) are broken by fewer cycles, then less energy, then fewer
outermost-level (DRAM) accesses, then the first in enumeration order, so the result is
deterministic.  (Within one factorization decided per level, a level whose templates
tie in energy takes the first template in the order listed above.)

The result is exact over :math:`S`, not over every possible mapping: H1 and H2 prune
spatial assignments and tile sizes that are rarely optimal.
``tests/test_mapper_search.py`` checks the streamed search against an independent
brute force over :math:`S` (3- and 4-level hierarchies, both objectives).

The mapper needs concrete architecture values (it uses numpy); under ``jit``/``vmap``
over architectures use :func:`hwmodel.mapping_candidates` and ``hwmodel.cost(...,
candidates=...)``, which evaluates a static candidate set inside JAX.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import math

import jax
import numpy as np

from hwmodel._util import is_traced, register_pytree
from hwmodel.arch.architecture import Architecture
from hwmodel.arch.kinds import OPERANDS
from hwmodel.costmodel.counts import Counts, counts, structure
from hwmodel.costmodel.evaluate import ArchArrays, Metrics, arch_arrays, metrics
from hwmodel.mapping.dataflows import DATAFLOW_SPECS, DATAFLOWS, ORDER_TEMPLATES
from hwmodel.mapping.loopnest import DIM_INDEX, RELEVANT, Mapping, MappingStack, arch_structure
from hwmodel.mapping.tiles import WindowSteps, geometry, tile_words, uncovered, window_steps
from hwmodel.workload.spec import DIMS, LayerSpec, Workload

__all__ = ["map_layer", "map_workload", "candidate_mappings", "evaluate_stack", "StackEvaluation",
           "OBJECTIVES", "NoLegalMapping", "MEMORY_CAP_BYTES", "MAX_EXACT_MACS",
           "check_exact_range", "clear_cache", "best_k", "check_args", "require_concrete",
           "layer_key", "per_distinct_layer"]

OBJECTIVES = ("energy", "edp")

NEAR_MAXIMAL = 2
"""Spatial assignments using at least 1/NEAR_MAXIMAL of the best axis product are kept
besides the maximal ones (fewer busy PEs can mean less NoC traffic)."""

MEMORY_CAP_BYTES = 1 << 30
"""Default bound (bytes) on the mapper's working set of candidate arrays (1 GiB)."""

MAX_EXACT_MACS = 2 ** 53
"""Largest MAC count of one layer the cost model takes (about 9.0e15): its counts are
integers in int64 (the mapper) and float64 (the one-shot evaluation), exact below 2^53."""

CACHE_SIZE = 4096
"""Entries of the per-(layer shape, architecture, dataflow, objective) result cache."""


class NoLegalMapping(ValueError):
    """Raised when a layer has no legal mapping of a dataflow on an architecture."""


def require_concrete(arch: Architecture, what: str) -> None:
    """Raise a TypeError naming ``what`` if ``arch`` has traced leaves (the mapper
    needs concrete sizes), saying how to map outside the transformation."""
    if is_traced(arch):
        raise TypeError(
            f"{what} needs concrete architecture values but got a traced value "
            "(under jit/vmap/grad over the architecture). Compute mappings outside the "
            "transformation and pass `mappings=`, or build a static candidate set with "
            "hwmodel.mapping_candidates(...) and pass `candidates=`."
        )


def check_args(dataflow: str, objective: str) -> None:
    if dataflow not in DATAFLOW_SPECS:
        raise ValueError(f"unknown dataflow {dataflow!r}; valid: {', '.join(DATAFLOWS)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")


def _check_cap(max_bytes) -> int:
    if max_bytes is None:
        return MEMORY_CAP_BYTES
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) \
            or max_bytes <= 0:
        raise ValueError(f"max_bytes must be a positive int (bytes), got {max_bytes!r}")
    return int(max_bytes)


def _divisors(n: int) -> np.ndarray:
    small = [d for d in range(1, math.isqrt(n) + 1) if n % d == 0]
    return np.array(sorted(set(small + [n // d for d in small])), dtype=np.int64)


def _combos(dims: list[int], bounds: np.ndarray) -> np.ndarray:
    """All divisor assignments ``[nc, 8]`` for ``dims`` (others 1)."""
    lists = [_divisors(int(bounds[d])) for d in dims]
    if not lists:
        return np.ones((1, 8), dtype=np.int64)
    grids = np.meshgrid(*lists, indexing="ij")
    out = np.ones((grids[0].size, 8), dtype=np.int64)
    for d, g in zip(dims, grids):
        out[:, d] = g.reshape(-1)
    return out


def _next_divisor(rem: np.ndarray, f: np.ndarray, divs: np.ndarray) -> np.ndarray:
    """Smallest divisor of ``rem`` greater than ``f`` (0 if none). Shapes ``[P]``."""
    ok = (divs[None, :] > f[:, None]) & (rem[:, None] % divs[None, :] == 0)
    big = np.where(ok, divs[None, :], np.iinfo(np.int64).max)
    nd = big.min(axis=1)
    return np.where(nd == np.iinfo(np.int64).max, 0, nd)


def _axis_candidates(dims: list[int], bounds: np.ndarray, limit: int, maximal: bool):
    c = _combos(dims, bounds)
    c = c[np.prod(c, axis=1) <= limit]
    if not maximal or not dims:
        return c
    prod = np.prod(c, axis=1)
    near = prod * NEAR_MAXIMAL >= prod.max()
    keep = np.ones(len(c), dtype=bool)
    for d in dims:
        divs = _divisors(int(bounds[d]))
        nd = _next_divisor(np.full(len(c), bounds[d]), c[:, d], divs)
        grown = np.where(nd > 0, prod // c[:, d] * nd, limit + 1)
        keep &= ~(grown <= limit)
    return c[keep | near]


def _order_classes() -> tuple[tuple[str, ...], ...]:
    """32 loop orders that realize every order signature (see :func:`_signatures`).

    Given a level's factors, the counts depend on its order only through the
    innermost loop and the run of innermost loops irrelevant to one operand: each dim
    is irrelevant to at most one operand (N P Q to W, M to I, C R S to O; G to none),
    so only the operand of the innermost loop can have such a run.  One order per
    (operand, run set, innermost loop of the run) for W and O, one per loop just
    above an innermost M for I, and G innermost cover every case: the dims of the
    operand's class outside the run go first, so that, restricted to any set of
    non-unit loops, the order's run is the intended one or another order's.
    """
    out = []
    for members in (("N", "P", "Q"), ("C", "R", "S")):
        for k in range(1, len(members) + 1):
            for run_set in itertools.combinations(members, k):
                for r in run_set:
                    run = [d for d in run_set if d != r] + [r]
                    rest = [d for d in members if d not in run_set]
                    rest += [d for d in DIMS if d not in members]
                    out.append(tuple(rest + run))
    for d in ("G", "N", "P", "Q", "C", "R", "S"):
        out.append(tuple([e for e in DIMS if e not in (d, "M")] + [d, "M"]))
    out.append(tuple([d for d in DIMS if d != "G"] + ["G"]))
    return tuple(out)


ORDER_CLASSES = _order_classes()
"""Loop orders covering every order signature: searching them is searching all 8!
permutations of a level (up to orders with identical counts)."""


def _fits(ext, geom, kept, cap, shared, wb):
    """``[P]`` bool: the tile with extents ``ext`` fits (kept operands only)."""
    t = tile_words(np, ext, geom)
    tot = np.zeros(ext.shape[0])
    ok = np.ones(ext.shape[0], dtype=bool)
    for x in range(3):
        if kept[x]:
            b = t[x] * wb[x]
            ok &= b <= cap[x]
            tot = tot + b
    return ok & (tot <= shared)


# ----------------------------------------------------------------------------------
# The search space (static per layer, architecture, dataflow)
# ----------------------------------------------------------------------------------
@dataclasses.dataclass
class _Fail:
    """Where the factor enumeration died (for :class:`NoLegalMapping` messages)."""

    level: str = ""
    detail: str = ""
    tried: dict = dataclasses.field(default_factory=dict)  # level j -> rows that reached it
    passed: dict = dataclasses.field(default_factory=dict)  # level j -> rows that fit
    min_tile: dict = dataclasses.field(default_factory=dict)  # level j -> [3] smallest tile

    def explain(self, sp: "_Space") -> None:
        for j in range(sp.n_s - 1, 0, -1):
            if self.tried.get(j, 0) and not self.passed.get(j, 0):
                kept = sp.keep_lvl[j]
                cap, shared, wb = sp.cap[j], sp.shared[j], sp.wb
                name = sp.arch.levels[sp.st.storage[j]].name
                t = self.min_tile[j]
                self.level = name
                self.detail = (
                    f"level {name!r} (capacity "
                    + ", ".join(f"{OPERANDS[x]}={cap[x]:g} b" for x in range(3) if kept[x])
                    + f", shared={shared:g} b) cannot hold even the smallest tile "
                    + ", ".join(f"{OPERANDS[x]}={int(t[x])} words x {wb[x]:g} b"
                                for x in range(3) if kept[x])
                )
                return


@dataclasses.dataclass
class _Space:
    layer: LayerSpec
    arch: Architecture
    spec: object
    st: object
    n_s: int
    A: int
    bounds: np.ndarray  # [8]
    geom: WindowSteps  # reduced strides / dilations (ints)
    aa: ArchArrays
    wb: np.ndarray  # [3]
    keep_lvl: np.ndarray  # [n_s, 3]
    cap: np.ndarray  # [n_s, 3] bits
    shared: np.ndarray  # [n_s] bits
    SX: np.ndarray  # [nsp, 8]
    SY: np.ndarray  # [nsp, 8]
    steps: list  # per level j: list of (kind, dim)
    divs: list  # per dim: divisors of its bound (ascending)
    choices: list  # per level: list of template names
    tmpl: dict  # template name -> [8] dim indices
    per_pe: tuple
    fit0: bool


def _build_space(layer: LayerSpec, arch: Architecture, dataflow: str,
                 all_spatial: bool, *, orders: str = "all", maximal: bool = True,
                 irrelevant: str = "all") -> _Space:
    spec = DATAFLOW_SPECS[dataflow]
    st = arch_structure(arch)
    n_s, A = st.n_storage, st.first_pe
    bounds = np.array([getattr(layer, d) for d in DIMS], dtype=np.int64)
    g = geometry([layer])
    geom = window_steps(g).map(lambda v: int(v[0]))
    aa = arch_arrays(np, arch, relaxed=False)
    wb = np.asarray(aa.word_bits, dtype=np.float64)
    rows, cols = int(aa.rows), int(aa.cols)
    holds = st.holds_array
    pe_keep = np.array([x in spec.pe_keep for x in OPERANDS])
    keep_lvl = np.array([holds[j] & (pe_keep if j >= A else True) for j in range(n_s)])
    keep_lvl[0] = True
    cap = np.stack([np.asarray(aa.cap[st.storage[j]], dtype=np.float64).reshape(3)
                    for j in range(n_s)])
    shared = np.array([float(aa.shared[st.storage[j]]) for j in range(n_s)])

    sx_dims = [DIM_INDEX[d] for d in spec.spatial_x if bounds[DIM_INDEX[d]] > 1]
    sy_dims = [DIM_INDEX[d] for d in spec.spatial_y
               if bounds[DIM_INDEX[d]] > 1 and DIM_INDEX[d] not in sx_dims]
    cx = _axis_candidates(sx_dims, bounds, cols, maximal=not all_spatial)
    cy = _axis_candidates(sy_dims, bounds, rows, maximal=not all_spatial)
    ix, iy = np.meshgrid(np.arange(len(cx)), np.arange(len(cy)), indexing="ij")
    SX = cx[ix.reshape(-1)]
    SY = cy[iy.reshape(-1)]

    divs = [_divisors(int(b)) for b in bounds]
    pe_dims = [DIM_INDEX[d] for d in spec.pe_dims]
    steps = [None] * n_s
    for j in range(n_s - 1, 0, -1):
        kept = keep_lvl[j]
        allowed = pe_dims if j >= A else list(range(8))
        allowed = [d for d in allowed if bounds[d] > 1]
        if j >= A and not kept.any():
            allowed = []  # a per-PE level that keeps nothing gets no loops
        relevant_any = RELEVANT[kept].any(axis=0) if kept.any() else np.zeros(8, bool)
        max_dims = [d for d in allowed if relevant_any[d]]
        irr_dims = [d for d in allowed if not relevant_any[d]]
        if irrelevant == "none" and j < A - 1:
            irr_dims = []
        # the dim with the most divisors is resolved last (directly its largest fit)
        max_dims.sort(key=lambda d: (len(divs[d]), d))
        if not maximal:  # (measurement only) every fitting tile
            steps[j] = [("grow", d) for d in max_dims] + [("all", d) for d in irr_dims]
            continue
        s = [("grow", d) for d in max_dims[:-1]]
        if max_dims:
            s.append(("last", max_dims[-1]))
            if len(max_dims) > 1:
                s.append(("check", -1))
        s += [("all", d) for d in irr_dims]
        steps[j] = s

    choices = []
    for j in range(n_s):
        if j >= A:
            choices.append([spec.array_orders[0]])
        elif j == A - 1 and j > 0:
            choices.append(list(spec.array_orders))
        elif orders == "all":
            choices.append(list(ORDER_TEMPLATES) + [f"c{i}" for i in range(len(ORDER_CLASSES))])
        else:
            choices.append(list(ORDER_TEMPLATES))
    tmpl = {k: np.array([DIM_INDEX[d] for d in v], dtype=np.int64)
            for k, v in ORDER_TEMPLATES.items()}
    for i, o in enumerate(ORDER_CLASSES):
        tmpl[f"c{i}"] = np.array([DIM_INDEX[d] for d in o], dtype=np.int64)
    fit0 = bool(_fits(bounds[None, :], geom, keep_lvl[0], cap[0], float(shared[0]), wb)[0])
    return _Space(layer, arch, spec, st, n_s, A, bounds, geom, aa, wb, keep_lvl, cap, shared,
                  SX, SY, steps, divs, choices, tmpl, tuple(l.per_pe for l in arch.levels),
                  fit0)


# ----------------------------------------------------------------------------------
# Budget: chunk sizes from the memory cap
# ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class _Budget:
    """Chunk sizes (rows) derived from a memory cap (bytes)."""

    enum_rows: int  # rows of partial candidates per chunk in the enumeration
    eval_rows: int  # candidate evaluations per batch

    @staticmethod
    def of(max_bytes: int, sp: _Space) -> "_Budget":
        n_s = sp.n_s
        n_noc = len(sp.st.noc)
        nd = max(len(d) for d in sp.divs)
        # enumeration: a row is T [n_s, 8] + 3 x [8] + index (int64), plus the
        # (row x divisor) masks and index pairs of one expansion step; the pipeline
        # holds about 3 chunks per level (input, expansion, coalescing buffer).
        enum_row = 8 * (8 * n_s + 3 * 8 + 1) + 24 * nd + 8 * 8 * nd
        enum_rows = max_bytes // 2 // (enum_row * (3 * n_s + 4))
        # evaluation: counts() and metrics() temporaries per candidate (float64 /
        # int64): dominated by the [3, n_s, n_s] / [3, n_s, n_noc] one-hot products,
        # the [8 n_s] flattened loop nest and ~60 [3, n_s] arrays, plus the probes'
        # per-level results; a generous factor 4 covers numpy temporaries.
        n_l = n_s + n_noc
        eval_row = 8 * 4 * (9 * n_s * n_s + 6 * n_s * n_noc + 24 * n_s + 60 * 3 * (n_s + 1)
                            + 12 * n_l + 64)
        eval_rows = max_bytes // 2 // eval_row
        return _Budget(int(max(1, min(enum_rows, 1 << 16))),
                       int(max(1, min(eval_rows, 1 << 14))))


# ----------------------------------------------------------------------------------
# Streaming factor enumeration
# ----------------------------------------------------------------------------------
class _Rows:
    """Partial candidates: T ``[K, n_s, 8]``, spatial index ``s`` ``[K]``, ``asg``
    (product of all factors assigned so far, spatial included) and ``pe`` (product of
    the per-PE levels' factors) ``[K, 8]``."""

    __slots__ = ("T", "s", "asg", "pe")

    def __init__(self, T, s, asg, pe):
        self.T, self.s, self.asg, self.pe = T, s, asg, pe

    def __len__(self):
        return int(self.s.shape[0])

    def take(self, idx) -> "_Rows":
        return _Rows(self.T[idx], self.s[idx], self.asg[idx], self.pe[idx])

    @staticmethod
    def concat(parts) -> "_Rows":
        if len(parts) == 1:
            return parts[0]
        return _Rows(np.concatenate([p.T for p in parts]), np.concatenate([p.s for p in parts]),
                     np.concatenate([p.asg for p in parts]),
                     np.concatenate([p.pe for p in parts]))


def _coalesce(gen, target: int):
    """Concatenate small chunks from ``gen`` into chunks of about ``target`` rows."""
    buf, n = [], 0
    for rows in gen:
        if not len(rows):
            continue
        buf.append(rows)
        n += len(rows)
        if n >= target:
            yield _Rows.concat(buf)
            buf, n = [], 0
    if buf:
        yield _Rows.concat(buf)


def _level_fits(sp: _Space, j: int, ext: np.ndarray) -> np.ndarray:
    return _fits(ext, sp.geom, sp.keep_lvl[j], sp.cap[j], float(sp.shared[j]), sp.wb)


def _expand_level(sp: _Space, j: int, rows: _Rows, budget: _Budget, fail: _Fail):
    """All level-``j`` factor choices of ``rows`` that belong to the space, in chunks."""
    base = rows.pe if j >= sp.A else rows.asg
    fail.tried[j] = fail.tried.get(j, 0) + len(rows)
    t = np.stack(tile_words(np, base, sp.geom), axis=-1).min(axis=0)
    fail.min_tile[j] = np.minimum(fail.min_tile.get(j, t), t)
    ok = _level_fits(sp, j, base)
    if not ok.any():
        return
    fail.passed[j] = fail.passed.get(j, 0) + int(ok.sum())
    rows = rows.take(ok)
    f = np.ones((len(rows), 8), dtype=np.int64)
    yield from _run_steps(sp, j, rows, f, 0, budget)


def _run_steps(sp: _Space, j: int, rows: _Rows, f: np.ndarray, k: int, budget: _Budget):
    steps = sp.steps[j]
    is_pe = j >= sp.A
    while k < len(steps):
        kind, d = steps[k]
        if not len(rows):
            return
        base = rows.pe if is_pe else rows.asg
        if kind in ("grow", "all"):
            divs = sp.divs[d]
            rem = sp.bounds[d] // rows.asg[:, d]
            mask = rem[:, None] % divs[None, :] == 0
            cnt = mask.sum(axis=1)
            total = int(cnt.sum())
            if total > budget.enum_rows and len(rows) > 1:
                # split the rows so that each part expands to at most enum_rows rows
                cs = np.cumsum(cnt)
                start = 0
                while start < len(rows):
                    lim = (cs[start - 1] if start else 0) + budget.enum_rows
                    stop = max(start + 1, int(np.searchsorted(cs, lim, side="right")))
                    sl = slice(start, stop)
                    yield from _run_steps(sp, j, rows.take(sl), f[sl], k, budget)
                    start = stop
                return
            r, c = np.nonzero(mask)
            rows = rows.take(r)
            f = f[r]
            f[:, d] = divs[c]
            if kind == "grow":
                ok = _level_fits(sp, j, base[r] * f)
                rows, f = rows.take(ok), f[ok]
        elif kind == "last":
            divs = sp.divs[d]
            nd = len(divs)
            best = np.ones(len(rows), dtype=np.int64)
            blk = max(1, budget.enum_rows // nd)
            for a in range(0, len(rows), blk):
                sl = slice(a, a + blk)
                ext = base[sl] * f[sl]
                b = ext.shape[0]
                E = np.repeat(ext[:, None, :], nd, axis=1)
                E[:, :, d] = ext[:, d][:, None] * divs[None, :]
                ok = _level_fits(sp, j, E.reshape(-1, 8)).reshape(b, nd)
                rem = sp.bounds[d] // rows.asg[sl, d]
                ok &= rem[:, None] % divs[None, :] == 0
                idx = nd - 1 - np.argmax(ok[:, ::-1], axis=1)
                best[sl] = divs[idx]
            f[:, d] = best
        elif kind == "check":
            ext = base * f
            maximal = np.ones(len(rows), dtype=bool)
            for kind2, d2 in steps:
                if kind2 != "grow":
                    continue
                rem = sp.bounds[d2] // rows.asg[:, d2]
                nxt = _next_divisor(rem, f[:, d2], sp.divs[d2])
                has = nxt > 0
                if not has.any():
                    continue
                ext2 = ext[has].copy()
                ext2[:, d2] = ext2[:, d2] // f[has, d2] * nxt[has]
                grow_fits = _level_fits(sp, j, ext2)
                maximal[np.nonzero(has)[0][grow_fits]] = False
            rows, f = rows.take(maximal), f[maximal]
        k += 1
    if not len(rows):
        return
    T = rows.T.copy()
    T[:, j, :] = f
    pe = rows.pe * f if is_pe else rows.pe
    yield _Rows(T, rows.s, rows.asg * f, pe)


def _expand_all(sp, j, gen, budget, fail):
    for rows in gen:
        yield from _expand_level(sp, j, rows, budget, fail)


def _finish(sp: _Space, gen, stats):
    """Give level 0 the remaining factors; drop mappings outside the closed form."""
    if not sp.fit0:
        return
    for rows in gen:
        T = rows.T.copy()
        T[:, 0, :] = sp.bounds[None, :] // rows.asg
        ms = _stack(sp, T, None, rows.s)
        bad = uncovered(ms, sp.st)
        if bad.any():
            keep = ~bad
            T, rows = T[keep], rows.take(keep)
        if len(rows):
            stats["factorizations"] += len(rows)
            yield _Rows(T, rows.s, rows.asg, rows.pe)


def _initial(sp: _Space, budget: _Budget):
    n = len(sp.SX)
    for a in range(0, n, budget.enum_rows):
        idx = np.arange(a, min(n, a + budget.enum_rows))
        K = len(idx)
        yield _Rows(np.ones((K, sp.n_s, 8), dtype=np.int64), idx, sp.SX[idx] * sp.SY[idx],
                    np.ones((K, 8), dtype=np.int64))


def _factorizations(sp: _Space, budget: _Budget, fail: _Fail, stats):
    """Generator of complete factor assignments (chunks of about ``eval_rows``)."""
    gen = _initial(sp, budget)
    for j in range(sp.n_s - 1, 0, -1):
        gen = _coalesce(_expand_all(sp, j, gen, budget, fail), budget.enum_rows // 2 or 1)
    return _coalesce(_finish(sp, gen, stats), budget.eval_rows)


# ----------------------------------------------------------------------------------
# Evaluation and order selection
# ----------------------------------------------------------------------------------
def _stack(sp: _Space, T, order, s) -> MappingStack:
    B = T.shape[0]
    if order is None:
        order = np.zeros((B, sp.n_s, 8), dtype=np.int64)
    keep = np.broadcast_to(sp.keep_lvl[None], (B, sp.n_s, 3))
    return MappingStack(T, order, sp.SX[s], sp.SY[s], keep)


def _eval(sp: _Space, T, order, s) -> dict:
    """Exact energy (pJ), cycles, DRAM accesses and bandwidth terms of ``[B]`` mappings."""
    ms = _stack(sp, T, order, s)
    return _eval_stack(sp.layer, sp.arch, sp.st, ms, sp.aa, sp.per_pe)


def _eval_stack(layer, arch, st, ms: MappingStack, aa, per_pe) -> dict:
    met = _count_and_measure(layer, st, ms, aa, per_pe)[1]
    return {"energy": met.energy, "cycles": met.cycles,
            "compute": met.compute_cycles, "bw": met.bw_cycles,
            "dram": met.reads[:, 0, :].sum(-1) + met.writes[:, 0, :].sum(-1)}


def _count_and_measure(layer: LayerSpec, st, ms: MappingStack, aa: ArchArrays,
                       per_pe) -> tuple[Counts, Metrics]:
    """Exact counts and metrics (numpy) of the ``[B]`` mappings ``ms`` of ``layer``."""
    B = len(ms)
    g = geometry([layer])
    bc = lambda a: np.broadcast_to(a, (B,) + a.shape[1:])  # noqa: E731
    gb = dataclasses.replace(g, bounds=bc(g.bounds), uh=bc(g.uh), dh=bc(g.dh), uw=bc(g.uw),
                             dw=bc(g.dw), stride=bc(g.stride), dilation=bc(g.dilation))
    s = structure(ms, st, gb)
    cnt = counts(np, ms.T, ms.SX, ms.SY, s, window_steps(gb))
    met = metrics(np, cnt, aa, st, per_pe_level=per_pe,
                  nonmac_ops=np.full(B, float(layer.nonmac_ops)))
    return cnt, met


def _eval_batched(sp: _Space, T, order, s, budget: _Budget, stats) -> dict:
    B = T.shape[0]
    stats["evaluations"] += B
    if B <= budget.eval_rows:
        return _eval(sp, T, order, s)
    parts = [_eval(sp, T[a:a + budget.eval_rows], order[a:a + budget.eval_rows],
                   s[a:a + budget.eval_rows]) for a in range(0, B, budget.eval_rows)]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _signatures(Tj: np.ndarray, tmpl: np.ndarray) -> np.ndarray:
    """``[B]`` int64 signature of a level's loop order (see the module docstring).

    Equal signatures (same factors) give identical counts: per operand, the set of
    non-unit loops from the level's outermost through its innermost relevant loop
    (for I: strictly before it, plus that loop's dim, which decides sliding).
    """
    f = Tj[:, tmpl]
    nz = f > 1
    pos = np.arange(8)
    bit = (np.int64(1) << tmpl)[None, :]
    sig = np.zeros(Tj.shape[0], dtype=np.int64)
    for x in range(3):
        act = nz & RELEVANT[x][tmpl][None, :]
        kx = np.where(act, pos[None, :], -1).max(axis=1)
        upto = pos[None, :] < kx[:, None] if x == 1 else pos[None, :] <= kx[:, None]
        bits = ((nz & upto) * bit).sum(axis=1)
        sig |= bits << (8 * x)
        if x == 1:
            kdim = np.where(kx >= 0, tmpl[np.maximum(kx, 0)], 15)
            sig |= kdim << 24
    return sig


class _Best:
    """Running top-k of candidates by (objective, cycles, energy, DRAM accesses), ties
    by a canonical key of the mapping itself (spatial index, factors innermost level
    first, loop orders), so the result does not depend on chunking or pruning."""

    def __init__(self, k: int):
        self.k = k
        self.keys = None  # [n, 4] float64: objective, cycles, energy, dram accesses
        self.T = self.order = self.s = None

    def add(self, keys, T, order, s):
        if self.keys is not None:
            keys = np.concatenate([self.keys, keys])
            T = np.concatenate([self.T, T])
            order = np.concatenate([self.order, order])
            s = np.concatenate([self.s, s])
        idx = _lexorder(keys, T, order, s)[: self.k]
        self.keys, self.T, self.order, self.s = keys[idx], T[idx], order[idx], s[idx]

    def threshold(self) -> float:
        """Objective of the k-th best so far (inf until there are k)."""
        if self.keys is None or len(self.keys) < self.k:
            return np.inf
        return float(self.keys[-1, 0])


def _lexorder(keys, T, order, s):
    """Sort order: objective, cycles, energy, DRAM accesses, then the canonical key."""
    n_s = T.shape[1]
    cols = [order[:, j, k] for j in range(n_s - 1, -1, -1) for k in range(7, -1, -1)]
    cols += [T[:, j, k] for j in range(0, n_s) for k in range(7, -1, -1)]
    cols += [s, keys[:, 3], keys[:, 2], keys[:, 1], keys[:, 0]]
    return np.lexsort(cols)


def _keys(ev, objective):
    obj = ev["energy"] if objective == "energy" else ev["energy"] * ev["cycles"]
    return np.stack([obj, ev["cycles"], ev["energy"], ev["dram"]], axis=1)


def _canonical(sp: _Space, T):
    """Per level with several order choices: ``[B, n_j]`` bool, True for the first
    template of each signature (equivalent orders are evaluated once)."""
    canon = {}
    for j, names in enumerate(sp.choices):
        if len(names) < 2:
            continue
        sig = np.stack([_signatures(T[:, j, :], sp.tmpl[c]) for c in names], axis=1)
        c = np.ones(sig.shape, dtype=bool)
        for a in range(1, len(names)):
            c[:, a] = ~(sig[:, :a] == sig[:, a:a + 1]).any(axis=1)
        canon[j] = c
    return canon


def _combos_of(canon, rows, n_s):
    """All canonical order combinations of ``rows``: (pair row, choice ``[P, n_s]``)."""
    pr = np.asarray(rows, dtype=np.int64)
    ch = np.zeros((len(pr), n_s), dtype=np.int64)
    for j, c in canon.items():
        r, a = np.nonzero(c[pr])
        pr, ch = pr[r], ch[r]
        ch[:, j] = a
    return pr, ch


def _orders_for(sp: _Space, choice):
    """Template indices ``[P, n_s]`` -> loop orders ``[P, n_s, 8]``."""
    out = np.empty(choice.shape + (8,), dtype=np.int64)
    for j, names in enumerate(sp.choices):
        tj = np.stack([sp.tmpl[c] for c in names])
        out[:, j, :] = tj[choice[:, j]]
    return out


def _select_orders(sp: _Space, T, s, objective, budget, stats, best: _Best):
    """Pick the orders of ``[B]`` complete factorizations; feed the best to ``best``.

    Per factorization, either every canonical order combination is evaluated (when
    that is no more work than deciding per level, or, for EDP, when the bandwidth
    bound may depend on the orders), or the orders are chosen per level from
    ``1 + sum_j (n_j - 1)`` evaluations (energy is separable, module docstring).
    """
    B = T.shape[0]
    n_s = sp.n_s
    nch = [len(c) for c in sp.choices]
    canon = _canonical(sp, T)
    ndist = np.ones(B, dtype=np.int64)
    nsum = np.ones(B, dtype=np.int64)
    for c in canon.values():
        nd = c.sum(axis=1)
        ndist *= nd
        nsum += nd - 1
    use_full = ndist <= nsum + 1

    def full_product(rows):
        # groups of rows with at most eval_rows combinations each (at least one row)
        cs = np.cumsum(ndist[rows])
        start = 0
        while start < len(rows):
            lim = (cs[start - 1] if start else 0) + budget.eval_rows
            stop = max(start + 1, int(np.searchsorted(cs, lim, side="right")))
            pr, ch = _combos_of(canon, rows[start:stop], n_s)
            ordr = _orders_for(sp, ch)
            ev = _eval_batched(sp, T[pr], ordr, s[pr], budget, stats)
            keys = _keys(ev, objective)
            o = _lexorder(keys, T[pr], ordr, s[pr])
            _, first = np.unique(pr[o], return_index=True)  # each row's best
            sel = o[first]
            best.add(keys[sel], T[pr[sel]], ordr[sel], s[pr[sel]])
            start = stop

    probe_rows = np.nonzero(~use_full)[0]
    if len(probe_rows):
        rows = probe_rows
        P = len(rows)
        Tp, sp_s = T[rows], s[rows]
        base_order = _orders_for(sp, np.zeros((P, n_s), dtype=np.int64))
        ev0 = _eval_batched(sp, Tp, base_order, sp_s, budget, stats)
        choice = np.zeros((P, n_s), dtype=np.int64)
        bw_up = np.zeros_like(ev0["bw"])  # separable upper bound of the bandwidth terms
        for j, c in canon.items():
            dE = np.full((P, nch[j]), np.inf)
            dE[:, 0] = 0.0
            up_j = np.zeros_like(bw_up)
            for a in range(1, nch[j]):
                m = c[rows, a]
                if not m.any():
                    continue
                ordr = base_order[m].copy()
                ordr[:, j, :] = sp.tmpl[sp.choices[j][a]]
                ev = _eval_batched(sp, Tp[m], ordr, sp_s[m], budget, stats)
                dE[m, a] = ev["energy"] - ev0["energy"][m]
                up_j[m] = np.maximum(up_j[m], ev["bw"] - ev0["bw"][m])
            bw_up += up_j
            choice[:, j] = np.argmin(dE, axis=1)
        keep = np.ones(P, dtype=bool)
        if objective == "edp":
            # cycles = compute cycles for every order combination -> EDP separable
            ub = (ev0["bw"] + bw_up).max(axis=1)
            keep = ub <= ev0["compute"] * (1 - 1e-9)
            if (~keep).any():
                full_product(rows[~keep])
        if keep.any():
            ch = choice[keep]
            ordr = _orders_for(sp, ch)
            changed = (ch != 0).any(axis=1)
            ev = {k: v[keep].copy() for k, v in ev0.items()}
            if changed.any():
                idx = np.nonzero(keep)[0][changed]
                evc = _eval_batched(sp, Tp[idx], ordr[changed], sp_s[idx], budget, stats)
                for k in ev:
                    ev[k][changed] = evc[k]
            rk = rows[keep]
            best.add(_keys(ev, objective), T[rk], ordr, s[rk])
    full_rows = np.nonzero(use_full)[0]
    if len(full_rows):
        full_product(full_rows)


def _search(layer: LayerSpec, arch: Architecture, dataflow: str, objective: str, *,
            all_spatial: bool, max_bytes: int, top_k: int = 1, fail: _Fail | None = None,
            orders: str = "all", maximal: bool = True, irrelevant: str = "all"):
    """Search the space; returns (_Best, stats dict, space)."""
    sp = _build_space(layer, arch, dataflow, all_spatial, orders=orders, maximal=maximal,
                      irrelevant=irrelevant)
    budget = _Budget.of(max_bytes, sp)
    fail = _Fail() if fail is None else fail
    stats = {"factorizations": 0, "evaluations": 0, "chunks": 0,
             "enum_rows": budget.enum_rows, "eval_rows": budget.eval_rows}
    best = _Best(top_k)
    for rows in _factorizations(sp, budget, fail, stats):
        stats["chunks"] += 1
        _select_orders(sp, rows.T, rows.s, objective, budget, stats, best)
    if best.keys is None:
        fail.explain(sp)
    return best, stats, sp


# ----------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------
def candidate_mappings(layer: LayerSpec, arch: Architecture, dataflow: str = "rs", *,
                       all_spatial: bool = False, max_bytes: int | None = None,
                       _fail: _Fail | None = None) -> MappingStack:
    """The whole search space of ``layer`` for a dataflow family, materialized.

    Every member of the space (see the module docstring): each complete factorization
    with every combination of its levels' loop orders, one order per class of orders
    with identical counts (:func:`_signatures`), factorization-major.  For inspection
    and tests; :func:`map_layer` searches the same space without materializing it.

    Args:
      layer: the layer.
      arch: architecture with concrete values.
      dataflow: one of :data:`hwmodel.DATAFLOWS`.
      all_spatial: keep every spatial assignment, not only the maximal ones.
      max_bytes: refuse (ValueError) to build a stack larger than this many bytes
        (default :data:`MEMORY_CAP_BYTES`).

    Returns:
      A :class:`MappingStack` of legal candidates (possibly empty).

    Raises:
      ValueError: the space does not fit in ``max_bytes`` (use :func:`map_layer`).
    """
    check_args(dataflow, "energy")
    require_concrete(arch, "candidate_mappings")
    cap = _check_cap(max_bytes)
    return _materialize(layer, arch, dataflow, all_spatial=all_spatial, max_bytes=cap,
                        fail=_fail)


def _materialize(layer, arch, dataflow, *, all_spatial, max_bytes, fail=None,
                 orders: str = "all", maximal: bool = True) -> MappingStack:
    sp = _build_space(layer, arch, dataflow, all_spatial, orders=orders, maximal=maximal)
    budget = _Budget.of(max_bytes, sp)
    fail = _Fail() if fail is None else fail
    stats = {"factorizations": 0}
    n_s = sp.n_s
    row_bytes = 2 * n_s * 8 * 8 + 2 * 8 * 8 + n_s * 3 + 8
    parts, total = [], 0
    for rows in _factorizations(sp, budget, fail, stats):
        pr, ch = _combos_of(_canonical(sp, rows.T), np.arange(len(rows)), n_s)
        total += len(pr) * row_bytes
        if total > max_bytes:
            raise ValueError(
                f"candidate_mappings: the {dataflow} search space of layer {layer.name!r} on "
                f"{arch.name!r} needs more than max_bytes={max_bytes} bytes to materialize; "
                "use hwmodel.map_layer (streamed search) or pass a larger max_bytes"
            )
        parts.append((rows.T[pr], _orders_for(sp, ch), rows.s[pr]))
    if not parts:
        fail.explain(sp)
        return _empty(n_s)
    T = np.concatenate([p[0] for p in parts])
    order = np.concatenate([p[1] for p in parts])
    s = np.concatenate([p[2] for p in parts])
    keep = np.broadcast_to(sp.keep_lvl[None], (len(T), n_s, 3)).copy()
    return MappingStack(T, order, sp.SX[s], sp.SY[s], keep)


def _empty(n_s: int) -> MappingStack:
    z = np.zeros((0, n_s, 8), dtype=np.int64)
    return MappingStack(z, z.copy(), np.zeros((0, 8), np.int64), np.zeros((0, 8), np.int64),
                        np.zeros((0, n_s, 3), dtype=bool))


@dataclasses.dataclass(frozen=True)
class StackEvaluation:
    """Exact counts and metrics of stacked mappings on one layer (numpy; leading axis
    ``B`` = the mappings), from :func:`evaluate_stack`.

    Attributes:
      counts: :class:`~hwmodel.costmodel.counts.Counts` (words, cycles, MACs).
      metrics: :class:`~hwmodel.costmodel.evaluate.Metrics` (pJ, cycles, the bound).
    """

    counts: Counts
    metrics: Metrics


register_pytree(StackEvaluation, ["counts", "metrics"], [])


def evaluate_stack(layer: LayerSpec, arch: Architecture, ms: MappingStack) -> StackEvaluation:
    """Exact counts and metrics (numpy) for every mapping of ``ms`` on one layer."""
    aa = arch_arrays(np, arch, relaxed=False)
    per_pe = tuple(l.per_pe for l in arch.levels)
    return StackEvaluation(*_count_and_measure(layer, arch_structure(arch), ms, aa, per_pe))


def check_exact_range(layer: LayerSpec) -> None:
    """Raise a ValueError when ``layer`` has more than :data:`MAX_EXACT_MACS` MACs."""
    if layer.macs > MAX_EXACT_MACS:
        raise ValueError(
            f"layer {layer.name!r}: {layer.macs:.3g} MACs (batch {layer.batch or 1}) is beyond "
            f"the cost model's exact range (2^53 = {MAX_EXACT_MACS:.2g} MACs per layer); "
            "valid: a smaller batch or input")


def layer_key(layer: LayerSpec):
    return (layer.kind, layer.G, layer.N, layer.M, layer.C, layer.P, layer.Q, layer.R,
            layer.S, layer.stride, layer.dilation, layer.nonmac_ops)


def _arch_key(arch: Architecture):
    leaves, treedef = jax.tree_util.tree_flatten(arch)
    return (treedef, tuple(np.asarray(l, dtype=np.float64).tobytes() for l in leaves))


_CACHE: collections.OrderedDict = collections.OrderedDict()


def clear_cache() -> None:
    """Empty the mapper's result cache (results are pure functions of their key)."""
    _CACHE.clear()


def best_k(layer, arch, dataflow, objective, *, top_k: int, max_bytes: int):
    """The best ``top_k`` mappings (MappingStack, keys, stats); the spatial fallback and
    the :class:`NoLegalMapping` error included."""
    fail = _Fail()
    best, stats, sp = _search(layer, arch, dataflow, objective, all_spatial=False,
                              max_bytes=max_bytes, top_k=top_k, fail=fail)
    if best.keys is None:
        fail2 = _Fail()
        best, stats2, sp = _search(layer, arch, dataflow, objective, all_spatial=True,
                                   max_bytes=max_bytes, top_k=top_k, fail=fail2)
        for k in ("factorizations", "evaluations", "chunks"):
            stats[k] += stats2[k]
        fail = fail2 if fail2.detail else fail
    if best.keys is None:
        dims = ", ".join(f"{d}={getattr(layer, d)}" for d in DIMS if getattr(layer, d) > 1)
        raise NoLegalMapping(
            f"layer {layer.name!r} ({layer.kind}, {dims}, stride={layer.stride}, "
            f"dilation={layer.dilation}): no legal {dataflow} mapping on architecture "
            f"{arch.name!r}: {fail.detail or 'no candidate satisfies the constraints'}"
        )
    ms = _stack(sp, best.T, best.order, best.s)
    return ms, best.keys, stats


def map_layer(layer: LayerSpec, arch: Architecture, *, dataflow: str = "rs",
              objective: str = "energy", max_bytes: int | None = None) -> Mapping:
    """The best legal mapping of ``layer`` in ``dataflow``'s search space.

    Args:
      layer: the layer.
      arch: architecture with concrete values.
      dataflow: one of :data:`hwmodel.DATAFLOWS`.
      objective: ``"energy"`` (pJ) or ``"edp"`` (pJ x cycles).
      max_bytes: bound on the search's working set of candidate arrays, bytes
        (default :data:`MEMORY_CAP_BYTES`); it sets chunk sizes, not the result.

    Returns:
      The chosen :class:`Mapping` (``dataflow`` set to the family's name).

    Raises:
      NoLegalMapping: no candidate fits (the message names the layer, level and sizes).
    """
    check_args(dataflow, objective)
    require_concrete(arch, "map_layer")
    check_exact_range(layer)
    cap = _check_cap(max_bytes)
    key = (layer_key(layer), _arch_key(arch), dataflow, objective)
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit
    st = arch_structure(arch)
    ms, _, _ = best_k(layer, arch, dataflow, objective, top_k=1, max_bytes=cap)
    m = ms.mapping(0, st.storage_names, dataflow)
    _CACHE[key] = m
    if len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return m


def map_workload(workload, arch: Architecture, *, dataflow: str = "rs",
                 objective: str = "energy", max_bytes: int | None = None
                 ) -> tuple[Mapping, ...]:
    """:func:`map_layer` for every layer (identical layer shapes are mapped once).

    Args:
      workload: a :class:`Workload` or a sequence of :class:`LayerSpec`.
      arch, dataflow, objective, max_bytes: as :func:`map_layer`.

    Returns:
      One mapping per layer, in order.
    """
    check_args(dataflow, objective)
    require_concrete(arch, "map_workload")
    layers = workload.layers if isinstance(workload, Workload) else tuple(workload)
    # Map the layers with the most weights first: on a small buffer they are the ones
    # with no legal mapping, and finding that out is fast while mapping a large early
    # layer can take seconds (os_array with rs on resnet50: 0.01 s instead of 11 s to
    # the error).  Every result is the same; only the order of the work changes.
    memo: dict = {}
    for layer in sorted(layers, key=lambda l: -l.weight_operand_size):
        key = layer_key(layer)
        if key not in memo:
            memo[key] = map_layer(layer, arch, dataflow=dataflow, objective=objective,
                                  max_bytes=max_bytes)
    return tuple(memo[layer_key(layer)] for layer in layers)


def per_distinct_layer(workload, fn) -> tuple:
    """``fn(layer)`` for every layer of ``workload`` (a :class:`Workload` or a sequence
    of :class:`LayerSpec`), in order, computed once per distinct :func:`layer_key`."""
    layers = workload.layers if isinstance(workload, Workload) else tuple(workload)
    memo: dict = {}
    for layer in layers:
        key = layer_key(layer)
        if key not in memo:
            memo[key] = fn(layer)
    return tuple(memo[layer_key(layer)] for layer in layers)
