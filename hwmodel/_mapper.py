"""The mapper: for each layer and dataflow, the best legal mapping in a candidate set.

Candidate set (all generated as numpy arrays, never one Python iteration per
candidate), for a dataflow family (:data:`hwmodel.DATAFLOW_SPECS`):

1. **Spatial**: every assignment of divisors of the bounds to the family's column
   dims with product <= ``pe_cols`` and to its row dims with product <= ``pe_rows``,
   keeping the Pareto-maximal ones per axis (no dim can grow to its next divisor
   without overflowing the axis) and those using at least half of the best axis
   product (fewer busy PEs can mean less NoC traffic).  If nothing below is legal, all
   assignments are retried.
2. **Per-PE levels**, innermost first: divisors for the family's PE dims, and
3. **shared levels** (all dims), innermost first up to level 1: at each level the
   tile (which spans that level's factors and everything inside it, plus the spatial
   factors above the array) must fit the level's capacities for the operands it
   keeps (:func:`hwmodel.validate_mapping`'s rule), and only *maximal* tiles are kept:
   no dim relevant to a kept operand can grow to its next divisor and still fit (dims
   irrelevant to every kept operand take all divisors).  Bigger tiles at a level never
   need more fills from its parent, so this prunes dominated candidates.
4. The outermost level gets the remaining factors.
5. **Loop orders**: the shared level just above the array uses the family's
   template(s); every other shared level tries the three stationarity templates
   (:data:`hwmodel._mapping.ORDER_TEMPLATES`); per-PE levels use the family's template.

Every candidate is then evaluated with the exact count formulas
(:mod:`hwmodel._counts`, numpy int64) and the energy / cycles model
(:mod:`hwmodel._evaluate`), and the minimum of the objective (``"energy"`` in pJ, or
``"edp"`` = energy x cycles) wins.  **Ties** are broken by fewer cycles, then less
energy, then fewer DRAM (outermost level) accesses, then the first in enumeration
order -- so the result is deterministic.

The mapper needs concrete architecture values (it uses numpy); under ``jit``/``vmap``
over architectures use :func:`hwmodel.mapping_candidates` and ``hwmodel.cost(...,
candidates=...)``, which evaluates a static candidate set inside JAX.
"""

from __future__ import annotations

import dataclasses
import itertools

import jax
import numpy as np

from hwmodel._arch import OPERANDS, Architecture
from hwmodel._counts import _tiles, counts, geometry, geom_dict, structure, uncovered
from hwmodel._evaluate import arch_arrays, metrics
from hwmodel._mapping import (
    DATAFLOW_SPECS,
    DATAFLOWS,
    DIM_INDEX,
    ORDER_TEMPLATES,
    RELEVANT,
    Mapping,
    MappingStack,
    arch_structure,
)
from hwmodel._workload import DIMS, LayerSpec, Workload

__all__ = ["map_layer", "map_workload", "candidate_mappings", "evaluate_stack",
           "OBJECTIVES", "NoLegalMapping"]

OBJECTIVES = ("energy", "edp")

NEAR_MAXIMAL = 2
"""Spatial assignments using at least 1/NEAR_MAXIMAL of the best axis product are kept
besides the maximal ones (fewer busy PEs can mean less NoC traffic)."""


class NoLegalMapping(ValueError):
    """Raised when a layer has no legal mapping of a dataflow on an architecture."""


def _concrete(arch: Architecture, what: str) -> None:
    for leaf in jax.tree_util.tree_leaves(arch):
        if isinstance(leaf, jax.core.Tracer):
            raise TypeError(
                f"{what} needs concrete architecture values but got a traced value "
                "(under jit/vmap/grad over the architecture). Compute mappings outside the "
                "transformation and pass `mappings=`, or build a static candidate set with "
                "hwmodel.mapping_candidates(...) and pass `candidates=`."
            )


def _check_args(dataflow: str, objective: str) -> None:
    if dataflow not in DATAFLOW_SPECS:
        raise ValueError(f"unknown dataflow {dataflow!r}; valid: {', '.join(DATAFLOWS)}")
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")


def _divisors(n: int) -> np.ndarray:
    return np.array([d for d in range(1, n + 1) if n % d == 0], dtype=np.int64)


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
    prod = np.prod(c, axis=1)
    for d in dims:
        divs = _divisors(int(bounds[d]))
        nd = _next_divisor(np.full(len(c), bounds[d]), c[:, d], divs)
        grown = np.where(nd > 0, prod // c[:, d] * nd, limit + 1)
        keep &= ~(grown <= limit)
    return c[keep | near]


@dataclasses.dataclass
class _Fail:
    level: str = ""
    detail: str = ""


def _fits(ext, geom, kept, cap, shared, wb):
    """``[P]`` bool: the tile with extents ``ext`` fits (kept operands only)."""
    t = _tiles(np, ext, geom)
    tot = np.zeros(ext.shape[0])
    ok = np.ones(ext.shape[0], dtype=bool)
    for x in range(3):
        if kept[x]:
            b = t[x] * wb[x]
            ok &= b <= cap[x]
            tot = tot + b
    return ok & (tot <= shared)


def candidate_mappings(layer: LayerSpec, arch: Architecture, dataflow: str = "rs", *,
                       all_spatial: bool = False, _fail: _Fail | None = None) -> MappingStack:
    """All candidate mappings of ``layer`` for a dataflow family (see module docstring).

    Args:
      layer: the layer.
      arch: architecture with concrete values.
      dataflow: one of :data:`hwmodel.DATAFLOWS`.
      all_spatial: keep every spatial assignment, not only the maximal ones.

    Returns:
      A :class:`MappingStack` of legal candidates (possibly empty).
    """
    _check_args(dataflow, "energy")
    _concrete(arch, "candidate_mappings")
    spec = DATAFLOW_SPECS[dataflow]
    st = arch_structure(arch)
    n_s, A = st.n_storage, st.first_pe
    bounds = np.array([getattr(layer, d) for d in DIMS], dtype=np.int64)
    g = geometry([layer])
    geom = {k: int(getattr(g, k)[0]) for k in ("uh", "dh", "uw", "dw")}
    aa = arch_arrays(np, arch, relaxed=False)
    wb = np.asarray(aa["word_bits"], dtype=np.float64)
    rows, cols = int(aa["rows"]), int(aa["cols"])
    holds = st.holds_array
    pe_keep = np.array([x in spec.pe_keep for x in OPERANDS])
    keep_lvl = np.array([holds[j] & (pe_keep if j >= A else True) for j in range(n_s)])
    keep_lvl[0] = True

    # 1. spatial
    sx_dims = [DIM_INDEX[d] for d in spec.spatial_x if bounds[DIM_INDEX[d]] > 1]
    sy_dims = [DIM_INDEX[d] for d in spec.spatial_y
               if bounds[DIM_INDEX[d]] > 1 and DIM_INDEX[d] not in sx_dims]
    cx = _axis_candidates(sx_dims, bounds, cols, maximal=not all_spatial)
    cy = _axis_candidates(sy_dims, bounds, rows, maximal=not all_spatial)
    ix, iy = np.meshgrid(np.arange(len(cx)), np.arange(len(cy)), indexing="ij")
    SX = cx[ix.reshape(-1)]
    SY = cy[iy.reshape(-1)]
    K = len(SX)
    T = np.ones((K, n_s, 8), dtype=np.int64)
    assigned = SX * SY  # product of all factors assigned so far
    pe_ext = np.ones((K, 8), dtype=np.int64)  # per-PE extents (levels assigned so far)

    pe_dims = [DIM_INDEX[d] for d in spec.pe_dims]
    for j in range(n_s - 1, 0, -1):
        lvl = arch.levels[st.storage[j]]
        kept = keep_lvl[j]
        allowed = pe_dims if j >= A else list(range(8))
        allowed = [d for d in allowed if bounds[d] > 1]
        if j >= A and not kept.any():
            allowed = []  # a per-PE level that keeps nothing gets no loops
        relevant_any = RELEVANT[kept].any(axis=0) if kept.any() else np.zeros(8, bool)
        max_dims = [d for d in allowed if relevant_any[d]]
        combos = _combos(allowed, bounds)
        nc = len(combos)
        kk = np.repeat(np.arange(K), nc)
        cc = np.tile(np.arange(nc), K)
        f = combos[cc]
        tot = assigned[kk] * f
        ok = np.all(bounds[None, :] % tot == 0, axis=1)
        kk, cc, f, tot = kk[ok], cc[ok], f[ok], tot[ok]
        # the tile's extents: per-PE levels span the per-PE factors (no spatial);
        # shared levels span everything assigned so far (spatial, per-PE, inner shared)
        ext = pe_ext[kk] * f if j >= A else tot
        cap = np.asarray(aa["cap"][st.storage[j]], dtype=np.float64)
        shared = float(aa["shared"][st.storage[j]])
        fit = _fits(ext, geom, kept, cap, shared, wb)
        if not fit.any():
            if _fail is not None and len(ext):
                t = _tiles(np, ext, geom)
                smallest = {OPERANDS[x]: int(t[x].min()) for x in range(3) if kept[x]}
                _fail.level = lvl.name
                _fail.detail = (
                    f"level {lvl.name!r} (capacity "
                    + ", ".join(f"{OPERANDS[x]}={cap[x]:g} b" for x in range(3) if kept[x])
                    + f", shared={shared:g} b) cannot hold even the smallest tile "
                    + ", ".join(f"{k}={v} words x {wb[OPERANDS.index(k)]:g} b"
                                for k, v in smallest.items())
                )
            return _empty(n_s)
        kk, cc, f, tot, ext = kk[fit], cc[fit], f[fit], tot[fit], ext[fit]
        # maximality: no relevant dim can grow to its next divisor and still fit
        maximal = np.ones(len(kk), dtype=bool)
        for d in max_dims:
            rem = bounds[d] // (tot[:, d] // f[:, d])
            nd = _next_divisor(rem, f[:, d], _divisors(int(bounds[d])))
            has = nd > 0
            if not has.any():
                continue
            ext2 = ext[has].copy()
            ext2[:, d] = ext2[:, d] // f[has, d] * nd[has]
            grow_fits = _fits(ext2, geom, kept, cap, shared, wb)
            idx = np.nonzero(has)[0]
            maximal[idx[grow_fits]] = False
        kk, f, tot = kk[maximal], f[maximal], tot[maximal]
        T = T[kk]
        T[:, j, :] = f
        SX, SY = SX[kk], SY[kk]
        assigned = tot
        pe_ext = pe_ext[kk] * f if j >= A else pe_ext[kk]
        K = len(kk)
    T[:, 0, :] = bounds[None, :] // assigned
    # outermost level capacity (normally unbounded)
    ext0 = bounds[None, :].repeat(max(K, 1), axis=0)[:K]
    cap0 = np.asarray(aa["cap"][st.storage[0]], dtype=np.float64)
    fit0 = _fits(ext0, geom, keep_lvl[0], cap0, float(aa["shared"][st.storage[0]]), wb)
    T, SX, SY = T[fit0], SX[fit0], SY[fit0]
    K = len(T)

    # 5. loop orders
    tmpl = {k: np.array([DIM_INDEX[d] for d in v], dtype=np.int64)
            for k, v in ORDER_TEMPLATES.items()}
    choices = []
    for j in range(n_s):
        if j >= A:
            choices.append([spec.array_orders[0]])
        elif j == A - 1 and j > 0:
            choices.append(list(spec.array_orders))
        else:
            choices.append(list(ORDER_TEMPLATES))
    combos_o = list(itertools.product(*choices))
    O = np.array([[tmpl[c] for c in combo] for combo in combos_o], dtype=np.int64)
    no = len(O)
    T = np.repeat(T, no, axis=0)
    SX = np.repeat(SX, no, axis=0)
    SY = np.repeat(SY, no, axis=0)
    order = np.tile(O, (K, 1, 1))
    keep = np.broadcast_to(keep_lvl[None], (len(T), n_s, 3)).copy()
    ms = MappingStack(T, order, SX, SY, keep)
    bad = uncovered(ms, st)
    if bad.any():
        ms = ms.take(~bad)
    return ms


def _empty(n_s: int) -> MappingStack:
    z = np.zeros((0, n_s, 8), dtype=np.int64)
    return MappingStack(z, z.copy(), np.zeros((0, 8), np.int64), np.zeros((0, 8), np.int64),
                        np.zeros((0, n_s, 3), dtype=bool))


def evaluate_stack(layer: LayerSpec, arch: Architecture, ms: MappingStack) -> dict:
    """Exact counts and metrics (numpy) for every mapping of ``ms`` on one layer.

    Returns:
      dict with the :func:`hwmodel._counts.counts` and :func:`hwmodel._evaluate.metrics`
      arrays (leading dim = candidates).
    """
    st = arch_structure(arch)
    B = len(ms)
    g = geometry([layer] * 1)
    gb = dataclasses.replace(
        g,
        bounds=np.repeat(g.bounds, B, 0), uh=np.repeat(g.uh, B), dh=np.repeat(g.dh, B),
        uw=np.repeat(g.uw, B), dw=np.repeat(g.dw, B), stride=np.repeat(g.stride, B, 0),
        dilation=np.repeat(g.dilation, B, 0),
    )
    s = structure(ms, st, gb)
    cnt = counts(np, ms.T, ms.SX, ms.SY, s, geom_dict(gb))
    aa = arch_arrays(np, arch, relaxed=False)
    per_pe = tuple(l.per_pe for l in arch.levels)
    nonmac = np.full(B, float(layer.nonmac_ops))
    met = metrics(np, cnt, aa, st, per_pe_level=per_pe, nonmac_ops=nonmac)
    return {**cnt, **met}


def _select(layer, arch, ms, objective):
    ev = evaluate_stack(layer, arch, ms)
    energy = ev["energy"]
    cycles = ev["cycles"]
    obj = energy if objective == "energy" else energy * cycles
    dram = ev["reads"][:, 0, :].sum(-1) + ev["writes"][:, 0, :].sum(-1)
    # lexsort: last key is primary
    idx = np.lexsort((np.arange(len(obj)), dram, energy, cycles, obj))
    return int(idx[0]), ev


def map_layer(layer: LayerSpec, arch: Architecture, *, dataflow: str = "rs",
              objective: str = "energy") -> Mapping:
    """The best legal mapping of ``layer`` in ``dataflow``'s candidate set.

    Args:
      layer: the layer.
      arch: architecture with concrete values.
      dataflow: one of :data:`hwmodel.DATAFLOWS`.
      objective: ``"energy"`` (pJ) or ``"edp"`` (pJ x cycles).

    Returns:
      The chosen :class:`Mapping` (``dataflow`` set to the family's name).

    Raises:
      NoLegalMapping: no candidate fits (the message names the layer, level and sizes).
    """
    _check_args(dataflow, objective)
    _concrete(arch, "map_layer")
    st = arch_structure(arch)
    fail = _Fail()
    ms = candidate_mappings(layer, arch, dataflow, _fail=fail)
    if len(ms) == 0:
        fail2 = _Fail()
        ms = candidate_mappings(layer, arch, dataflow, all_spatial=True, _fail=fail2)
        fail = fail2 if fail2.detail else fail
    if len(ms) == 0:
        dims = ", ".join(f"{d}={getattr(layer, d)}" for d in DIMS if getattr(layer, d) > 1)
        raise NoLegalMapping(
            f"layer {layer.name!r} ({layer.kind}, {dims}, stride={layer.stride}, "
            f"dilation={layer.dilation}): no legal {dataflow} mapping on architecture "
            f"{arch.name!r}: {fail.detail or 'no candidate satisfies the constraints'}"
        )
    i, _ = _select(layer, arch, ms, objective)
    return ms.mapping(i, st.storage_names, dataflow)


def _layer_key(layer: LayerSpec):
    return (layer.kind, layer.G, layer.N, layer.M, layer.C, layer.P, layer.Q, layer.R,
            layer.S, layer.stride, layer.dilation, layer.nonmac_ops)


def map_workload(workload, arch: Architecture, *, dataflow: str = "rs",
                 objective: str = "energy") -> tuple[Mapping, ...]:
    """:func:`map_layer` for every layer (identical layer shapes are mapped once).

    Args:
      workload: a :class:`Workload` or a sequence of :class:`LayerSpec`.
      arch, dataflow, objective: as :func:`map_layer`.

    Returns:
      One mapping per layer, in order.
    """
    _check_args(dataflow, objective)
    _concrete(arch, "map_workload")
    layers = workload.layers if isinstance(workload, Workload) else tuple(workload)
    memo: dict = {}
    out = []
    for layer in layers:
        k = _layer_key(layer)
        if k not in memo:
            memo[k] = map_layer(layer, arch, dataflow=dataflow, objective=objective)
        out.append(memo[k])
    return tuple(out)
