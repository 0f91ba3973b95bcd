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
