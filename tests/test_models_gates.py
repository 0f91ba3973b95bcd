"""Pruning-gate hooks: sites, metadata, replacement, and that a zero gate removes a unit."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from models._depthwise import DepthwiseConv
from models._vit import MultiHeadSelfAttention

NAMES = models.list_models()


def _batch(name, n=2, seed=1):
    shape = models.get_info(name).default_input_shape
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n,) + shape), jnp.float32)


def _abstract(name, **kwargs):
    return nnx.eval_shape(lambda: models.create(name, rngs=nnx.Rngs(0), **kwargs))


def _get(model, path):
    mod = model
    for p in path.split("."):
        mod = mod[int(p)] if p.isdigit() else getattr(mod, p)
    return mod


@pytest.fixture(scope="module")
def built():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = models.create(name, rngs=nnx.Rngs(0))
        return nnx.clone(cache[name])

    return get


# ---- the default gates ------------------------------------------------------------------------


def test_identity_gate_is_free():
    g = models.Gate(3)
    x = jnp.ones((2, 3))
    assert g(x) is x  # nothing is traced
    assert not jax.tree_util.tree_leaves(nnx.state(g))
    np.testing.assert_array_equal(g.keep(), np.ones(3))
    assert float(g.keep_fraction()) == 1.0
    closed = jax.make_jaxpr(g)(x)
    assert not closed.jaxpr.eqns


@pytest.mark.parametrize("name", NAMES)
def test_sites_metadata_resolves_to_layers(name):
    m = _abstract(name)
    sites = models.gate_sites(m)
    assert sites
    assert len({s.path for s in sites}) == len(sites)
    for s in sites:
        assert _get(m, s.path) is s.gate and isinstance(s.gate, models.Gate)
        assert type(s.gate) is models.Gate  # identity by default
        layer = _get(m, s.layer)
        if s.kind == "channel":
            out = layer.channels if isinstance(layer, DepthwiseConv) else layer.out_features
            assert out == s.size, s
        else:
            assert isinstance(layer, MultiHeadSelfAttention) and layer.num_heads == s.size
        for c in s.consumers:
            cons = _get(m, c)
            if isinstance(cons, DepthwiseConv):
                assert cons.channels == s.size
            elif s.kind == "head":
                assert cons.in_features == s.size * layer.head_dim
            else:
                assert cons.in_features % s.size == 0, (s, c)
    # every conv / dense layer except the classifier (and for ViT the residual-stream
    # projections and the patch embedding) is gated
    gated = {s.layer for s in sites}
    for path, mod in nnx.iter_modules(m):
        p = ".".join(map(str, path))
        if isinstance(mod, (nnx.Conv, nnx.Linear, DepthwiseConv)) and p != "head":
            ungated_ok = name == "vit_tiny" and (
                p == "patch_embed" or p.endswith((".q", ".k", ".v", ".o", ".fc2"))
            )
            ungated_ok |= name in ("lenet5", "mnist_cnn") and p in ("fc2", "linear2")
            assert p in gated or ungated_ok, p


def test_site_counts_and_kinds():
    expected = {
        "lenet5": (4, 0),
        "mnist_cnn": (3, 0),
        "vgg_small": (6, 0),
        "resnet20": (1 + 2 * 9, 0),
        "mobilenet_small": (1 + 2 * 6, 0),
        "vit_tiny": (6, 6),
    }
    for name, (n_channel, n_head) in expected.items():
        sites = models.gate_sites(_abstract(name))
        assert sum(s.kind == "channel" for s in sites) == n_channel, name
        assert sum(s.kind == "head" for s in sites) == n_head, name
    b = _abstract("resnet20", shortcut="B")
    proj = [s for s in models.gate_sites(b) if s.path.endswith("proj_gate")]
    assert [s.layer for s in proj] == ["blocks.3.proj", "blocks.6.proj"]
    assert all(s.consumers == () for s in proj)


class _Recorder(models.Gate):
    calls: list = []

    def __call__(self, x):
        _Recorder.calls.append(self)
        return x


@pytest.mark.parametrize("name", NAMES)
def test_sites_are_listed_in_forward_order(name):
    m = _abstract(name)
    sites = models.set_gates(m, lambda s: _Recorder(s.size, s.kind))
    _Recorder.calls = []
    m.eval()
    graphdef, state = nnx.split(m)
    shape = (2,) + models.get_info(name).default_input_shape
    # tracing runs the Python forward pass once (nothing is compiled)
    jax.make_jaxpr(lambda st, x: nnx.merge(graphdef, st)(x))(
        state, jax.ShapeDtypeStruct(shape, jnp.float32)
    )
    assert [g.site_order for g in _Recorder.calls] == [s.gate.site_order for s in sites]
    assert [g.site_order for g in _Recorder.calls] == list(range(len(sites)))


# ---- a zero gate removes the unit ----------------------------------------------------------------


def _bump(var, index, eps=0.5):
    """Adds a non-constant perturbation to ``var[index]`` (a constant one can vanish,
    e.g. after a LayerNorm whose output sums to zero)."""
    part = var[...][index]
    noise = np.random.default_rng(part.size).normal(size=part.shape).astype(np.float32)
    var[...] = var[...].at[index].add(eps * noise)


def _bump_producer(model, site, j):
    layer = _get(model, site.layer)
    if site.kind == "head":
        e = layer.head_dim
        for lin in (layer.q, layer.k, layer.v):
            _bump(lin.kernel, np.s_[:, j * e : (j + 1) * e])
        return
    _bump(layer.kernel, np.s_[..., j])
    if getattr(layer, "bias", None) is not None:
        _bump(layer.bias, np.s_[j])


def _bump_consumer(model, site, path, j):
    cons = _get(model, path)
    if isinstance(cons, DepthwiseConv):
        _bump(cons.kernel, np.s_[..., 0, j])
    elif isinstance(cons, nnx.Conv):
        _bump(cons.kernel, np.s_[..., j, :])
    elif site.kind == "head":
        e = cons.in_features // site.size
        _bump(cons.kernel, np.s_[j * e : (j + 1) * e])
    else:  # dense: rows of unit j (after a flatten of [.., C], rows j, j + C, j + 2C, ...)
        _bump(cons.kernel, np.s_[j :: site.size])


@pytest.mark.parametrize("name", NAMES)
def test_zero_gate_removes_the_unit_and_its_consumer_inputs(name, built):
    m = built(name)
    sites = models.set_gates(m, lambda s: models.ScaleGate(s.size, s.kind))
    m.eval()
    fwd = nnx.jit(lambda model, x: model(x))  # one compile: gate values are data
    x = _batch(name)
    clean = nnx.clone(m)
    def matters(site, j):
        """Unit j of the site changes the output (through its producer and through
        each consumer's input weights) while its gate is 1 -- not a dead ReLU unit."""
        y = fwd(clean, x)
        mp = nnx.clone(clean)
        _bump_producer(mp, {t.path: t for t in models.gate_sites(mp)}[site.path], j)
        if np.allclose(fwd(mp, x), y, atol=1e-6):
            return False
        for c in site.consumers:
            mc = nnx.clone(clean)
            _bump_consumer(mc, site, c, j)
            if np.allclose(fwd(mc, x), y, atol=1e-6):
                return False
        return True

    for site in sites:
        j = next((j for j in range(site.size // 2, site.size) if matters(site, j)), None)
        assert j is not None, f"{site.path}: no unit affects the output"
        m = nnx.clone(clean)
        s = {t.path: t for t in models.gate_sites(m)}[site.path]
        y = fwd(m, x)
        # ... and with its gate at 0, neither its producer nor its consumers' input
        # weights for it change the output at all
        s.gate.values[...] = s.gate.values[...].at[j].set(0.0)
        y0 = fwd(m, x)
        assert not np.array_equal(y0, y)
        _bump_producer(m, s, j)
        for c in s.consumers:
            _bump_consumer(m, s, c, j)
        np.testing.assert_array_equal(fwd(m, x), y0, err_msg=site.path)
        assert float(s.gate.keep_fraction()) == pytest.approx(1 - 1 / site.size)


def test_zero_head_gate_equals_dropping_the_head_from_the_output_projection(built):
    m = built("vit_tiny")
    m.eval()
    x = _batch("vit_tiny")
    attn = m.blocks[2].attn
    e = attn.head_dim
    ref = nnx.clone(m)
    o = ref.blocks[2].attn.o
    o.kernel[...] = o.kernel[...].at[1 * e : 2 * e].set(0.0)  # remove head 1's rows of WZ
    models.set_gates(
        m,
        lambda s: models.ScaleGate(s.size, s.kind, init=jnp.array([1.0, 0.0, 1.0, 1.0]))
        if s.path == "blocks.2.attn.head_gate"
        else None,
    )
    np.testing.assert_allclose(m(x), ref(x), rtol=1e-6, atol=1e-6)


# ---- set_gates ----------------------------------------------------------------------------------


def test_set_gates_validates_and_keeps_metadata():
    m = models.create("mnist_cnn", rngs=nnx.Rngs(0))
    before = models.gate_sites(m)
    with pytest.raises(ValueError, match="size 32"):
        models.set_gates(m, lambda s: models.ScaleGate(s.size + 1, s.kind))
    with pytest.raises(ValueError, match="channel gate"):
        models.set_gates(m, lambda s: models.ScaleGate(s.size, "head"))
    with pytest.raises(TypeError, match="must return a models.Gate"):
        models.set_gates(m, lambda s: nnx.Linear(1, 1, rngs=nnx.Rngs(0)))
    assert models.gate_sites(m) == before  # same metadata after the failed calls
    after = models.set_gates(
        m, lambda s: models.ScaleGate(s.size, s.kind) if s.path == "conv2_gate" else None
    )
    assert after == before  # same paths, sizes, kinds, layers, consumers
    kinds = {s.path: type(s.gate) for s in after}
    assert kinds == {
        "conv1_gate": models.Gate,
        "conv2_gate": models.ScaleGate,
        "linear1_gate": models.Gate,
    }
    assert models.count_params(m) == 824_458 + 64  # the gate values are GateParams


def test_set_gates_is_all_or_nothing():
    m = _abstract("vgg_small")  # features.0 and features.1 both have 32 channels
    shared = models.ScaleGate(32)
    with pytest.raises(ValueError, match="same Gate object"):
        models.set_gates(m, lambda s: shared if s.size == 32 else models.ScaleGate(s.size))
    assert all(type(s.gate) is models.Gate for s in models.gate_sites(m))


def test_gate_values_are_learnable_and_separable():
    m = models.create("lenet5", rngs=nnx.Rngs(0))
    models.set_gates(m, lambda s: models.ScaleGate(s.size, s.kind, init=0.9))
    x = _batch("lenet5")
    only_gates = nnx.DiffState(0, models.GateParam)
    grads = nnx.grad(lambda mod: jnp.sum(mod(x) ** 2), argnums=only_gates)(m)
    leaves = jax.tree_util.tree_leaves(grads)
    assert len(leaves) == 4 and all(np.all(np.isfinite(g)) and np.any(g != 0) for g in leaves)
    weights = nnx.state(m, nnx.All(nnx.Param, nnx.Not(models.GateParam)))
    assert sum(v.size for v in jax.tree_util.tree_leaves(weights)) == 61_706


def test_gate_sites_inside_a_wrapper_module():
    class Wrapper(nnx.Module):
        def __init__(self):
            self.net = models.create("resnet20", rngs=nnx.Rngs(0))

    w = nnx.eval_shape(Wrapper)
    sites = models.gate_sites(w)
    inner = models.gate_sites(w.net)
    assert [s.path for s in sites] == ["net." + s.path for s in inner]
    assert sites[0].layer == "net.stem.conv" and sites[0].consumers == ("net.blocks.0.conv1",)
    new = models.set_gates(w, lambda s: models.ScaleGate(s.size, s.kind))
    assert all(isinstance(s.gate, models.ScaleGate) for s in new)
    assert isinstance(w.net.blocks[4].gate2, models.ScaleGate)


def test_train_eval_reach_stochastic_gates():
    class Noisy(models.Gate):
        def __init__(self, size, kind):
            super().__init__(size, kind)
            self.deterministic = False

    m = models.create("mnist_cnn", rngs=nnx.Rngs(0))
    sites = models.set_gates(m, lambda s: Noisy(s.size, s.kind))
    m.eval()
    assert all(s.gate.deterministic for s in sites)
    m.train()
    assert not any(s.gate.deterministic for s in sites)


def test_gate_apply_checks_the_axis():
    g = models.ScaleGate(4, "head")
    with pytest.raises(ValueError, match="axis -2"):
        g(jnp.ones((1, 5, 3, 8)))
    z = jnp.ones((1, 5, 4, 8))
    g.values[...] = jnp.array([1.0, 0.0, 2.0, 1.0])
    out = g(z)
    np.testing.assert_array_equal(out[0, :, 1], 0.0)
    np.testing.assert_array_equal(out[0, :, 2], 2.0)
    np.testing.assert_array_equal(g.keep(), [1, 0, 1, 1])
    with pytest.raises(ValueError, match="kind"):
        models.Gate(3, "filter")
    with pytest.raises(ValueError, match="size"):
        models.Gate(0)
