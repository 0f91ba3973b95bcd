"""Where one train step's time goes, per XLA operation: a ``jax.profiler`` trace of the
compiled step of ``benchmarks/train_throughput.py`` (the step ``codesign train`` runs),
summed per operation kind.

Usage::

    python benchmarks/step_profile.py [--model resnet20] [--conv-backend onednn]
        [--batch 128] [--steps 10]

The step is warmed up (compilation, 5 steps), timed over ``--steps`` steps, then traced
over ``--steps`` more. The trace's complete events are summed by name, with the numeric
suffix XLA gives each instance stripped (``add_maximum_fusion.12`` ->
``add_maximum_fusion``), and printed per step: milliseconds and instances, largest
first. ``ffi_call`` are the oneDNN convolutions (``--conv-backend onednn``); the
``*_fusion`` rows are XLA's fused element-wise and reduction kernels (BatchNorm, ReLU,
residual adds, their gradients, the optimizer). Tracing adds overhead, so the sum of
the rows exceeds the untraced step time a little.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import jax  # noqa: E402

import models  # noqa: E402
import train_throughput as TT  # noqa: E402

# host-side and runtime bookkeeping events, not XLA operations
_SKIP = re.compile(r"^\$|Thunk|Pjit|^end: |PjRt|Await|ParseArguments|shard_args|DevicePut"
                   r"|Handle input|Wait for|GarbageCollect|CollectGarbage|Dispatch|Allocate")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="resnet20")
    p.add_argument("--conv-backend", default="onednn", choices=["onednn", "xla"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--top", type=int, default=20, help="rows to print")
    a = p.parse_args(argv)
    info = models.get_info(a.model)
    batches = TT.host_batches(info.default_input_shape, info.num_classes, a.batch)
    cfg = TT.bench_config(a.model, a.batch, 0.01).replace(conv_backend=a.conv_backend)
    run = TT.OursRunner(cfg, info.default_input_shape, info.num_classes, batches)
    for _ in range(5):
        run.sync(run())
    t = time.perf_counter()
    for _ in range(a.steps):
        run.sync(run())
    step_ms = (time.perf_counter() - t) / a.steps * 1e3
    with tempfile.TemporaryDirectory() as d:
        with jax.profiler.trace(d):
            for _ in range(a.steps):
                run.sync(run())
        (f,) = Path(d).rglob("*.trace.json.gz")
        events = json.loads(gzip.decompress(f.read_bytes()))["traceEvents"]
    ms, count = collections.Counter(), collections.Counter()
    for e in events:
        if e.get("ph") != "X" or _SKIP.search(e["name"]):
            continue
        kind = re.sub(r"\.\d+$", "", e["name"])
        ms[kind] += e["dur"] / 1e3 / a.steps  # us -> ms, per step
        count[kind] += 1
    print(f"{a.model}, conv backend {a.conv_backend}, batch {a.batch}: {step_ms:.1f} ms per "
          f"step untraced; traced, per step (load average {os.getloadavg()[0]:.2f}):")
    print(f"{'operation':<34}{'ms':>9}{'instances':>11}")
    for kind, v in ms.most_common(a.top):
        print(f"{kind:<34}{v:>9.2f}{count[kind] // a.steps:>11}")
    print(f"{'all listed operations':<34}{sum(ms.values()):>9.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
