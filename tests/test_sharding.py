"""Data parallelism: 2 (virtual) CPU devices give the same loss curve as 1 device.

The model has BatchNorm (whose batch statistics must span both devices' shards) and
Dropout, and CIFAR-style augmentation is on (random draws must not depend on sharding).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, sys
sys.path[:0] = [sys.argv[2]]
import jax, numpy as np
from flax import nnx
from codesign import train
from codesign.config import Config
assert jax.device_count() == 2, jax.devices()
out = {}
for n in (1, 2):
    cfg = Config(
        dataset="synthetic", dataset_kwargs={"n_train": 128, "n_test": 40, "shape": [16, 16, 3]},
        model="vgg_small",
        epochs=3, batch_size=32, eval_batch_size=8, optimizer="sgd", learning_rate=0.05,
        momentum=0.9, weight_decay=1e-3, schedule="cosine", warmup_epochs=1.0,
        label_smoothing=0.1, augment=True, progress=False, keep_checkpoints=0, num_devices=n,
        model_kwargs={"stages": [[8], [16]], "dropout_rate": 0.2},
    )
    captured = {}
    real = train._build_fns
    def spy(*a, **k):
        fns = real(*a, **k)
        captured["in"] = [str(s) for s in fns.train.input_shardings[0][2:4]]
        return fns
    train._build_fns = spy
    rep = train.train_and_evaluate(cfg, sys.argv[1] + f"/n{n}", print_table=False)
    train._build_fns = real
    rows = [json.loads(l) for l in open(sys.argv[1] + f"/n{n}/metrics.jsonl")]
    out[n] = {"report": rep, "rows": rows, "in": captured["in"]}
print("RESULT " + json.dumps(out))
'''


def _run(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=2")
    p = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path), str(REPO)],
                       env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-4000:]
    line = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")][-1]
    return {int(k): v for k, v in json.loads(line[len("RESULT "):]).items()}


def test_two_devices_match_one_device(tmp_path):
    out = _run(tmp_path)
    assert out[1]["report"]["num_devices"] == 1 and out[2]["report"]["num_devices"] == 2
    # the batch is sharded along the mesh's data axis
    assert all("'data'" in s for s in out[2]["in"]), out[2]["in"]
    for r1, r2 in zip(out[1]["rows"], out[2]["rows"]):
        for k in ("train_loss", "test_loss", "lr"):
            assert abs(r1[k] - r2[k]) <= 1e-4 * max(1.0, abs(r1[k])), (k, r1[k], r2[k])
        for k in ("train_accuracy", "test_accuracy"):
            assert abs(r1[k] - r2[k]) <= 1.0 / 40 + 1e-9, (k, r1[k], r2[k])
    assert out[1]["rows"][-1]["train_loss"] < out[1]["rows"][0]["train_loss"]


MP_SCRIPT = r'''
import json, sys
sys.path[:0] = [sys.argv[2]]
import jax
from codesign import train
from codesign.config import Config
cfg = Config(
    dataset="synthetic", dataset_kwargs={"n_train": 128, "n_test": 40, "shape": [16, 16, 3]},
    model="vgg_small", model_kwargs={"stages": [[8], [16]], "dropout_rate": 0.2},
    epochs=2, batch_size=32, eval_batch_size=8, optimizer="sgd", learning_rate=0.05,
    label_smoothing=0.1, augment=True, progress=False, keep_checkpoints=2,
    distributed=sys.argv[3] == "multi",
)
train.train_and_evaluate(cfg, sys.argv[1], print_table=False)
print("RESULT " + json.dumps([jax.process_count(), jax.device_count()]))
'''


def test_two_processes_match_one_process(tmp_path):
    """jax.distributed with 2 CPU processes (gloo) = 1 process with 2 devices."""
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    base = dict(os.environ, JAX_PLATFORMS="cpu")
    base.pop("XLA_FLAGS", None)
    procs = []
    for i in (0, 1):
        env = dict(base, JAX_COORDINATOR_ADDRESS=f"localhost:{port}", JAX_NUM_PROCESSES="2",
                   JAX_PROCESS_ID=str(i))
        procs.append(subprocess.Popen([sys.executable, "-c", MP_SCRIPT, str(tmp_path / "multi"), str(REPO), "multi"],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err[-4000:]
        assert "RESULT [2, 2]" in out
    single = subprocess.run(
        [sys.executable, "-c", MP_SCRIPT, str(tmp_path / "single"), str(REPO), "single"],
        env=dict(base, XLA_FLAGS="--xla_force_host_platform_device_count=2"),
        capture_output=True, text=True, timeout=300,
    )
    assert single.returncode == 0, single.stderr[-4000:]
    assert "RESULT [1, 2]" in single.stdout
    rows = {k: [json.loads(l) for l in (tmp_path / k / "metrics.jsonl").read_text().splitlines()]
            for k in ("multi", "single")}
    assert len(rows["multi"]) == 2
    for a, b in zip(rows["multi"], rows["single"]):
        for k in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            assert abs(a[k] - b[k]) <= 1e-5 * max(1.0, abs(b[k])), (k, a[k], b[k])
    assert sorted(p.name for p in (tmp_path / "multi" / "checkpoints").iterdir()) == ["1", "2"]
    assert json.loads((tmp_path / "multi" / "report.json").read_text())["num_devices"] == 2
