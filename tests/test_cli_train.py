"""``codesign train``: one-line usage errors (exit 2), --help, a tiny run, resume/overwrite."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from codesign._cli_train import main
from codesign.config import Config, list_presets

REPO = Path(__file__).resolve().parents[1]


def _err(capsys, argv):
    rc = main(argv)
    cap = capsys.readouterr()
    return rc, cap.err.strip(), cap.out


@pytest.mark.parametrize(
    "argv, must",
    [
        (["nope"], ["unknown preset 'nope'", "valid:", "quickstart", "cifar10"]),
        (["smoke", "--model", "resnet99"], ["unknown model 'resnet99'", "valid:", "lenet5", "vit_tiny"]),
        (["smoke", "--dataset", "imagenet"], ["unknown dataset 'imagenet'", "valid:", "mnist-5k", "cifar10"]),
        (["smoke", "--optimizer", "adam"], ["'optimizer'", "valid: sgd, adamw"]),
        (["smoke", "--schedule", "step"], ["valid: constant, cosine, onecycle"]),
        (["smoke", "--hw-dataflow", "xs"], ["unknown dataflow 'xs'", "valid: ws, os, is, rs, nlr"]),
        (["smoke", "--epochs", "many"], ["--epochs", "invalid int value"]),
        (["smoke", "--learning-rate", "-1"], ["'learning_rate'", "must be > 0"]),
        (["smoke", "--label-smoothing", "1.5"], ["label_smoothing", "[0, 1)"]),
        (["smoke", "--model-kwargs", "{bad"], ["--model-kwargs", "not valid JSON"]),
        (["smoke", "--learning_rate", "0.1"], ["unrecognized arguments", "did you mean --learning-rate"]),
        (["smoke", "--resume"], ["--resume needs --workdir"]),
        (["smoke", "--resume", "--overwrite", "--workdir", "x"], ["not allowed with argument"]),
    ],
)
def test_usage_errors_are_one_line_exit_2(capsys, argv, must):
    rc, err, out = _err(capsys, argv)
    assert rc == 2
    assert "\n" not in err, f"error must be one line, got:\n{err}"
    assert err.startswith("codesign train: error:")
    for m in must:
        assert m in err, (m, err)
    assert out == ""


def test_help_lists_every_field_and_preset(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(Config):
        flag = "--" + f.name.replace("_", "-")
        assert flag in out, flag
    for name in list_presets():
        assert name in out
    for flag in ("--workdir", "--resume", "--overwrite", "--config", "--print-config"):
        assert flag in out


def test_print_config_applies_overrides(capsys):
    rc = main(["smoke", "--print-config", "--epochs", "7", "--no-progress", "--model-kwargs", "{}",
               "--data-dir", "/d"])
    assert rc == 0
    cfg = Config.from_json(capsys.readouterr().out)
    assert cfg.epochs == 7 and cfg.progress is False and cfg.data_dir == "/d" and cfg.dataset == "synthetic"


def test_run_resume_overwrite(tmp_path, capsys):
    wd = str(tmp_path / "run")
    args = ["smoke", "--workdir", wd, "--no-progress", "--epochs", "1",
            "--dataset-kwargs", '{"n_train": 64, "n_test": 16}', "--eval-batch-size", "16"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "accuracy" in out and "params" in out and "images/s" in out
    assert json.loads(Path(wd, "report.json").read_text())["model"] == "lenet5"
    rc, err, _ = _err(capsys, args)
    assert rc == 2 and "\n" not in err and "--resume" in err and "--overwrite" in err
    rc, err, _ = _err(capsys, args + ["--seed", "3"])
    assert rc == 2 and "different config (seed: 0 there, 3 now)" in err
    assert main(["--workdir", wd, "--resume"]) == 0  # config taken from the workdir
    assert "resuming" in capsys.readouterr().out
    assert main(args + ["--seed", "3", "--overwrite"]) == 0
    assert Config.from_json(Path(wd, "config.json").read_text()).seed == 3


def test_console_entry_point_subprocess(tmp_path):
    """`python -m codesign train` goes through the dispatcher; a bad name is one line, exit 2."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO))
    p = subprocess.run([sys.executable, "-m", "codesign", "train", "nope"], env=env, cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip().count("\n") == 0 and "unknown preset 'nope'" in p.stderr


_TINY = ["--no-progress", "--epochs", "1", "--dataset-kwargs", '{"n_train": 64, "n_test": 16}',
         "--eval-batch-size", "16", "--hw-arch", "none"]


@pytest.mark.parametrize("extra, must", [
    (["--model-kwargs", '{"num_classes": 3}'], ["'num_classes' is set from the dataset's number of classes"]),
    (["--model-kwargs", '{"dtype": "nosuchdtype"}'], ["'model_kwargs'", "data type 'nosuchdtype' not understood"]),
    (["--dataset-kwargs", '{"nosuch": 1}'], ["dataset 'synthetic' has no option(s) 'nosuch'; valid: shape"]),
    (["--model-kwargs", '{"a": 1, "a": 2}'], ["--model-kwargs", "duplicate key 'a'"]),
])
def test_bad_kwargs_are_one_line_exit_2_and_leave_no_workdir(tmp_path, capsys, extra, must):
    wd = tmp_path / "run"
    rc, err, out = _err(capsys, ["smoke", "--workdir", str(wd), *_TINY, *extra])
    assert rc == 2 and "\n" not in err and err.startswith("codesign train: error:"), err
    for m in must:
        assert m in err, (m, err)
    assert not wd.exists()


def test_config_file_with_a_duplicate_key_is_refused(tmp_path, capsys):
    cfg = tmp_path / "my.json"
    cfg.write_text('{"model": "lenet5", "seed": 1, "seed": 2}')
    rc, err, _ = _err(capsys, ["--config", str(cfg), "--print-config"])
    assert rc == 2 and f"{cfg}: duplicate key 'seed'" in err


def test_missing_data_hint_names_the_cli_flag(tmp_path, capsys):
    rc, err, _ = _err(capsys, ["mnist_lenet5", "--workdir", str(tmp_path / "run"), "--no-download",
                               "--data-dir", str(tmp_path / "nodata")])
    assert rc == 1 and "MNIST not found" in err and "Pass --download" in err and "download=True" not in err
    assert not (tmp_path / "run").exists()


def test_default_workdir_is_claimed_and_removed_when_the_run_fails(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, err, _ = _err(capsys, ["smoke", *_TINY, "--model-kwargs", '{"dtype": "nosuchdtype"}'])
    assert rc == 2
    assert list((tmp_path / "runs").iterdir()) == []


_CONCURRENT = r'''
import datetime, sys
sys.path[:0] = [sys.argv[1]]
import codesign._cli_train as cli
cli._now = lambda: datetime.datetime(2026, 1, 2, 3, 4, 5)  # both runs start "in the same second"
raise SystemExit(cli.main(["smoke", "--seed", sys.argv[2], *sys.argv[3:]]))
'''


def test_two_concurrent_runs_with_the_default_workdir_get_their_own(tmp_path):
    """Two runs started at once (same timestamp) must not share a directory: each config.json,
    metrics.jsonl and report.json belongs to the run that printed that directory."""
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    procs = {seed: subprocess.Popen([sys.executable, "-c", _CONCURRENT, str(REPO), seed, *_TINY],
                                    cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
             for seed in ("0", "1")}
    dirs = {}
    for seed, p in procs.items():
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        line = [l for l in out.splitlines() if l.startswith("run written to ")][-1]
        dirs[seed] = tmp_path / line[len("run written to "):]
    assert dirs["0"] != dirs["1"]
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == [
        "smoke-20260102-030405", "smoke-20260102-030405-2"]
    for seed, d in dirs.items():
        assert Config.from_json((d / "config.json").read_text()).seed == int(seed)
        assert len((d / "metrics.jsonl").read_text().splitlines()) == 1
        assert (d / "report.json").exists() and (d / "checkpoints" / "1").is_dir()
    m0, m1 = ((dirs[s] / "metrics.jsonl").read_text() for s in ("0", "1"))
    assert json.loads(m0)["train_loss"] != json.loads(m1)["train_loss"]  # really two runs
