"""hwmodel.cost's knob domain: concrete out-of-range knobs are a clear error; traced ones
are clipped into the domain (finite, non-negative results), or checked on request
(``checks=True`` under ``jax.experimental.checkify``)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import hwmodel
from hwmodel import Knobs
from tests._cost_fixtures import L, LAYERS, WL, arch, maps  # noqa: F401 (fixtures)


def _vec(i, v, fill=1.0):
    x = np.full(L, fill, np.float32)
    x[i] = v
    return jnp.asarray(x)


BAD = [  # (knob, layer index, value, what the message must say)
    ("keep_out", 1, -1.0, r"Knobs.keep_out\[1\] \(layer 'strided'\) = -1: must be in \[0, 1\]"),
    ("keep_in", 0, 1.5, r"Knobs.keep_in\[0\] \(layer 'conv'\) = 1.5: must be in \[0, 1\]"),
    ("keep_groups", 2, -0.1, r"Knobs.keep_groups\[2\] \(layer 'dw'\) = -0.1: must be in \[0, 1\]"),
    ("weight_density", 3, -0.5, r"Knobs.weight_density\[3\] \(layer 'fc'\) = -0.5: must be in"),
    ("act_density", 4, float("nan"), r"Knobs.act_density\[4\] \(layer 'qk'\) = nan: must be in"),
    ("w_bits", 0, 0.0, r"Knobs.w_bits\[0\] \(layer 'conv'\) = 0: must be in \[1, 16\]"),
    ("i_bits", 1, 17.0, r"Knobs.i_bits\[1\] \(layer 'strided'\) = 17: must be in \[1, 16\]"),
    ("o_bits", 2, float("inf"), r"Knobs.o_bits\[2\] \(layer 'dw'\) = inf: must be in \[1, 16\]"),
]


@pytest.mark.parametrize("name,i,v,msg", BAD)
@pytest.mark.parametrize("backend", [None, "jax"])
def test_concrete_out_of_range_is_an_error(arch, maps, name, i, v, msg, backend):
    fill = 16.0 if name.endswith("bits") else 1.0
    with pytest.raises(ValueError, match=msg):
        hwmodel.cost(WL, arch, mappings=maps, knobs=Knobs(**{name: _vec(i, v, fill)}),
                     backend=backend)


def test_scalar_knob_is_checked_too(arch, maps):
    with pytest.raises(ValueError, match=r"Knobs.keep_out = -1: must be in \[0, 1\]"):
        hwmodel.cost(WL, arch, mappings=maps, knobs=Knobs(keep_out=-1.0))


def test_domain_edges_are_valid(arch, maps):
    k = Knobs(weight_density=jnp.zeros(L), act_density=jnp.ones(L), keep_out=jnp.zeros(L),
              keep_in=jnp.ones(L), w_bits=jnp.ones(L), i_bits=jnp.full(L, 16.0))
    c = hwmodel.cost(WL, arch, mappings=maps, knobs=k)
    assert np.all(np.asarray(c.layers.energy_pj) >= 0)


@pytest.mark.parametrize("name,i,v,_msg", [b for b in BAD if not np.isnan(b[2])])
def test_traced_out_of_range_is_clipped(arch, maps, name, i, v, _msg):
    """Under jit the result is that of the nearest in-domain value: finite, >= 0."""
    fill = 16.0 if name.endswith("bits") else 1.0
    f = jax.jit(lambda x: hwmodel.cost(WL, arch, mappings=maps, knobs=Knobs(**{name: x})))
    got = f(_vec(i, v, fill))
    lo, hi = (1.0, 16.0) if name.endswith("bits") else (0.0, 1.0)
    want = f(_vec(i, float(np.clip(v, lo, hi)), fill))
    for x, y in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want)):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    for x in (got.energy_pj, got.dram_bytes, got.macs_dense, got.latency_s):
        assert np.isfinite(float(x)) and float(x) >= 0


def test_checks_on_request_under_jit(arch, maps):
    def f(ko):
        return hwmodel.cost(WL, arch, mappings=maps, knobs=Knobs(keep_out=ko),
                            checks=True).energy_pj

    checked = jax.jit(checkify.checkify(f))
    err, e = checked(_vec(1, -1.0))
    assert err.get() is not None
    assert "Knobs.keep_out" in err.get() and "layer 'strided'" in err.get()
    assert "[0, 1]" in err.get()
    err, e = checked(jnp.ones(L))
    assert err.get() is None
    np.testing.assert_allclose(float(e), float(hwmodel.cost(WL, arch, mappings=maps).energy_pj),
                               rtol=1e-6)


def test_layer_names_in_messages_are_the_workloads(arch, maps):
    assert [l.name for l in LAYERS] == ["conv", "strided", "dw", "fc", "qk"]
