"""Train-step speed: ``nnx.jit`` (graph and tree mode) vs split/merge + ``jax.jit``.

Measures, in one process and on the same data, steps/s of one optimizer step
(SGD + momentum, batch ``--batch``) for each model, through:

* ``nnx.jit graph``: the public :func:`codesign.train.train_step` (``nnx.jit``,
  default graph mode: the module graph is traversed on every call);
* ``nnx.jit tree``: the same body under ``nnx.jit(..., graph=False)``;
* ``split/merge``: ``nnx.split`` once, ``jax.jit`` over the pure state with
  ``nnx.merge`` inside and the state donated -- what ``train_and_evaluate`` runs;
* ``loop step``: the exact compiled function ``train_and_evaluate`` uses (uint8
  batch in, normalization fused, metric accumulation), on one device.

Prints a table with the ratio against ``nnx.jit graph`` measured in the same run.
The per-call overhead shows as the difference between columns on small models.

Usage::

    python benchmarks/train_step_overhead.py --models lenet5 mnist_cnn resnet20 --batch 128
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402
from flax import nnx  # noqa: E402

import models  # noqa: E402
from codesign import train as T  # noqa: E402
from codesign.config import Config  # noqa: E402


def _time(fn, steps: int, repeats: int) -> float:
    """Median seconds per step over ``repeats`` timed blocks of ``steps`` calls."""
    out = None
    for _ in range(3):
        out = fn()
    jax.block_until_ready(out)
    per = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            out = fn()
        jax.block_until_ready(out)
        per.append((time.perf_counter() - t) / steps)
    return statistics.median(per)


def bench_model(name: str, batch: int, steps: int, repeats: int) -> dict[str, float]:
    info = models.get_info(name)
    h, w, c = info.default_input_shape
    rng = np.random.default_rng(0)
    x_u8 = rng.integers(0, 256, (batch, h, w, c), dtype=np.uint8)
    y_np = rng.integers(0, info.num_classes, batch).astype(np.int32)
    x = jnp.asarray((x_u8 / 255.0 - 0.5) / 0.25, jnp.float32)
    y = jnp.asarray(y_np)

    def fresh():
        m = models.create(name, rngs=nnx.Rngs(0))
        m.train()
        return m, nnx.Optimizer(m, optax.sgd(0.01, 0.9), wrt=nnx.Param)

    res: dict[str, float] = {}

    m, o = fresh()
    res["nnx.jit graph"] = _time(lambda: T.train_step(m, o, x, y)["loss"], steps, repeats)

    m, o = fresh()
    tree_step = nnx.jit(lambda m, o, x, y: T._train_step_body(m, o, x, y, 0.0)[0], graph=False)
    try:
        res["nnx.jit tree"] = _time(lambda: tree_step(m, o, x, y), steps, repeats)
    except Exception as e:  # tree mode rejects shared references
        print(f"# {name}: nnx.jit tree mode failed: {type(e).__name__}: {e}", file=sys.stderr)
        res["nnx.jit tree"] = float("nan")

    m, o = fresh()
    graphdef, state = nnx.split((m, o))

    @functools.partial(jax.jit, donate_argnums=0)
    def pure(state, x, y):
        mm, oo = nnx.merge(graphdef, state)
        loss, _ = T._train_step_body(mm, oo, x, y, 0.0)
        return nnx.state((mm, oo)), loss

    box = [state]

    def run_pure():
        box[0], loss = pure(box[0], x, y)
        return loss

    res["split/merge"] = _time(run_pure, steps, repeats)

    cfg = Config(model=name, batch_size=batch, eval_batch_size=batch, num_devices=1, optimizer="sgd",
                 learning_rate=0.01, schedule="constant")
    m, o = fresh()
    gd_train, state = nnx.split((m, o))
    m.eval()
    gd_eval = nnx.graphdef((m, o))
    mesh = T._make_mesh(cfg)
    fns = T._build_fns(cfg, gd_train, gd_eval, state, (0.5,) * c, (0.25,) * c, mesh, (h, w, c))
    repl = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    data = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    lbox = [jax.device_put(state, repl), jax.device_put(jnp.zeros(3), repl)]
    xd, yd = jax.device_put(x_u8, data), jax.device_put(y_np, data)
    e0 = jax.device_put(np.int32(0), repl)

    def run_loop():
        lbox[0], lbox[1] = fns.train(lbox[0], lbox[1], xd, yd, e0, e0)
        return lbox[1]

    res["loop step"] = _time(run_loop, steps, repeats)
    return res


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["lenet5", "mnist_cnn", "resnet20"])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="steps per timed block")
    p.add_argument("--repeats", type=int, default=3, help="timed blocks (median reported)")
    a = p.parse_args(argv)
    print(f"# jax {jax.__version__}, {jax.devices()[0].platform} x{jax.device_count()}, batch {a.batch}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    cols = ["nnx.jit graph", "nnx.jit tree", "split/merge", "loop step"]
    print(f"{'model':<16}" + "".join(f"{c + ' ms':>18}" for c in cols) + f"{'steps/s (loop)':>16}"
          + f"{'img/s (loop)':>14}" + f"{'graph/split':>13}")
    for name in a.models:
        r = bench_model(name, a.batch, a.steps, a.repeats)
        print(f"{name:<16}" + "".join(f"{1e3 * r[c]:>18.2f}" for c in cols)
              + f"{1 / r['loop step']:>16.2f}" + f"{a.batch / r['loop step']:>14,.0f}"
              + f"{r['nnx.jit graph'] / r['split/merge']:>13.3f}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
