"""hwmodel.cost's two evaluators: numpy (one-shot, concrete inputs) and JAX (jit/grad/vmap).

A call with a concrete architecture and concrete knobs is evaluated with numpy (float64,
no compilation); a traced one (or ``backend="jax"``) with the JAX code. Both run the
same count formulas; here they are checked equal on several networks, dataflows,
architectures and knob settings (``tests/test_cost.py`` checks both against the exact
integer counts).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import hwmodel
from hwmodel import Knobs
from models._workload import model_workload
from tests._archs import eyeriss
from tests._cost_fixtures import L, WL, arch, maps  # noqa: F401 (fixtures)

# (network, preset, dataflow, sparsity, compression, knobs): CNNs, depthwise, attention
# (dynamic matmuls); four architectures (4-level hierarchies, a 256x256 systolic array with
# 8/8/32 bits); every sparsity and compression mode; dense and random in-domain knobs.
CASES = [
    ("lenet5", "eyeriss", "rs", "none", "none", False),
    ("lenet5", "systolic_ws", "ws", "gate", "bitmask", True),
    ("mobilenet_small", "eyeriss_45nm", "rs", "skip", "rle", True),
    ("mobilenet_small", "eyeriss", "ws", "none", "none", True),
    ("vit_tiny", "os_array", "os", "gate", "rle", True),
    ("resnet20", "systolic_ws", "ws", "skip", "bitmask", True),
]

_WL: dict = {}


def _workload(name):
    if name not in _WL:
        _WL[name] = model_workload(name)
    return _WL[name]


def _random_knobs(n, word_bits, seed):
    """In-domain knobs: densities and keeps in [0.05, 1], bits in [2, word bits]."""
    rng = np.random.default_rng(seed)
    u = lambda lo, hi: jnp.asarray(rng.uniform(lo, hi, n), jnp.float32)  # noqa: E731
    wb = [float(b) for b in np.asarray(word_bits)]
    return Knobs(weight_density=u(0.05, 1), act_density=u(0.05, 1), keep_out=u(0.05, 1),
                 keep_in=u(0.05, 1), keep_groups=u(0.05, 1), w_bits=u(2, wb[0]),
                 i_bits=u(2, wb[1]), o_bits=u(2, wb[2]))


def assert_costs_equal(a, b, rtol=2e-5):
    """Same static fields, same tree, every leaf equal to float32 rounding: relative to
    the value, or to the largest value of the same layer (a count that cancels to 0,
    e.g. partial sums read back ``F - D = 0`` times, is +-1e-5 in float32)."""
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb):
        x, y = np.asarray(x), np.asarray(y)
        assert x.shape == y.shape
        if x.dtype == bool or np.issubdtype(x.dtype, np.integer):
            np.testing.assert_array_equal(x, y)
            continue
        x, y = x.astype(np.float64), y.astype(np.float64)
        np.testing.assert_array_equal(np.isnan(x), np.isnan(y))
        scale = np.abs(x)
        if x.ndim > 1:
            scale = np.broadcast_to(scale.reshape(len(x), -1).max(axis=1).reshape(
                (-1,) + (1,) * (x.ndim - 1)), x.shape)
        ok = np.isnan(x) | (np.abs(x - y) <= rtol * np.maximum(np.abs(x), scale))
        assert ok.all(), (x[~ok], y[~ok])


def _is_numpy_cost(c) -> bool:
    return all(isinstance(x, np.ndarray) for x in jax.tree_util.tree_leaves(c))


@pytest.mark.parametrize("net,preset,dataflow,sparsity,compression,knobbed", CASES)
def test_numpy_equals_jax(net, preset, dataflow, sparsity, compression, knobbed):
    wl = _workload(net)
    a = hwmodel.load_arch(preset).replace(sparsity=sparsity, compression=compression)
    maps = hwmodel.map_workload(wl, a, dataflow=dataflow)
    k = _random_knobs(len(wl), a.word_bits, seed=len(wl)) if knobbed else None
    one_shot = hwmodel.cost(wl, a, mappings=maps, knobs=k, dataflow=dataflow)
    assert _is_numpy_cost(one_shot)
    jitted = jax.jit(lambda a_, k_: hwmodel.cost(wl, a_, mappings=maps, knobs=k_,
                                                 dataflow=dataflow))(a, k)
    assert not _is_numpy_cost(jitted)
    assert_costs_equal(one_shot, jitted)


def test_mapper_path_and_report_are_the_same(arch):
    """Without mappings= (the CLI's call): same numbers and the same report either way."""
    a = hwmodel.cost(WL, arch)
    b = hwmodel.cost(WL, arch, backend="jax")
    assert _is_numpy_cost(a) and not _is_numpy_cost(b)
    assert_costs_equal(a, b)
    da, db = a.to_dict(), b.to_dict()
    assert da.keys() == db.keys()
    assert [l["bound"] for l in da["layers"]] == [l["bound"] for l in db["layers"]]
    assert da["macs"] == db["macs"] == WL.total_macs


def test_candidates_path(arch):
    cs = hwmodel.mapping_candidates(WL, [arch, eyeriss(rows=6, cols=7)], per_layer=4)
    for relaxed in (False, True):
        one_shot = hwmodel.cost(WL, arch, candidates=cs, relaxed=relaxed)
        assert _is_numpy_cost(one_shot)
        jitted = jax.jit(lambda a: hwmodel.cost(WL, a, candidates=cs, relaxed=relaxed))(arch)
        assert_costs_equal(one_shot, jitted)


def test_traced_knobs_use_jax_and_grad_works(arch, maps):
    f = lambda d: hwmodel.cost(WL, arch, mappings=maps,  # noqa: E731
                               knobs=Knobs(weight_density=d)).energy_pj
    g = jax.jit(jax.grad(f))(jnp.full((L,), 0.5))
    assert g.shape == (L,) and bool(jnp.all(jnp.isfinite(g)))


def test_backend_errors(arch, maps):
    with pytest.raises(ValueError, match="backend 'torch'; valid: numpy, jax"):
        hwmodel.cost(WL, arch, mappings=maps, backend="torch")
    with pytest.raises(TypeError, match="backend='numpy' needs concrete"):
        jax.jit(lambda a: hwmodel.cost(WL, a, mappings=maps, backend="numpy").energy_pj)(arch)


def test_pe_count_is_an_exact_integer():
    """1e6 x 1e6 PEs: 10**12 in the report (float32 would give 999999995904)."""
    a = eyeriss(rows=10 ** 6, cols=10 ** 6)
    layer = hwmodel.LayerSpec(name="fc", kind="matmul", N=2, M=24, C=32)
    c = hwmodel.cost([layer], a)
    assert c.to_dict()["pes"] == 10 ** 12
    assert isinstance(c.to_dict()["pes"], int)
    line = next(l for l in c.table().splitlines() if l.strip().startswith("PEs"))
    assert line.split()[-1] == "1000000000000"
    jitted = jax.jit(lambda a_: hwmodel.cost([layer], a_, mappings=hwmodel.map_workload(
        [layer], a)))(a)
    assert jitted.to_dict()["pes"] == 10 ** 12  # the PE count itself is exact either way
    assert "1000000 x 1000000 = 1000000000000 PEs" in hwmodel.describe(a)
