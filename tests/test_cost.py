"""hwmodel.cost: agreement with the exact model, totals, report, knobs, errors.

Properties (monotonicity, batch, vmap, relaxed mode, gradients) are in test_cost_props.py."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hwmodel
from hwmodel import Knobs
from hwmodel.costmodel.mapper import evaluate_stack
from hwmodel.mapping.loopnest import stack_mappings
from tests._archs import eyeriss, sized as _sized
from tests._cost_fixtures import L, LAYERS, WL, arch, cost_fn, maps  # noqa: F401 (fixtures)



@pytest.mark.parametrize("dataflow", hwmodel.DATAFLOWS)
@pytest.mark.parametrize("backend,rtol", [("numpy", 0.0), ("jax", 1e-6)])
def test_both_evaluators_equal_exact_numpy_counts(arch, dataflow, backend, rtol):
    """numpy (float64): the exact integer counts exactly; JAX (float32): to 1e-6."""
    maps = hwmodel.map_workload(WL, arch, dataflow=dataflow)
    c = hwmodel.cost(WL, arch, mappings=maps, backend=backend)
    for i, (layer, m) in enumerate(zip(LAYERS, maps)):
        ev = evaluate_stack(layer, arch, stack_mappings([m]))
        np.testing.assert_allclose(np.asarray(c.layers.reads[i]), ev.metrics.reads[0], rtol=rtol)
        np.testing.assert_allclose(np.asarray(c.layers.writes[i]), ev.metrics.writes[0], rtol=rtol)
        np.testing.assert_allclose(float(c.layers.energy_pj[i]), ev.metrics.energy[0], rtol=1e-6)
        np.testing.assert_allclose(float(c.layers.cycles[i]), ev.metrics.cycles[0], rtol=rtol)
        assert int(c.layers.bound[i]) == int(ev.metrics.bound[0])
        assert float(c.layers.macs_dense[i]) == layer.macs
    total = sum(float(v) for v in c.energy_breakdown_pj.values())
    np.testing.assert_allclose(total, float(c.energy_pj), rtol=1e-6)


def test_totals_and_units(arch, maps):
    c = hwmodel.cost(WL, arch, mappings=maps)
    lat = float(jnp.sum(c.layers.cycles)) / 200e6
    np.testing.assert_allclose(float(c.latency_s), lat, rtol=1e-6)
    np.testing.assert_allclose(float(c.power_w), float(c.energy_pj) * 1e-12 / lat, rtol=1e-6)
    # DRAM bytes: 16-bit words at the outermost level
    words = float(jnp.sum(c.layers.reads[:, 0, :]) + jnp.sum(c.layers.writes[:, 0, :]))
    np.testing.assert_allclose(float(c.dram_bytes), 2 * words, rtol=1e-6)
    np.testing.assert_allclose(float(c.area_mm2), float(hwmodel.area_mm2(arch)), rtol=1e-6)
    np.testing.assert_allclose(float(c.onchip_bytes), float(hwmodel.onchip_bytes(arch)))
    # non-MAC energy: ops x nonmac energy
    e_nm = sum(l.nonmac_ops for l in LAYERS) * float(arch.nonmac_energy_pj)
    np.testing.assert_allclose(float(c.energy_breakdown_pj["nonMAC"]), e_nm, rtol=1e-6)
    np.testing.assert_allclose(float(c.energy_breakdown_pj["MAC"]),
                               WL.total_macs * float(arch.mac_energy_pj), rtol=1e-6)
    assert bool(jnp.all(c.layers.legal))
    u = float(c.utilization)
    assert 0 < u <= 1


def test_table_and_json(arch, maps):
    c = hwmodel.cost(WL, arch, mappings=maps)
    t = c.table()
    for name in ("conv", "qk", "total", "energy per inference", "off-chip bytes", "simulated"):
        assert name in t
    d = c.to_dict()
    json.dumps(d)
    for k in ("model", "arch", "dataflow", "batch", "macs", "energy_pj", "latency_s", "cycles",
              "power_w", "dram_bytes", "onchip_bytes", "area_mm2", "utilization", "layers"):
        assert k in d
    for k in ("name", "macs", "energy_pj", "cycles", "latency_s", "utilization", "dram_bytes",
              "energy_breakdown_pj", "bound"):
        assert k in d["layers"][0]
    assert set(d["layers"][0]["energy_breakdown_pj"]) == {"DRAM", "GLB", "NoC", "RF", "MAC",
                                                          "nonMAC"}


def test_knobs_at_hard_points_equal_exact(arch, maps, cost_fn):
    base = cost_fn(arch, None)
    one = jnp.ones((L,))
    k = Knobs(weight_density=one, act_density=one, keep_out=one, keep_in=one, keep_groups=one,
              w_bits=16 * one, i_bits=16 * one, o_bits=16 * one)
    c = cost_fn(arch, k)
    for a, b in zip(jax.tree_util.tree_leaves(base), jax.tree_util.tree_leaves(c)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=1e-6)


@pytest.mark.parametrize("sparsity,compression", [("gate", "none"), ("skip", "bitmask"),
                                                  ("skip", "rle"), ("none", "none")])
def test_sparsity_modes(sparsity, compression):
    a = eyeriss(sparsity=sparsity, compression=compression)
    maps = hwmodel.map_workload(WL, a)
    f = jax.jit(lambda d: hwmodel.cost(WL, a, mappings=maps,
                                       knobs=Knobs(weight_density=d, act_density=d)))
    full, half = f(jnp.ones((L,))), f(jnp.full((L,), 0.5))
    dense = hwmodel.cost(WL, eyeriss(sparsity=sparsity), mappings=maps)
    if sparsity == "none":
        np.testing.assert_allclose(float(half.energy_pj), float(full.energy_pj), rtol=1e-6)
        assert float(half.macs_effective) == float(half.macs_dense)
    else:
        assert float(half.energy_pj) < float(full.energy_pj)
        # static layers: dw*da = 0.25; the dynamic one: da*da = 0.25 as well
        np.testing.assert_allclose(float(half.macs_effective), 0.25 * WL.total_macs, rtol=1e-6)
        np.testing.assert_allclose(float(half.energy_breakdown_pj["MAC"]),
                                   0.25 * float(full.energy_breakdown_pj["MAC"]), rtol=1e-6)
    if sparsity == "skip":
        np.testing.assert_allclose(np.asarray(half.layers.compute_cycles),
                                   0.25 * np.asarray(full.layers.compute_cycles), rtol=1e-6)
    elif sparsity == "gate":
        np.testing.assert_allclose(np.asarray(half.layers.compute_cycles),
                                   np.asarray(full.layers.compute_cycles), rtol=1e-6)
    if compression == "none":
        np.testing.assert_allclose(float(full.energy_pj), float(dense.energy_pj), rtol=1e-6)
    else:
        # compressed storage at density 1 pays its metadata
        assert float(full.dram_bytes) > float(dense.dram_bytes)


def test_dynamic_layer_uses_activation_density(arch):
    a = eyeriss(sparsity="gate")
    layer = LAYERS[-1]
    maps = hwmodel.map_workload([layer], a)
    c1 = hwmodel.cost([layer], a, mappings=maps,
                      knobs=Knobs(weight_density=jnp.array([0.1]), act_density=jnp.array([1.0])))
    c0 = hwmodel.cost([layer], a, mappings=maps)
    # weight_density is ignored for a dynamic matmul: both operands are activations
    np.testing.assert_allclose(float(c1.energy_pj), float(c0.energy_pj), rtol=1e-6)
    assert LAYERS[-1].weights == 0


def test_bits_scale_traffic_and_mac(arch, maps, cost_fn):
    base = cost_fn(arch, None)
    eight = jnp.full((L,), 8.0)
    c = cost_fn(arch, Knobs(w_bits=eight, i_bits=eight, o_bits=eight))
    np.testing.assert_allclose(float(c.dram_bytes), 0.5 * float(base.dram_bytes), rtol=1e-6)
    np.testing.assert_allclose(float(c.energy_breakdown_pj["MAC"]),
                               0.25 * float(base.energy_breakdown_pj["MAC"]), rtol=1e-6)


def test_keep_scales_macs_exactly(arch, maps, cost_fn):
    ko = jnp.array([0.5, 0.25, 1.0, 0.5, 1.0])
    ki = jnp.array([1.0, 0.5, 1.0, 0.25, 1.0])
    kg = jnp.array([1.0, 1.0, 0.5, 1.0, 0.5])
    c = cost_fn(arch, Knobs(keep_out=ko, keep_in=ki, keep_groups=kg))
    want = np.array([l.macs for l in LAYERS]) * np.asarray(ko * ki * kg)
    np.testing.assert_allclose(np.asarray(c.layers.macs_dense), want, rtol=1e-6)
    base = cost_fn(arch, None)
    assert np.all(np.asarray(c.layers.energy_pj) <= np.asarray(base.layers.energy_pj) * (1 + 1e-6))


def test_errors(arch, maps):
    with pytest.raises(ValueError, match="unknown dataflow 'xx'; valid: ws, os, is, rs, nlr"):
        hwmodel.cost(WL, arch, dataflow="xx")
    with pytest.raises(ValueError, match="unknown objective"):
        hwmodel.cost(WL, arch, objective="speed")
    with pytest.raises(ValueError, match=r"Knobs.act_density: expected shape \(5,\)"):
        hwmodel.cost(WL, arch, mappings=maps, knobs=Knobs(act_density=jnp.ones(3)))
    with pytest.raises(ValueError, match="2 mappings for 5 layers"):
        hwmodel.cost(WL, arch, mappings=maps[:2])
    with pytest.raises(TypeError, match="traced"):
        jax.jit(lambda a: hwmodel.cost(WL, a).energy_pj)(arch)
    tiny_rf = _sized(arch, 108, 1 / 64, 12, 14)
    with pytest.raises(ValueError, match="level 'RF'"):
        hwmodel.cost(WL, tiny_rf, mappings=maps)


def test_cost_is_a_pytree_and_jits(arch, maps, cost_fn):
    c = cost_fn(arch, None)
    leaves, tree = jax.tree_util.tree_flatten(c)
    c2 = jax.tree_util.tree_unflatten(tree, leaves)
    assert c2.layer_names == tuple(l.name for l in LAYERS)
    assert c2.bound_names[0] == "compute" and c2.bound_names[1:] == arch.level_names
