"""Brute-force reference simulator: walk a mapping's loop nest with explicit buffers.

:func:`simulate` is deliberately slow and obvious plain Python.  It enumerates every
temporal iteration of the loop nest in order, and for every storage level and
operand keeps an explicit buffer per instance (one per PE for per-PE levels): the
*set of element coordinates* it holds and the key of the tile (the indices of the
loops above the level that are relevant to the operand, factor > 1).  When a key
changes the buffer is refilled from its parent by explicit set operations:

* W, I: the child instance fetches the new tile's elements -- all of them, or, for a
  sliding step (one relevant P/Q/R/S loop of I stepped by +1 and no spatial loop of
  that direction between it and the level), only those not already in the buffer.
  The parent reads the *union* of what its children fetch (multicast) when it is
  above the PE array, else each instance's own set.
* O: the old tile is drained (every element read from the child and written to the
  parent; a shared parent writes each distinct element once: spatial reduction);
  elements of the new tile this buffer instance has held before are refilled from the
  parent (delivered to one PE per reduction group), fresh ones start at zero.
* MAC: every iteration point of every PE reads W and I and reads + writes O at the
  innermost keeping level (distinct elements per cycle when that level is shared).

It also checks the tile semantics are physically consistent: every element fetched
is present in the parent's current buffer, every MAC operand is present in the
innermost buffer, and the nest visits every point of the layer's iteration space
exactly once.  The analytic model (:mod:`hwmodel.costmodel.counts`) must reproduce these counts
exactly; the tests check that on randomly drawn tiny layers and mappings.
"""

from __future__ import annotations

import itertools

from hwmodel.arch.architecture import Architecture
from hwmodel.arch.kinds import OPERANDS
from hwmodel.mapping.loopnest import RELEVANT, Mapping, arch_structure
from hwmodel.mapping.tiles import validate_mapping
from hwmodel.workload.spec import DIMS, LayerSpec

__all__ = ["simulate"]

_ROW_DIMS = ("P", "R")
_COL_DIMS = ("Q", "S")


def simulate(layer: LayerSpec, arch: Architecture, mapping: Mapping, *,
             max_points: int = 2_000_000) -> dict:
    """Count every access of ``mapping`` for ``layer`` on ``arch`` by brute force.

    Args:
      layer: the layer (its iteration space is walked point by point: keep it tiny).
      arch: the architecture (only its level structure is used; capacities are not
        checked here -- see :func:`hwmodel.validate_mapping`).
      mapping: a loop nest whose factors multiply to the layer's bounds.
      max_points: refuse layers with more MACs than this (it would take too long).

    Returns:
      dict with integer counts:
        ``reads``, ``writes``, ``fills``, ``drains``, ``mac_reads``, ``mac_writes``:
        ``{storage level name: {"W": n, "I": n, "O": n}}`` (``mac_*`` is the part of
        reads/writes made by MACs directly; ``fills`` the words written from the parent,
        ``drains`` the words read out back to the parent);
        ``noc_reads`` / ``noc_writes``: ``{noc level name: {op: n}}`` words delivered to /
        collected from below;
        ``macs``, ``cycles`` (temporal iterations), ``used_pes``.

    Raises:
      ValueError: the mapping does not factorize the layer, or the layer is too big.
    """
    validate_mapping(layer, arch, mapping, check_capacity=False, check_model=False)
    if layer.macs > max_points:
        raise ValueError(
            f"simulate: layer {layer.name!r} has {layer.macs} MACs > max_points={max_points}"
        )
    st = arch_structure(arch)
    n_s, A = st.n_storage, st.first_pe
    names = st.storage_names
    U, V = layer.stride
    Dh, Dw = layer.dilation
    dix = {d: i for i, d in enumerate(DIMS)}

    # ---- the loop nest --------------------------------------------------------------
    tloops = []  # (level, dim, factor) in nest order
    for j in range(n_s):
        for d in mapping.order[j]:
            tloops.append((j, d, mapping.temporal[j][dix[d]]))
    sloops = [(d, mapping.spatial_x[dix[d]]) for d in DIMS] + [
        (d, mapping.spatial_y[dix[d]]) for d in DIMS
    ]
    # full nest order for the mixed radix: temporal(levels < A), spatial, temporal(>= A)
    n_out = sum(1 for (j, _, _) in tloops if j < A)
    full = ([("t", k) for k in range(n_out)] + [("s", k) for k in range(len(sloops))]
            + [("t", k) for k in range(n_out, len(tloops))])

    def factor(ref):
        kind, k = ref
        return tloops[k][2] if kind == "t" else sloops[k][1]

    def dim(ref):
        kind, k = ref
        return tloops[k][1] if kind == "t" else sloops[k][0]

    stride = {}
    for pos, ref in enumerate(full):
        st_ = 1
        for ref2 in full[pos + 1:]:
            if dim(ref2) == dim(ref):
                st_ *= factor(ref2)
        stride[ref] = st_

    def point(tidx, sidx):
        v = [0] * 8
        for k, i in enumerate(tidx):
            v[dix[tloops[k][1]]] += i * stride[("t", k)]
        for k, i in enumerate(sidx):
            v[dix[sloops[k][0]]] += i * stride[("s", k)]
        return v

    def elem(x, v):
        g, n, m, p, q, c, r, s = v
        if x == 0:
            return (g, m, c, r, s)
        if x == 1:
            return (g, n, c, p * U + r * Dh, q * V + s * Dw)
        return (g, n, m, p, q)

    pes = list(itertools.product(*[range(f) for (_, f) in sloops]))
    used = len(pes)
    tranges = [range(f) for (_, _, f) in tloops]
    first_loop_of = [8 * j for j in range(n_s + 1)]  # tloops index where level j starts

    def tile_set(x, j, tidx, sidx):
        """Elements of operand x in level j's tile (instance sidx or all PEs if shared)."""
        lo = first_loop_of[j]
        inner = list(itertools.product(*tranges[lo:]))
        sps = pes if j < A else [pes[sidx]]
        out = set()
        head = tuple(tidx[:lo])
        for sp in sps:
            for tail in inner:
                out.add(elem(x, point(head + tail, sp)))
        return out

    # ---- buffers ------------------------------------------------------------------
    keep = [[x in mapping.keep[j] for x in OPERANDS] for j in range(n_s)]
    parent_of = {}
    for x in range(3):
        for j in range(1, n_s + 1):
            if j == n_s or keep[j][x]:
                parent_of[(x, j)] = max(i for i in range(j) if keep[i][x])
    innermost = {x: max(i for i in range(n_s) if keep[i][x]) for x in range(3)}

    def instances(j):
        return list(range(used)) if j >= A else [None]

    buf = {}   # (x, j, inst) -> set of elements
    key = {}   # (x, j) -> key tuple
    seen = {}  # (x, j, inst) -> set (O only): elements held before
    for x in range(3):
        for j in range(1, n_s):
            if keep[j][x]:
                for e in instances(j):
                    buf[(x, j, e)] = None
                    seen[(x, j, e)] = set()
                key[(x, j)] = None

    zero = lambda: {n: {o: 0 for o in OPERANDS} for n in names}  # noqa: E731
    reads, writes, fills, drains = zero(), zero(), zero(), zero()
    mac_reads, mac_writes = zero(), zero()
    noc_names = [st.level_names[i] for i in st.noc]
    noc_reads = {n: {o: 0 for o in OPERANDS} for n in noc_names}
    noc_writes = {n: {o: 0 for o in OPERANDS} for n in noc_names}

    def crossing(p, c):
        return [noc_names[k] for k, b in enumerate(st.noc_below) if p < b <= c]

    def parent_has(x, p, inst_child, elems):
        if p == 0:
            return True
        pinst = None if p < A else inst_child
        return elems <= buf[(x, p, pinst)]

    def tile_key(x, j, tidx):
        return tuple(
            (k, tidx[k]) for k in range(first_loop_of[j])
            if tloops[k][2] > 1 and RELEVANT[x][dix[tloops[k][1]]]
        )

    def is_slide(x, j, old, new):
        if x != 1 or old is None:
            return False
        changed = [(a, b) for a, b in zip(old, new) if a != b]
        if len(changed) != 1:
            return False
        (k, i0), (_, i1) = changed[0]
        if i1 != i0 + 1:
            return False
        d = tloops[k][1]
        if d in _ROW_DIMS:
            direction = _ROW_DIMS
        elif d in _COL_DIMS:
            direction = _COL_DIMS
        else:
            return False
        if j >= A:
            for dd in direction:
                if mapping.spatial_x[dix[dd]] * mapping.spatial_y[dix[dd]] > 1:
                    return False
        return True

    def drain(x, j):
        p = parent_of[(x, j)]
        olds = {e: buf[(x, j, e)] for e in instances(j)}
        if any(v is None for v in olds.values()):
            return
        tot = sum(len(v) for v in olds.values())
        reads[names[j]][OPERANDS[x]] += tot
        drains[names[j]][OPERANDS[x]] += tot
        for e, v in olds.items():
            assert parent_has(x, p, e, v), (x, j, e)
        if p < A:
            writes[names[p]][OPERANDS[x]] += len(set().union(*olds.values()))
        else:
            writes[names[p]][OPERANDS[x]] += tot
        for nn in crossing(p, j):
            noc_writes[nn][OPERANDS[x]] += tot

    def fill(x, j, tidx, newkey):
        p = parent_of[(x, j)]
        slide = is_slide(x, j, key[(x, j)], newkey)
        fetched = {}
        for e in instances(j):
            new = tile_set(x, j, tidx, e)
            old = buf[(x, j, e)]
            if x == 2:
                fetched[e] = new & seen[(x, j, e)]
                seen[(x, j, e)] |= new
            elif slide:
                fetched[e] = new - old
            else:
                fetched[e] = new
            assert parent_has(x, p, e, fetched[e]), (x, j, e)
            buf[(x, j, e)] = new
        key[(x, j)] = newkey
        op = OPERANDS[x]
        per_inst = sum(len(v) for v in fetched.values())
        union = len(set().union(*fetched.values()))
        if x == 2:
            moved = union if p < A else per_inst  # one PE per reduction group
            writes[names[j]][op] += moved
            fills[names[j]][op] += moved
            reads[names[p]][op] += moved
            for nn in crossing(p, j):
                noc_reads[nn][op] += moved
        else:
            writes[names[j]][op] += per_inst
            fills[names[j]][op] += per_inst
            reads[names[p]][op] += union if p < A else per_inst
            for nn in crossing(p, j):
                noc_reads[nn][op] += per_inst

    visited = set()
    cycles = 0
    for tidx in itertools.product(*tranges):
        cycles += 1
        changes = []
        for x in range(3):
            for j in range(1, n_s):
                if keep[j][x]:
                    k = tile_key(x, j, tidx)
                    if k != key[(x, j)]:
                        changes.append((x, j, k))
        # drains inner -> outer, then fills outer -> inner
        for x, j, k in sorted(changes, key=lambda t: -t[1]):
            if x == 2:
                drain(x, j)
        for x, j, k in sorted(changes, key=lambda t: t[1]):
            fill(x, j, tidx, k)
        # MACs
        pts = [point(tidx, sp) for sp in pes]
        for v in pts:
            visited.add(tuple(v))
        for x in range(3):
            q = innermost[x]
            op = OPERANDS[x]
            els = [elem(x, v) for v in pts]
            for e_idx, el in enumerate(els):
                inst = None if q < A else e_idx
                if q > 0:
                    assert el in buf[(x, q, inst)], (x, q, el)
            distinct = len(set(els))
            n_acc = distinct if q < A else len(els)
            mac_reads[names[q]][op] += n_acc
            reads[names[q]][op] += n_acc
            for nn in crossing(q, n_s):
                noc_reads[nn][op] += len(els) if x != 2 else n_acc
            if x == 2:
                mac_writes[names[q]][op] += n_acc
                writes[names[q]][op] += n_acc
                for nn in crossing(q, n_s):
                    noc_writes[nn][op] += len(els)
    # final drains, inner -> outer
    for j in range(n_s - 1, 0, -1):
        if keep[j][2]:
            drain(2, j)
    if len(visited) != layer.macs or cycles * used != layer.macs:
        raise AssertionError(
            f"simulate: nest visits {len(visited)} distinct points in {cycles * used} MACs, "
            f"layer has {layer.macs}"
        )
    return {
        "reads": reads, "writes": writes, "fills": fills, "drains": drains,
        "mac_reads": mac_reads, "mac_writes": mac_writes,
        "noc_reads": noc_reads, "noc_writes": noc_writes,
        "macs": cycles * used, "cycles": cycles, "used_pes": used,
    }

