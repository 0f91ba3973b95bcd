"""The mapper's search: exact over its space, sound prunes, bounded memory, deep hierarchies.

* ``map_layer`` returns the minimum of an independent brute-force enumeration of the
  space (declarative rules, every order combination evaluated) on tiny layers;
* ``candidate_mappings`` enumerates exactly the brute force's factorizations;
* equal order signatures give identical counts and :data:`ORDER_CLASSES` realize every
  permutation's signature; energy and every count are separable by level in the orders;
* a tiny memory cap forces many chunks, stays under the cap (tracemalloc) and gives the
  same mapping; five-level hierarchies map.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import tracemalloc

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

import hwmodel
from hwmodel import DATAFLOW_SPECS, DIMS, OPERANDS, LayerSpec
from hwmodel.costmodel.counts import exact_counts_single
from hwmodel.costmodel.mapper import (
    NEAR_MAXIMAL,
    ORDER_CLASSES,
    _build_space,
    _signatures,
    candidate_mappings,
    clear_cache,
    evaluate_stack,
)
from hwmodel.mapping.dataflows import ORDER_TEMPLATES
from hwmodel.mapping.loopnest import (
    DIM_INDEX,
    RELEVANT,
    Mapping,
    MappingStack,
    arch_structure,
    stack_mappings,
)
from hwmodel.mapping.tiles import geometry, tile_words, uncovered, window_steps
from tests._archs import INF, eyeriss, level, make_arch, random_mapping


# ----------------------------------------------------------------------------------
# architectures: small capacities so that every constraint binds on tiny layers
# ----------------------------------------------------------------------------------
def small3(rows=3, cols=3):
    """DRAM, a 48-word pooled GLB (I, O), NoC, RF (W 6, I 4, O 4 words)."""
    return make_arch([
        level("DRAM", "dram", "WIO", read=(200.0, 210.0, 220.0), bw=2.0),
        level("GLB", "sram", "IO", shared=48 * 16, read=(6.0, 6.5, 7.0), bw=8.0),
        level("NoC", "noc", (), read=(2.0, 2.1, 2.2)),
        level("RF", "rf", "WIO", per_pe=True, cap=(6 * 16, 4 * 16, 4 * 16),
              read=(1.0, 1.1, 1.2)),
    ], rows, cols, name="small3")


def small4(rows=2, cols=3):
    """DRAM, L2 (W, I, O pooled 64 words), L1 (W 16, O 8 words), NoC, RF per PE."""
    return make_arch([
        level("DRAM", "dram", "WIO", read=(100.0, 110.0, 120.0), write=(130.0, 140.0, 150.0)),
        level("L2", "sram", "WIO", shared=64 * 16, read=(9.0, 9.5, 10.0), bw=4.0),
        level("L1", "sram", "WO", cap=(16 * 16, INF, 8 * 16), read=(4.0, 4.5, 5.0)),
        level("NoC", "noc", (), read=(2.0, 2.5, 3.0)),
        level("RF", "rf", "WIO", per_pe=True, cap=(4 * 16, 3 * 16, 2 * 16), read=(1.0, 1.1, 1.2)),
    ], rows, cols, name="small4")


def zigzag5(rows=12, cols=14):
    """Five storage levels like ZigZag's eyeriss_like with its partitions unmerged:
    DRAM, a 1 MB I/O SRAM, a 64 KB W SRAM, an 8 KB O SRAM, per-PE RFs."""
    wb = 8.0
    return make_arch([
        level("dram", "dram", "WIO", read=(125.0, 125.0, 250.0), bw=4.0),
        level("sram_1M", "sram", "IO", shared=8 * 2**20, read=(0.0, 2.08, 4.17),
              write=(0.0, 2.71, 5.42), bw=24.0),
        level("sram_64KB", "sram", "W", cap=(8 * 64 * 1024, INF, INF), read=(1.25, 0.0, 0.0),
              write=(1.5625, 0.0, 0.0), bw=32.0),
        level("sram_8KB", "sram", "O", cap=(INF, INF, 8 * 8 * 1024), read=(0.0, 0.0, 1.25),
              write=(0.0, 0.0, 1.875), bw=8.0),
        level("RF", "rf", "WIO", per_pe=True, cap=(8 * 64, 8 * 64, 8 * 16), read=(1.0, 1.0, 1.5),
              write=(1.5, 1.5, 2.0), bw=7.0),
    ], rows, cols, name="zigzag5", word_bits=wb, mac=0.5, nonmac=0.0)


# ----------------------------------------------------------------------------------
# brute force: the space by its declarative definition, every order combination
# ----------------------------------------------------------------------------------
def _divs(n):
    return [d for d in range(1, n + 1) if n % d == 0]


def _splits(n, k):
    """Ordered tuples of k positive ints whose product divides n."""
    if k == 0:
        return [()]
    return [(d,) + rest for d in _divs(n) for rest in _splits(n // d, k - 1)]


def _axis_ok(dims, bounds, limit, maximal):
    """Spatial assignments of one axis allowed by the space (as dicts dim -> factor)."""
    combos = [dict(zip(dims, c)) for c in itertools.product(*[_divs(bounds[d]) for d in dims])]
    combos = [c for c in combos if math.prod(c.values()) <= limit]
    if not maximal or not dims:
        return combos
    best = max(math.prod(c.values()) for c in combos)
    out = []
    for c in combos:
        p = math.prod(c.values())
        grow = any(
            p // c[d] * nxt <= limit
            for d in dims
            for nxt in [min([x for x in _divs(bounds[d]) if x > c[d]], default=0)]
            if nxt
        )
        if not grow or p * NEAR_MAXIMAL >= best:
            out.append(c)
    return out


def brute_force(layer, arch, dataflow, *, all_spatial=False):
    """Every (factorization, order combination) of the space, as a MappingStack."""
    spec = DATAFLOW_SPECS[dataflow]
    stc = arch_structure(arch)
    n_s, A = stc.n_storage, stc.first_pe
    rows, cols = int(np.asarray(arch.pe_rows)), int(np.asarray(arch.pe_cols))
    bounds = [getattr(layer, d) for d in DIMS]
    pe_keep = [x in spec.pe_keep for x in OPERANDS]
    keep = [[h and (pe_keep[i] if j >= A else True) for i, h in enumerate(stc.holds[j])]
            for j in range(n_s)]
    keep[0] = [True] * 3
    sx_dims = [DIM_INDEX[d] for d in spec.spatial_x if bounds[DIM_INDEX[d]] > 1]
    sy_dims = [DIM_INDEX[d] for d in spec.spatial_y
               if bounds[DIM_INDEX[d]] > 1 and DIM_INDEX[d] not in sx_dims]
    ax = _axis_ok(sx_dims, bounds, cols, not all_spatial)
    ay = _axis_ok(sy_dims, bounds, rows, not all_spatial)
    allowed = {}
    for j in range(1, n_s):
        if j >= A:
            ok = [DIM_INDEX[d] for d in spec.pe_dims] if any(keep[j]) else []
        else:
            ok = list(range(8))
        allowed[j] = [d for d in ok if bounds[d] > 1]
    # per dim: (sx, sy, t_1 .. t_{n_s-1}) with the family's restrictions
    per_dim = []
    for d in range(8):
        opts = []
        for tup in _splits(bounds[d], n_s + 1):
            sxv, syv, ts = tup[0], tup[1], tup[2:]
            if sxv > 1 and d not in sx_dims or syv > 1 and d not in sy_dims:
                continue
            if any(t > 1 and d not in allowed[j + 1] for j, t in enumerate(ts)):
                continue
            opts.append(tup)
        per_dim.append(opts)
    size = math.prod(len(o) for o in per_dim)
    assume(size <= 60_000)
    combos = np.array([list(itertools.chain.from_iterable(c))
                       for c in itertools.product(*per_dim)], dtype=np.int64)
    combos = combos.reshape(len(combos), 8, n_s + 1)
    SX, SY = combos[:, :, 0], combos[:, :, 1]
    T = np.ones((len(combos), n_s, 8), dtype=np.int64)
    T[:, 1:, :] = np.transpose(combos[:, :, 2:], (0, 2, 1))
    T[:, 0, :] = np.array(bounds)[None, :] // (SX * SY * np.prod(T[:, 1:, :], axis=1))
    ok = np.zeros(len(combos), dtype=bool)
    axs = {tuple(sorted(c.items())) for c in ax}
    ays = {tuple(sorted(c.items())) for c in ay}
    for i in range(len(combos)):
        ok[i] = (tuple((d, int(SX[i, d])) for d in sorted(sx_dims)) in axs
                 and tuple((d, int(SY[i, d])) for d in sorted(sy_dims)) in ays)
    g = geometry([layer])
    geom = window_steps(g).map(lambda v: int(v[0]))
    wb = np.asarray(arch.word_bits, dtype=np.float64)

    def fits(j, ext):
        lvl = arch.levels[stc.storage[j]]
        cap = np.asarray(lvl.capacity_bits, dtype=np.float64)
        shared = float(np.asarray(lvl.shared_bits))
        t = tile_words(np, ext, geom)
        good = np.ones(len(ext), dtype=bool)
        tot = np.zeros(len(ext))
        for x in range(3):
            if keep[j][x]:
                good &= t[x] * wb[x] <= cap[x]
                tot = tot + t[x] * wb[x]
        return good & (tot <= shared)

    def ext_of(j, TT):
        e = np.prod(TT[:, j:, :], axis=1)
        return e * SX * SY if j < A else e

    for j in range(n_s):
        ok &= fits(j, ext_of(j, T))
    for j in range(1, n_s):
        rel = np.array([any(RELEVANT[x][d] for x in range(3) if keep[j][x]) for d in range(8)])
        for d in allowed[j]:
            if not rel[d]:
                continue
            inner = SX[:, d] * SY[:, d] * np.prod(T[:, j + 1:, d], axis=1)
            rem = bounds[d] // inner
            for i in np.nonzero(ok)[0]:
                nxt = [x for x in _divs(int(rem[i])) if x > T[i, j, d]]
                if nxt:
                    T2 = T[i:i + 1].copy()
                    T2[0, j, d] = nxt[0]
                    e = np.prod(T2[:, j:, :], axis=1)
                    e = e * SX[i:i + 1] * SY[i:i + 1] if j < A else e
                    if fits(j, e)[0]:
                        ok[i] = False
    keepa = np.broadcast_to(np.array(keep)[None], (len(T), n_s, 3))
    ms = MappingStack(T, np.zeros_like(T), SX, SY, keepa)
    ok &= ~uncovered(ms, stc)
    T, SX, SY = T[ok], SX[ok], SY[ok]
    if not len(T) and not all_spatial:
        return brute_force(layer, arch, dataflow, all_spatial=True)
    choices = []
    for j in range(n_s):
        if j >= A:
            names = [ORDER_TEMPLATES[spec.array_orders[0]]]
        elif j == A - 1 and j > 0:
            names = [ORDER_TEMPLATES[k] for k in spec.array_orders]
        else:
            names = list(ORDER_TEMPLATES.values()) + list(ORDER_CLASSES)
        choices.append([np.array([DIM_INDEX[d] for d in o]) for o in names])
    combos_o = np.array([np.stack(c) for c in itertools.product(*choices)])  # [no, n_s, 8]
    no = len(combos_o)
    K = len(T)
    return MappingStack(np.repeat(T, no, 0), np.tile(combos_o, (K, 1, 1)),
                        np.repeat(SX, no, 0), np.repeat(SY, no, 0),
                        np.broadcast_to(np.array(keep)[None], (K * no, n_s, 3)).copy())


def _objective(ev, objective):
    m = ev.metrics
    return m.energy if objective == "energy" else m.energy * m.cycles


@st.composite
def tiny(draw):
    kind = draw(st.sampled_from(("conv", "strided", "dilated", "dense", "grouped")))
    small = st.sampled_from((1, 2, 3, 4))
    if kind == "dense":
        return LayerSpec(name="fc", kind="matmul", N=draw(st.sampled_from((1, 2))),
                         M=draw(st.sampled_from((2, 3, 4, 6))), C=draw(st.sampled_from((2, 4, 6))))
    G = 2 if kind == "grouped" else 1
    U = V = Dh = Dw = 1
    if kind == "strided":
        U, V = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    if kind == "dilated":
        Dh, Dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    M, C, P, Q = draw(small), draw(small), draw(small), draw(st.sampled_from((1, 2)))
    R, S = draw(st.sampled_from((1, 2, 3))), draw(st.sampled_from((1, 2)))
    return LayerSpec(name=kind, kind="conv", G=G, M=M, C=C, P=P, Q=Q, R=R, S=S,
                     stride=(U, V), dilation=(Dh, Dw), H=(P - 1) * U + (R - 1) * Dh + 1,
                     W=(Q - 1) * V + (S - 1) * Dw + 1)


def _check_against_brute_force(layer, arch, dataflow, objective):
    clear_cache()
    ref = brute_force(layer, arch, dataflow)
    if len(ref) == 0:
        with pytest.raises(hwmodel.NoLegalMapping):
            hwmodel.map_layer(layer, arch, dataflow=dataflow, objective=objective)
        return
    ev = evaluate_stack(layer, arch, ref)
    best = float(_objective(ev, objective).min())
    m = hwmodel.map_layer(layer, arch, dataflow=dataflow, objective=objective)
    hwmodel.validate_mapping(layer, arch, m)
    got = float(_objective(evaluate_stack(layer, arch, stack_mappings([m])), objective)[0])
    assert got == pytest.approx(best, rel=1e-9), (layer, dataflow, objective, got / best)
    # and the materialized space has exactly the brute force's factorizations
    cm = candidate_mappings(layer, arch, dataflow)
    key = lambda ms: {(ms.T[i].tobytes(), ms.SX[i].tobytes(), ms.SY[i].tobytes())  # noqa: E731
                      for i in range(len(ms))}
    assert key(cm) == key(ref)


@settings(max_examples=25)
@given(layer=tiny(), dataflow=st.sampled_from(hwmodel.DATAFLOWS),
       objective=st.sampled_from(hwmodel.OBJECTIVES))
def test_choice_equals_brute_force_three_levels(layer, dataflow, objective):
    """One outer level with every loop order (35 choices), the array level, the RF."""
    _check_against_brute_force(layer, small3(), dataflow, objective)


@settings(max_examples=12)
@given(layer=tiny(), dataflow=st.sampled_from(("rs", "ws", "os")),
       objective=st.sampled_from(hwmodel.OBJECTIVES))
def test_choice_equals_brute_force_four_levels(layer, dataflow, objective):
    """Two outer levels with every loop order: 35 x 35 combinations per factorization,
    decided per level by the mapper."""
    _check_against_brute_force(layer, small4(), dataflow, objective)


# ----------------------------------------------------------------------------------
# the sound prunes: order signatures, order classes, separability
# ----------------------------------------------------------------------------------
def _with_order(m: Mapping, j: int, order) -> Mapping:
    o = list(m.order)
    o[j] = tuple(order)
    return Mapping(m.levels, m.temporal, tuple(o), m.spatial_x, m.spatial_y, m.keep)


def _count_fields(c) -> list[str]:
    return [f.name for f in dataclasses.fields(c)]


def _counts_equal(a, b) -> bool:
    return all(np.array_equal(getattr(a, k), getattr(b, k)) for k in _count_fields(a))


ARCHS = {"small3": small3, "small4": small4, "eyeriss": lambda: eyeriss(rows=4, cols=4)}


@settings(max_examples=30)
@given(layer=tiny(), arch=st.sampled_from(sorted(ARCHS)), seed=st.integers(0, 2**31 - 1))
def test_equal_signature_equal_counts_and_classes_cover_every_permutation(layer, arch, seed):
    a = ARCHS[arch]()
    stc = arch_structure(a)
    rng = random.Random(seed)
    m = random_mapping(layer, a, rng)
    j = rng.randrange(stc.n_storage)
    Tj = np.array([m.temporal[j]], dtype=np.int64)
    perm = list(DIMS)
    rng.shuffle(perm)
    sig = _signatures(Tj, np.array([DIM_INDEX[d] for d in perm]))[0]
    reps = [o for o in ORDER_CLASSES
            if _signatures(Tj, np.array([DIM_INDEX[d] for d in o]))[0] == sig]
    assert reps, (perm, m.temporal[j])  # the 32 classes realize this permutation's signature
    base = exact_counts_single(layer, _with_order(m, j, perm), stc)
    for o in reps[:3]:
        assert _counts_equal(base, exact_counts_single(layer, _with_order(m, j, o), stc))


def test_classes_cover_all_permutations_exhaustively():
    """All 8! orders, a few factor patterns: every signature is one of the 32 classes'."""
    perms = np.array(list(itertools.permutations(range(8))), dtype=np.int64)
    rng = np.random.default_rng(0)
    for _ in range(4):
        f = np.where(rng.random(8) < 0.7, 2, 1)[None, :].astype(np.int64)
        fp = f[0][perms]  # [n, 8] factors in each order
        got = set()
        # vectorized signature of every permutation (same rule as _signatures)
        nz = fp > 1
        pos = np.arange(8)
        sig = np.zeros(len(perms), dtype=np.int64)
        for x in range(3):
            act = nz & RELEVANT[x][perms]
            kx = np.where(act, pos[None, :], -1).max(axis=1)
            upto = pos[None, :] < kx[:, None] if x == 1 else pos[None, :] <= kx[:, None]
            sig |= ((nz & upto) * (np.int64(1) << perms)).sum(axis=1) << (8 * x)
            if x == 1:
                sig |= np.where(kx >= 0, perms[np.arange(len(perms)), np.maximum(kx, 0)], 15) << 24
        got = set(sig.tolist())
        cls = {int(_signatures(f, np.array([DIM_INDEX[d] for d in o]))[0]) for o in ORDER_CLASSES}
        assert got <= cls
        assert len(cls) >= len(got) > 1


@settings(max_examples=30)
@given(layer=tiny(), arch=st.sampled_from(sorted(ARCHS)), seed=st.integers(0, 2**31 - 1))
def test_counts_are_separable_by_level_in_the_orders(layer, arch, seed):
    """Every count of a mapping with orders o equals the default's plus, per level, the
    change from setting that level's order alone (integers, exactly)."""
    a = ARCHS[arch]()
    stc = arch_structure(a)
    rng = random.Random(seed)
    m = random_mapping(layer, a, rng)
    other = []
    for _ in range(stc.n_storage):
        o = list(DIMS)
        rng.shuffle(o)
        other.append(tuple(o))
    full = m
    for j in range(stc.n_storage):
        full = _with_order(full, j, other[j])
    c0 = exact_counts_single(layer, m, stc)
    cf = exact_counts_single(layer, full, stc)
    deltas = [exact_counts_single(layer, _with_order(m, j, other[j]), stc)
              for j in range(stc.n_storage)]
    for k in _count_fields(c0):
        want = getattr(c0, k) + sum(getattr(d, k) - getattr(c0, k) for d in deltas)
        np.testing.assert_array_equal(getattr(cf, k), want, err_msg=k)


# ----------------------------------------------------------------------------------
# memory bound, deep hierarchies, cache
# ----------------------------------------------------------------------------------
MID = LayerSpec(name="mid", kind="conv", M=48, C=32, P=13, Q=13, R=3, S=3, H=15, W=15)


def test_tiny_memory_cap_same_answer_and_respected():
    """1 MiB (the fixed overhead is about 0.3 MiB): many chunks, the same mapping."""
    a = zigzag5()
    clear_cache()
    ref = hwmodel.map_layer(MID, a, dataflow="rs")
    cap = 1 << 20
    clear_cache()
    tracemalloc.start()
    try:
        got = hwmodel.map_layer(MID, a, dataflow="rs", max_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got == ref
    assert peak <= cap, peak
    from hwmodel.costmodel.mapper import _search

    _, stats, _ = _search(MID, a, "rs", "energy", all_spatial=False, max_bytes=cap)
    assert stats["chunks"] > 5  # the cap really forced many chunks
    with pytest.raises(ValueError, match="max_bytes"):
        candidate_mappings(MID, a, "rs", max_bytes=4096)
    with pytest.raises(ValueError, match="max_bytes must be a positive int"):
        hwmodel.map_layer(MID, a, max_bytes=0)


def test_five_level_hierarchy_maps_conv2_within_memory():
    """AlexNet conv2 on a ZigZag-eyeriss_like-style hierarchy with five storage levels
    (the old mapper needed > 20 GB here)."""
    a = zigzag5()
    conv2 = LayerSpec(name="conv2", kind="conv", G=2, M=128, C=48, P=27, Q=27, R=5, S=5,
                      H=31, W=31)
    cap = 64 * 2**20
    clear_cache()
    tracemalloc.start()
    try:
        m = hwmodel.map_layer(conv2, a, dataflow="rs", max_bytes=cap)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    hwmodel.validate_mapping(conv2, a, m)
    assert peak <= cap
    assert len(m.levels) == 5
    c = hwmodel.cost([conv2], a, mappings=[m])
    assert float(c.energy_pj) > 0 and int(c.macs_dense) == conv2.macs


def test_cache_and_identical_shapes():
    a = small3()
    clear_cache()
    l1 = LayerSpec(name="a", kind="conv", M=4, C=2, P=4, Q=2, R=3, S=1, H=6, W=2)
    l2 = LayerSpec(name="b", kind="conv", M=4, C=2, P=4, Q=2, R=3, S=1, H=6, W=2)
    m1 = hwmodel.map_layer(l1, a)
    assert hwmodel.map_layer(l2, a) is m1  # same shape: one search
    b = a.replace(mac_energy_pj=a.mac_energy_pj * 2)  # other values: searched again
    assert hwmodel.map_layer(l1, b) is not m1
    maps = hwmodel.map_workload([l1, l2, l1], a)
    assert maps[0] is maps[1] is maps[2]
