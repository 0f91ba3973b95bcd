"""What the hardware term costs in a train step: the same gated model, with and without it.

For each model: hard-concrete gates on every site, SGD + momentum, batch ``--batch``;
one jitted step (split/merge + ``jax.jit``, state donated, as ``train_and_evaluate``
runs it) with the plain task loss, and one with ``task + lambda * E/E_dense`` where
``E`` is the model's energy per inference on ``--arch`` (the cost model evaluated on the
gates' expected keeps inside the step, its gradient reaching every gate). Timed blocks
of the two are interleaved; the table shows the median step time of each and the
overhead ratio measured in the same run.

Usage::

    python benchmarks/energy_overhead.py --models mnist_cnn resnet20 vit_tiny --batch 128
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import models  # noqa: E402
from codesign import energy  # noqa: E402
from codesign.objective import HardwareObjective  # noqa: E402
from codesign.train import ClassificationLoss, apply_step  # noqa: E402


def _step_fn(name: str, loss_fn, seed: int = 0):
    info = models.get_info(name)
    m = models.create(name, rngs=nnx.Rngs(seed))
    models.set_gates(m, lambda s: models.HardConcreteGate(s.size, s.kind, rngs=nnx.Rngs(1)))
    m.train()
    opt = nnx.Optimizer(m, optax.sgd(0.01, momentum=0.9), wrt=nnx.Param)
    graphdef, state = nnx.split((m, opt))

    def step(state, x, y):
        mm, oo = nnx.merge(graphdef, state)
        sums = apply_step(mm, oo, loss_fn(mm), x, y)
        return nnx.state((mm, oo)), sums

    return m, jax.jit(step, donate_argnums=0), state, tuple(info.default_input_shape)


def bench(name: str, batch: int, steps: int, repeats: int, arch: str) -> dict[str, float]:
    task = ClassificationLoss(0.0)
    probe = models.create(name, rngs=nnx.Rngs(0))
    models.set_gates(probe, lambda s: models.HardConcreteGate(s.size, s.kind, rngs=nnx.Rngs(1)))
    obj = HardwareObjective(probe, models.get_info(name).default_input_shape, arch=arch)
    loss_hw = energy.EnergyAwareLoss(obj, task=task, weight=1.0)
    _, f_plain, s_plain, shape = _step_fn(name, lambda m: task)
    _, f_hw, s_hw, _ = _step_fn(name, lambda m: loss_hw)
    rng = np.random.default_rng(0)
    x = jax.numpy.asarray(rng.standard_normal((batch, *shape), np.float32))
    y = jax.numpy.asarray(rng.integers(0, 10, batch).astype(np.int32))
    states = {"plain": s_plain, "hw": s_hw}
    fns = {"plain": f_plain, "hw": f_hw}
    for k in fns:  # compile + warm up
        for _ in range(3):
            states[k], out = fns[k](states[k], x, y)
        jax.block_until_ready(out)
    per = {"plain": [], "hw": []}
    for _ in range(repeats):
        for k in ("plain", "hw"):
            t = time.perf_counter()
            for _ in range(steps):
                states[k], out = fns[k](states[k], x, y)
            jax.block_until_ready(out)
            per[k].append((time.perf_counter() - t) / steps)
    return {k: statistics.median(v) for k, v in per.items()} | {"layers": len(obj.layers)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["mnist_cnn", "resnet20", "vit_tiny"])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--arch", default="eyeriss")
    a = ap.parse_args()
    print(f"batch {a.batch}, {a.steps} steps x {a.repeats} interleaved blocks, arch {a.arch}, "
          f"{jax.device_count()} {jax.devices()[0].platform} device(s)")
    print(f"{'model':<10} {'layers':>6} {'plain step':>11} {'with energy':>12} {'overhead':>9}")
    for name in a.models:
        r = bench(name, a.batch, a.steps, a.repeats, a.arch)
        print(f"{name:<10} {r['layers']:>6} {r['plain'] * 1e3:>9.2f} ms {r['hw'] * 1e3:>9.2f} ms "
              f"{100 * (r['hw'] / r['plain'] - 1):>+8.1f}%", flush=True)


if __name__ == "__main__":
    main()
