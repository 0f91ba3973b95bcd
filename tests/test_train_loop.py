"""train_and_evaluate end to end on tiny synthetic data: files, workdir rules, NaN stop."""

from __future__ import annotations

import json

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from codesign import train as train_mod
from codesign._checkpoint import Checkpointer
from codesign.config import Config
from codesign.train import NonFiniteLossError, WorkdirConflictError, train_and_evaluate


def tiny(**kw) -> Config:
    base = dict(
        dataset="synthetic", dataset_kwargs={"n_train": 128, "n_test": 40}, model="lenet5",
        epochs=2, batch_size=32, eval_batch_size=16, optimizer="adamw", learning_rate=3e-3,
        schedule="constant", progress=False, keep_checkpoints=2,
    )
    base.update(kw)
    return Config(**base)


def test_run_writes_config_metrics_report_checkpoints(tmp_path, capsys):
    cfg = tiny(epochs=3)
    report = train_and_evaluate(cfg, tmp_path)
    out = capsys.readouterr().out
    assert "accuracy" in out and "images/s" in out and "lenet5" in out  # results table

    assert Config.from_json((tmp_path / "config.json").read_text()) == cfg
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 3
    rows = [json.loads(l) for l in lines]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for r in rows:
        assert set(r) >= {"train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr",
                          "epoch_time_s", "images_per_s"}
        assert r["images_per_s"] == pytest.approx(4 * 32 / r["epoch_time_s"], rel=1e-6)
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]

    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved == json.loads(json.dumps(report))
    assert saved["test_accuracy"] == rows[-1]["test_accuracy"]
    assert saved["params"] > 0 and saved["batch_size"] == 32 and saved["epochs"] == 3
    assert saved["wall_time_s"] > saved["train_time_s"] > 0
    assert isinstance(saved["macs"], int) and saved["macs"] > 0
    ck = Checkpointer(tmp_path / "checkpoints", keep=2)
    assert ck.all_epochs() == [2, 3]  # keep_checkpoints=2
    _, meta = ck.restore_flat(3)
    ck.close()
    assert meta["epoch"] == 3 and len(meta["history"]) == 3
    assert not list(tmp_path.glob(".*.tmp"))  # no temp files left behind


def test_eval_padding_counts_every_test_example(tmp_path):
    """40 test examples with eval batch 16: 3 batches, the last padded; all 40 counted."""
    report = train_and_evaluate(tiny(epochs=1, keep_checkpoints=0), tmp_path, print_table=False)
    assert round(report["test_accuracy"] * 40) == pytest.approx(report["test_accuracy"] * 40, abs=1e-6)


def test_validation_split(tmp_path):
    report = train_and_evaluate(tiny(epochs=1, val_size=32, keep_checkpoints=0), tmp_path, print_table=False)
    row = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert "val_accuracy" in row and "test_accuracy" not in row
    assert 0.0 <= report["test_accuracy"] <= 1.0


def test_workdir_rules(tmp_path):
    cfg = tiny(epochs=1, keep_checkpoints=1)
    train_and_evaluate(cfg, tmp_path, print_table=False)
    with pytest.raises(WorkdirConflictError, match="--resume.*--overwrite"):
        train_and_evaluate(cfg, tmp_path)
    other = cfg.replace(learning_rate=1e-2)
    with pytest.raises(WorkdirConflictError, match=r"different config \(learning_rate: 0.003 there, 0.01 now\)"):
        train_and_evaluate(other, tmp_path)
    with pytest.raises(WorkdirConflictError, match="different config"):
        train_and_evaluate(other, tmp_path, resume=True)
    # runtime fields may differ on resume; a finished run resumes to the same report
    again = train_and_evaluate(cfg.replace(eval_batch_size=8), tmp_path, resume=True, print_table=False)
    assert again["resumed_from_epoch"] == 1
    assert Config.from_json((tmp_path / "config.json").read_text()).eval_batch_size == 8
    fresh = train_and_evaluate(other, tmp_path, overwrite=True, print_table=False)
    assert fresh["resumed_from_epoch"] is None
    assert Config.from_json((tmp_path / "config.json").read_text()) == other


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    """Parameters turn NaN at the first step of epoch 2: the run stops, epoch 1's checkpoint stays."""
    real = train_mod.make_optimizer

    def poisoned(config, steps_per_epoch):
        def init(params):
            return jnp.zeros((), jnp.int32)

        def update(updates, count, params=None):
            factor = jnp.where(count >= steps_per_epoch, jnp.nan, 1.0)
            return optax.tree.scale(factor, updates), count + 1

        return optax.chain(real(config, steps_per_epoch), optax.GradientTransformation(init, update))

    monkeypatch.setattr(train_mod, "make_optimizer", poisoned)
    cfg = tiny(epochs=3, log_every=1)
    with pytest.raises(NonFiniteLossError) as err:
        train_and_evaluate(cfg, tmp_path)
    msg = str(err.value)
    assert "non-finite training loss" in msg and "epoch 2, step 2" in msg
    assert "last good checkpoint (epoch 1)" in msg
    ck = Checkpointer(tmp_path / "checkpoints", keep=2)
    assert ck.all_epochs() == [1]
    flat, meta = ck.restore_flat(1)
    ck.close()
    assert meta["epoch"] == 1
    assert all(np.all(np.isfinite(v)) for v in flat.values() if np.issubdtype(v.dtype, np.floating))
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 1
    assert not (tmp_path / "report.json").exists()


def test_bad_device_count_and_batch(tmp_path):
    from codesign.config import ConfigError

    with pytest.raises(ConfigError, match="num_devices"):
        train_and_evaluate(tiny(num_devices=64), tmp_path / "a")
    with pytest.raises(ConfigError, match="larger than the 128 training examples"):
        train_and_evaluate(tiny(batch_size=256), tmp_path / "b")


def test_report_carries_the_hardware_cost_of_the_trained_model(tmp_path):
    import jax
    from flax import nnx

    import hwmodel
    import models

    report = train_and_evaluate(tiny(epochs=1, hw_arch="eyeriss", hw_dataflow="ws"), tmp_path,
                                print_table=False)
    model = models.create("lenet5", rngs=nnx.Rngs(0), input_shape=(28, 28, 1))
    model.eval()
    wl = hwmodel.extract_workload(model, jax.ShapeDtypeStruct((1, 28, 28, 1), jnp.float32))
    ref = hwmodel.cost(wl, hwmodel.load_arch("eyeriss"), dataflow="ws")
    assert report["hw_arch"] == "eyeriss" and report["hw_dataflow"] == "ws"
    assert report["energy_per_inference_uj"] == pytest.approx(float(ref.energy_pj) * 1e-6, rel=1e-6)
    assert report["latency_per_inference_ms"] == pytest.approx(float(ref.latency_s) * 1e3, rel=1e-6)
    assert report["dram_bytes_per_inference"] == pytest.approx(float(ref.dram_bytes), rel=1e-6)


def test_hardware_report_can_be_switched_off_and_bad_arch_is_named(tmp_path):
    report = train_and_evaluate(tiny(epochs=1, hw_arch="none"), tmp_path / "a", print_table=False)
    assert "energy_per_inference_uj" not in report
    from codesign.config import ConfigError, validate_names

    with pytest.raises(ConfigError, match="unknown hw_arch 'eyriss'; valid: .*eyeriss"):
        validate_names(tiny(hw_arch="eyriss"))
    with pytest.raises(ConfigError, match="'hw_dataflow': unknown 'xs'; valid: ws, os, is, rs, nlr"):
        validate_names(tiny(hw_dataflow="xs"))


def test_loss_fn_terms_are_logged_and_a_zero_weight_term_changes_little(tmp_path):
    """Every metric a LossFn returns becomes a train_<name> column (per-example ones averaged
    over examples, scalars over steps). A term with weight 0 gives the same run up to float
    rounding only: the extra computation changes XLA's fusion (measured: 2e-9 on one bias), so
    bitwise equality with plain training needs the term left out of the traced function."""
    import dataclasses

    import jax
    from flax import nnx

    from codesign.train import cross_entropy_loss

    @dataclasses.dataclass(frozen=True)
    class WithL2:
        weight: float

        def __call__(self, model, images, labels):
            logits = model(images)
            losses = cross_entropy_loss(logits, labels)
            l2 = sum(jnp.sum(p ** 2) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
            correct = (jnp.argmax(logits, -1) == labels).astype(jnp.float32)
            return losses.mean() + self.weight * l2, {"loss": losses, "accuracy": correct, "l2": l2}

    cfg = tiny(epochs=2, keep_checkpoints=1)
    plain = train_and_evaluate(cfg, tmp_path / "plain", print_table=False)
    extra = train_and_evaluate(cfg, tmp_path / "extra", print_table=False, loss_fn=WithL2(0.0))
    rows = {k: [json.loads(l) for l in (tmp_path / k / "metrics.jsonl").read_text().splitlines()]
            for k in ("plain", "extra")}
    assert list(rows["extra"][0])[:4] == ["epoch", "train_loss", "train_accuracy", "train_l2"]
    assert all(r["train_l2"] > 0 for r in rows["extra"])
    for a, b in zip(rows["plain"], rows["extra"]):
        for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert a[k] == pytest.approx(b[k], rel=1e-5), k
    assert plain["test_accuracy"] == pytest.approx(extra["test_accuracy"], abs=1 / 40)
    flats = []
    for k in ("plain", "extra"):
        ck = Checkpointer(tmp_path / k / "checkpoints", keep=1)
        flats.append(ck.restore_flat(2)[0])
        ck.close()
    assert flats[0].keys() == flats[1].keys()
    for key in flats[0]:
        np.testing.assert_allclose(flats[0][key], flats[1][key], rtol=1e-4, atol=1e-6, err_msg=key)


# ---- what a new user hit (issue 11, section 5) ---------------------------------------


def test_resume_with_nothing_to_resume_from_is_an_error(tmp_path):
    from codesign.train import _checkpoint_epochs

    with pytest.raises(WorkdirConflictError, match="nothing to resume: workdir .*typo does not exist"):
        train_and_evaluate(tiny(epochs=1), tmp_path / "typo", resume=True)
    assert not (tmp_path / "typo").exists()
    # a finished run without checkpoints: resuming would silently retrain it
    cfg = tiny(epochs=1, keep_checkpoints=0)
    train_and_evaluate(cfg, tmp_path / "k0", print_table=False)
    before = (tmp_path / "k0" / "metrics.jsonl").read_text()
    with pytest.raises(WorkdirConflictError, match=r"nothing to resume from: .* no checkpoint .*keep_checkpoints=0"):
        train_and_evaluate(cfg, tmp_path / "k0", resume=True)
    assert (tmp_path / "k0" / "metrics.jsonl").read_text() == before
    assert _checkpoint_epochs(tmp_path / "k0" / "checkpoints") == []


def test_resume_with_keep_checkpoints_0_resumes_and_keeps_the_checkpoints(tmp_path):
    """--keep-checkpoints 0 on resume writes no new checkpoints but neither retrains nor deletes."""
    cfg = tiny(epochs=2, keep_checkpoints=2)
    first = train_and_evaluate(cfg, tmp_path, print_table=False)
    metrics = (tmp_path / "metrics.jsonl").read_text()
    again = train_and_evaluate(cfg.replace(keep_checkpoints=0), tmp_path, resume=True, print_table=False)
    assert again["resumed_from_epoch"] == 2
    assert again["test_accuracy"] == first["test_accuracy"]
    assert (tmp_path / "metrics.jsonl").read_text() == metrics
    ck = Checkpointer(tmp_path / "checkpoints", keep=2)
    assert ck.all_epochs() == [1, 2]
    ck.close()


def test_a_run_stopped_before_its_first_epoch_can_be_started_again(tmp_path):
    """config.json but no checkpoint and no results: rerunning the same command starts it again."""
    cfg = tiny(epochs=1, keep_checkpoints=1)
    tmp_path.joinpath("config.json").write_text(cfg.to_json())
    with pytest.raises(WorkdirConflictError, match="stopped before its first epoch ended .*without --resume"):
        train_and_evaluate(cfg, tmp_path, resume=True)
    report = train_and_evaluate(cfg, tmp_path, print_table=False)
    assert report["resumed_from_epoch"] is None and (tmp_path / "report.json").exists()


@pytest.mark.parametrize("name", ["report.json", "metrics.jsonl"])
def test_user_files_in_a_workdir_without_config_are_not_overwritten(tmp_path, name):
    mine = '{"mine": true}\n'
    tmp_path.joinpath(name).write_text(mine)
    with pytest.raises(WorkdirConflictError, match=f"holds {name} but no config.json.*--overwrite"):
        train_and_evaluate(tiny(epochs=1), tmp_path)
    assert tmp_path.joinpath(name).read_text() == mine
    assert not tmp_path.joinpath("config.json").exists()
    train_and_evaluate(tiny(epochs=1, keep_checkpoints=0), tmp_path, overwrite=True, print_table=False)
    assert tmp_path.joinpath(name).read_text() != mine


@pytest.mark.parametrize("change, error", [
    ({"model_kwargs": {"dtype": "nosuchdtype"}}, r"'model_kwargs' \{\"dtype\": \"nosuchdtype\"\}: lenet5 "
                                                  r"cannot be built with them \(TypeError: data type"),
    ({"model_kwargs": {"num_classes": 3}}, "'num_classes' is set from the dataset's number of classes"),
    ({"model_kwargs": {"nosuch": 3}}, "model 'lenet5' has no option.*'nosuch'; valid: "),
    ({"dataset_kwargs": {"nosuch": 1}}, r"dataset 'synthetic' has no option\(s\) 'nosuch'; valid: shape, "),
    ({"hw_arch": "missing.yaml"}, "missing.yaml"),
])
def test_bad_input_fails_before_the_workdir_is_created(tmp_path, change, error):
    """A failed start leaves nothing behind, so the fixed command can run in the same workdir."""
    from codesign.config import ConfigError

    kw = dict(epochs=1, keep_checkpoints=0)
    kw.update({k: v for k, v in change.items() if k != "dataset_kwargs"})
    if "dataset_kwargs" in change:
        kw["dataset_kwargs"] = {**tiny().dataset_kwargs, **change["dataset_kwargs"]}
    with pytest.raises((ConfigError, OSError, ValueError), match=error):
        train_and_evaluate(tiny(**kw), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    train_and_evaluate(tiny(epochs=1, keep_checkpoints=0, hw_arch="none"), tmp_path / "run", print_table=False)


def test_missing_data_fails_before_the_workdir_is_created(tmp_path):
    cfg = Config(dataset="mnist", model="lenet5", data_dir=str(tmp_path / "nodata"), download=False,
                 epochs=1, progress=False)
    with pytest.raises(FileNotFoundError, match="MNIST not found"):
        train_and_evaluate(cfg, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_workdir_in_use_by_another_run_is_refused(tmp_path):
    from codesign.train import _WorkdirLock

    lock = _WorkdirLock(tmp_path)
    try:
        with pytest.raises(WorkdirConflictError, match="in use by another run"):
            train_and_evaluate(tiny(epochs=1), tmp_path)
    finally:
        lock.release()
    assert not (tmp_path / "config.json").exists()
    train_and_evaluate(tiny(epochs=1, keep_checkpoints=0), tmp_path, print_table=False)


def test_resumable_needs_a_complete_checkpoint(tmp_path):
    """What a sweep asks before passing resume=True: a run killed in its first epoch leaves an
    empty checkpoints/ directory, which is nothing to resume from."""
    from codesign.train import resumable

    cfg = tiny(epochs=1, keep_checkpoints=1)
    assert not resumable(tmp_path)
    tmp_path.joinpath("config.json").write_text(cfg.to_json())
    tmp_path.joinpath("checkpoints").mkdir()
    assert not resumable(tmp_path)
    train_and_evaluate(cfg, tmp_path, print_table=False)  # restarts it
    assert resumable(tmp_path)
    assert train_and_evaluate(cfg, tmp_path, resume=True, print_table=False)["resumed_from_epoch"] == 1
