"""The exact access-count formulas, written once over an array namespace.

This module turns stacked mappings (:class:`~hwmodel._mapping.MappingStack`) into
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
the PE tiles, itself a tile of the combined extents (multicast).

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

**Boundaries.**  For each operand, consecutive keeping levels ``(p, c)`` form a
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
import math

import numpy as np

from hwmodel._mapping import RELEVANT, ArchStructure, Mapping, MappingStack, stack_mappings
from hwmodel._workload import DIMS, LayerSpec

__all__ = ["Geometry", "Structure", "structure", "counts", "window_count", "geometry",
           "tile_words_single"]

GI, NI, MI, PI, QI, CI, RI, SI = range(8)
SLIDE_NONE, SLIDE_P, SLIDE_R, SLIDE_Q, SLIDE_S = range(5)


def window_count(a, b, u, d, xp=np):
    """``h(a, b, U, D)``: distinct input rows ``p*U + r*D`` for ``p < a, r < b``.

    Args:
      a, b: extents of the output (P or Q) and filter (R or S) loops (arrays).
      u, d: stride and dilation divided by their gcd (coprime integers).
      xp: array namespace.

    Returns:
      ``a*min(b, u) + max(0, b - u)*min(a, d)`` (same shape as the broadcast inputs).
    """
    return a * xp.minimum(b, u) + xp.maximum(b - u, 0) * xp.minimum(a, d)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Per-item layer geometry: bounds and reduced strides/dilations (all ``[B]``)."""

    bounds: np.ndarray  # [B, 8] int64
    uh: np.ndarray
    dh: np.ndarray
    uw: np.ndarray
    dw: np.ndarray
    stride: np.ndarray  # [B, 2] raw (U, V)
    dilation: np.ndarray  # [B, 2] raw (Dh, Dw)


def geometry(layers) -> Geometry:
    """Geometry arrays for a sequence of :class:`LayerSpec` (one row per layer)."""
    layers = list(layers)
    bounds = np.array([[getattr(l, d) for d in DIMS] for l in layers], dtype=np.int64)
    uh, dh, uw, dw = [], [], [], []
    for l in layers:
        (U, V), (Dh, Dw) = l.stride, l.dilation
        g = math.gcd(U, Dh)
        uh.append(U // g)
        dh.append(Dh // g)
        g = math.gcd(V, Dw)
        uw.append(V // g)
        dw.append(Dw // g)
    a = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    return Geometry(bounds, a(uh), a(dh), a(uw), a(dw),
                    a([l.stride for l in layers]).reshape(-1, 2),
                    a([l.dilation for l in layers]).reshape(-1, 2))


@dataclasses.dataclass(frozen=True)
class Structure:
    """Discrete decisions of the count formulas (numpy; from integer factors).

    Index ``c`` below runs over children ``1 .. n_s`` (``n_s`` = the MAC units) and is
    stored at ``c - 1``; ``x`` over operands W, I, O; positions ``k`` over the
    ``8 * n_s`` temporal loops of the flattened nest.

    Attributes:
      order: ``[B, n_s, 8]`` dim index at each nest position.
      mask_out: ``[3, n_s, B, 8 n_s]`` loops strictly outside ``k*`` (fill count).
      mask_star: ``[3, n_s, B, 8 n_s]`` the loop ``k*`` itself.
      dmask: ``[n_s, B, 8 n_s]`` O-relevant loops above the child (distinct tiles).
      slide: ``[n_s, B]`` int: sliding direction of I fills (0 none, 1 P, 2 R, 3 Q, 4 S).
      parent: ``[3, n_s, B]`` int: parent storage level of the boundary, -1 if the
        child does not keep the operand (no boundary).
      first_pe: storage index of the first per-PE level.
      n_storage: number of storage levels.
      noc_below: per NoC level, the first storage index below it.
      mac_geom: dict of ``[B]`` ints ``uh, dh, uw, dw``: reduced steps of the window
        the PEs read in one cycle when I reaches the MACs from above the array:
        PEs ``i < SP`` along P and ``j < SR`` along R read rows
        ``i*Bp*U + j*Br*Dh`` (``Bp, Br`` = the P and R factors of the per-PE levels'
        loops, which sit between the spatial loops and the MACs), a window
        ``h(SP, SR, Bp*U, Br*Dh)``.
    """

    order: np.ndarray
    mask_out: np.ndarray
    mask_star: np.ndarray
    dmask: np.ndarray
    slide: np.ndarray
    parent: np.ndarray
    first_pe: int
    n_storage: int
    noc_below: tuple[int, ...]
    mac_geom: dict


def _reduced(a, b):
    g = np.gcd(a, b)
    return a // g, b // g


def uncovered(ms: MappingStack, st: ArchStructure) -> np.ndarray:
    """``[B]`` bool: mappings outside the closed form's domain.

    The union of the per-PE I tiles seen by a shared parent is a window of the
    combined extents only if, along each direction (P/R rows, Q/S columns), every dim
    with a spatial factor > 1 has no loop with factor > 1 at a per-PE level *above*
    the child (these levels are bypassed by I; they would make the PEs' windows
    strided).  This only arises with two or more per-PE storage levels; such mappings
    are rejected by :func:`hwmodel.validate_mapping`.
    """
    n_s, A = st.n_storage, st.first_pe
    B = ms.T.shape[0]
    bad = np.zeros(B, dtype=bool)
    Sp = ms.SX * ms.SY
    for c in range(A + 1, n_s):
        # I boundary with shared parent and per-PE child c
        kept_above = ms.keep[:, :c, 1]
        idx = np.arange(c)
        p = np.where(kept_above, idx[None, :], -1).max(axis=-1)
        has = ms.keep[:, c, 1] & (p < A)
        between = np.prod(ms.T[:, A:c, :], axis=1)  # [B, 8]
        for d in (PI, RI, QI, SI):
            bad |= has & (between[:, d] > 1) & (Sp[:, d] > 1)
    return bad


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

    mask_out = np.zeros((3, n_s, B, npos), dtype=bool)
    mask_star = np.zeros((3, n_s, B, npos), dtype=bool)
    dmask = np.zeros((n_s, B, npos), dtype=bool)
    slide = np.zeros((n_s, B), dtype=np.int64)
    parent = np.full((3, n_s, B), -1, dtype=np.int64)
    keep = ms.keep  # [B, n_s, 3]
    for c in range(1, n_s + 1):
        above = pos < 8 * c  # [npos]
        for x in range(3):
            rel = RELEVANT[x][flat_dim]  # [B, npos]
            if c == n_s:
                # MAC units: refilled every cycle -> F = product of every loop.
                mask_out[x, c - 1] = True
            else:
                active = gt1 & rel & above[None, :]
                kstar = np.where(active, pos[None, :], -1).max(axis=-1)  # [B]
                mask_out[x, c - 1] = pos[None, :] < kstar[:, None]
                mask_star[x, c - 1] = pos[None, :] == kstar[:, None]
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
                if x == 2:
                    dmask[c - 1] = rel & above[None, :]
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
    mac_geom = {"uh": muh, "dh": mdh, "uw": muw, "dw": mdw}
    return Structure(order, mask_out, mask_star, dmask, slide, parent, st.first_pe, n_s,
                     st.noc_below, mac_geom)


def _tiles(xp, ext, geom):
    """W, I, O tile words for extents ``ext`` ``[B, 8]`` -> three ``[B]`` arrays."""
    G, N, M, P, Q, C, R, S = (ext[:, k] for k in range(8))
    rows = window_count(P, R, geom["uh"], geom["dh"], xp)
    cols = window_count(Q, S, geom["uw"], geom["dw"], xp)
    return G * M * C * R * S, G * N * C * rows * cols, G * N * M * P * Q


def _slide_delta(xp, ext, geom, slide, full):
    """Words newly fetched by one sliding step of the I tile with extents ``ext``.

    ``slide`` (numpy ``[B]``) picks the direction; where it is 0 the result is ``full``
    (the whole tile: no sliding).
    """
    G, N, M, P, Q, C, R, S = (ext[:, k] for k in range(8))
    uh, dh, uw, dw = geom["uh"], geom["dh"], geom["uw"], geom["dw"]
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


def counts(xp, T, SX, SY, s: Structure, geom: dict) -> dict:
    """Access counts for stacked mappings.

    Args:
      xp: ``numpy`` (exact, int64 inputs) or ``jax.numpy`` (float inputs).
      T: ``[B, n_s, 8]`` temporal factors (may be scaled continuously in the JAX path;
        the structure ``s`` always comes from the integer factors).
      SX, SY: ``[B, 8]`` spatial factors.
      s: :func:`structure` of the integer mapping.
      geom: dict of ``[B]`` arrays ``uh, dh, uw, dw`` (reduced strides/dilations).

    Returns:
      dict of arrays (``B`` leading; storage levels ``n_s``; NoC levels ``n_noc``):
        ``reads_t, writes_t`` ``[B, n_s, 3]``: fill / drain traffic (tiles moving
        between levels); ``reads_m, writes_m`` ``[B, n_s, 3]``: per-MAC operand
        accesses; ``fills`` ``[B, n_s, 3]`` words written into a level from its parent;
        ``drains`` ``[B, n_s, 3]`` words read out of a level back to its parent (O);
        ``noc_reads_t, noc_writes_t, noc_reads_m, noc_writes_m`` ``[B, n_noc, 3]``;
        ``tiles`` ``[B, n_s, 3]`` tile words per instance; ``cycles`` ``[B]``
        (product of temporal factors); ``used_pes`` ``[B]``; ``macs`` ``[B]``.
    """
    n_s = s.n_storage
    B = T.shape[0]
    npos = 8 * n_s
    A = s.first_pe
    flat_f = xp.take_along_axis(T, xp.asarray(s.order), axis=-1).reshape(B, npos)
    Sp = SX * SY
    one = xp.ones_like(Sp)
    # suffix extents E[j] = prod_{levels >= j} T
    E = [None] * (n_s + 1)
    E[n_s] = one
    for j in range(n_s - 1, -1, -1):
        E[j] = E[j + 1] * T[:, j, :]
    used = xp.prod(Sp, axis=-1)
    cycles = xp.prod(flat_f, axis=-1)
    macs = cycles * used

    tiles_pi = []  # per-instance tile per storage level
    for j in range(n_s):
        ext = E[j] * Sp if j < A else E[j]
        tiles_pi.append(_tiles(xp, ext, geom))

    zeros_s = xp.zeros((B, n_s), dtype=flat_f.dtype)
    n_noc = len(s.noc_below)
    acc = {
        k: [zeros_s, zeros_s, zeros_s]
        for k in ("reads_t", "writes_t", "reads_m", "writes_m", "fills", "drains")
    }
    zeros_n = xp.zeros((B, max(n_noc, 1)), dtype=flat_f.dtype)
    nacc = {k: [zeros_n, zeros_n, zeros_n] for k in ("noc_reads_t", "noc_writes_t",
                                                     "noc_reads_m", "noc_writes_m")}
    lvl_ids = np.arange(n_s)
    noc_ids = np.arange(max(n_noc, 1))

    def at_parent(p):  # [B] int -> [B, n_s] one-hot (numpy -> xp)
        return xp.asarray((p[:, None] == lvl_ids[None, :]).astype(np.int64)).astype(flat_f.dtype)

    def at_level(c):
        return xp.asarray((lvl_ids == c).astype(np.int64)).astype(flat_f.dtype)[None, :]

    def at_noc(mask_k):  # mask_k: [B, n_noc] numpy bool
        return xp.asarray(mask_k.astype(np.int64)).astype(flat_f.dtype)

    def add(store, key, x, val_bs):
        store[key][x] = store[key][x] + val_bs

    def prodm(mask):
        return xp.prod(xp.where(xp.asarray(mask), flat_f, xp.ones_like(flat_f)), axis=-1)

    for c in range(1, n_s + 1):
        is_mac = c == n_s
        inst = used if c >= A else xp.ones_like(used)
        if is_mac:
            t3 = (xp.ones_like(used),) * 3
        else:
            t3 = tiles_pi[c]
        ext_u = (E[c] if not is_mac else one) * Sp
        if is_mac:
            mg = {k: xp.asarray(v).astype(flat_f.dtype) for k, v in s.mac_geom.items()}
            u3 = _tiles(xp, ext_u, mg)
        else:
            u3 = _tiles(xp, ext_u, geom)
        ext_t = E[c] * Sp if (not is_mac and c < A) else (E[c] if not is_mac else one)
        for x in range(3):
            p = s.parent[x, c - 1]  # [B]
            present = p >= 0
            if not present.any():
                continue
            pres = xp.asarray(present.astype(np.int64)).astype(flat_f.dtype)
            par_shared = p < A  # [B] numpy bool (parent above the array)
            par_shared_x = xp.asarray(par_shared)
            fo = prodm(s.mask_out[x, c - 1])
            fs = prodm(s.mask_star[x, c - 1])
            t, u = t3[x], u3[x]
            onehot_p = at_parent(p)
            # NoC crossings: p < noc_below <= c
            nb = np.array(s.noc_below, dtype=np.int64).reshape(-1)
            if n_noc:
                cross = (p[:, None] < nb[None, :]) & (nb[None, :] <= c) & present[:, None]
            else:
                cross = np.zeros((B, 1), dtype=bool)
            cross_x = at_noc(cross)
            if x in (0, 1):
                if x == 1 and not is_mac:
                    dt = _slide_delta(xp, ext_t, geom, s.slide[c - 1], t)
                    du = _slide_delta(xp, ext_u, geom, s.slide[c - 1], u)
                else:
                    dt, du = t, u
                words_t = fo * (t + (fs - 1) * dt)
                words_u = fo * (u + (fs - 1) * du)
                child = inst * words_t * pres
                par = xp.where(par_shared_x, words_u, inst * words_t) * pres
                if is_mac:
                    add(acc, "reads_m", x, onehot_p * par[:, None])
                    add(nacc, "noc_reads_m", x, cross_x * child[:, None])
                else:
                    add(acc, "writes_t", x, at_level(c) * child[:, None])
                    add(acc, "fills", x, at_level(c) * child[:, None])
                    add(acc, "reads_t", x, onehot_p * par[:, None])
                    add(nacc, "noc_reads_t", x, cross_x * child[:, None])
            else:
                if is_mac:
                    rmw = xp.where(par_shared_x, cycles * u, macs) * pres
                    add(acc, "reads_m", x, onehot_p * rmw[:, None])
                    add(acc, "writes_m", x, onehot_p * rmw[:, None])
                    add(nacc, "noc_reads_m", x, cross_x * rmw[:, None])
                    add(nacc, "noc_writes_m", x, cross_x * (macs * pres)[:, None])
                else:
                    F = fo * fs
                    D = prodm(s.dmask[c - 1])
                    drain = inst * F * t * pres
                    par_w = xp.where(par_shared_x, F * u, inst * F * t) * pres
                    refill = xp.where(par_shared_x, (F - D) * u, inst * (F - D) * t) * pres
                    add(acc, "reads_t", x, at_level(c) * drain[:, None])
                    add(acc, "drains", x, at_level(c) * drain[:, None])
                    add(acc, "writes_t", x, onehot_p * par_w[:, None])
                    add(acc, "reads_t", x, onehot_p * refill[:, None])
                    add(acc, "writes_t", x, at_level(c) * refill[:, None])
                    add(acc, "fills", x, at_level(c) * refill[:, None])
                    add(nacc, "noc_reads_t", x, cross_x * refill[:, None])
                    add(nacc, "noc_writes_t", x, cross_x * drain[:, None])

    out = {k: xp.stack(v, axis=-1) for k, v in acc.items()}
    for k, v in nacc.items():
        arr = xp.stack(v, axis=-1)
        out[k] = arr[:, :n_noc, :]
    out["tiles"] = xp.stack([xp.stack(tp, axis=-1) for tp in tiles_pi], axis=1)
    out["cycles"] = cycles
    out["used_pes"] = used
    out["macs"] = macs
    return out


def geom_dict(g: Geometry, xp=np, dtype=None) -> dict:
    """Geometry as a dict of ``xp`` arrays (``dtype`` for the JAX path)."""
    out = {}
    for k in ("uh", "dh", "uw", "dw"):
        v = getattr(g, k)
        out[k] = xp.asarray(v) if dtype is None else xp.asarray(v, dtype=dtype)
    return out


def exact_counts_single(layer: LayerSpec, mapping: Mapping, st: ArchStructure) -> dict:
    """Exact integer counts for one layer and mapping (numpy int64, batch of one)."""
    ms = stack_mappings([mapping])
    g = geometry([layer])
    s = structure(ms, st, g)
    return counts(np, ms.T, ms.SX, ms.SY, s, geom_dict(g))


def tile_words_single(layer: LayerSpec, mapping: Mapping, st: ArchStructure) -> np.ndarray:
    """Per-instance tile words ``[n_s, 3]`` of every storage level (int64)."""
    return exact_counts_single(layer, mapping, st)["tiles"][0]
