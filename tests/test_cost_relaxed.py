"""hwmodel.cost: the traceable candidate path (vmap over architecture sizes) and the
relaxed mode (equal to the exact model at integer sizes, finite gradients)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hwmodel
from tests._archs import sized as _sized
from tests._cost_fixtures import WL, arch, maps  # noqa: F401 (fixtures)


def test_candidates_path_vmap_over_sizes_equals_loop(arch):
    small = _sized(arch, 16, 0.5, 6, 7)
    big = _sized(arch, 108, 1.0, 12, 14)
    cs = hwmodel.mapping_candidates(WL, [big, small], per_layer=6)
    archs = [_sized(arch, kb, r, rw, cl) for kb, r, rw, cl in
             ((16, 0.5, 6, 7), (108, 1.0, 12, 14), (40, 0.75, 8, 14), (4, 0.25, 4, 4))]
    f = jax.jit(lambda a: hwmodel.cost(WL, a, candidates=cs))
    batched = jax.vmap(f)(hwmodel.stack_archs(archs))
    for i, a in enumerate(archs):
        one = f(a)
        np.testing.assert_allclose(float(one.energy_pj), float(batched.energy_pj[i]), rtol=1e-6)
        np.testing.assert_array_equal(np.asarray(one.layers.legal),
                                      np.asarray(batched.layers.legal[i]))
    # on a reference architecture the candidate path is at least as good as the mapper
    # (it may find a better candidate from the other architecture's list) ...
    c_map = hwmodel.cost(WL, big)
    assert float(f(big).energy_pj) <= float(c_map.energy_pj) * (1 + 1e-6)
    # ... and with a set built from that architecture alone it picks the mapper's choice
    cs1 = hwmodel.mapping_candidates(WL, big, per_layer=4)
    c_cs = hwmodel.cost(WL, big, candidates=cs1)
    np.testing.assert_allclose(np.asarray(c_cs.layers.energy_pj),
                               np.asarray(c_map.layers.energy_pj), rtol=1e-6)
    # smaller buffers never help energy here (all candidates stay available)
    assert float(batched.energy_pj[0]) >= float(batched.energy_pj[1]) * (1 - 1e-6)


def test_relaxed_equals_exact_at_integer_sizes(arch, maps):
    exact = hwmodel.cost(WL, arch, mappings=maps)
    relaxed = hwmodel.cost(WL, arch, mappings=maps, relaxed=True)
    for a, b in zip(jax.tree_util.tree_leaves(exact), jax.tree_util.tree_leaves(relaxed)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=1e-6)
    cs = hwmodel.mapping_candidates(WL, arch, per_layer=6)
    e = hwmodel.cost(WL, arch, candidates=cs)
    r = hwmodel.cost(WL, arch, candidates=cs, relaxed=True)
    for a, b in zip(jax.tree_util.tree_leaves(e), jax.tree_util.tree_leaves(r)):
        np.testing.assert_allclose(np.asarray(a, np.float64), np.asarray(b, np.float64),
                                   rtol=1e-6)


def test_exact_mode_floors_fractional_pes(arch, maps):
    a = arch.replace(pe_rows=jnp.asarray(12.7, jnp.float32))
    e = hwmodel.cost(WL, a, mappings=maps)
    np.testing.assert_allclose(float(e.pes), 168.0)
    r = hwmodel.cost(WL, a, mappings=maps, relaxed=True)
    np.testing.assert_allclose(float(r.pes), 12.7 * 14, rtol=1e-6)


def test_relaxed_grads_wrt_sizes_finite(arch):
    cs = hwmodel.mapping_candidates(WL, [arch, _sized(arch, 16, 0.5, 6, 7)], per_layer=6)

    def loss(glb_kb, rows, cols):
        a = _sized(arch, glb_kb, 1.0, rows, cols)
        c = hwmodel.cost(WL, a, candidates=cs, relaxed=True)
        return c.energy_pj * 1e-9 + c.latency_s * 1e3 + c.area_mm2

    g = jax.grad(loss, argnums=(0, 1, 2))(jnp.asarray(50.0), jnp.asarray(12.0),
                                          jnp.asarray(14.0))
    assert all(bool(jnp.isfinite(x)) for x in g)
    assert float(g[1]) != 0.0 and float(g[2]) != 0.0  # rows / cols reach latency and area


