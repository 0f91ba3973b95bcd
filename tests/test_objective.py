"""The hardware objective: gates joined to the cost model's knobs (codesign.objective)."""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import hwmodel
import models
from codesign.objective import HW_OBJECTIVES, HardwareObjective, objective_value


def _gated(name, init=None, **kw):
    m = models.create(name, rngs=nnx.Rngs(0), **kw)
    if init is None:
        models.set_gates(m, lambda s: models.HardConcreteGate(s.size, s.kind, rngs=nnx.Rngs(1)))
    else:
        models.set_gates(m, init)
    return m


@pytest.fixture(scope="module")
def lenet():
    m = _gated("lenet5", init=lambda s: models.ScaleGate(s.size, s.kind))
    return m, HardwareObjective(m, (28, 28, 1), arch="eyeriss", dataflow="rs")


def _keeps_with_one_closed(obj, path):
    keeps = {b.path: np.ones(b.size, np.float32) for b in obj.bindings}
    keeps[path][0] = 0.0
    return keeps


@pytest.mark.parametrize("site", ["conv1_gate", "conv2_gate", "conv3_gate", "fc1_gate"])
def test_closing_one_channel_removes_exactly_its_share(lenet, site):
    m, obj = lenet
    keeps = _keeps_with_one_closed(obj, site)
    b = next(b for b in obj.bindings if b.path == site)
    dense = obj.cost({p: np.ones(bb.size, np.float32) for p, bb in zip(keeps, obj.bindings)})
    pruned = obj.cost(keeps)
    # MACs: the layer loses 1/size of its MACs, each consumer 1/size of its MACs
    layer_macs = np.array(dense.layer_macs, np.float64)
    expect = layer_macs.copy()
    for i in b.keep_out + b.keep_in:
        expect[i] *= (b.size - 1) / b.size
    np.testing.assert_allclose(np.asarray(pruned.layers.macs_dense), expect, rtol=1e-6)
    # the knob path equals hwmodel.cost with the same knobs spelled out by hand
    L = len(obj.layers)
    ko, ki = np.ones(L, np.float32), np.ones(L, np.float32)
    ko[list(b.keep_out)] = (b.size - 1) / b.size
    ki[list(b.keep_in)] = (b.size - 1) / b.size
    by_hand = hwmodel.cost(obj.workload, obj.arch, mappings=obj.mappings,
                           knobs=hwmodel.Knobs(keep_out=ko, keep_in=ki))
    np.testing.assert_allclose(float(pruned.energy_pj), float(by_hand.energy_pj), rtol=1e-6)
    assert float(pruned.energy_pj) < float(dense.energy_pj)
    # closing it in the model (a fixed ScaleGate mask) gives the same figure
    m2 = _gated("lenet5", init=lambda s: models.ScaleGate(
        s.size, s.kind, init=jnp.asarray(keeps[s.path])))
    np.testing.assert_allclose(float(obj.value(m2)), float(objective_value(pruned, "energy")),
                               rtol=1e-6)


def test_head_gate_scales_projections_heads_and_output():
    v = _gated("vit_tiny", init=lambda s: models.ScaleGate(s.size, s.kind))
    obj = HardwareObjective(v, (28, 28, 1))
    b = next(b for b in obj.bindings if b.path == "blocks.0.attn.head_gate")
    names = [obj.layers[i].name for i in b.keep_out + b.keep_in + b.keep_groups]
    assert [obj.layers[i].name for i in b.keep_out] == [
        "blocks.0.attn.q", "blocks.0.attn.k", "blocks.0.attn.v"]
    assert [obj.layers[i].name for i in b.keep_in] == ["blocks.0.attn.o"]
    assert [obj.layers[i].name for i in b.keep_groups] == ["blocks.0.attn.qk", "blocks.0.attn.av"]
    keeps = _keeps_with_one_closed(obj, b.path)
    c = obj.cost(keeps)
    d = obj.dense_cost
    for i, n in enumerate(obj.layers):
        ratio = float(c.layers.macs_dense[i]) / float(d.layers.macs_dense[i])
        want = 0.75 if n.name in names else 1.0
        assert ratio == pytest.approx(want, rel=1e-6), n.name


@pytest.mark.parametrize("name,objective", [("mnist_cnn", o) for o in HW_OBJECTIVES]
                         + [("vit_tiny", "energy"), ("mobilenet_small", "edp")])
def test_gradients_reach_every_gate_and_are_finite(name, objective):
    shape = models.get_info(name).default_input_shape
    m = _gated(name)
    obj = HardwareObjective(m, shape, objective=objective)
    grads = nnx.grad(lambda mm: obj.relative(mm))(m)
    leaves = jax.tree_util.tree_leaves(nnx.state(grads, models.GateParam))
    assert len(leaves) == len(models.gate_sites(m))
    for g in leaves:
        g = np.asarray(g)
        assert np.all(np.isfinite(g))
        if objective != "latency":  # latency can be flat (bandwidth-bound layers)
            assert np.all(g > 0), "closing any unit must lower the objective"


def test_dense_gates_reproduce_the_plain_cost():
    m = _gated("mnist_cnn", init=lambda s: models.ScaleGate(s.size, s.kind))
    obj = HardwareObjective(m, (28, 28, 1), arch="eyeriss")
    plain = hwmodel.cost(models.model_workload("mnist_cnn"), hwmodel.load_arch("eyeriss"))
    assert float(obj.value(m)) == pytest.approx(float(plain.energy_per_inference_pj), rel=1e-6)
    assert obj.dense_value == pytest.approx(float(plain.energy_per_inference_pj), rel=1e-6)


def test_gates_are_free_in_the_extracted_workload():
    plain = models.model_workload("mnist_cnn")
    m = _gated("mnist_cnn")
    gated = models.model_workload(m, input_shape=(28, 28, 1))
    assert [l.nonmac_ops for l in gated] == [l.nonmac_ops for l in plain]


def test_pruned_workload_is_exact_and_remapped():
    m = _gated("lenet5", init=lambda s: models.ScaleGate(
        s.size, s.kind, init=(jnp.arange(s.size) % 2).astype(jnp.float32)))
    obj = HardwareObjective(m, (28, 28, 1))
    wl = obj.pruned_workload(m)
    got = {l.name: (l.M, l.C) for l in wl}
    assert got["conv1"] == (3, 1) and got["conv2"] == (8, 3) and got["conv3"] == (60, 8)
    assert got["fc1"] == (42, 60) and got["fc2"] == (10, 42)
    # the same network built at those widths by hand counts the same MACs
    assert wl.total_macs == 28 * 28 * 3 * 25 + 10 * 10 * 8 * 3 * 25 + 60 * 8 * 25 + 42 * 60 + 10 * 42
    exact = obj.exact_cost(m)
    assert int(sum(exact.layer_macs)) == wl.total_macs
    relaxed = float(obj.value(m))
    assert abs(float(exact.energy_per_inference_pj) / relaxed - 1) < 0.25


class TutorialCNN(nnx.Module):
    """The Flax NNX MNIST tutorial's CNN, exactly as a user writes it."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
        self.avg_pool = partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
        self.linear2 = nnx.Linear(256, 10, rngs=rngs)

    def __call__(self, x):
        x = self.avg_pool(nnx.relu(self.conv1(x)))
        x = self.avg_pool(nnx.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)
        x = nnx.relu(self.linear1(x))
        return self.linear2(x)


def test_user_model_with_add_gates_matches_the_zoo_cnn():
    c = TutorialCNN(rngs=nnx.Rngs(0))
    x = jnp.ones((2, 28, 28, 1))
    before = c(x)
    sites = models.add_gates(c, {"conv1": ["conv2"], "conv2": ["linear1"],
                                 "linear1": ["linear2"]})
    assert [(s.path, s.layer, s.consumers) for s in sites] == [
        ("conv1.out_gate", "conv1", ("conv2",)), ("conv2.out_gate", "conv2", ("linear1",)),
        ("linear1.out_gate", "linear1", ("linear2",))]
    np.testing.assert_array_equal(c(x), before)  # identity gates change nothing
    models.set_gates(c, lambda s: models.HardConcreteGate(s.size, s.kind, rngs=nnx.Rngs(1)))
    obj = HardwareObjective(c, (28, 28, 1))
    zoo = HardwareObjective(_gated("mnist_cnn"), (28, 28, 1))
    assert obj.dense_value == pytest.approx(zoo.dense_value, rel=1e-6)
    assert float(obj.relative(c)) < 1.0


def test_add_gates_errors():
    c = TutorialCNN(rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="no layer at 'conv9'.*conv1"):
        models.add_gates(c, {"conv9": ["conv2"]})
    with pytest.raises(ValueError, match="in_features 32, not a multiple of the 64"):
        models.add_gates(c, {"conv2": ["conv2"]})
    with pytest.raises(ValueError, match="consumer 'nope'"):
        models.add_gates(c, {"conv1": ["nope"]})


def test_a_gate_without_site_metadata_is_an_error():
    class Bare(nnx.Module):
        def __init__(self):
            self.lin = nnx.Linear(4, 3, rngs=nnx.Rngs(0))
            self.g = models.Gate(3)

        def __call__(self, x):
            return self.g(self.lin(x.reshape(x.shape[0], -1)))

    with pytest.raises(ValueError, match="no site metadata.*add_gates"):
        HardwareObjective(Bare(), (2, 2, 1))


def test_bad_objective_dataflow_batch_are_one_line_errors():
    m = _gated("lenet5")
    with pytest.raises(ValueError, match="unknown hardware objective 'joules'; valid: energy"):
        HardwareObjective(m, (28, 28, 1), objective="joules")
    with pytest.raises(ValueError, match="unknown dataflow 'xyz'"):
        HardwareObjective(m, (28, 28, 1), dataflow="xyz")
    with pytest.raises(ValueError, match="batch must be a positive int"):
        HardwareObjective(m, (28, 28, 1), batch=0)


def test_hard_concrete_gate():
    g = models.HardConcreteGate(5, rngs=nnx.Rngs(0), init_keep=0.9)
    np.testing.assert_allclose(np.asarray(g.keep()), 0.9, rtol=1e-5)
    x = jnp.ones((3, 5))
    z = g(x)
    assert z.shape == (3, 5) and float(z.min()) >= 0 and float(z.max()) <= 1
    g.deterministic = True
    np.testing.assert_array_equal(g(x), g(x))
    g.log_alpha[...] = jnp.array([-10.0, -10.0, 0.0, 10.0, 10.0])
    np.testing.assert_array_equal(np.asarray(g.hard_keep()), [0, 0, 1, 1, 1])
    np.testing.assert_array_equal(np.asarray(g.values())[[0, 1, 3, 4]], [0, 0, 1, 1])
    # keep() is differentiable
    grad = jax.grad(lambda la: jnp.sum(jax.nn.sigmoid(la - 2 / 3 * np.log(0.1 / 1.1))))(
        g.log_alpha[...])
    assert np.all(np.asarray(grad) >= 0)
    with pytest.raises(ValueError, match="init_keep must be in"):
        models.HardConcreteGate(3, rngs=nnx.Rngs(0), init_keep=1.0)
    # training-mode samples hit exact zeros and ones
    g2 = models.HardConcreteGate(2000, rngs=nnx.Rngs(0), init_keep=0.5)
    z = np.asarray(g2(jnp.ones((1, 2000))))
    assert (z == 0).any() and (z == 1).any()
    # P(z != 0) matches keep() empirically
    zs = np.stack([np.asarray(g2(jnp.ones((1, 2000))))[0] for _ in range(20)])
    assert abs((zs > 0).mean() - 0.5) < 0.02
