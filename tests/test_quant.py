"""Quantization-aware training (models.quantize, --weight-bits / --act-bits): the
rounding against numpy, the straight-through gradient, the workload the extractor sees,
the bits the cost model charges, the co-design hardware built at the network's widths."""

from __future__ import annotations

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import hwmodel
import models
from codesign import cli, joint
from codesign.config import ConfigError
from codesign.objective import HardwareObjective, bit_knobs
from codesign.train import train_and_evaluate
from models._quant import fake_quant_input, fake_quant_weight
from tests.test_energy_train import tiny


def _np_weight(w, bits):
    levels = 2 ** (bits - 1) - 1
    m = np.max(np.abs(w), axis=tuple(range(w.ndim - 1)), keepdims=True)
    s = np.where(m > 0, m / levels, 1.0)
    return np.clip(np.round(w / s), -levels, levels) * s


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_weight_rounding_matches_numpy_per_output_channel(bits):
    w = np.asarray(jax.random.normal(jax.random.key(bits), (3, 3, 4, 5)), np.float64)
    w[..., 2] = 0.0  # an all-zero channel stays zero (no division by zero)
    q = np.asarray(fake_quant_weight(jnp.asarray(w, jnp.float32), bits), np.float64)
    np.testing.assert_allclose(q, _np_weight(w, bits), rtol=1e-5, atol=1e-6)
    for c in range(5):  # at most 2**bits - 1 levels per channel, the extreme kept
        assert len(np.unique(np.round(q[..., c], 5))) <= 2 ** bits - 1
        assert np.max(np.abs(q[..., c])) == pytest.approx(np.max(np.abs(w[..., c])), rel=1e-5)


def test_input_rounding_is_per_example_and_unsigned_after_relu():
    x = jax.random.normal(jax.random.key(0), (6, 5, 5, 3))
    relu = jax.nn.relu(x)
    q = fake_quant_input(relu, 4)
    # no statistic crosses examples: each example alone gives the same values
    for i in range(6):
        np.testing.assert_array_equal(np.asarray(fake_quant_input(relu[i:i + 1], 4))[0],
                                      np.asarray(q)[i])
    # non-negative: 2**4 - 1 = 15 steps of max / 15 (unsigned), so at most 16 values
    qi = np.asarray(q[0])
    step = float(np.max(np.asarray(relu[0]))) / 15
    np.testing.assert_allclose(qi / step, np.round(qi / step), atol=1e-4)
    # signed: symmetric, 2**3 - 1 = 7 steps each side
    qs = np.asarray(fake_quant_input(x, 4)[0])
    step = float(np.max(np.abs(np.asarray(x[0])))) / 7
    np.testing.assert_allclose(qs / step, np.round(qs / step), atol=1e-4)
    assert np.min(qs) < 0


def test_straight_through_gradient_is_the_identity():
    w = jax.random.normal(jax.random.key(1), (8, 4))
    g = jax.grad(lambda w: jnp.sum(fake_quant_weight(w, 3) * jnp.arange(4.0)[None, :]))(w)
    np.testing.assert_array_equal(np.asarray(g), np.broadcast_to(np.arange(4.0), (8, 4)))
    x = jax.random.normal(jax.random.key(2), (2, 6))
    g = jax.grad(lambda x: jnp.sum(fake_quant_input(x, 3) ** 2))(x)
    np.testing.assert_allclose(np.asarray(g), 2 * np.asarray(fake_quant_input(x, 3)), rtol=1e-6)


def _cnn():
    m = models.create("mnist_cnn", rngs=nnx.Rngs(0))
    m.eval()
    return m


def test_quantize_rounds_every_conv_and_dense_and_is_idempotent():
    x = jax.random.normal(jax.random.key(3), (4, 28, 28, 1))
    ref = _cnn()
    y0 = ref(x)
    m = _cnn()
    assert models.quantize(m, weight_bits=8, act_bits=8) == ["conv1", "conv2", "linear1",
                                                              "linear2"]
    assert models.quantized_layers(m) == {k: (8, 8) for k in ("conv1", "conv2", "linear1",
                                                                "linear2")}
    y8 = m(x)
    err8 = float(jnp.max(jnp.abs(y8 - y0)))
    assert 0 < err8 < 0.05 * float(jnp.max(jnp.abs(y0)))
    m4 = _cnn()
    models.quantize(m4, weight_bits=4, act_bits=4)
    assert float(jnp.max(jnp.abs(m4(x) - y0))) > err8  # fewer bits, farther from float
    # the same as rounding the first layer by hand
    m1 = _cnn()
    models.quantize(m1, weight_bits=8, act_bits=8)
    k = m1.conv1.kernel[...]
    want = jax.lax.conv_general_dilated(
        fake_quant_input(x, 8), fake_quant_weight(k, 8), (1, 1), "SAME",
        dimension_numbers=("NHWC", "HWIO", "NHWC")) + m1.conv1.bias[...][None, None, None, :]
    got = m1.conv1(x)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)
    assert models.quantize(m, weight_bits=8, act_bits=8) == list(models.quantized_layers(m))
    with pytest.raises(ValueError, match="quantized already at 8 / 8 bits, not 4 / 4"):
        models.quantize(m, weight_bits=4, act_bits=4)
    # jit and grad go through; the gradient is finite and nonzero everywhere
    m.train()
    g = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(m)
    for leaf in jax.tree.leaves(nnx.state(g, nnx.Param)):
        assert np.all(np.isfinite(np.asarray(leaf))) and np.any(np.asarray(leaf) != 0)


@pytest.mark.parametrize("kw,msg", [
    ({"weight_bits": 1}, "weight_bits = 1; valid: 0"),
    ({"act_bits": 17}, "act_bits = 17; valid: 0"),
])
def test_bad_widths_are_errors(kw, msg):
    with pytest.raises(ValueError, match=msg):
        models.quantize(_cnn(), **kw)


def test_depthwise_models_are_refused_not_left_in_float():
    m = models.create("mobilenet_small", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="depthwise convolutions"):
        models.quantize(m, weight_bits=8)


def test_extracted_workload_ignores_the_rounding():
    """Rounding is not work the integer datapath does: a quantized model extracts the
    float model's workload, layer for layer (MACs, element-wise ops, sizes)."""
    m = _cnn()
    models.quantize(m, weight_bits=4, act_bits=8)
    a = models.model_workload(m, input_shape=(28, 28, 1)).layers
    b = models.model_workload(_cnn(), input_shape=(28, 28, 1)).layers
    # (``source``, the line that called the layer's matmul, is the hook's)
    assert [dataclasses.replace(l, source="") for l in a] == [
        dataclasses.replace(l, source="") for l in b]


def test_objective_charges_the_bits_and_compares_with_the_float_network():
    m = _cnn()
    models.quantize(m, weight_bits=8, act_bits=4)
    obj = HardwareObjective(m, (28, 28, 1))
    assert [(l.w_bits, l.i_bits, l.o_bits) for l in obj.layers] == [(8, 4, 16)] * 4
    assert obj.layer_bits == {k: (8, 4) for k in ("conv1", "conv2", "linear1", "linear2")}
    # every gate open: the cost model with the bit knobs on the same mappings
    keeps = {b.path: jnp.ones((b.size,)) for b in obj.bindings}
    L = len(obj.layers)
    want = hwmodel.cost(obj.workload, obj.arch, mappings=obj.mappings, knobs=hwmodel.Knobs(
        w_bits=np.full(L, 8.0), i_bits=np.full(L, 4.0)))
    assert float(obj.cost(keeps).energy_pj) == pytest.approx(float(want.energy_pj), rel=1e-5)
    # the reference is the float dense network: all-open relative < 1
    float_obj = HardwareObjective(_cnn(), (28, 28, 1))
    assert obj.dense_value == pytest.approx(float_obj.dense_value, rel=1e-9)
    assert 0.2 < float(obj.relative(keeps)) < 0.6
    # the exact (re-mapped) cost charges the bits too, as bit_knobs does
    exact = obj.exact_cost(keeps)
    k = bit_knobs(m, obj.workload, obj.arch)
    direct = hwmodel.cost(obj.workload, obj.arch, dataflow="rs", knobs=k)
    assert float(exact.energy_pj) == pytest.approx(float(direct.energy_pj), rel=1e-6)
    # wider than the words: an error naming the layer and the width
    m16 = _cnn()
    models.quantize(m16, weight_bits=16)
    narrow = hwmodel.scale_word_bits(hwmodel.load_arch("eyeriss"), [8, 8, 16])
    with pytest.raises(ValueError, match=r"'conv1': weight bits 16 exceed the weight word"):
        HardwareObjective(m16, (28, 28, 1), arch=narrow)


@pytest.mark.parametrize("kw,msg", [
    ({"weight_bits": 1}, "'weight_bits': expected 0 (float) or a width in [2, 16]"),
    ({"act_bits": 20}, "'act_bits': expected 0 (float) or a width in [2, 16]"),
])
def test_config_widths_are_checked(kw, msg):
    with pytest.raises(ConfigError) as e:
        tiny(**kw)
    assert msg in str(e.value)


def test_quantized_gates_run_reports_and_costs_the_bits(tmp_path, capsys):
    wd = tmp_path / "q"
    rep = train_and_evaluate(tiny(method="gates", energy_weight=1.0, weight_bits=6,
                                  act_bits=8), wd, print_table=False)
    assert rep["hw"]["weight_bits"] == 6 and rep["hw"]["act_bits"] == 8
    assert rep["dense"]["weight_bits"] == 16
    assert "bits per weight / input" in (wd / "report.md").read_text()
    capsys.readouterr()
    assert cli.main(["cost", "--run", str(wd), "--arch", "eyeriss", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert "quantized (6 / 8 bits)" in c["loaded"]
    assert c["energy_pj"] * 1e-6 == pytest.approx(rep["hw"]["energy_per_inference_uj"], rel=1e-6)


def test_co_design_builds_hardware_at_the_networks_widths(tmp_path, capsys):
    wd = tmp_path / "co"
    cfg = tiny(method="gates", energy_weight=3.0, co_design=True, area_mm2=12.25,
               co_design_evaluations=6, gate_lr=0.2, epochs=2, gate_freeze_epochs=1,
               weight_bits=8, act_bits=8)
    space = joint.search_space(cfg)
    assert [(k.name, k.lo, k.hi) for k in space.knobs if k.field == "word_bits"] == [
        ("bits.W", 8, 8), ("bits.I", 8, 8)]
    rep = train_and_evaluate(cfg, wd, print_table=False)
    arch = hwmodel.load_arch(str(wd / joint.HARDWARE_FILE))
    assert np.asarray(arch.word_bits).tolist() == [8, 8, 16]
    capsys.readouterr()
    assert cli.main(["cost", "--run", str(wd), "--arch", str(wd / joint.HARDWARE_FILE),
                     "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["energy_pj"] * 1e-6 == pytest.approx(rep["hw"]["energy_per_inference_uj"], rel=1e-6)


def test_co_design_with_bits_refuses_unquantized_matmuls(tmp_path):
    cfg = tiny(model="vit_tiny", method="gates", energy_weight=1.0, co_design=True,
               area_mm2=12.25, co_design_evaluations=4, weight_bits=8, act_bits=8, epochs=2)
    with pytest.raises(ConfigError, match="are not quantized"):
        train_and_evaluate(cfg, tmp_path / "vit", print_table=False)


def test_sweep_points_name_their_widths():
    """A sweep over widths (spec fields weight_bits / act_bits) keeps its points apart."""
    from codesign.sweep import SweepPoint

    p = SweepPoint(0, "p", {"method": "gates", "energy_budget": 0.01, "weight_bits": 8,
                            "act_bits": 4})
    assert p.setting == "budget=0.01,w8,a4"
    assert SweepPoint(1, "q", {"method": "gates", "energy_budget": 0.01}).setting == "budget=0.01"


def test_budget_ramp_starts_at_the_quantized_networks_own_cost():
    """A quantized network's dense cost (charged at its bits) is below the float
    reference; the budget ramp starts there, not at 1 (which would spend the first steps
    above the network's own cost and wind the multiplier negative)."""
    from codesign import energy, train
    from codesign.objective import objective_value

    def parts(**kw):
        cfg = tiny(method="gates", energy_budget=0.3, budget_ramp_epochs=2, **kw)
        m = energy.prepare_model(train._build_model(cfg, (28, 28, 1), 10), cfg)
        return train._energy_aware_parts(cfg, m, (28, 28, 1), 10, 5, None)

    obj, _, loss = parts(weight_bits=8, act_bits=8)
    L = len(obj.layers)
    at8 = hwmodel.cost(obj.workload, obj.arch, mappings=obj.mappings, knobs=hwmodel.Knobs(
        w_bits=jnp.full((L,), 8.0), i_bits=jnp.full((L,), 8.0)))
    start = float(objective_value(at8, "energy")) / obj.dense_value
    assert start < 0.9
    assert loss.ramp_start == pytest.approx(start, rel=1e-5)
    assert energy.open_relative(obj) == pytest.approx(start, rel=1e-5)
    t = [float(loss.target(jnp.float32(s))) for s in (0, 5, 10, 20)]
    assert t[0] == pytest.approx(start, rel=1e-5)
    assert t[1] == pytest.approx((start * 0.3) ** 0.5, rel=1e-5)  # geometric
    assert t[2] == t[3] == pytest.approx(0.3)
    # a float network ramps from 1, exactly as before; a start below the budget: no ramp
    assert parts()[2].ramp_start == 1.0
    below = dataclasses.replace(loss, ramp_start=0.2)
    assert float(below.target(jnp.float32(0))) == pytest.approx(0.3)


def _ptq_main():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "experiments" / "ptq.py"
    spec = importlib.util.spec_from_file_location("ptq", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.main


def test_ptq_script_quantizes_a_float_run_without_training(tmp_path, capsys):
    """experiments/ptq.py: the float row is the run's own report; a width costs what the
    objective charges at that width, and the accuracy is the rounded model's."""
    from codesign._run import load_run_model
    from codesign.data import load_dataset, normalize
    wd = tmp_path / "dense"
    rep = train_and_evaluate(tiny(), wd, print_table=False)
    main = _ptq_main()
    capsys.readouterr()
    assert main([str(wd), "--bits", "8,3"]) == 0
    rows = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert [r["bits"] for r in rows] == ["float", 8, 3]
    assert rows[0]["test_accuracy"] == pytest.approx(rep["test_accuracy"])
    assert rows[0]["energy_per_inference_uj"] == pytest.approx(
        rep["energy_per_inference_uj"], rel=1e-6)
    # 8 bits: the objective of the quantized model, and the accuracy of that model
    net = load_run_model(wd)
    models.quantize(net.model, weight_bits=8, act_bits=8)
    obj = HardwareObjective(net.model, net.input_shape)
    assert rows[1]["energy_per_inference_uj"] == pytest.approx(
        float(obj.exact_cost(net.model).energy_per_inference_pj) * 1e-6, rel=1e-6)
    assert rows[0]["energy_per_inference_uj"] > rows[1]["energy_per_inference_uj"] > rows[2][
        "energy_per_inference_uj"]
    splits = load_dataset("synthetic", **tiny().dataset_kwargs)
    x = normalize(jnp.asarray(splits["test"].images), tuple(splits["train"].mean),
                  tuple(splits["train"].std))
    pred = np.asarray(jnp.argmax(net.model(x), -1))
    assert rows[1]["test_accuracy"] == pytest.approx(np.mean(pred == splits["test"].labels))
    # bad input: a width out of range, a quantized run, not a run
    assert main([str(wd), "--bits", "1"]) == 2
    assert "--bits 1" in capsys.readouterr().err
    q = tmp_path / "q"
    qrep = train_and_evaluate(tiny(weight_bits=8, act_bits=8, epochs=1), q, print_table=False)
    assert main([str(q), "--bits", "4"]) == 2
    assert "trained quantized" in capsys.readouterr().err
    # a run trained quantized, without --bits: one row, the run as deployed
    assert main([str(q)]) == 0
    (row,) = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert row["bits"] == "8/8 trained"
    assert row["test_accuracy"] == pytest.approx(qrep["test_accuracy"])
    assert row["energy_per_inference_uj"] == pytest.approx(qrep["energy_per_inference_uj"],
                                                           rel=1e-6)
    # a kept result (config.json, no checkpoints) with its pruned model saved: the same row
    from codesign.prune import prune_model, save_pruned
    kept = tmp_path / "kept"
    kept.mkdir()
    (kept / "config.json").write_text((q / "config.json").read_text())
    qnet = load_run_model(q)
    save_pruned(*prune_model(qnet.model, model_kwargs={"input_shape": qnet.input_shape,
                                                       "num_classes": 10}), kept / "pruned")
    assert main([str(kept)]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == [row]
    # the report of a quantized run without gates charges its bits too (it used to give
    # the float figure): the same as the float run's 8-bit row, re-mapped
    assert qrep["energy_per_inference_uj"] == pytest.approx(rows[1]["energy_per_inference_uj"],
                                                            rel=1e-6)
    assert main([str(tmp_path)]) == 2
    assert "not a codesign train run" in capsys.readouterr().err
