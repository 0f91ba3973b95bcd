"""Mapping objects: construction, validation messages, round trip, architecture checks."""

from __future__ import annotations

import dataclasses
import random

import pytest

import hwmodel
from hwmodel import DIMS, LayerSpec, Mapping
from hwmodel.mapping.loopnest import arch_structure
from tests._archs import deep, eyeriss, level, make_arch, random_mapping

LAYER = LayerSpec(name="c", kind="conv", M=8, C=4, P=6, Q=6, R=3, S=3, H=8, W=8)


def good():
    return Mapping(
        levels=("DRAM", "GLB", "RF"),
        temporal=({"M": 2}, {"P": 6, "Q": 6}, {"M": 2, "C": 2, "S": 3}),
        order=(DIMS, DIMS, DIMS),
        spatial_x={"M": 2}, spatial_y={"R": 3, "C": 2},
        keep=(("W", "I", "O"), ("I", "O"), ("W", "I", "O")),
    )


def test_valid_mapping_passes_and_describes():
    a = eyeriss()
    m = good()
    hwmodel.validate_mapping(LAYER, a, m)
    assert m.used_pes == 12 and m.compute_cycles == 2 * 36 * 12
    text = m.describe(arch_structure(a).first_pe)
    assert "par_x m in 2" in text and "for s in 3" in text and "[RF keeps WIO]" in text
    assert Mapping.from_dict(m.to_dict()) == m


@pytest.mark.parametrize("change,match", [
    (dict(temporal=({"M": 4}, {"P": 6, "Q": 6}, {"M": 2, "C": 2, "S": 3})),
     "dim M: the product of the mapping's factors is 16 but the layer's bound is 8"),
    (dict(spatial_x={"M": 2, "P": 1, "Q": 8}), "dim Q"),
    (dict(keep=(("W", "I", "O"), ("W", "I", "O"), ("W", "I", "O"))),
     r"level 'GLB' cannot hold \['W'\]"),
    (dict(keep=(("W", "I"), ("I", "O"), ("W", "I", "O"))), "must keep W, I and O"),
    (dict(levels=("DRAM", "L2", "RF")), "storage levels"),
])
def test_validation_messages(change, match):
    with pytest.raises(ValueError, match=match):
        hwmodel.validate_mapping(LAYER, eyeriss(), dataclasses.replace(good(), **change))


def test_array_and_capacity_messages():
    a = eyeriss(rows=2, cols=14)
    with pytest.raises(ValueError, match="spatial_y uses 6 PE rows .* but the array has 2"):
        hwmodel.validate_mapping(LAYER, a, good())
    big_rf = dataclasses.replace(good(), temporal=({"M": 2}, {"P": 6, "Q": 1},
                                                   {"M": 2, "C": 2, "S": 3, "Q": 6}))
    with pytest.raises(ValueError, match=r"level 'RF': the I tile is 16 words x 16 b = 256 b "
                                         r"but the I capacity is 192 b"):
        hwmodel.validate_mapping(LAYER, eyeriss(), big_rf)


def test_construction_errors():
    with pytest.raises(ValueError, match="not a permutation"):
        dataclasses.replace(good(), order=(DIMS, DIMS, DIMS[:-1] + ("G",)))
    with pytest.raises(ValueError, match="unknown dims"):
        dataclasses.replace(good(), spatial_x={"K": 2})
    with pytest.raises(ValueError, match="unknown operands"):
        dataclasses.replace(good(), keep=(("W", "I", "O"), ("X",), ()))
    with pytest.raises(ValueError, match="equal length"):
        dataclasses.replace(good(), keep=(("W", "I", "O"),))


def test_architecture_structure_checks():
    bad0 = make_arch([level("GLB", "sram", "IO", shared=1e6), level("RF", "rf", "WIO",
                                                                    per_pe=True)])
    with pytest.raises(ValueError, match="outermost level 'GLB' must be a shared"):
        hwmodel.map_layer(LAYER, bad0)
    inverted = make_arch([level("DRAM", "dram", "WIO"), level("RF", "rf", "WIO", per_pe=True),
                          level("GLB", "sram", "WIO", shared=1e6)])
    with pytest.raises(ValueError, match="shared level 'GLB' sits below the per-PE level"):
        hwmodel.map_layer(LAYER, inverted)


def test_uncovered_mapping_rejected_by_the_model_but_simulated():
    """Strided PE windows (I bypasses a per-PE level with window loops while the same
    direction is spatial) are outside the closed form: validate_mapping says so, the
    simulator still counts them."""
    a = deep()
    layer = LayerSpec(name="x", kind="conv", M=1, C=1, P=4, Q=1, R=2, S=1, H=5, W=1)
    m = Mapping(levels=("DRAM", "L2", "RF", "REG"),
                temporal=({}, {}, {"P": 2}, {}), order=(DIMS,) * 4,
                spatial_x={}, spatial_y={"P": 2, "R": 2},
                keep=(("W", "I", "O"), ("W", "I"), ("W", "O"), ("I",)))
    with pytest.raises(ValueError, match="unsupported mapping"):
        hwmodel.validate_mapping(layer, a, m)
    out = hwmodel.simulate(layer, a, m)
    assert out["macs"] == layer.macs


def test_random_mappings_validate_structurally():
    rng = random.Random(1)
    a = eyeriss()
    for _ in range(20):
        m = random_mapping(LAYER, a, rng)
        hwmodel.validate_mapping(LAYER, a, m, check_capacity=False)
