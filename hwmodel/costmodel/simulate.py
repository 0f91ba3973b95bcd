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
_DIX = {d: i for i, d in enumerate(DIMS)}


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
    nest = _LoopNest(layer, arch_structure(arch), mapping)
    sim = _Simulation(nest)
    visited = set()
    cycles = 0
    for tidx in nest.iterations():
        cycles += 1
        sim.move_tiles(tidx)
        visited.update(sim.macs(tidx))
    sim.drain_all()
    macs = cycles * nest.used_pes
    if len(visited) != layer.macs or macs != layer.macs:
        raise AssertionError(
            f"simulate: nest visits {len(visited)} distinct points in {macs} MACs, "
            f"layer has {layer.macs}"
        )
    return sim.counts.as_dict(macs=macs, cycles=cycles, used_pes=nest.used_pes)


class _LoopNest:
    """The mapping's loop nest and what each of its iterations touches.

    Temporal loops are ``(level, dim, factor)`` in nest order (outermost level first,
    each level's loops in ``mapping.order``); spatial loops are ``(dim, factor)``, the
    X array's eight then the Y array's eight.  An iteration is a temporal index tuple
    ``tidx`` (one index per temporal loop) on a PE ``sp`` (one index per spatial loop).
    Storage levels are numbered outermost first; levels ``>= first_pe`` are per PE.
    """

    def __init__(self, layer: LayerSpec, st, mapping: Mapping):
        """Lay out the loops of ``mapping`` (for ``layer``, on structure ``st``)."""
        self.st = st
        self.mapping = mapping
        self.n_storage, self.first_pe = st.n_storage, st.first_pe
        self.stride_hw, self.dilation_hw = layer.stride, layer.dilation
        self.tloops = [(j, d, mapping.temporal[j][_DIX[d]])
                       for j in range(self.n_storage) for d in mapping.order[j]]
        self.sloops = ([(d, mapping.spatial_x[_DIX[d]]) for d in DIMS]
                       + [(d, mapping.spatial_y[_DIX[d]]) for d in DIMS])
        self.strides = self._strides()
        self.pes = list(itertools.product(*[range(f) for (_, f) in self.sloops]))
        self.used_pes = len(self.pes)
        self.tranges = [range(f) for (_, _, f) in self.tloops]
        # index into tloops where level j's loops start (every level orders all 8 dims)
        self.first_loop_of = [8 * j for j in range(self.n_storage + 1)]
        self.noc_names = [st.level_names[i] for i in st.noc]

    def _strides(self) -> dict:
        """Each loop's stride in its dimension: the product of the factors of the loops of
        the same dimension inside it, in the full nest order (temporal loops above the PE
        array, then the spatial loops, then the temporal loops of the per-PE levels)."""
        n_out = sum(1 for (j, _, _) in self.tloops if j < self.first_pe)
        full = ([("t", k) for k in range(n_out)]
                + [("s", k) for k in range(len(self.sloops))]
                + [("t", k) for k in range(n_out, len(self.tloops))])

        def factor(ref):
            kind, k = ref
            return self.tloops[k][2] if kind == "t" else self.sloops[k][1]

        def dim(ref):
            kind, k = ref
            return self.tloops[k][1] if kind == "t" else self.sloops[k][0]

        strides = {}
        for pos, ref in enumerate(full):
            s = 1
            for ref2 in full[pos + 1:]:
                if dim(ref2) == dim(ref):
                    s *= factor(ref2)
            strides[ref] = s
        return strides

    def iterations(self):
        """Every temporal iteration ``tidx``, in nest order."""
        return itertools.product(*self.tranges)

    def point(self, tidx, sp) -> list[int]:
        """The iteration point ``[g, n, m, p, q, c, r, s]`` of iteration ``tidx`` on PE ``sp``."""
        v = [0] * 8
        for k, i in enumerate(tidx):
            v[_DIX[self.tloops[k][1]]] += i * self.strides[("t", k)]
        for k, i in enumerate(sp):
            v[_DIX[self.sloops[k][0]]] += i * self.strides[("s", k)]
        return v

    def elem(self, x: int, v) -> tuple:
        """The element of operand ``x`` (0 W, 1 I, 2 O) that point ``v`` touches."""
        g, n, m, p, q, c, r, s = v
        U, V = self.stride_hw
        Dh, Dw = self.dilation_hw
        if x == 0:
            return (g, m, c, r, s)
        if x == 1:
            return (g, n, c, p * U + r * Dh, q * V + s * Dw)
        return (g, n, m, p, q)

    def tile_set(self, x: int, j: int, tidx, inst) -> set:
        """Elements of operand ``x`` in level ``j``'s tile at iteration ``tidx``: instance
        ``inst`` (an index into ``pes``) of a per-PE level, or all PEs' for a shared one."""
        lo = self.first_loop_of[j]
        inner = list(itertools.product(*self.tranges[lo:]))
        sps = self.pes if j < self.first_pe else [self.pes[inst]]
        out = set()
        head = tuple(tidx[:lo])
        for sp in sps:
            for tail in inner:
                out.add(self.elem(x, self.point(head + tail, sp)))
        return out

    def tile_key(self, x: int, j: int, tidx) -> tuple:
        """Which tile of operand ``x`` level ``j`` holds at ``tidx``: the indices of the loops
        above ``j`` that are relevant to ``x`` (factor > 1)."""
        return tuple(
            (k, tidx[k]) for k in range(self.first_loop_of[j])
            if self.tloops[k][2] > 1 and RELEVANT[x][_DIX[self.tloops[k][1]]]
        )

    def is_slide(self, x: int, j: int, old, new) -> bool:
        """Whether the tile change ``old -> new`` of operand ``x`` at level ``j`` is a sliding
        step: I only, one relevant P/Q/R/S loop stepped by +1, and (for a per-PE level) no
        spatial loop of that direction between it and the level."""
        if x != 1 or old is None:
            return False
        changed = [(a, b) for a, b in zip(old, new) if a != b]
        if len(changed) != 1:
            return False
        (k, i0), (_, i1) = changed[0]
        if i1 != i0 + 1:
            return False
        d = self.tloops[k][1]
        if d in _ROW_DIMS:
            direction = _ROW_DIMS
        elif d in _COL_DIMS:
            direction = _COL_DIMS
        else:
            return False
        if j >= self.first_pe:
            for dd in direction:
                if self.mapping.spatial_x[_DIX[dd]] * self.mapping.spatial_y[_DIX[dd]] > 1:
                    return False
        return True

    def nocs_between(self, p: int, c: int) -> list[str]:
        """Names of the NoC levels a word moving between storage levels ``p < c`` crosses."""
        return [self.noc_names[k] for k, b in enumerate(self.st.noc_below) if p < b <= c]


class _Counts:
    """The simulator's integer counters, per storage level (or NoC level) and operand."""

    def __init__(self, storage_names, noc_names):
        """All counters at zero."""
        def zero(names):
            return {n: {o: 0 for o in OPERANDS} for n in names}
        self.reads, self.writes = zero(storage_names), zero(storage_names)
        self.fills, self.drains = zero(storage_names), zero(storage_names)
        self.mac_reads, self.mac_writes = zero(storage_names), zero(storage_names)
        self.noc_reads, self.noc_writes = zero(noc_names), zero(noc_names)

    def as_dict(self, **totals) -> dict:
        """The counts in :func:`simulate`'s return format, with ``totals`` added."""
        return {
            "reads": self.reads, "writes": self.writes, "fills": self.fills,
            "drains": self.drains, "mac_reads": self.mac_reads,
            "mac_writes": self.mac_writes, "noc_reads": self.noc_reads,
            "noc_writes": self.noc_writes, **totals,
        }


class _Simulation:
    """Explicit buffers for a loop nest, moved tile by tile, counting every word moved.

    For every storage level ``j > 0`` keeping operand ``x``: ``buf[(x, j, inst)]`` is the
    set of elements instance ``inst`` holds (``inst`` None for a shared level, a PE index
    for a per-PE one; level 0, the outermost, holds everything); ``key[(x, j)]`` the key
    of the tile it holds; ``seen[(x, j, inst)]`` (used for O) every element it has held.
    """

    def __init__(self, nest: _LoopNest):
        """Empty buffers and zero counts for ``nest``."""
        self.nest = nest
        n_s, mapping = nest.n_storage, nest.mapping
        self.names = nest.st.storage_names
        self.keep = [[x in mapping.keep[j] for x in OPERANDS] for j in range(n_s)]
        self.parent_of = {}
        for x in range(3):
            for j in range(1, n_s + 1):
                if j == n_s or self.keep[j][x]:
                    self.parent_of[(x, j)] = max(i for i in range(j) if self.keep[i][x])
        self.innermost = {x: max(i for i in range(n_s) if self.keep[i][x]) for x in range(3)}
        self.buf, self.key, self.seen = {}, {}, {}
        for x in range(3):
            for j in range(1, n_s):
                if self.keep[j][x]:
                    for e in self.instances(j):
                        self.buf[(x, j, e)] = None
                        self.seen[(x, j, e)] = set()
                    self.key[(x, j)] = None
        self.counts = _Counts(self.names, nest.noc_names)

    def instances(self, j: int) -> list:
        """The buffer instances of level ``j``: one per PE for a per-PE level, else ``[None]``."""
        return list(range(self.nest.used_pes)) if j >= self.nest.first_pe else [None]

    def parent_has(self, x: int, p: int, inst_child, elems: set) -> bool:
        """Whether level ``p`` (the parent of instance ``inst_child``) holds all of ``elems``."""
        if p == 0:
            return True
        pinst = None if p < self.nest.first_pe else inst_child
        return elems <= self.buf[(x, p, pinst)]

    def move_tiles(self, tidx) -> None:
        """Bring every buffer to its tile for iteration ``tidx``: drain the O tiles that
        change (inner levels first), then fill every changed tile (outer levels first)."""
        changes = []
        for x in range(3):
            for j in range(1, self.nest.n_storage):
                if self.keep[j][x]:
                    k = self.nest.tile_key(x, j, tidx)
                    if k != self.key[(x, j)]:
                        changes.append((x, j, k))
        for x, j, k in sorted(changes, key=lambda t: -t[1]):
            if x == 2:
                self.drain(x, j)
        for x, j, k in sorted(changes, key=lambda t: t[1]):
            self.fill(x, j, tidx, k)

    def drain_all(self) -> None:
        """The final drains of O after the last iteration, inner levels first."""
        for j in range(self.nest.n_storage - 1, 0, -1):
            if self.keep[j][2]:
                self.drain(2, j)

    def drain(self, x: int, j: int) -> None:
        """Write level ``j``'s current tile of ``x`` (O) back to its parent: every element
        read from every instance; a shared parent writes each distinct element once."""
        c, A = self.counts, self.nest.first_pe
        p = self.parent_of[(x, j)]
        olds = {e: self.buf[(x, j, e)] for e in self.instances(j)}
        if any(v is None for v in olds.values()):
            return
        tot = sum(len(v) for v in olds.values())
        c.reads[self.names[j]][OPERANDS[x]] += tot
        c.drains[self.names[j]][OPERANDS[x]] += tot
        for e, v in olds.items():
            assert self.parent_has(x, p, e, v), (x, j, e)
        if p < A:
            c.writes[self.names[p]][OPERANDS[x]] += len(set().union(*olds.values()))
        else:
            c.writes[self.names[p]][OPERANDS[x]] += tot
        for nn in self.nest.nocs_between(p, j):
            c.noc_writes[nn][OPERANDS[x]] += tot

    def fill(self, x: int, j: int, tidx, newkey) -> None:
        """Load level ``j``'s tile ``newkey`` of ``x`` from its parent, counting the words.

        W, I: each instance fetches the whole new tile, or after a slide only what it
        lacks; a shared parent reads the union of its children's fetches (multicast).
        O: only elements this instance held before are refilled (one PE per reduction
        group when the parent is shared), fresh ones start at zero.
        """
        c, A = self.counts, self.nest.first_pe
        p = self.parent_of[(x, j)]
        slide = self.nest.is_slide(x, j, self.key[(x, j)], newkey)
        fetched = {}
        for e in self.instances(j):
            new = self.nest.tile_set(x, j, tidx, e)
            old = self.buf[(x, j, e)]
            if x == 2:
                fetched[e] = new & self.seen[(x, j, e)]
                self.seen[(x, j, e)] |= new
            elif slide:
                fetched[e] = new - old
            else:
                fetched[e] = new
            assert self.parent_has(x, p, e, fetched[e]), (x, j, e)
            self.buf[(x, j, e)] = new
        self.key[(x, j)] = newkey
        op = OPERANDS[x]
        per_inst = sum(len(v) for v in fetched.values())
        union = len(set().union(*fetched.values()))
        if x == 2:
            moved = union if p < A else per_inst  # one PE per reduction group
            c.writes[self.names[j]][op] += moved
            c.fills[self.names[j]][op] += moved
            c.reads[self.names[p]][op] += moved
            for nn in self.nest.nocs_between(p, j):
                c.noc_reads[nn][op] += moved
        else:
            c.writes[self.names[j]][op] += per_inst
            c.fills[self.names[j]][op] += per_inst
            c.reads[self.names[p]][op] += union if p < A else per_inst
            for nn in self.nest.nocs_between(p, j):
                c.noc_reads[nn][op] += per_inst

    def macs(self, tidx) -> list[tuple]:
        """Run iteration ``tidx`` on every PE: each MAC reads W and I and reads + writes O
        at the operand's innermost keeping level (distinct elements per cycle when that
        level is shared), each present there.  Returns the points computed."""
        c, A, n_s = self.counts, self.nest.first_pe, self.nest.n_storage
        pts = [self.nest.point(tidx, sp) for sp in self.nest.pes]
        for x in range(3):
            q = self.innermost[x]
            op = OPERANDS[x]
            els = [self.nest.elem(x, v) for v in pts]
            for e_idx, el in enumerate(els):
                inst = None if q < A else e_idx
                if q > 0:
                    assert el in self.buf[(x, q, inst)], (x, q, el)
            distinct = len(set(els))
            n_acc = distinct if q < A else len(els)
            c.mac_reads[self.names[q]][op] += n_acc
            c.reads[self.names[q]][op] += n_acc
            for nn in self.nest.nocs_between(q, n_s):
                c.noc_reads[nn][op] += len(els) if x != 2 else n_acc
            if x == 2:
                c.mac_writes[self.names[q]][op] += n_acc
                c.writes[self.names[q]][op] += n_acc
                for nn in self.nest.nocs_between(q, n_s):
                    c.noc_writes[nn][op] += len(els)
        return [tuple(v) for v in pts]
