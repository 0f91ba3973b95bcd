"""``codesign cost --run`` / ``codesign count --run``: a run's or a pruned model's network."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from codesign import _cli_cost, _cli_count, train
from codesign._checkpoint import Checkpointer
from codesign.config import Config
from codesign.objective import HardwareObjective
from codesign.prune import prune_model, save_pruned


def _write_run(workdir, config: Config, *, checkpoint=True):
    """A run directory as ``codesign train`` writes it: config.json + an Orbax checkpoint
    of ``nnx.state((model, optimizer))`` (built by the trainer's own functions)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.json").write_text(config.to_json())
    if checkpoint:
        model, opt = train.create_train_state(config, input_shape=(28, 28, 1), num_classes=10,
                                              steps_per_epoch=1)
        ck = Checkpointer(workdir / train.CHECKPOINT_DIR, keep=1, asynchronous=False)
        ck.save(1, nnx.split((model, opt))[1], {"epoch": 1})
        ck.close()
    return workdir


def _json(capsys, main, argv):
    rc = main(argv)
    out = capsys.readouterr()
    assert rc == 0, out.err
    return json.loads(out.out)


def test_run_directory_counts_and_costs_its_model(tmp_path, capsys):
    run = _write_run(tmp_path / "run", Config(dataset="synthetic", model="lenet5"))
    d = _json(capsys, _cli_count.main, ["--run", str(run), "--json"])
    assert d["total_macs"] == 416_520  # lenet5 (the models docstring)
    assert d["run"] == str(run) and "epoch 1" in d["loaded"]
    zoo = _json(capsys, _cli_cost.main, ["lenet5", "--arch", "eyeriss", "--json"])
    mine = _json(capsys, _cli_cost.main, ["--run", str(run), "--arch", "eyeriss", "--json"])
    assert mine["energy_pj"] == pytest.approx(zoo["energy_pj"], rel=1e-9)
    assert mine["model"] == "lenet5"
    rc = _cli_count.main(["--run", str(run), "--summary"])
    out = capsys.readouterr().out
    assert rc == 0 and out.startswith(f"run {run}: lenet5, checkpoint of epoch 1\n")


def test_pruned_directory_cost_is_the_exact_remapped_cost(tmp_path, capsys):
    m = models.create("lenet5", rngs=nnx.Rngs(0))
    rng = np.random.default_rng(0)
    models.set_gates(m, lambda s: models.ScaleGate(
        s.size, s.kind, init=jnp.asarray(rng.uniform(size=s.size) > 0.5, jnp.float32)))
    pruned, spec = prune_model(m)
    save_pruned(pruned, spec, tmp_path / "p")
    obj = HardwareObjective(m, (28, 28, 1), arch="eyeriss", dataflow="rs")
    exact = obj.exact_cost(m)
    d = _json(capsys, _cli_cost.main, ["--run", str(tmp_path / "p"), "--arch", "eyeriss", "--json"])
    assert d["macs"] == int(sum(exact.layer_macs))
    assert d["energy_pj"] == pytest.approx(float(exact.energy_per_inference_pj), rel=1e-6)
    c = _json(capsys, _cli_count.main, ["--run", str(tmp_path / "p"), "--json"])
    assert c["total_macs"] == obj.pruned_workload(m).total_macs
    assert "pruned lenet5" in c["loaded"]


@pytest.mark.parametrize("make,argv,msg", [
    (lambda p: p, [], "not a run directory"),
    (lambda p: p / "missing", [], "no such directory"),
    (lambda p: _write_run(p / "r", Config(dataset="synthetic", model="lenet5"), checkpoint=False),
     [], "no checkpoints/ directory"),
    (lambda p: (p / "bad").mkdir() or (p / "bad" / "config.json").write_text("{") and p / "bad",
     [], "config"),
    (lambda p: p, ["--input-shape", "28,28,1"], "does not apply to --run"),
    (lambda p: p, ["lenet5"], "not both"),
])
def test_bad_runs_are_one_line_errors(tmp_path, capsys, make, argv, msg):
    path = make(tmp_path)
    for main in (_cli_count.main, _cli_cost.main):
        extra = ["--arch", "eyeriss"] if main is _cli_cost.main else []
        rc = main(["--run", str(path), *argv, *extra])
        err = capsys.readouterr().err
        assert rc == 2
        assert msg in err and err.count("\n") == 1, err


def test_a_checkpoint_of_another_model_is_a_one_line_error(tmp_path, capsys):
    run = _write_run(tmp_path / "r", Config(dataset="synthetic", model="lenet5"))
    cfg = Config(dataset="synthetic", model="mnist_cnn")
    (run / "config.json").write_text(cfg.to_json())
    rc = _cli_count.main(["--run", str(run)])
    err = capsys.readouterr().err
    assert rc == 2 and "does not match" in err and err.count("\n") == 1


def test_neither_model_nor_run(capsys):
    assert _cli_count.main([]) == 2
    assert "(or --run WORKDIR)" in capsys.readouterr().err


def test_a_gated_run_is_pruned_and_costs_the_exact_figure(tmp_path, capsys, monkeypatch):
    """A run whose model carries gates: --run loads the checkpoint's gate values, prunes,
    and costs the re-mapped pruned network (HardwareObjective.exact_cost)."""
    import codesign._run as run_mod

    def gated_model(config):
        m = models.create(config.model, rngs=nnx.Rngs(config.seed), num_classes=10,
                          input_shape=(28, 28, 1))
        models.set_gates(m, lambda s: models.ScaleGate(s.size, s.kind))
        return m

    config = Config(dataset="synthetic", model="lenet5")
    trained = gated_model(config)  # "trained": its gates closed half of every site
    rng = np.random.default_rng(1)
    for s in models.gate_sites(trained):
        s.gate.values[...] = jnp.asarray(rng.uniform(0.1, 1, s.size) * (np.arange(s.size) % 2),
                                         jnp.float32)
    opt = nnx.Optimizer(trained, train.make_optimizer(config, 1), wrt=nnx.Param)
    run = tmp_path / "gated"
    run.mkdir()
    (run / "config.json").write_text(config.to_json())
    ck = Checkpointer(run / train.CHECKPOINT_DIR, keep=1, asynchronous=False)
    ck.save(3, nnx.split((trained, opt))[1], {"epoch": 3})
    ck.close()
    monkeypatch.setattr(run_mod, "_build_model", gated_model)

    trained.eval()
    obj = HardwareObjective(trained, (28, 28, 1), arch="eyeriss", dataflow="rs")
    exact = obj.exact_cost(trained)
    d = _json(capsys, _cli_cost.main, ["--run", str(run), "--arch", "eyeriss", "--json"])
    assert "gates pruned (113 of 226 gated units kept)" in d["loaded"]
    assert d["macs"] == int(sum(exact.layer_macs))
    assert d["energy_pj"] == pytest.approx(float(exact.energy_per_inference_pj), rel=1e-6)


def test_a_gates_method_run_loads_with_its_gates(tmp_path, capsys):
    """A run of method "gates" (HardConcreteGates set by codesign.energy.prepare_model):
    --run rebuilds the gated model, loads the checkpoint and prunes it."""
    cfg = Config(dataset="synthetic", model="lenet5", method="gates", energy_weight=0.1)
    run = _write_run(tmp_path / "g", cfg)
    d = _json(capsys, _cli_count.main, ["--run", str(run), "--json"])
    assert "gates pruned (226 of 226 gated units kept)" in d["loaded"]  # init_keep 0.95: all open
    assert d["total_macs"] == 416_520
