"""hwmodel.cost properties: non-negative, monotone, batch scaling, vmap == loop, relaxed
mode, finite gradients."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from jax.test_util import check_grads

import hwmodel
from hwmodel import Knobs, LayerSpec
from tests._archs import eyeriss
from tests._cost_fixtures import L, LAYERS, WL, arch, maps  # noqa: F401 (fixtures)



unit = st.floats(0.0, 1.0, allow_nan=False, width=32)


@settings(max_examples=25)
@given(d=st.lists(unit, min_size=L, max_size=L), d2=st.lists(unit, min_size=L, max_size=L),
       k=st.lists(st.floats(0.0625, 1.0, width=32), min_size=L, max_size=L))
def test_nonnegative_and_monotone_in_densities_and_keeps(d, d2, k):
    a = _skip_arch()
    f = _skip_fn()
    lo = jnp.minimum(jnp.array(d), jnp.array(d2))
    hi = jnp.maximum(jnp.array(d), jnp.array(d2))
    kk = jnp.array(k)
    c_lo = f(Knobs(weight_density=lo, act_density=hi, keep_out=kk * 0.5, keep_in=kk))
    c_hi = f(Knobs(weight_density=hi, act_density=hi, keep_out=kk, keep_in=kk))
    for c in (c_lo, c_hi):
        for leaf in (c.layers.energy_pj, c.layers.cycles, c.layers.reads, c.layers.writes,
                     c.layers.energy_level_op_pj, c.layers.compute_cycles):
            assert bool(jnp.all(leaf >= 0))
    tol = 1 + 1e-5
    assert np.all(np.asarray(c_lo.layers.energy_pj) <= np.asarray(c_hi.layers.energy_pj) * tol)
    assert np.all(np.asarray(c_lo.layers.cycles) <= np.asarray(c_hi.layers.cycles) * tol)
    del a


_CACHE: dict = {}


def _skip_arch():
    if "arch" not in _CACHE:
        _CACHE["arch"] = eyeriss(sparsity="skip", compression="bitmask")
    return _CACHE["arch"]


def _skip_fn():
    if "fn" not in _CACHE:
        a = _skip_arch()
        maps = hwmodel.map_workload(WL, a)
        _CACHE["fn"] = jax.jit(lambda k: hwmodel.cost(WL, a, mappings=maps, knobs=k))
    return _CACHE["fn"]


def _with_batch(layer: LayerSpec, m: hwmodel.Mapping, b: int):
    """The layer at batch b and the mapping with an outermost N loop of b at DRAM."""
    lb = dataclasses.replace(layer, N=layer.N * b)
    t0 = dict(zip(hwmodel.DIMS, m.temporal[0]))
    t0["N"] *= b
    order0 = ("N",) + tuple(d for d in m.order[0] if d != "N")
    mb = dataclasses.replace(m, temporal=(tuple(t0.values()),) + m.temporal[1:],
                             order=(order0,) + m.order[1:])
    return lb, mb


@pytest.mark.parametrize("b", [2, 3])
def test_linear_in_batch_with_batch_outermost(arch, maps, b):
    """Batch as an outermost loop: MACs, compute cycles and every I and O access scale by
    exactly b; W accesses by at most b (a weight tile that no W-relevant loop above a
    level ever changes stays resident across the whole batch: fetched once)."""
    base = hwmodel.cost(WL, arch, mappings=maps)
    pairs = [_with_batch(l, m, b) for l, m in zip(LAYERS, maps)]
    cb = hwmodel.cost([p[0] for p in pairs], arch, mappings=[p[1] for p in pairs])
    for f in ("macs_dense", "compute_cycles"):
        np.testing.assert_allclose(np.asarray(getattr(cb.layers, f)),
                                   b * np.asarray(getattr(base.layers, f)), rtol=1e-6)
    for f in ("reads", "writes", "fills", "drains"):
        got, one = np.asarray(getattr(cb.layers, f)), np.asarray(getattr(base.layers, f))
        np.testing.assert_allclose(got[..., 1:], b * one[..., 1:], rtol=1e-6)
        assert np.all(got[..., 0] <= b * one[..., 0] * (1 + 1e-6))
        assert np.all(got[..., 0] >= one[..., 0] * (1 - 1e-6))
    assert np.all(np.asarray(cb.layers.energy_pj) <= b * np.asarray(base.layers.energy_pj)
                  * (1 + 1e-6))


def test_mapper_energy_sublinear_in_batch(arch):
    """With the mapper free to reuse weights across the batch, energy is <= b x."""
    layer = LAYERS[0]
    e1 = float(hwmodel.cost([layer], arch).energy_pj)
    e4 = float(hwmodel.cost([dataclasses.replace(layer, N=4)], arch).energy_pj)
    assert e4 <= 4 * e1 * (1 + 1e-6)
    assert e4 >= 4 * float(hwmodel.cost([layer], arch).energy_breakdown_pj["MAC"])


def test_monotone_in_macs(arch):
    """More output channels (same everything else) never costs less energy or cycles."""
    prev_e = prev_c = 0.0
    for m in (4, 16, 32):
        layer = dataclasses.replace(LAYERS[0], M=m)
        c = hwmodel.cost([layer], arch)
        assert float(c.energy_pj) >= prev_e and float(c.cycles) >= prev_c
        prev_e, prev_c = float(c.energy_pj), float(c.cycles)


def _arch_family(arch, n):
    """n architectures: energies, DRAM bandwidth and clock varied."""
    out = []
    for i in range(n):
        lv = []
        for j, l in enumerate(arch.levels):
            f = 1.0 + 0.1 * ((i + j) % 4)
            lv.append(dataclasses.replace(
                l, read_energy_pj=l.read_energy_pj * f, write_energy_pj=l.write_energy_pj * f,
                bandwidth_words=l.bandwidth_words * (1.0 + 0.5 * (i % 3)) if j == 0
                else l.bandwidth_words))
        out.append(arch.replace(levels=tuple(lv), clock_hz=arch.clock_hz * (1 + 0.1 * i),
                                mac_energy_pj=arch.mac_energy_pj * (1 + 0.05 * i)))
    return out


def test_vmap_over_architectures_equals_loop(arch, maps):
    archs = _arch_family(arch, 5)
    f = lambda a: hwmodel.cost(WL, a, mappings=maps)  # noqa: E731
    batched = jax.vmap(f)(hwmodel.stack_archs(archs))
    for i, a in enumerate(archs):
        one = f(a)
        for x, y in zip(jax.tree_util.tree_leaves(one), jax.tree_util.tree_leaves(batched)):
            np.testing.assert_allclose(np.asarray(x, np.float64), np.asarray(y[i], np.float64),
                                       rtol=2e-6)


def test_grads_finite_everywhere(arch, maps):
    a = eyeriss(sparsity="skip", compression="rle")
    maps = hwmodel.map_workload(WL, a)

    def loss(d, k, bits):
        c = hwmodel.cost(WL, a, mappings=maps, knobs=Knobs(
            weight_density=d, act_density=d, keep_out=k, keep_in=k, keep_groups=k,
            w_bits=bits, i_bits=bits))
        return c.energy_pj * 1e-9 + c.latency_s * 1e3

    g = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
    for d, k, b in ((0.0, 0.0, 1.0), (1.0, 1.0, 16.0), (0.3, 0.01, 4.0)):
        grads = g(jnp.full((L,), d), jnp.full((L,), k), jnp.full((L,), b))
        for gr in grads:
            assert bool(jnp.all(jnp.isfinite(gr))), (d, k, b, gr)
    grads = g(jnp.full((L,), 0.5), jnp.full((L,), 0.5), jnp.full((L,), 8.0))
    assert bool(jnp.all(grads[0] > 0))  # denser -> more energy


def test_check_grads_smooth_knobs():
    a = eyeriss(sparsity="gate", compression="bitmask")
    maps = hwmodel.map_workload(WL, a)

    def e(d):
        return hwmodel.cost(WL, a, mappings=maps, knobs=Knobs(weight_density=d,
                                                              act_density=d)).energy_pj * 1e-6

    check_grads(e, (jnp.full((L,), 0.6),), order=1, modes=("rev",), atol=1e-2, rtol=1e-2)


def test_check_grads_arch_energies(arch, maps):
    def e(scale):
        lv = tuple(dataclasses.replace(l, read_energy_pj=l.read_energy_pj * scale[i],
                                       write_energy_pj=l.write_energy_pj * scale[i])
                   for i, l in enumerate(arch.levels))
        return hwmodel.cost(WL, arch.replace(levels=lv), mappings=maps).energy_pj * 1e-6

    check_grads(e, (jnp.ones((len(arch.levels),)),), order=1, modes=("rev",),
                atol=1e-2, rtol=1e-2)


def test_vmap_over_knobs_equals_loop(arch, maps):
    a = eyeriss(sparsity="skip")
    maps = hwmodel.map_workload(WL, a)
    D = jnp.linspace(0.1, 1.0, 4 * L).reshape(4, L)
    f = lambda d: hwmodel.cost(WL, a, mappings=maps, knobs=Knobs(  # noqa: E731
        weight_density=d, act_density=d[::-1], keep_out=0.5 + 0.5 * d))
    batched = jax.vmap(f)(D)
    for i in range(4):
        one = f(D[i])
        np.testing.assert_allclose(float(one.energy_pj), float(batched.energy_pj[i]), rtol=1e-6)
        np.testing.assert_allclose(np.asarray(one.layers.cycles),
                                   np.asarray(batched.layers.cycles[i]), rtol=1e-6)
