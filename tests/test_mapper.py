"""The mapper: legal, family-conforming, deterministic, optimal within its candidate set."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import hwmodel
from hwmodel import DATAFLOW_SPECS, DATAFLOWS, DIMS, OPERANDS, LayerSpec, Workload
from hwmodel.costmodel.mapper import candidate_mappings, evaluate_stack
from hwmodel.mapping.loopnest import arch_structure, stack_mappings
from tests._archs import deep, eyeriss, flat, noc_high

LAYERS = (
    LayerSpec(name="conv3x3", kind="conv", M=32, C=16, P=14, Q=14, R=3, S=3, H=16, W=16),
    LayerSpec(name="conv11s4", kind="conv", M=48, C=3, P=27, Q=27, R=11, S=11, stride=(4, 4),
              H=115, W=115),
    LayerSpec(name="pw", kind="conv", M=64, C=32, P=7, Q=7, H=7, W=7),
    LayerSpec(name="dw", kind="conv", G=32, P=14, Q=14, R=3, S=3, H=16, W=16),
    LayerSpec(name="grouped", kind="conv", G=2, M=24, C=12, P=13, Q=13, R=3, S=3, H=15, W=15),
    LayerSpec(name="dilated", kind="conv", M=8, C=8, P=10, Q=10, R=3, S=3, dilation=(2, 2),
              H=14, W=14),
    LayerSpec(name="fc", kind="matmul", N=4, M=100, C=256),
    LayerSpec(name="qk", kind="matmul", G=8, N=16, M=16, C=32, dynamic=True),
)


@pytest.fixture(scope="module")
def arch():
    return hwmodel.load_arch("eyeriss")


@pytest.mark.parametrize("dataflow", DATAFLOWS)
def test_mappings_are_legal_and_follow_the_family(arch, dataflow):
    spec = DATAFLOW_SPECS[dataflow]
    st = arch_structure(arch)
    for layer in LAYERS:
        m = hwmodel.map_layer(layer, arch, dataflow=dataflow)
        hwmodel.validate_mapping(layer, arch, m)  # factorization, array, capacities
        assert m.dataflow == dataflow
        assert m.bounds() == layer.bounds
        for j in range(st.first_pe, st.n_storage):
            assert set(m.keep[j]) <= set(spec.pe_keep)
            for i, d in enumerate(DIMS):
                if m.temporal[j][i] > 1:
                    assert d in spec.pe_dims, (layer.name, d)
        for i, d in enumerate(DIMS):
            if m.spatial_x[i] > 1:
                assert d in spec.spatial_x
            if m.spatial_y[i] > 1:
                assert d in spec.spatial_y


@pytest.mark.parametrize("make", [eyeriss, deep, flat, noc_high])
def test_other_architectures(make):
    a = make()
    for dataflow in ("rs", "ws"):
        for layer in LAYERS[:3] + LAYERS[-2:]:
            small = dataclasses.replace(layer, M=min(layer.M, 8), C=min(layer.C, 8))
            m = hwmodel.map_layer(small, a, dataflow=dataflow)
            hwmodel.validate_mapping(small, a, m)


def test_deterministic_and_workload_matches_layers(arch):
    wl = Workload(layers=LAYERS, name="t")
    a = hwmodel.map_workload(wl, arch)
    b = hwmodel.map_workload(wl, arch)
    assert a == b
    for layer, m in zip(LAYERS, a):
        assert m == hwmodel.map_layer(layer, arch)


@pytest.mark.parametrize("objective", hwmodel.OBJECTIVES)
def test_choice_is_the_minimum_of_the_candidate_set(arch, objective):
    for layer in LAYERS[:3]:
        ms = candidate_mappings(layer, arch, "rs")
        ev = evaluate_stack(layer, arch, ms)
        met = ev.metrics
        obj = met.energy if objective == "energy" else met.energy * met.cycles
        m = hwmodel.map_layer(layer, arch, dataflow="rs", objective=objective)
        c = hwmodel.cost([layer], arch, mappings=[m])
        got = float(c.energy_pj) if objective == "energy" else float(c.energy_pj * c.cycles)
        np.testing.assert_allclose(got, obj.min(), rtol=1e-5)


def test_edp_objective_trades_energy_for_delay(arch):
    for layer in LAYERS[:3]:
        ce = hwmodel.cost([layer], arch, objective="energy")
        cd = hwmodel.cost([layer], arch, objective="edp")
        assert float(ce.energy_pj) <= float(cd.energy_pj) * (1 + 1e-6)
        assert float(cd.energy_pj * cd.cycles) <= float(ce.energy_pj * ce.cycles) * (1 + 1e-6)


def test_row_stationary_keeps_everything_in_the_rf(arch):
    m = hwmodel.map_layer(LAYERS[0], arch, dataflow="rs")
    st = arch_structure(arch)
    assert set(m.keep[st.first_pe]) == set(OPERANDS)
    # the filter rows go over PE rows and the filter row (S) stays in the RF
    assert m.spatial_y[DIMS.index("R")] == 3
    assert m.temporal[st.first_pe][DIMS.index("S")] == 3


def test_rs_beats_nlr_on_eyeriss(arch):
    """Chen et al. 2016, Fig. 10-11: RS is the most energy-efficient, NLR the least."""
    wl = Workload(layers=LAYERS[:3], name="t")
    e = {df: float(hwmodel.cost(wl, arch, dataflow=df).energy_pj) for df in DATAFLOWS}
    assert e["rs"] == min(e.values())
    assert e["nlr"] == max(e.values())


def test_no_legal_mapping_names_layer_level_and_sizes(arch):
    rf = arch.level("RF")
    tiny = dataclasses.replace(rf, capacity_bits=rf.capacity_bits * 0 + 8.0)
    bad = arch.replace(levels=tuple(tiny if l.name == "RF" else l for l in arch.levels))
    with pytest.raises(hwmodel.NoLegalMapping) as e:
        hwmodel.map_layer(LAYERS[0], bad, dataflow="ws")
    msg = str(e.value)
    assert "conv3x3" in msg and "'RF'" in msg and "W=8 b" in msg and "16 b" in msg


def test_errors(arch):
    with pytest.raises(ValueError, match="unknown dataflow 'zz'; valid: ws, os, is, rs, nlr"):
        hwmodel.map_layer(LAYERS[0], arch, dataflow="zz")
    with pytest.raises(ValueError, match="unknown objective 'time'; valid: energy, edp"):
        hwmodel.map_layer(LAYERS[0], arch, objective="time")
    with pytest.raises(TypeError, match="concrete architecture"):
        jax.jit(lambda a: hwmodel.map_layer(LAYERS[0], a).temporal[0][0])(arch)


def test_candidates_are_stacked_arrays(arch):
    ms = candidate_mappings(LAYERS[0], arch, "rs")
    assert isinstance(ms.T, np.ndarray) and ms.T.ndim == 3 and len(ms) > 10
    # every candidate factorizes the layer exactly
    prod = np.prod(ms.T, axis=1) * ms.SX * ms.SY
    assert np.all(prod == np.array([LAYERS[0].bounds[d] for d in DIMS])[None, :])
    ev = evaluate_stack(LAYERS[0], arch, stack_mappings([ms.mapping(0, arch_structure(arch)
                                                                    .storage_names)]))
    assert ev.metrics.energy[0] > 0
