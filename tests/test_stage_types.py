"""The typed pytrees handed between the cost model's stages (counts -> metrics ->
the cost's rows): registered, so they cross ``jit`` / ``grad`` / ``vmap`` boundaries,
and built the same way by the numpy one-shot path and the JAX path."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hwmodel
from hwmodel.costmodel.cost import RowCosts
from hwmodel.costmodel.counts import Counts, counts, structure
from hwmodel.costmodel.evaluate import ArchArrays, Metrics, arch_arrays, metrics
from hwmodel.costmodel.mapper import StackEvaluation, evaluate_stack
from hwmodel.mapping.loopnest import arch_structure, stack_mappings
from hwmodel.mapping.tiles import WindowSteps, geometry, window_steps
from tests._cost_fixtures import LAYERS, WL, arch  # noqa: F401 (fixtures)


@pytest.mark.parametrize("cls", [Counts, ArchArrays, Metrics, RowCosts, WindowSteps,
                                 StackEvaluation])
def test_registered_frozen_and_documented(cls):
    fields = [f.name for f in dataclasses.fields(cls)]
    obj = cls(*range(len(fields)))
    leaves, tree = jax.tree_util.tree_flatten(obj)
    assert leaves == list(range(len(fields)))  # every field is a leaf, in field order
    assert jax.tree_util.tree_unflatten(tree, leaves) == obj
    with pytest.raises(dataclasses.FrozenInstanceError):
        obj.__setattr__(fields[0], 1)
    for name in fields:  # each field's shape / unit is written down
        assert name in cls.__doc__, (cls.__name__, name)


def _inputs(arch, layer):
    m = hwmodel.map_layer(layer, arch, dataflow="rs")
    ms = stack_mappings([m])
    g = geometry([layer])
    return ms, structure(ms, arch_structure(arch), g), g


def test_counts_and_metrics_under_jit_grad_vmap_equal_numpy(arch):
    st = arch_structure(arch)
    per_pe = tuple(l.per_pe for l in arch.levels)
    layer = LAYERS[0]
    ms, s, g = _inputs(arch, layer)
    exact = evaluate_stack(layer, arch, ms)

    def run(a, scale):
        T = jnp.asarray(ms.T, jnp.float32) * scale
        cnt = counts(jnp, T, jnp.asarray(ms.SX, jnp.float32), jnp.asarray(ms.SY, jnp.float32), s,
                     window_steps(g, jnp, jnp.float32))
        aa = arch_arrays(jnp, a, relaxed=False)
        return cnt, metrics(jnp, cnt, aa, st, per_pe_level=per_pe,
                            nonmac_ops=jnp.full((1,), float(layer.nonmac_ops)))

    cnt, met = jax.jit(run)(arch, 1.0)
    assert isinstance(cnt, Counts) and isinstance(met, Metrics)
    for f in dataclasses.fields(Counts):
        np.testing.assert_allclose(np.asarray(getattr(cnt, f.name)),
                                   getattr(exact.counts, f.name), rtol=1e-6, err_msg=f.name)
    np.testing.assert_allclose(float(met.energy[0]), exact.metrics.energy[0], rtol=1e-6)
    # grad through the Metrics output; vmap over a stack of architectures
    d = jax.grad(lambda sc: run(arch, sc)[1].energy[0])(1.0)
    assert np.isfinite(float(d)) and float(d) > 0
    twice = hwmodel.stack_archs([arch, arch.replace(mac_energy_pj=2 * arch.mac_energy_pj)])
    vm = jax.vmap(lambda a: run(a, 1.0)[1])(twice)
    assert isinstance(vm, Metrics) and vm.energy.shape == (2, 1)
    np.testing.assert_allclose(float(vm.energy[0, 0]), exact.metrics.energy[0], rtol=1e-6)
    assert float(vm.energy[1, 0]) > float(vm.energy[0, 0])


def test_cost_numpy_and_jax_paths_both_run_on_the_types(arch):
    maps = hwmodel.map_workload(WL, arch, dataflow="rs")
    a = hwmodel.cost(WL, arch, mappings=maps, backend="numpy")
    b = hwmodel.cost(WL, arch, mappings=maps, backend="jax")
    np.testing.assert_allclose(float(b.energy_pj), float(a.energy_pj), rtol=1e-6)
    assert isinstance(a.layers.energy_pj, np.ndarray)
