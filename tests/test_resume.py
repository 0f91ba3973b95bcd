"""Kill a training subprocess after its first checkpoint, resume it, and get bitwise the
same parameters (and metrics) as an uninterrupted run with the same seed.

The model has BatchNorm and Dropout, augmentation is on, and the schedule is one-cycle,
so the optimizer state, BN statistics, RNG counters and step-dependent keys must all be
restored exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from codesign._checkpoint import Checkpointer

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import sys, time
sys.path[:0] = [sys.argv[4]]
from codesign import train
from codesign.config import Config
cfg = Config.from_json(open(sys.argv[1]).read())
mode = sys.argv[3]
if mode == "slow":   # give the parent time to kill us mid-run (after checkpoint 1)
    real = train._epoch_batches
    def slow(*a, **k):
        for b in real(*a, **k):
            time.sleep(0.03)
            yield b
    train._epoch_batches = slow
train.train_and_evaluate(cfg, sys.argv[2], resume=(mode == "resume"), print_table=False)
'''


def _config_json(tmp_path: Path) -> Path:
    from codesign.config import Config

    cfg = Config(
        dataset="synthetic", dataset_kwargs={"n_train": 192, "n_test": 32, "shape": [16, 16, 3]},
        model="vgg_small", model_kwargs={"stages": [[8], [16]], "dropout_rate": 0.3},
        epochs=4, batch_size=16, eval_batch_size=32, optimizer="sgd", learning_rate=0.05,
        nesterov=True, weight_decay=1e-3, schedule="onecycle", warmup_epochs=1.0,
        label_smoothing=0.1, augment=True, progress=False, keep_checkpoints=4, seed=7,
    )
    p = tmp_path / "cfg.json"
    p.write_text(cfg.to_json())
    return p


def _run(args, **kw):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    env.pop("XLA_FLAGS", None)
    return subprocess.Popen([sys.executable, "-c", SCRIPT, *map(str, args), str(REPO)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _final(workdir: Path, epoch: int):
    ck = Checkpointer(workdir / "checkpoints", keep=10)
    flat, meta = ck.restore_flat(epoch)
    ck.close()
    return flat, meta


def test_resume_after_sigkill_is_bitwise_identical(tmp_path):
    cfg = _config_json(tmp_path)
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"

    killed = _run([cfg, run_dir, "slow"])
    ref = _run([cfg, ref_dir, "plain"])  # meanwhile, the uninterrupted reference
    deadline = time.time() + 120
    while not (run_dir / "checkpoints" / "1" / "commit_success.txt").exists():
        assert killed.poll() is None, killed.communicate()[1][-3000:]
        assert time.time() < deadline, "no checkpoint within 120 s"
        time.sleep(0.02)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()
    assert killed.returncode == -signal.SIGKILL
    assert not (run_dir / "report.json").exists(), "the run finished before it was killed"
    out, err = ref.communicate(timeout=300)
    assert ref.returncode == 0, err[-3000:]

    resumed = _run([cfg, run_dir, "resume"])
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err[-3000:]
    assert "resuming" in out

    report = json.loads((run_dir / "report.json").read_text())
    assert report["resumed_from_epoch"] is not None and report["resumed_from_epoch"] >= 1
    a, meta_a = _final(ref_dir, 4)
    b, meta_b = _final(run_dir, 4)
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), f"{k} differs after resume"
    # the optimizer step count, BatchNorm statistics and the dropout RNG state are in there too
    assert any(k.endswith("step.value") for k in a)
    assert any(".bn.mean" in k for k in a) and any("rngs.key" in k for k in a)
    assert any("rngs.count" in k and int(a[k]) > 0 for k in a), "dropout drew random numbers"
    def strip(rows):  # drop the timing fields
        return [{k: v for k, v in r.items() if "time" not in k and "per_s" not in k} for r in rows]

    assert strip(meta_a["history"]) == strip(meta_b["history"])
    ref_lines = [json.loads(l) for l in (ref_dir / "metrics.jsonl").read_text().splitlines()]
    run_lines = [json.loads(l) for l in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert strip(ref_lines) == strip(run_lines) and len(run_lines) == 4
    assert np.isclose(json.loads((ref_dir / "report.json").read_text())["test_accuracy"],
                      report["test_accuracy"], rtol=0, atol=0)
