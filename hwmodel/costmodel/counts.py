"""The exact access-count formulas, written once over an array namespace.

This module turns stacked mappings (:class:`~hwmodel.mapping.loopnest.MappingStack`) into
per-level, per-operand access counts.  The same code runs on numpy ``int64`` (the
exact model, the mapper's candidate evaluation) and on ``jax.numpy`` floats (the
differentiable model), so the two cannot drift.  It is split in two:

* :func:`structure` (numpy, from the *integer* mapping only): which loops are above
  which level, the innermost relevant loop of every (operand, level) pair, the parent
  level of every boundary, whether a fill slides (see below).  Discrete decisions are
  made here, once, so the differentiable path can scale factors continuously (keep
  fractions) while the structure stays that of the integer mapping.
* :func:`counts` (any ``xp``): products of loop factors and window sizes.

Semantics (the model's definition; :func:`hwmodel.simulate` implements the same rules
by walking every iteration with explicit buffers):

**Tiles.**  The tile of operand ``X`` held by storage level ``c`` (per instance)
spans the loops of ``c`` and of every level inside it, plus the spatial loops when
``c`` is above the PE array.  Extents ``E[d]``: W = ``G M C R S``; O = ``G N M P Q``;
I = ``G N C * h(P, R, U, Dh) * h(Q, S, V, Dw)`` with the window count
``h(a, b, U, D) = |{p*U + r*D : p < a, r < b}| = a*min(b, u) + max(0, b-u)*min(a, d)``
(``g = gcd(U, D), u = U/g, d = D/g``).  The parent of a per-PE level sees the union of
the PE tiles, itself a tile of the combined extents (multicast).  One case is outside
this closed form and rejected by :func:`hwmodel.validate_mapping` (it needs two per-PE
levels): I bypassing a per-PE level whose P/R (Q/S) loops sit between the spatial
loops of the same direction and I's child, which makes the PEs' windows strided.  For
the MAC units the PEs of one cycle read rows ``i*Bp*U + j*Br*Dh`` (``Bp, Br``: the P
and R factors of all per-PE levels), i.e. ``h(SP, SR, Bp*U, Br*Dh)`` rows.

**Fills.**  Walking the temporal loops above ``c`` (outer to inner, factor-1 loops
ignored), the tile changes whenever the index of a loop relevant to ``X`` changes.
With ``k*`` the innermost relevant loop above ``c``: fills = product of the factors
of all loops from the outermost through ``k*``; each fill moves the whole tile -- except
a *sliding step* (refinement of the lead's proposal): when ``X = I``, ``k*`` is a
``P``, ``Q``, ``R`` or ``S`` loop, and it steps by +1 without wrapping, the buffer keeps
the overlap of the old and new windows and fetches only the new rows (columns):
``h(2a, b) - h(a, b)`` rows for a ``P`` step (``a, b`` the tile's P and R extents),
``h(a, 2b) - h(a, b)`` for an ``R`` step.  This applies only when no spatial loop of
that direction (P/R for rows, Q/S for columns) with factor > 1 sits between ``k*`` and
``c`` (then every PE's window moves by exactly its own extent).  So per sweep of ``k*``
(``F_out`` sweeps, ``f*`` steps each) the words are ``t + (f* - 1) * delta``.

**Boundaries.**  A level *keeps* an operand if the mapping says so (``Mapping.keep``,
a subset of what the architecture lets it hold; bypass otherwise; the outermost level
keeps everything and is never filled).  For each operand, consecutive keeping levels
``(p, c)`` form a
boundary, and the innermost keeping level feeds the MAC units (a virtual per-PE child
with a 1-word tile per operand that is refilled every cycle: no operand latch).

* W, I: per fill the child instance writes its words; the parent reads the union
  (multicast) once when it is above the array, else each instance's words.
* O: every fill replaces a tile that is drained (``F * t`` words read at the child,
  the parent writes the union: PEs that differ only in C, R, S are reduced on the way);
  a fill reads back partial sums (``F - D`` times, ``D`` = product of the O-relevant
  loop factors above ``c`` = distinct tiles; the first touch of a tile reads nothing),
  sent to one PE per reduction group.
* MAC: each MAC reads one W and one I word and reads + writes one O word at the
  innermost keeping level (when that level is above the array: one access per
  distinct word per cycle, multicast / spatially reduced).
* NoC levels store nothing and count every word crossing them between a parent above
  and a child below: ``reads`` = words delivered towards the PEs (per destination
  instance), ``writes`` = words collected from them (per source instance).
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import numpy as np

from hwmodel._util import register_pytree
from hwmodel.mapping.loopnest import RELEVANT, ArchStructure, Mapping, MappingStack, stack_mappings
from hwmodel.mapping.tiles import (PI, QI, RI, SI, Geometry, WindowSteps, geometry, tile_words,
                                   window_count, window_steps)
from hwmodel.workload.spec import LayerSpec

__all__ = ["Counts", "Structure", "structure", "counts", "exact_counts_single"]

SLIDE_NONE, SLIDE_P, SLIDE_R, SLIDE_Q, SLIDE_S = range(5)


@dataclasses.dataclass(frozen=True)
class Structure:
    """Discrete decisions of the count formulas (numpy; from integer factors).

    Index ``c`` below runs over children ``1 .. n_s`` (``n_s`` = the MAC units) and is
    stored at ``c - 1``; ``x`` over operands W, I, O; positions ``k`` over the
    ``8 * n_s`` temporal loops of the flattened nest.

    Attributes:
      order: ``[B, n_s, 8]`` dim index at each nest position.
      kstar: ``[3, n_s, B]`` int: nest position of the innermost relevant loop above
        the child (factor > 1); -1 if none; ``8 n_s`` for the MAC units (every loop
        counts: they refill every cycle).  Fills = product of the factors at positions
        ``< kstar`` (``F_out``) times the factor at ``kstar`` (``f*``).
      slide: ``[n_s, B]`` int: sliding direction of I fills (0 none, 1 P, 2 R, 3 Q, 4 S).
      parent: ``[3, n_s, B]`` int: parent storage level of the boundary, -1 if the
        child does not keep the operand (no boundary).
      first_pe: storage index of the first per-PE level.
      n_storage: number of storage levels.
      noc_below: per NoC level, the first storage index below it.
      mac_geom: :class:`WindowSteps` of ``[B]`` ints: reduced steps of the window
        the PEs read in one cycle when I reaches the MACs from above the array:
        PEs ``i < SP`` along P and ``j < SR`` along R read rows
        ``i*Bp*U + j*Br*Dh`` (``Bp, Br`` = the P and R factors of the per-PE levels'
        loops, which sit between the spatial loops and the MACs), a window
        ``h(SP, SR, Bp*U, Br*Dh)``.
    """

    order: np.ndarray
    kstar: np.ndarray
    slide: np.ndarray
    parent: np.ndarray
    first_pe: int
    n_storage: int
    noc_below: tuple[int, ...]
    mac_geom: WindowSteps


def _reduced(a, b):
    g = np.gcd(a, b)
    return a // g, b // g


def structure(ms: MappingStack, st: ArchStructure, geom: Geometry) -> Structure:
    """Compute the discrete structure of the count formulas for stacked mappings.

    Args:
      ms: stacked integer mappings ``[B, ...]``.
      st: the architecture's static skeleton.

    Returns:
      A :class:`Structure` (numpy arrays).
    """
    n_s = st.n_storage
    B = ms.T.shape[0]
    npos = 8 * n_s
    order = ms.order
    flat_dim = order.reshape(B, npos)
    flat_f = np.take_along_axis(ms.T, order, axis=-1).reshape(B, npos)
    gt1 = flat_f > 1
    pos = np.arange(npos)
    sp_gt1 = (ms.SX * ms.SY) > 1  # [B, 8]
    rows_spatial = sp_gt1[:, PI] | sp_gt1[:, RI]
    cols_spatial = sp_gt1[:, QI] | sp_gt1[:, SI]

    kstar_all = np.full((3, n_s, B), -1, dtype=np.int64)
    slide = np.zeros((n_s, B), dtype=np.int64)
    parent = np.full((3, n_s, B), -1, dtype=np.int64)
    keep = ms.keep  # [B, n_s, 3]
    for c in range(1, n_s + 1):
        above = pos < 8 * c  # [npos]
        for x in range(3):
            rel = RELEVANT[x][flat_dim]  # [B, npos]
            if c == n_s:
                # MAC units: refilled every cycle -> F = product of every loop.
                kstar_all[x, c - 1] = npos
            else:
                active = gt1 & rel & above[None, :]
                kstar = np.where(active, pos[None, :], -1).max(axis=-1)  # [B]
                kstar_all[x, c - 1] = kstar
                if x == 1:
                    kdim = np.take_along_axis(flat_dim, np.maximum(kstar, 0)[:, None], 1)[:, 0]
                    has = kstar >= 0
                    below_array = c >= st.first_pe
                    s = np.zeros(B, dtype=np.int64)
                    ok_rows = has & (~below_array | ~rows_spatial)
                    ok_cols = has & (~below_array | ~cols_spatial)
                    s = np.where(ok_rows & (kdim == PI), SLIDE_P, s)
                    s = np.where(ok_rows & (kdim == RI), SLIDE_R, s)
                    s = np.where(ok_cols & (kdim == QI), SLIDE_Q, s)
                    s = np.where(ok_cols & (kdim == SI), SLIDE_S, s)
                    slide[c - 1] = s
            # parent: nearest keeping level above c (level 0 keeps everything)
            kept_above = keep[:, :c, x]  # [B, c]
            idx = np.arange(c)
            p = np.where(kept_above, idx[None, :], -1).max(axis=-1)
            present = np.ones(B, dtype=bool) if c == n_s else keep[:, c, x]
            parent[x, c - 1] = np.where(present, p, -1)
    pe_ext = np.prod(ms.T[:, st.first_pe:, :], axis=1) if st.first_pe < n_s else \
        np.ones((B, 8), dtype=np.int64)
    U, V = geom.stride[:, 0], geom.stride[:, 1]
    Dh, Dw = geom.dilation[:, 0], geom.dilation[:, 1]
    muh, mdh = _reduced(pe_ext[:, PI] * U, pe_ext[:, RI] * Dh)
    muw, mdw = _reduced(pe_ext[:, QI] * V, pe_ext[:, SI] * Dw)
    mac_geom = WindowSteps(muh, mdh, muw, mdw)
    return Structure(order, kstar_all, slide, parent, st.first_pe, n_s,
                     st.noc_below, mac_geom)


def _slide_delta(xp, ext, geom, slide, full):
    """Words newly fetched by one sliding step of the I tile with extents ``ext``.

    ``slide`` (numpy ``[B]``) picks the direction; where it is 0 the result is ``full``
    (the whole tile: no sliding).
    """
    G, N, M, P, Q, C, R, S = (ext[..., k] for k in range(8))
    uh, dh, uw, dw = geom.uh, geom.dh, geom.uw, geom.dw
    rows = window_count(P, R, uh, dh, xp)
    cols = window_count(Q, S, uw, dw, xp)
    gnc = G * N * C
    d_p = gnc * cols * (window_count(2 * P, R, uh, dh, xp) - rows)
    d_r = gnc * cols * (window_count(P, 2 * R, uh, dh, xp) - rows)
    d_q = gnc * rows * (window_count(2 * Q, S, uw, dw, xp) - cols)
    d_s = gnc * rows * (window_count(Q, 2 * S, uw, dw, xp) - cols)
    out = full
    for code, d in ((SLIDE_P, d_p), (SLIDE_R, d_r), (SLIDE_Q, d_q), (SLIDE_S, d_s)):
        out = xp.where(slide == code, d, out)
    return out


@dataclasses.dataclass(frozen=True)
class Counts:
    """Access counts of stacked mappings: what :func:`counts` hands the evaluation
    (:func:`hwmodel.costmodel.evaluate.metrics`, the mapper and :func:`hwmodel.cost`).

    Arrays of the evaluator's namespace (numpy ``int64`` in the exact path, numpy
    ``float64`` or ``jax.numpy`` ``float32`` in the cost model); ``B`` = stacked
    mappings, ``n_s`` = storage levels (in ``arch_structure(arch).storage`` order),
    ``n_noc`` = NoC levels, and the last axis of a ``[..., 3]`` array the operands
    W, I, O.  Units: words (of the operand's width), cycles, MACs, all for one
    evaluation of the layer.

    Attributes:
      reads_t, writes_t: ``[B, n_s, 3]`` fill / drain traffic read from / written into
        each level (tiles moving between levels).
      reads_m, writes_m: ``[B, n_s, 3]`` per-MAC operand accesses at each level.
      fills: ``[B, n_s, 3]`` words written into a level from its parent.
      drains: ``[B, n_s, 3]`` words read out of a level back to its parent (O only).
      noc_reads_t, noc_writes_t, noc_reads_m, noc_writes_m: ``[B, n_noc, 3]`` words a
        NoC level delivers towards the PEs (reads, per destination instance) or collects
        from them (writes, per source instance), tile traffic (``_t``) and per-MAC
        accesses (``_m``).
      tiles: ``[B, n_s, 3]`` tile words per instance of each storage level.
      cycles: ``[B]`` compute cycles (the product of every temporal factor).
      used_pes: ``[B]`` PEs used (the product of every spatial factor).
      macs: ``[B]`` MACs (``cycles * used_pes``).
    """

    reads_t: Any
    reads_m: Any
    writes_t: Any
    writes_m: Any
    fills: Any
    drains: Any
    noc_reads_t: Any
    noc_writes_t: Any
    noc_reads_m: Any
    noc_writes_m: Any
    tiles: Any
    cycles: Any
    used_pes: Any
    macs: Any


register_pytree(Counts, [f.name for f in dataclasses.fields(Counts)], [])


class _Nest(NamedTuple):
    """Products of loop factors along the flattened nest (``npos = 8 n_s`` positions)."""

    cpx: Any  # [B, npos + 1]: cpx[:, k] = product of the factors at positions < k
    fx: Any  # [B, npos + 1]: the factor at position k (1 past the end)
    Sp: Any  # [B, 8] spatial factors (SX * SY)
    used: Any  # [B] PEs used
    cycles: Any  # [B] product of every temporal factor
    macs: Any  # [B]
    ones: Any  # [B] ones of the evaluation dtype


class _Tiles(NamedTuple):
    """Tile words at each boundary (``[B, 3, n_s]``, indexed ``[x, c - 1]``)."""

    levels: Any  # [B, n_s + 1, 3] per-instance tile words of every level (+ 1 past)
    t: Any  # per child instance (the MAC's own tile is one word)
    u: Any  # the union over the PEs (what a parent above the array sees)
    step_t: Any  # words one fill moves per instance (a sliding step for I)
    step_u: Any  # the same for the union


class _Boundary(NamedTuple):
    """Words of every boundary (``[B, 3, n_s]``) at the parent, the child, the NoC."""

    p_reads_t: Any
    p_reads_m: Any
    p_writes_t: Any
    p_writes_m: Any
    c_writes: Any  # = fills
    c_reads: Any  # = drains
    n_reads_t: Any
    n_writes_t: Any
    n_reads_m: Any
    n_writes_m: Any


def counts(xp, T, SX, SY, s: Structure, geom: WindowSteps) -> Counts:
    """Access counts for stacked mappings (vectorized over boundaries).

    Args:
      xp: ``numpy`` (exact, int64 inputs) or ``jax.numpy`` (float inputs).
      T: ``[B, n_s, 8]`` temporal factors (may be scaled continuously in the JAX path;
        the structure ``s`` always comes from the integer factors).
      SX, SY: ``[B, 8]`` spatial factors.
      s: :func:`structure` of the integer mapping.
      geom: :class:`~hwmodel.mapping.tiles.WindowSteps` of ``[B]`` arrays (reduced
        strides / dilations).

    Returns:
      :class:`Counts` (``B`` leading).

    Boundaries are indexed ``[x, c - 1]`` (operand ``x``, child ``c = 1 .. n_s``, where
    ``c = n_s`` is the MAC units); all of them are computed at once, in four steps:
    loop products along the nest, tile words at each boundary, the words crossing
    each boundary, and their placement onto the levels.
    """
    f = lambda a: xp.asarray(a).astype(T.dtype)  # noqa: E731  numpy structure -> xp values
    nest = _loop_products(xp, T, SX, SY, s)
    tiles = _boundary_tiles(xp, f, T, nest, s, geom)
    b = _boundary_words(xp, f, T, nest, tiles, s)
    return _place_on_levels(xp, f, b, tiles, nest, s)


def _loop_products(xp, T, SX, SY, s: Structure) -> _Nest:
    """Prefix products of the temporal factors in nest order, PEs used, cycles, MACs."""
    B = T.shape[0]
    npos = 8 * s.n_storage
    flat_f = xp.take_along_axis(T, xp.asarray(s.order), axis=-1).reshape(B, npos)
    Sp = SX * SY
    used = Sp[:, 0]
    for k in range(1, 8):
        used = used * Sp[:, k]
    ones_b = xp.ones_like(flat_f[:, 0])
    cols = [ones_b]
    for k in range(npos):
        cols.append(cols[-1] * flat_f[:, k])
    cpx = xp.stack(cols, axis=-1)  # [B, npos + 1]: cpx[:, k] = prod of positions < k
    cycles = cols[-1]
    fx = xp.concatenate([flat_f, ones_b[:, None]], axis=-1)  # [B, npos + 1]
    return _Nest(cpx, fx, Sp, used, cycles, cycles * used, ones_b)


def _boundary_tiles(xp, f, T, nest: _Nest, s: Structure, geom: WindowSteps) -> _Tiles:
    """Tile words of every level (per instance and as the union over the PEs) and the
    words one fill moves (the whole tile, or a sliding step of I)."""
    n_s = s.n_storage
    Sp = nest.Sp
    # suffix extents E[:, j] = prod of levels >= j (j = 0 .. n_s; E[:, n_s] = 1)
    Es = [xp.ones_like(Sp)]
    for j in range(n_s - 1, -1, -1):
        Es.append(Es[-1] * T[:, j, :])
    E = xp.stack(Es[::-1], axis=1)  # [B, n_s + 1, 8]
    above = (np.arange(n_s + 1) < s.first_pe).astype(np.int64)[None, :, None]  # shared levels
    spf = Sp[:, None, :]
    ext_t = E * (1 + (spf - 1) * f(above))  # per instance (spatial only above the array)
    ext_u = E * spf  # union over the PEs
    g2 = geom.map(lambda v: v[:, None])
    t_lv = xp.stack(tile_words(xp, ext_t, g2), axis=-1)  # [B, n_s + 1, 3]
    u_lv = xp.stack(tile_words(xp, ext_u, g2), axis=-1)
    u_mac = xp.stack(tile_words(xp, Sp, s.mac_geom.map(f)), axis=-1)  # [B, 3]
    # children c = 1 .. n_s (index c - 1); the MAC's own tile is one word
    t_c = xp.concatenate([t_lv[:, 1:n_s, :], xp.ones_like(u_mac)[:, None, :]], axis=1)
    u_c = xp.concatenate([u_lv[:, 1:n_s, :], u_mac[:, None, :]], axis=1)
    t_c = xp.transpose(t_c, (0, 2, 1))  # [B, 3, n_s]
    u_c = xp.transpose(u_c, (0, 2, 1))
    # sliding deltas (I only, real children)
    slide = s.slide.T  # [B, n_s]
    dt_i = _slide_delta(xp, ext_t[:, 1:, :], g2, slide, t_c[:, 1, :])
    du_i = _slide_delta(xp, ext_u[:, 1:, :], g2, slide, u_c[:, 1, :])
    is_i = np.zeros((1, 3, 1), dtype=np.int64)
    is_i[0, 1, 0] = 1
    d_t = t_c + (dt_i[:, None, :] - t_c) * f(is_i)
    d_u = u_c + (du_i[:, None, :] - u_c) * f(is_i)
    return _Tiles(t_lv, t_c, u_c, d_t, d_u)


def _boundary_words(xp, f, T, nest: _Nest, tiles: _Tiles, s: Structure) -> _Boundary:
    """Words crossing every boundary, as read / written at the parent, the child and a
    NoC in between (the fill, drain, refill and per-MAC rules of the module docstring)."""
    n_s = s.n_storage
    B = T.shape[0]
    npos = 8 * n_s
    A = s.first_pe
    t_c, u_c = tiles.t, tiles.u
    ks = np.transpose(s.kstar, (2, 0, 1)).reshape(B, 3 * n_s)
    fo = xp.take_along_axis(nest.cpx, xp.asarray(np.maximum(ks, 0)), axis=-1).reshape(B, 3, n_s)
    fs = xp.take_along_axis(nest.fx, xp.asarray(np.where(ks < 0, npos, ks)), axis=-1)
    fs = fs.reshape(B, 3, n_s)
    words_t = fo * (t_c + (fs - 1) * tiles.step_t)
    words_u = fo * (u_c + (fs - 1) * tiles.step_u)
    F = fo * fs
    o_rel = T[:, :, 0] * T[:, :, 1] * T[:, :, 2] * T[:, :, 3] * T[:, :, 4]  # G N M P Q
    d_pre = [nest.ones]
    for j in range(n_s):
        d_pre.append(d_pre[-1] * o_rel[:, j])
    D = xp.stack(d_pre[1:], axis=-1)[:, None, :]  # [B, 1, n_s]: distinct O tiles above c

    par = np.transpose(s.parent, (2, 0, 1))  # [B, 3, n_s]
    pres = f((par >= 0).astype(np.int64))
    ps = xp.asarray(par < A)  # parent above the array
    used, cycles, macs = nest.used, nest.cycles, nest.macs
    inst = xp.where(xp.asarray(np.arange(1, n_s + 1) >= A)[None, :],
                    used[:, None] * xp.ones_like(D[:, 0, :]), xp.ones_like(D[:, 0, :]))
    inst = inst[:, None, :]  # [B, 1, n_s]
    mac = np.zeros((1, 1, n_s), dtype=np.int64)
    mac[0, 0, n_s - 1] = 1
    real = f(1 - mac)
    macf = f(mac)
    wi = np.zeros((1, 3, 1), dtype=np.int64)
    wi[0, :2, 0] = 1
    wif, of = f(wi), f(1 - wi)

    child = inst * words_t * pres  # W/I: words written into each child instance
    par_wi = xp.where(ps, words_u, inst * words_t) * pres
    drain = inst * F * t_c * pres
    par_w = xp.where(ps, F * u_c, inst * F * t_c) * pres
    refill = xp.where(ps, (F - D) * u_c, inst * (F - D) * t_c) * pres
    rmw = xp.where(ps, cycles[:, None, None] * u_c, macs[:, None, None]
                   * xp.ones_like(u_c)) * pres

    c_writes = real * (wif * child + of * refill)  # = fills
    c_reads = real * of * drain  # = drains
    return _Boundary(
        p_reads_t=real * (wif * par_wi + of * refill),
        p_reads_m=macf * (wif * par_wi + of * rmw),
        p_writes_t=real * of * par_w,
        p_writes_m=macf * of * rmw,
        c_writes=c_writes,
        c_reads=c_reads,
        n_reads_t=c_writes,
        n_writes_t=c_reads,
        n_reads_m=macf * (wif * child + of * rmw),
        n_writes_m=macf * of * (macs[:, None, None] * pres),
    )


def _place_on_levels(xp, f, b: _Boundary, tiles: _Tiles, nest: _Nest, s: Structure) -> Counts:
    """Sum each boundary's words onto the storage levels (its parent, its child) and the
    NoC levels it crosses."""
    n_s = s.n_storage
    par = np.transpose(s.parent, (2, 0, 1))  # [B, 3, n_s]
    lvl = np.arange(n_s)
    P1h = f((par[..., None] == lvl[None, None, None, :]).astype(np.int64))  # [B, 3, n_s, n_s]
    Sh = np.zeros((n_s, n_s), dtype=np.int64)  # child index c - 1 -> level c
    for ci in range(n_s - 1):
        Sh[ci, ci + 1] = 1
    Shf = f(Sh)

    def at_parent(v):
        return xp.transpose(xp.einsum("bxc,bxcl->bxl", v, P1h), (0, 2, 1))

    def at_child(v):
        return xp.transpose(xp.einsum("bxc,cl->bxl", v, Shf), (0, 2, 1))

    nb = np.array(s.noc_below, dtype=np.int64).reshape(-1)
    cidx = np.arange(1, n_s + 1)
    cross = ((par[..., None] < nb[None, None, None, :])
             & (nb[None, None, None, :] <= cidx[None, None, :, None])
             & (par[..., None] >= 0))  # [B, 3, n_s, n_noc]
    crf = f(cross.astype(np.int64))

    def on_noc(v):
        return xp.transpose(xp.einsum("bxc,bxcn->bxn", v, crf), (0, 2, 1))

    return Counts(
        reads_t=at_parent(b.p_reads_t) + at_child(b.c_reads),
        reads_m=at_parent(b.p_reads_m),
        writes_t=at_parent(b.p_writes_t) + at_child(b.c_writes),
        writes_m=at_parent(b.p_writes_m),
        fills=at_child(b.c_writes),
        drains=at_child(b.c_reads),
        noc_reads_t=on_noc(b.n_reads_t),
        noc_writes_t=on_noc(b.n_writes_t),
        noc_reads_m=on_noc(b.n_reads_m),
        noc_writes_m=on_noc(b.n_writes_m),
        tiles=tiles.levels[:, :n_s, :],
        cycles=nest.cycles,
        used_pes=nest.used,
        macs=nest.macs,
    )


def exact_counts_single(layer: LayerSpec, mapping: Mapping, st: ArchStructure) -> Counts:
    """Exact integer counts for one layer and mapping (numpy int64, batch of one)."""
    ms = stack_mappings([mapping])
    g = geometry([layer])
    s = structure(ms, st, g)
    return counts(np, ms.T, ms.SX, ms.SY, s, window_steps(g))

