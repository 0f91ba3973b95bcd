"""Forward+backward time per batch of every zoo model on this machine's CPU.

Usage::

    python benchmarks/model_step_time.py [--batch 128] [--repeats 10] [--models a,b]
        [--threads N]

For each model: build it (``models.create(name, rngs=nnx.Rngs(0))``, training mode),
then time one jitted ``jax.value_and_grad`` of the mean softmax cross-entropy with
respect to all ``nnx.Param`` leaves (BatchNorm statistics updated as in training,
Dropout active) on a random float32 batch ``[batch, H, W, C]`` of the model's default
input shape. The first call (compile + run) is timed separately; then ``repeats``
calls are timed one by one with ``block_until_ready`` and the median and min are
printed (seconds per batch; images/s from the median). No optimizer update is
included. Throughput ratios are against ``mnist_cnn`` measured in the same run. When
``mobilenet_small`` is measured (its depthwise layers on the default ``"auto"``
implementation: oneDNN where the conv backend is oneDNN), it is measured again with
``depthwise_impl="taps"`` (shifted multiply-adds) and ``"xla"`` (grouped XLA
convolutions) for comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--models", default="")
    args = p.parse_args(argv)

    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import models

    names = [n for n in args.models.split(",") if n] or list(models.list_models())
    for n in names:
        models.get_info(n)  # validates the name
    runs = [(n, n, {}) for n in names]
    if "mobilenet_small" in names:  # the other depthwise implementations, for comparison
        runs.append(("mobilenet_small[taps dw]", "mobilenet_small", {"depthwise_impl": "taps"}))
        runs.append(("mobilenet_small[xla dw]", "mobilenet_small", {"depthwise_impl": "xla"}))

    rows = []
    for label, name, options in runs:
        info = models.get_info(name)
        model = models.create(name, rngs=nnx.Rngs(0), **options)
        graphdef, params, rest = nnx.split(model, nnx.Param, ...)

        def loss_fn(m, x, y):
            logits = m(x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        @jax.jit
        def step(params, rest, x, y):
            m = nnx.merge(graphdef, params, rest)
            loss, grads = nnx.value_and_grad(loss_fn)(m, x, y)
            return loss, grads, nnx.state(m, nnx.Not(nnx.Param))

        kx, ky = jax.random.split(jax.random.key(0))
        x = jax.random.normal(kx, (args.batch,) + info.default_input_shape, jnp.float32)
        y = jax.random.randint(ky, (args.batch,), 0, info.num_classes)
        t0 = time.perf_counter()
        jax.block_until_ready(step(params, rest, x, y))
        first = time.perf_counter() - t0
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(step(params, rest, x, y))
            times.append(time.perf_counter() - t0)
        med = statistics.median(times)
        rows.append((label, models.count_params(model), first, med, min(times), args.batch / med))

    base = {r[0]: r for r in rows}.get("mnist_cnn")
    print(f"backend {jax.default_backend()}, {os.cpu_count()} CPUs, batch {args.batch}, "
          f"{args.repeats} timed calls after one compile+run call")
    print(f"{'model':<24} {'params':>9} {'first s':>8} {'median s':>9} {'min s':>7} "
          f"{'img/s':>8} {'vs mnist_cnn':>12}")
    for name, params, first, med, mn, ips in rows:
        ratio = f"{ips / base[5]:.3f}" if base else "-"
        print(f"{name:<24} {params:>9,} {first:>8.2f} {med:>9.4f} {mn:>7.4f} {ips:>8.0f} "
              f"{ratio:>12}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
