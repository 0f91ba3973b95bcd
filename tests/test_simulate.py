"""Exactness: the analytic counts equal the brute-force simulator's, integer for integer."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, strategies as st

from hwmodel import LayerSpec
from hwmodel.costmodel.counts import exact_counts_single, structure
from hwmodel.mapping.loopnest import arch_structure, stack_mappings
from hwmodel.mapping.tiles import geometry, window_count
from hwmodel.costmodel.simulate import simulate
from tests._archs import ALL_TEST_ARCHS, eyeriss, random_mapping

KINDS = ("conv", "grouped", "depthwise", "strided", "dilated", "dense", "attention")


@st.composite
def tiny_layers(draw, kind=None):
    kind = kind or draw(st.sampled_from(KINDS))
    small = st.integers(1, 4)
    if kind == "dense":
        return LayerSpec(name="fc", kind="matmul", N=draw(small), M=draw(st.integers(1, 6)),
                         C=draw(st.integers(1, 6)))
    if kind == "attention":
        return LayerSpec(name="qk", kind="matmul", G=draw(st.integers(1, 3)),
                         N=draw(small), M=draw(small), C=draw(small), dynamic=True)
    G, M, C = 1, draw(small), draw(small)
    if kind == "grouped":
        G = draw(st.integers(2, 3))
    if kind == "depthwise":
        G, M, C = draw(st.integers(2, 4)), 1, 1
    U = V = Dh = Dw = 1
    if kind == "strided":
        U, V = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    if kind == "dilated":
        Dh, Dw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    P, Q = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    R, S = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    N = draw(st.integers(1, 2))
    H = (P - 1) * U + (R - 1) * Dh + 1
    W = (Q - 1) * V + (S - 1) * Dw + 1
    layer = LayerSpec(name=kind, kind="conv", G=G, N=N, M=M, C=C, P=P, Q=Q, R=R, S=S,
                      stride=(U, V), dilation=(Dh, Dw), H=H, W=W)
    return layer


def _compare(layer, arch, m):
    sim = simulate(layer, arch, m)
    stc = arch_structure(arch)
    an = exact_counts_single(layer, m, stc)
    pairs = (("reads", ("reads_t", "reads_m")), ("writes", ("writes_t", "writes_m")),
             ("fills", ("fills",)), ("drains", ("drains",)), ("mac_reads", ("reads_m",)),
             ("mac_writes", ("writes_m",)))
    for j, name in enumerate(stc.storage_names):
        for x, op in enumerate("WIO"):
            for key, akeys in pairs:
                a = sum(int(getattr(an, k)[0, j, x]) for k in akeys)
                assert a == sim[key][name][op], (key, name, op, a, sim[key][name][op],
                                                 m.describe(stc.first_pe))
    for k, li in enumerate(stc.noc):
        name = stc.level_names[li]
        for x, op in enumerate("WIO"):
            for key, akeys in (("noc_reads", ("noc_reads_t", "noc_reads_m")),
                               ("noc_writes", ("noc_writes_t", "noc_writes_m"))):
                a = sum(int(getattr(an, kk)[0, k, x]) for kk in akeys)
                assert a == sim[key][name][op], (key, name, op, a, sim[key][name][op])
    assert int(an.macs[0]) == sim["macs"] == layer.macs
    assert int(an.cycles[0]) == sim["cycles"]
    assert int(an.used_pes[0]) == sim["used_pes"]


@pytest.mark.parametrize("arch_name", sorted(ALL_TEST_ARCHS))
@given(layer=tiny_layers(), seed=st.integers(0, 2**31 - 1))
def test_analytic_equals_simulator(arch_name, layer, seed):
    arch = ALL_TEST_ARCHS[arch_name]()
    m = random_mapping(layer, arch, random.Random(seed))
    _compare(layer, arch, m)


@pytest.mark.parametrize("kind", KINDS)
@given(data=st.data())
def test_every_layer_kind_on_eyeriss(kind, data):
    layer = data.draw(tiny_layers(kind))
    seed = data.draw(st.integers(0, 2**31 - 1))
    arch = eyeriss()
    m = random_mapping(layer, arch, random.Random(seed), keep_prob=0.9)
    _compare(layer, arch, m)


def test_sliding_and_refills_are_exercised():
    """The random mappings do hit the sliding-window and psum-refill rules."""
    rng = random.Random(0)
    layer = LayerSpec(name="c", kind="conv", N=2, M=4, C=3, P=4, Q=3, R=3, S=2, H=6, W=4)
    slides = refills = 0
    for _ in range(40):
        arch = eyeriss()
        m = random_mapping(layer, arch, rng)
        s = structure(stack_mappings([m]), arch_structure(arch), geometry([layer]))
        slides += bool((s.slide != 0).any())
        an = exact_counts_single(layer, m, arch_structure(arch))
        refills += bool(an.fills[0, :, 2].sum() > 0)
    assert slides >= 5 and refills >= 5


@given(a=st.integers(1, 12), b=st.integers(1, 12), U=st.integers(1, 6), D=st.integers(1, 6))
def test_window_formula_equals_set_count(a, b, U, D):
    import math
    g = math.gcd(U, D)
    brute = len({p * U + r * D for p in range(a) for r in range(b)})
    assert int(window_count(np.int64(a), np.int64(b), U // g, D // g)) == brute


def test_strided_1x1_touches_a_rows():
    # a 1x1 stride-2 conv touches a rows, not 2a - 1
    assert int(window_count(np.int64(5), np.int64(1), 2, 1)) == 5


@pytest.mark.parametrize("dataflow", ("ws", "os", "is", "rs", "nlr"))
@given(layer=tiny_layers(), seed=st.integers(0, 2**31 - 1))
def test_every_dataflow_family_matches_simulator(dataflow, layer, seed):
    """The mapper's choice and random members of each family's candidate set."""
    import hwmodel
    from hwmodel.costmodel.mapper import candidate_mappings
    from hwmodel.mapping.loopnest import arch_structure as _st

    arch = eyeriss(rows=4, cols=4)
    m = hwmodel.map_layer(layer, arch, dataflow=dataflow)
    _compare(layer, arch, m)
    ms = candidate_mappings(layer, arch, dataflow)
    rng = random.Random(seed)
    names = _st(arch).storage_names
    for i in rng.sample(range(len(ms)), min(2, len(ms))):
        _compare(layer, arch, ms.mapping(i, names, dataflow))
