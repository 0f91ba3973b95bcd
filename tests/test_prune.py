"""Physical pruning (codesign.prune): the pruned model is the gated model, smaller."""

from __future__ import annotations

import dataclasses
import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import hwmodel
import models
from codesign.data import load_dataset
from codesign.objective import HardwareObjective
from codesign.prune import (PruneSpec, StreamGate, load_pruned, prune_model, read_spec,
                            save_pruned)

# Logits of the pruned model equal the gated model's to float32 rounding: the folded gate
# values and the removed zeros reorder a few sums. Tolerance: 1e-5 of the logits' scale.
RTOL = 1e-5

# small variants keep the tests fast; the structure (residual streams, heads) is the same
SMALL = {
    "mnist_cnn": {},
    "lenet5": {},
    "vit_tiny": {"depth": 2, "dropout_rate": 0.0},
    "resnet20": {"blocks_per_stage": 1, "input_shape": (28, 28, 1)},
    "resnet20-B": {"blocks_per_stage": 1, "input_shape": (28, 28, 1), "shortcut": "B"},
    "resnet20-S": {"blocks_per_stage": 2, "input_shape": (28, 28, 1), "stream_gates": True},
    "resnet20-SB": {"blocks_per_stage": 2, "input_shape": (28, 28, 1), "stream_gates": True,
                    "shortcut": "B"},
    "vgg_small": {"stages": ((8, 16), (16,), (24,)), "input_shape": (32, 32, 1)},
}


@pytest.fixture(scope="module")
def digits():
    """128 real MNIST test digits (the embedded official subset), scaled to [0, 1]."""
    ds = load_dataset("mnist-5k")["test"]
    return np.asarray(ds.images[:128], np.float32) / 255.0


def _inputs(digits, shape):
    x = digits
    if shape[0] == 32:  # 28x28 digits framed in 32x32, as LeNet-5's paper does
        x = np.pad(x, ((0, 0), (2, 2), (2, 2), (0, 0)))
    return jnp.asarray(x)


def _random_gates(seed, p_closed=0.4, hard_concrete=False):
    rng = np.random.default_rng(seed)

    def factory(site):
        if hard_concrete:
            g = models.HardConcreteGate(site.size, site.kind, rngs=nnx.Rngs(0))
            # log_alpha spread so that some inference values clip to 0, some to 1
            g.log_alpha[...] = jnp.asarray(rng.normal(0.0, 3.0, site.size), jnp.float32)
            return g
        v = rng.uniform(0.05, 1.0, site.size) * (rng.uniform(size=site.size) >= p_closed)
        return models.ScaleGate(site.size, site.kind, init=jnp.asarray(v, jnp.float32))

    return factory


def _gated(key, seed=0, **kw):
    name = key.split("-")[0]
    m = models.create(name, rngs=nnx.Rngs(seed), **SMALL[key])
    models.set_gates(m, _random_gates(seed + 1, **kw))
    m.eval()
    return m


@nnx.jit
def _fwd(model, x):
    """One compiled forward pass (eager calls would compile every op separately)."""
    return model(x)


def _assert_same_logits(a, b):
    a, b = np.asarray(a), np.asarray(b)
    np.testing.assert_allclose(b, a, rtol=0, atol=RTOL * float(np.max(np.abs(a))))


def _dims(wl):
    return [(l.name, l.M, l.C, l.G, l.P, l.Q, l.R, l.S, l.dynamic) for l in wl]


def _same_nonmac(got, want):
    """Element-wise work per layer: the objective scales each layer's by its kept outputs
    and rounds, so a few ops that do not scale (a softmax's scalar ops) may differ by 1;
    anything the pruned network adds (index arithmetic, a multiply) is far more."""
    for a, b in zip(got.layers, want.layers, strict=True):
        assert abs(a.nonmac_ops - b.nonmac_ops) <= 1e-3 * b.nonmac_ops + 1, (a.name, a.nonmac_ops,
                                                                             b.nonmac_ops)


@pytest.mark.parametrize("key", list(SMALL))
def test_pruned_model_equals_gated_model_and_its_workload(key, digits):
    gated = _gated(key)
    shape = gated.input_shape
    x = _inputs(digits, shape)
    pruned, spec = prune_model(gated)
    _assert_same_logits(_fwd(gated, x), _fwd(pruned, x))
    # something was removed, and every site kept what its gate values say
    assert models.count_params(pruned) < models.count_params(gated)
    for s in models.gate_sites(gated):
        v = np.asarray(s.gate.values[...])
        want = np.flatnonzero(v > 0) if np.any(v > 0) else [int(np.argmax(v))]
        assert list(spec.sites[s.path]) == list(want), s.path
    # the pruned network's own workload is the objective's re-mapped pruned workload
    obj_wl = _pruned_workload(gated, shape)
    got = models.model_workload(pruned, input_shape=shape)
    assert got.total_macs == obj_wl.total_macs
    assert _dims(got) == _dims(obj_wl)
    if key not in ("resnet20", "resnet20-B"):
        # (without stream gates, resnet20's conv2 writes its kept channels into the
        # full-width stream, whose add and ReLU the objective scales with them anyway:
        # an underestimate of the element-wise work: 0.05% of the energy on random gates)
        _same_nonmac(got, obj_wl)


def _pruned_workload(gated, shape):
    obj = HardwareObjective(gated, shape)
    return obj.pruned_workload(gated)


def test_pruned_macs_match_a_hand_count():
    """lenet5 with every other unit closed: MACs of the pruned network by hand."""
    m = models.create("lenet5", rngs=nnx.Rngs(0))
    models.set_gates(m, lambda s: models.ScaleGate(
        s.size, s.kind, init=(jnp.arange(s.size) % 2).astype(jnp.float32)))
    pruned, spec = prune_model(m)
    assert spec.kept_units() == {"conv1_gate": 3, "conv2_gate": 8, "conv3_gate": 60, "fc1_gate": 42}
    wl = models.model_workload(pruned, input_shape=(28, 28, 1))
    assert wl.total_macs == (28 * 28 * 3 * 25 + 10 * 10 * 8 * 3 * 25 + 60 * 8 * 25 + 42 * 60
                             + 10 * 42)
    assert pruned.conv1.kernel.shape == (5, 5, 1, 3) and pruned.fc2.kernel.shape == (42, 10)


def test_exact_cost_is_the_pruned_models_remapped_cost():
    gated = _gated("lenet5", seed=3)
    obj = HardwareObjective(gated, (28, 28, 1))
    pruned, _ = prune_model(gated)
    wl = models.model_workload(pruned, input_shape=(28, 28, 1))
    def nobits(layers):  # the objective records the architecture's word widths
        return [dataclasses.replace(l, w_bits=16, i_bits=16, o_bits=16) for l in layers]

    assert nobits(wl.layers) == nobits(obj.pruned_workload(gated).layers)  # non-MAC ops too
    mine = hwmodel.cost(wl, obj.arch, mappings=hwmodel.map_workload(wl, obj.arch, dataflow="rs"))
    exact = obj.exact_cost(gated)
    assert float(mine.energy_per_inference_pj) == pytest.approx(
        float(exact.energy_per_inference_pj), rel=1e-6)
    assert float(mine.latency_s) == pytest.approx(float(exact.latency_s), rel=1e-6)
    # the in-loss (relaxed) estimate is a different figure: dense mappings, scaled loops
    relaxed = float(obj.value(gated, hard=True))
    assert relaxed != float(exact.energy_per_inference_pj)


def test_hard_concrete_gates_in_inference_mode(digits):
    m = _gated("mnist_cnn", hard_concrete=True)
    vals = np.concatenate([np.asarray(s.gate.values()) for s in models.gate_sites(m)])
    assert np.any(vals == 0) and np.any((vals > 0) & (vals < 1)) and np.any(vals == 1)
    pruned, spec = prune_model(m)
    x = _inputs(digits, (28, 28, 1))
    _assert_same_logits(_fwd(m, x), _fwd(pruned, x))
    obj = HardwareObjective(m, (28, 28, 1))
    assert spec.kept_units() == obj.kept_units(m)


def test_a_fully_closed_site_keeps_one_unit_and_still_matches(digits):
    m = models.create("mnist_cnn", rngs=nnx.Rngs(0))
    models.set_gates(m, lambda s: models.ScaleGate(
        s.size, s.kind, init=0.0 if s.path == "conv2_gate" else 0.5))
    m.eval()
    pruned, spec = prune_model(m)
    assert spec.sites["conv2_gate"] == (0,)
    assert pruned.linear1.kernel.shape == (49, 256)
    x = _inputs(digits, (28, 28, 1))[:32]
    _assert_same_logits(_fwd(m, x), _fwd(pruned, x))


def test_vit_heads_and_mlp_units_shrink():
    m = _gated("vit_tiny", seed=5)
    pruned, spec = prune_model(m)
    for i in range(2):
        heads = len(spec.sites[f"blocks.{i}.attn.head_gate"])
        hidden = len(spec.sites[f"blocks.{i}.mlp.gate"])
        attn, mlp = pruned.blocks[i].attn, pruned.blocks[i].mlp
        assert attn.num_heads == heads
        assert attn.q.kernel.shape == (64, heads * 16) and attn.o.kernel.shape == (heads * 16, 64)
        assert mlp.fc1.kernel.shape == (64, hidden) and mlp.fc2.kernel.shape == (hidden, 64)


def test_resnet_residual_writers_scatter_into_the_stream():
    m = _gated("resnet20")
    pruned, spec = prune_model(m)
    b = pruned.blocks[0]
    k = len(spec.sites["blocks.0.gate2"])
    assert isinstance(b.gate2, StreamGate) and b.gate2.width == 16 and b.gate2.size == k
    assert b.conv2.kernel.shape[-1] == k and b.bn2.scale.shape == (k,)
    assert b.conv1.kernel.shape[2] == len(spec.sites["stem.gate"])  # gathers the stem's channels


def test_user_model_gated_with_add_gates(digits):
    class TutorialCNN(nnx.Module):  # the Flax NNX MNIST tutorial's CNN
        def __init__(self, *, rngs):
            self.conv1 = nnx.Conv(1, 32, kernel_size=(3, 3), rngs=rngs)
            self.conv2 = nnx.Conv(32, 64, kernel_size=(3, 3), rngs=rngs)
            self.linear1 = nnx.Linear(3136, 256, rngs=rngs)
            self.linear2 = nnx.Linear(256, 10, rngs=rngs)

        def __call__(self, x):
            x = nnx.avg_pool(nnx.relu(self.conv1(x)), (2, 2), (2, 2))
            x = nnx.avg_pool(nnx.relu(self.conv2(x)), (2, 2), (2, 2))
            x = nnx.relu(self.linear1(x.reshape(x.shape[0], -1)))
            return self.linear2(x)

    m = TutorialCNN(rngs=nnx.Rngs(0))
    models.add_gates(m, {"conv1": ["conv2"], "conv2": ["linear1"], "linear1": ["linear2"]})
    models.set_gates(m, _random_gates(2))
    pruned, spec = prune_model(m)
    assert spec.model is None
    x = _inputs(digits, (28, 28, 1))
    _assert_same_logits(_fwd(m, x), _fwd(pruned, x))
    obj = HardwareObjective(m, (28, 28, 1))
    got = models.model_workload(pruned, input_shape=(28, 28, 1))
    assert _dims(got) == _dims(obj.pruned_workload(m))
    with pytest.raises(ValueError, match="not a zoo model"):
        save_pruned(pruned, spec, "unused")


@pytest.mark.parametrize("key", ["resnet20-S", "resnet20-SB"])
def test_resnet_stream_gates_shrink_the_stream(key):
    """Stream gates remove a residual-stream channel from every layer writing or reading
    it: the stem, every conv2 (and projection) of the stage, the conv1s, the head."""
    m = _gated(key)
    pruned, spec = prune_model(m)
    k = [len(spec.sites[f"streams.{s}"]) for s in range(3)]
    assert min(k) >= 1 and sum(k) < 16 + 32 + 64
    assert pruned.stem.conv.kernel.shape[-1] == k[0] and pruned.stem.bn.scale.shape == (k[0],)
    for i, b in enumerate(pruned.blocks):
        st = i // 2
        assert b.conv2.kernel.shape[-1] == k[st] and b.bn2.scale.shape == (k[st],)
        assert b.conv1.kernel.shape[2] == (k[st - 1] if i % 2 == 0 and st else k[st])
        if b.project:
            assert b.proj.kernel.shape[2:] == (k[st - 1], k[st])
        elif i % 2 == 0 and st:  # option A where a stage begins: a gathered shortcut
            assert len(b.short_index) == k[st] and b.short_scale.shape == (k[st],)
    assert pruned.head.kernel.shape[0] == k[2]
    assert isinstance(pruned.streams[0], models.Gate) and pruned.streams[0].size == k[0]


def test_resnet_stream_gate_costs_every_writer_and_reader():
    """Closing half of stage 2's stream halves M of its conv2s and C of its conv1s and
    the head, and nothing else (the objective's bindings, exact at a fixed mapping)."""
    m = models.create("resnet20", rngs=nnx.Rngs(0), stream_gates=True)
    obj = HardwareObjective(m, (32, 32, 3))
    keeps = {b.path: np.ones(b.size, np.float32) for b in obj.bindings}
    keeps["streams.2"][::2] = 0
    kn = obj.knobs(keeps)
    names = [l.name for l in obj.layers]
    half_out = {"blocks.6.conv2", "blocks.7.conv2", "blocks.8.conv2"}
    half_in = {"blocks.7.conv1", "blocks.8.conv1", "head"}
    for i, n in enumerate(names):
        assert float(kn.keep_out[i]) == (0.5 if n in half_out else 1.0), n
        assert float(kn.keep_in[i]) == (0.5 if n in half_in else 1.0), n
    wl = obj.pruned_workload(keeps)
    for l, l0 in zip(wl.layers, obj.layers, strict=True):
        assert l.M == (l0.M // 2 if l.name in half_out else l0.M), l.name
        assert l.C == (l0.C // 2 if l.name in half_in else l0.C), l.name


@pytest.mark.parametrize("key", ["resnet20", "resnet20-S", "vit_tiny"])
def test_save_and_load_without_the_original(key, digits, tmp_path):
    gated = _gated(key, seed=7)
    pruned, spec = prune_model(gated, model_kwargs=SMALL[key])
    save_pruned(pruned, spec, tmp_path / "p")
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["params.npz", "pruned.json"]
    d = json.loads((tmp_path / "p" / "pruned.json").read_text())
    assert d["format"] == "codesign-pruned/1" and d["model"] == key.split("-")[0]
    assert read_spec(tmp_path / "p") == PruneSpec.from_dict(d)
    loaded = load_pruned(tmp_path / "p")
    x = _inputs(digits, gated.input_shape)[:64]
    np.testing.assert_array_equal(np.asarray(_fwd(loaded, x)), np.asarray(_fwd(pruned, x)))


@pytest.mark.parametrize("key", ["resnet20-S", "lenet5"])
def test_a_quantized_model_saves_and_loads_at_its_widths(key, digits, tmp_path):
    """A model quantized before pruning (quantization-aware training) keeps its widths
    through save / load: the loaded model is quantized alike, computes the same logits
    and costs what the pruned one costs (it used to reload as float)."""
    gated = _gated(key, seed=7)
    models.quantize(gated, weight_bits=6, act_bits=8)
    pruned, spec = prune_model(gated, model_kwargs=SMALL[key])
    assert (spec.weight_bits, spec.act_bits) == (6, 8)
    save_pruned(pruned, spec, tmp_path / "p")
    d = json.loads((tmp_path / "p" / "pruned.json").read_text())
    assert (d["weight_bits"], d["act_bits"]) == (6, 8)
    loaded = load_pruned(tmp_path / "p")
    assert models.quantized_layers(loaded) == models.quantized_layers(pruned) != {}
    x = _inputs(digits, gated.input_shape)[:64]
    np.testing.assert_array_equal(np.asarray(_fwd(loaded, x)), np.asarray(_fwd(pruned, x)))
    shape = gated.input_shape
    e = [float(HardwareObjective(m, shape).exact_cost(m).energy_per_inference_pj)
         for m in (pruned, loaded)]
    assert e[0] == e[1]
    # a spec written before widths were recorded reads as float; a bad width is an error
    old = {k: v for k, v in d.items() if k not in ("weight_bits", "act_bits")}
    assert PruneSpec.from_dict(old).weight_bits == 0
    with pytest.raises(ValueError, match="'act_bits' must be 0"):
        PruneSpec.from_dict(dict(d, act_bits=1))
    # a model whose quantization the spec cannot say: a clear error, nothing written
    mixed = dataclasses.replace(spec, weight_bits=0, act_bits=0)
    with pytest.raises(ValueError, match="quantization"):
        save_pruned(pruned, mixed, tmp_path / "q")
    assert not (tmp_path / "q").exists()


def test_a_trained_runs_model_prunes_to_the_network_alone(tmp_path):
    """A budget / co-design run's model carries the multiplier, the step count and the
    hardware knobs (codesign.energy.prepare_model): the pruned model is the network
    alone, and it saves (save_pruned refused it: variables its spec does not rebuild)."""
    from codesign.energy import HardwareDesign, HardwareDual
    gated = _gated("lenet5")
    gated.hw_dual = HardwareDual(jnp.float32(2.0))
    gated.hw_step = HardwareDual(jnp.float32(7.0))
    gated.hw_design = HardwareDesign(jnp.zeros((3,), jnp.float32))
    pruned, spec = prune_model(gated)
    assert not any(hasattr(pruned, k) for k in ("hw_dual", "hw_step", "hw_design"))
    assert hasattr(gated, "hw_dual")  # the original is not modified
    save_pruned(pruned, spec, tmp_path / "p")
    assert load_pruned(tmp_path / "p") is not None


def test_save_checks_the_spec_rebuilds_the_model(tmp_path):
    gated = _gated("vgg_small")
    pruned, spec = prune_model(gated)  # stages not given: the default ones do not fit
    with pytest.raises(ValueError, match="does not rebuild"):
        save_pruned(pruned, spec, tmp_path / "p")
    assert not (tmp_path / "p" / "pruned.json").exists()


def test_load_errors_are_one_line(tmp_path):
    gated = _gated("lenet5")
    pruned, spec = prune_model(gated)
    save_pruned(pruned, spec, tmp_path / "p")
    with pytest.raises(ValueError, match="no pruned.json"):
        load_pruned(tmp_path)
    d = json.loads((tmp_path / "p" / "pruned.json").read_text())
    bad = dict(d, sites={**d["sites"], "conv1_gate": {"size": 6, "kept": [7]}})
    (tmp_path / "p" / "pruned.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="conv1_gate"):
        load_pruned(tmp_path / "p")
    wider = dict(d, sites={**d["sites"], "conv1_gate": {"size": 6, "kept": [0, 1, 2, 3, 4, 5]}})
    (tmp_path / "p" / "pruned.json").write_text(json.dumps(wider))
    if len(d["sites"]["conv1_gate"]["kept"]) < 6:
        with pytest.raises(ValueError, match="conv1") as e:
            load_pruned(tmp_path / "p")
        assert "\n" not in str(e.value)
    (tmp_path / "p" / "pruned.json").write_text(json.dumps(d))
    (tmp_path / "p" / "params.npz").unlink()
    with pytest.raises(ValueError, match="no params.npz"):
        load_pruned(tmp_path / "p")


def test_unsupported_sites_are_clear_errors():
    m = models.create("mobilenet_small", rngs=nnx.Rngs(0), blocks=((8, 1),), stem_width=8)
    with pytest.raises(ValueError, match="depthwise"):
        prune_model(m)
    m = models.create("lenet5", rngs=nnx.Rngs(0))
    models.set_gates(m, lambda s: models.ScaleGate(s.size, s.kind, init=-1.0))
    with pytest.raises(ValueError, match=">= 0"):
        prune_model(m)
