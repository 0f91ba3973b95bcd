"""Unstructured pruning (codesign.magnitude): masks, the ranking, the schedule, training
with masks fixed (pruned weights stay exactly zero, resume carries the masks), the
energy-aware allocation, and bad input."""

from __future__ import annotations

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import hwmodel
import models
from codesign import magnitude, train
from codesign._checkpoint import Checkpointer
from codesign._cli_train import main
from codesign.config import Config, ConfigError
from codesign.objective import HardwareObjective

SHAPE = (28, 28, 1)


def _lenet(seed=0):
    return models.create("lenet5", rngs=nnx.Rngs(seed))


def _masked_lenet(seed=0):
    m = _lenet(seed)
    layers = magnitude.attach_masks(m, [l.name for l in models.model_workload(
        m, batch=1, input_shape=SHAPE).layers])
    return m, layers


# ---- masks and the ranking --------------------------------------------------------------


def test_attach_masks_finds_every_workload_kernel():
    m, layers = _masked_lenet()
    assert list(layers) == ["conv1", "conv2", "conv3", "fc1", "fc2"]
    for name, mod in layers.items():
        assert mod.kernel_mask[...].dtype == jnp.bool_
        assert mod.kernel_mask[...].shape == mod.kernel[...].shape
        assert bool(jnp.all(mod.kernel_mask[...]))
    assert magnitude.weight_densities(m) == {n: 1.0 for n in layers}
    # masks are not trained parameters
    assert not any(isinstance(v, magnitude.PruneMask)
                   for v in jax.tree.leaves(nnx.state(m, nnx.Param), is_leaf=lambda x: isinstance(x, nnx.Variable)))


def test_prune_schedule_is_geometric_and_ends_at_target():
    s = magnitude.prune_schedule(0.01, 3)
    assert len(s) == 3 and s[-1] == pytest.approx(0.01)
    assert s == pytest.approx([0.01 ** (1 / 3), 0.01 ** (2 / 3), 0.01])
    assert magnitude.prune_schedule(0.3, 1) == [pytest.approx(0.3)]


def _brute_keep(scores, current, kept):
    """Reference: walk every weight in (score desc, layer order, position) order."""
    items = []
    for li, (n, s) in enumerate(scores.items()):
        for j, v in enumerate(np.ravel(s)):
            if np.ravel(current[n])[j]:
                items.append((-float(v), li, j, n))
    items.sort()
    out = {n: np.zeros(np.size(s), bool) for n, s in scores.items()}
    for _, _, j, n in items[:kept]:
        out[n][j] = True
    return {n: v.reshape(np.shape(scores[n])) for n, v in out.items()}


@pytest.mark.parametrize("seed", range(4))
def test_select_keep_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    scores = {"a": rng.integers(0, 5, (3, 4)).astype(float), "b": rng.normal(size=7),
              "c": rng.integers(0, 3, (2, 2, 2)).astype(float)}
    current = {n: rng.random(np.shape(s)) < 0.8 for n, s in scores.items()}
    alive = sum(int(c.sum()) for c in current.values())
    for kept in (0, 1, alive // 2, alive, alive + 5):
        got = magnitude.select_keep(scores, current, kept=kept)
        want = _brute_keep(scores, current, min(kept, alive))
        for n in scores:
            np.testing.assert_array_equal(got[n], want[n])
            assert not np.any(got[n] & ~current[n])  # pruned weights stay pruned
    # fits: the largest prefix whose densities satisfy a monotone predicate
    sizes = {n: np.size(s) for n, s in scores.items()}
    limit = 0.37
    fits = lambda d: sum(d[n] * sizes[n] for n in d) * 1.0 + 2.0 * d["a"] <= limit * alive  # noqa: E731
    got = magnitude.select_keep(scores, current, fits=fits)
    k_best = max(k for k in range(alive + 1)
                 if fits({n: v.mean() for n, v in _brute_keep(scores, current, k).items()}))
    want = _brute_keep(scores, current, k_best)
    for n in scores:
        np.testing.assert_array_equal(got[n], want[n])


def test_magnitude_prunes_the_smallest_weights_globally():
    m, layers = _masked_lenet(1)
    n = sum(mod.kernel[...].size for mod in layers.values())
    allw = np.concatenate([np.abs(np.asarray(mod.kernel[...])).ravel() for mod in layers.values()])
    info = magnitude.prune(m, None, method="magnitude", target=0.25)
    kept = int(round(0.25 * n))
    assert info["prune_density"] == pytest.approx(kept / n)
    thr = np.sort(allw)[::-1][kept - 1]
    for mod in layers.values():
        k, mask = np.asarray(mod.kernel[...]), np.asarray(mod.kernel_mask[...])
        assert np.all(k[~mask] == 0)                         # pruned: exactly zero
        assert np.all(np.abs(k[mask]) >= thr)                # kept: the largest
    # a second, milder step changes nothing (masks only shrink); a stronger one nests
    before = magnitude.masks(m)
    magnitude.prune(m, None, method="magnitude", target=0.5)
    assert all(np.array_equal(before[k], v) for k, v in magnitude.masks(m).items())
    magnitude.prune(m, None, method="magnitude", target=0.1)
    after = magnitude.masks(m)
    assert all(not np.any(after[k] & ~before[k]) for k in after)
    assert sum(v.sum() for v in after.values()) == int(round(0.1 * n))


# ---- hardware: the marginal saving and the energy-aware allocation ------------------------


def _objective(model, sparsity="gate", compression="bitmask"):
    arch = hwmodel.load_arch("eyeriss").replace(sparsity=sparsity, compression=compression)
    return HardwareObjective(model, SHAPE, arch=arch, dataflow="rs")


def test_energy_per_weight_is_the_cost_difference():
    m, layers = _masked_lenet()
    obj = _objective(m)
    sizes = {n: mod.kernel[...].size for n, mod in layers.items()}
    dens = {n: 1.0 for n in layers}
    e = magnitude.energy_per_weight(obj, dens, sizes)
    ones = {b.path: jnp.ones(b.size) for b in obj.bindings}
    names = [l.name for l in obj.layers]
    for n in layers:
        d = np.ones(len(names), np.float32)
        d[names.index(n)] = 0.5  # the gate + bitmask energy is linear in each density
        drop = float(obj.value(ones)) - float(obj.value(ones, weight_density=jnp.asarray(d)))
        assert e[n] > 0
        assert e[n] * 0.5 * sizes[n] == pytest.approx(drop, rel=1e-3)
    # on an architecture that does not exploit sparsity, nothing is saved
    e0 = magnitude.energy_per_weight(_objective(m, "none", "none"), dens, sizes)
    assert all(v == 0 for v in e0.values())


@pytest.mark.parametrize("sparsity", ["gate", "skip"])
def test_energy_magnitude_prunes_expensive_layers_harder(sparsity):
    """Same magnitude distribution in every layer: global magnitude keeps ~the same
    fraction everywhere; energy-magnitude keeps less where a weight costs more, more where
    it costs less, and ends at a lower energy for the same number of weights."""
    res = {}
    for method in ("magnitude", "energy-magnitude"):
        m, layers = _masked_lenet()
        rng = np.random.default_rng(0)
        for mod in layers.values():  # identical |w| statistics per layer
            mod.kernel.set_value(jnp.asarray(rng.normal(size=mod.kernel[...].shape), jnp.float32))
        obj = _objective(m, sparsity)
        sizes = {n: mod.kernel[...].size for n, mod in layers.items()}
        e = magnitude.energy_per_weight(obj, {n: 1.0 for n in layers}, sizes)
        info = magnitude.prune(m, None, method=method, target=0.3, objective=obj, energy_power=1.0)
        res[method] = (magnitude.weight_densities(m), info)
    dm, im = res["magnitude"]
    de, ie = res["energy-magnitude"]
    assert im["prune_density"] == pytest.approx(ie["prune_density"], abs=1e-4)
    hi, lo = max(e, key=e.get), min(e, key=e.get)
    assert e[hi] > 2 * e[lo]
    assert de[hi] < dm[hi] and de[lo] > dm[lo]
    # the layers' order by energy per weight is the order of their densities
    order = sorted(e, key=e.get)
    assert [de[n] for n in order] == sorted((de[n] for n in order), reverse=True)
    assert ie["prune_hw"] < im["prune_hw"]


def test_energy_target_is_met_and_tight():
    m, layers = _masked_lenet()
    obj = _objective(m)
    info = magnitude.prune(m, None, method="energy-magnitude", target=0.4, kind="energy",
                           objective=obj)
    assert info["prune_hw"] <= 0.4
    # one more weight (the best pruned one) would exceed the target: the set is maximal
    assert info["prune_hw"] > 0.4 - 0.01


# ---- training: masks fixed, exact zeros, densities reached, resume -------------------------


def _config(**kw):
    base = dict(dataset="synthetic", model="lenet5", epochs=3, batch_size=32, eval_batch_size=64,
                steps_per_epoch=4, optimizer="sgd", learning_rate=0.05, momentum=0.9,
                nesterov=True, weight_decay=1e-3, schedule="constant", progress=False,
                keep_checkpoints=3, method="magnitude", prune_target=0.2, prune_steps=2,
                hw_sparsity="gate", hw_compression="bitmask")
    base.update(kw)
    return Config(**base)


def _final_flat(workdir):
    c = Checkpointer(workdir / "checkpoints", keep=3, asynchronous=False)
    try:
        return c.restore_flat(c.latest_epoch())[0]
    finally:
        c.close()


def test_training_keeps_pruned_weights_zero_and_reaches_target(tmp_path):
    cfg = _config()
    rep = train.train_and_evaluate(cfg, tmp_path / "a", print_table=False)
    flat = _final_flat(tmp_path / "a")
    rows = [json.loads(l) for l in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r.get("prune_target") for r in rows] == [pytest.approx(0.2 ** 0.5), pytest.approx(0.2), None]
    total = kept = 0
    for name in ("conv1", "conv2", "conv3", "fc1", "fc2"):
        k, mask = flat[f"0.{name}.kernel.value"], flat[f"0.{name}.kernel_mask.value"]
        assert mask.dtype == np.bool_ and mask.shape == k.shape
        assert np.all(k[~mask] == 0.0)           # exactly zero after 12 momentum steps
        assert np.count_nonzero(k[mask]) > 0.99 * mask.sum()  # and the kept ones trained
        trace = [v for key, v in flat.items() if key.startswith("1.opt_state")
                 and key.endswith(f"trace.{name}.kernel.value")]
        assert len(trace) == 1 and np.all(trace[0][~mask] == 0.0)  # no stale momentum
        total += mask.size
        kept += int(mask.sum())
    assert kept == int(round(0.2 * total))
    assert rep["weight_density"] == pytest.approx(0.2, abs=1e-4)
    assert rep["hw"]["weight_density"] == {n: pytest.approx(float(flat[f"0.{n}.kernel_mask.value"].mean()))
                                           for n in ("conv1", "conv2", "conv3", "fc1", "fc2")}
    # report: hardware figures with those densities, the dense entry with the same keys
    for key in ("energy_per_inference_uj", "latency_per_inference_ms", "dram_bytes_per_inference",
                "energy_breakdown_uj", "macs_per_inference", "layers"):
        assert key in rep["hw"] and key in rep["dense"]
    assert rep["hw_sparsity"] == "gate" and rep["hw_compression"] == "bitmask"
    assert rep["energy_per_inference_uj"] < 0.6 * rep["dense"]["energy_per_inference_uj"]
    assert sum(rep["hw"]["energy_breakdown_uj"].values()) == pytest.approx(
        rep["energy_per_inference_uj"], rel=1e-4)
    md = (tmp_path / "a" / "report.md").read_text()
    assert "Weight density per layer" in md and "sparsity gate, compression bitmask" in md

    # resume: stop after epoch 1 (its pruning step done), continue: bitwise the same run
    run = train.setup(cfg, tmp_path / "b", t_start=time.perf_counter())
    state, progress = train.restore(run)
    state, extra = train.begin_epoch(run, state, 0)
    state, means, secs = train.train_epoch(run, state, 0)
    progress.history.append({"epoch": 1, **{f"train_{k}": v for k, v in means.items()}, **extra,
                             "epoch_time_s": secs, "images_per_s": 1.0})
    train._save_epoch(run, state, progress, 1)
    run.close()  # releases the checkpointer and the workdir lock
    train.train_and_evaluate(cfg, tmp_path / "b", resume=True, print_table=False)
    other = _final_flat(tmp_path / "b")
    assert set(other) == set(flat)
    for key in flat:
        np.testing.assert_array_equal(other[key], flat[key], err_msg=key)


def test_apply_masks_zeroes_adam_moments():
    m, layers = _masked_lenet()
    rng = np.random.default_rng(0)
    for mod in layers.values():
        mod.kernel_mask.set_value(jnp.asarray(rng.random(mod.kernel[...].shape) < 0.5))
    opt = nnx.Optimizer(m, optax.adamw(1e-2, weight_decay=0.1), wrt=nnx.Param)
    x = jnp.asarray(rng.normal(size=(8, *SHAPE)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 10, 8), jnp.int32)
    for _ in range(2):
        train.apply_step(m, opt, train.ClassificationLoss(), x, y, after_update=magnitude.apply_masks)
    found = 0
    for path, var in nnx.iter_graph(opt):
        if isinstance(var, nnx.Variable) and path[-1] == "kernel" and path[0] == "opt_state":
            name = ".".join(map(str, path[-2:-1]))
            mask = np.asarray(layers[name].kernel_mask[...])
            v = np.asarray(var[...])
            assert np.all(v[~mask] == 0) and np.any(v[mask] != 0), path
            found += 1
    assert found == 2 * len(layers)  # mu and nu of every kernel
    for mod in layers.values():
        assert np.all(np.asarray(mod.kernel[...])[~np.asarray(mod.kernel_mask[...])] == 0)


# ---- bad input: one-line errors ----------------------------------------------------------


@pytest.mark.parametrize("kw, must", [
    (dict(method="pruning"), ["'method'", "unknown 'pruning'", "energy-magnitude"]),
    (dict(method="magnitude"), ["'prune_target'", "(0, 1)", "got 0.0"]),
    (dict(method="magnitude", prune_target=1.5), ["'prune_target'", "(0, 1)", "1.5"]),
    (dict(method="energy-magnitude", prune_target=-0.1), ["'prune_target'", "-0.1"]),
    (dict(method="magnitude", prune_target=0.1, prune_steps=5, epochs=3), ["'prune_steps'", "[1, epochs=3]"]),
    (dict(method="magnitude", prune_target=0.1, prune_target_kind="flops"), ["'prune_target_kind'", "weights, energy"]),
    (dict(method="magnitude", prune_target=0.1, hw_sparsity="zero"), ["'hw_sparsity'", "gate, skip"]),
    (dict(method="magnitude", prune_target=0.1, energy_weight=0.5), ["energy_weight", "--prune-target"]),
    (dict(method="none", prune_target=0.1), ["'prune_target'", "only for --method magnitude"]),
    (dict(method="gates", hw_sparsity="gate"), ["hw_sparsity", "magnitude"]),
])
def test_bad_config_is_a_one_line_error(kw, must):
    with pytest.raises(ConfigError) as e:
        Config(**{"epochs": 3, **kw})
    msg = str(e.value)
    assert "\n" not in msg
    for s in must:
        assert s in msg, (s, msg)


@pytest.mark.parametrize("argv, must", [
    (["smoke", "--method", "magnitude"], ["prune_target", "(0, 1)"]),
    (["smoke", "--method", "energy-magnitude", "--prune-target", "2"], ["prune_target", "2"]),
    (["smoke", "--method", "magnitudes"], ["method", "valid:", "energy-magnitude"]),
])
def test_cli_errors_exit_2(capsys, argv, must):
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and err.startswith("codesign train: error:")
    for s in must:
        assert s in err, (s, err)


def test_energy_aware_needs_sparse_hardware(capsys, tmp_path):
    cfg = _config(method="energy-magnitude", hw_sparsity="preset", hw_compression="preset")
    m = _lenet()
    with pytest.raises(ConfigError, match="sparsity 'none'.*--hw-sparsity gate or skip"):
        magnitude.build_objective(m, cfg, SHAPE)
    low = _config(prune_target=0.01, prune_target_kind="energy")
    with pytest.raises(ConfigError, match="'prune_target': 0.01 .* smallest reachable"):
        magnitude.build_objective(m, low, SHAPE)
    rc = main(["smoke", "--method", "energy-magnitude", "--prune-target", "0.5", "--prune-steps", "1",
               "--workdir", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "\n" not in err and "sparsity 'none'" in err
