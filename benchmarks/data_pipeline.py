#!/usr/bin/env python3
"""Cost of the CIFAR-10 augmentation and of loading the real datasets.

Table 1: ms per batch of ``--batch`` 32x32x3 images for
  - ``numpy loop (host)``: the baseline: pad / crop / flip one image at a time in numpy;
  - ``vmap dynamic_slice``: per-image ``lax.dynamic_slice`` under ``vmap`` (jitted);
  - ``augment_cifar``: the library version (two batched gathers, jitted);
  - ``normalize``, ``normalize + augment_cifar`` fused in one jit (the difference is
    what augmentation adds to a train step).
Each figure is the median over ``--repeats`` blocked calls after compilation; the
ratio column is baseline time / time (higher is faster).

Table 2 (when the files are given): seconds for ``load_dataset`` of full MNIST and
CIFAR-10 (read, md5-verify, convert to NHWC, per-channel statistics), median of 3.

usage: python benchmarks/data_pipeline.py [--mnist-dir DIR] [--cifar-dir DIR] [--batch 128]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codesign.data import augment_cifar, load_dataset, normalize  # noqa: E402


def numpy_augment(rng: np.random.Generator, images: np.ndarray, pad: int = 4) -> np.ndarray:
    b, h, w, _ = images.shape
    out = np.empty_like(images)
    padded = np.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    for i in range(b):
        dy, dx = rng.integers(0, 2 * pad + 1, 2)
        crop = padded[i, dy:dy + h, dx:dx + w]
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return out


@jax.jit
def vmap_augment(key, images, pad: int = 4):
    b, h, w, c = images.shape
    k1, k2 = jax.random.split(key)
    offsets = jax.random.randint(k1, (b, 2), 0, 2 * pad + 1)
    flips = jax.random.bernoulli(k2, 0.5, (b,))
    padded = jnp.pad(images, ((0, 0), (pad, pad), (pad, pad), (0, 0)))

    def one(img, off, flip):
        crop = jax.lax.dynamic_slice(img, (off[0], off[1], 0), (h, w, c))
        return jnp.where(flip, crop[:, ::-1], crop)

    return jax.vmap(one)(padded, offsets, flips)


def timeit(fn, repeats: int) -> float:
    fn()  # compile / warm up
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=200)
    ap.add_argument("--mnist-dir")
    ap.add_argument("--cifar-dir")
    args = ap.parse_args(argv)

    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, (args.batch, 32, 32, 3), dtype=np.uint8)
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    xf = np.asarray(normalize(u8, mean, std))
    xd = jax.device_put(xf)
    ud = jax.device_put(u8)
    key = jax.random.key(0)
    norm = jax.jit(lambda x: normalize(x, mean, std))
    fused = jax.jit(lambda k, x: augment_cifar(k, normalize(x, mean, std)))

    rows = [
        ("numpy loop (host)", lambda: numpy_augment(rng, xf)),
        ("vmap dynamic_slice", lambda: vmap_augment(key, xd).block_until_ready()),
        ("augment_cifar", lambda: augment_cifar(key, xd).block_until_ready()),
        ("normalize", lambda: norm(ud).block_until_ready()),
        ("normalize + augment_cifar", lambda: fused(key, ud).block_until_ready()),
    ]
    print(f"device: {jax.devices()[0].device_kind} ({jax.default_backend()}), "
          f"batch {args.batch} x 32 x 32 x 3 float32, median of {args.repeats}")
    print(f"{'method':<28}{'ms/batch':>10}{'ratio vs baseline':>20}")
    base = None
    for name, fn in rows:
        t = timeit(fn, args.repeats)
        base = base or t
        print(f"{name:<28}{t * 1e3:>10.3f}{base / t:>19.1f}x")

    loads = [("mnist", args.mnist_dir), ("cifar10", args.cifar_dir)]
    if any(d for _, d in loads):
        print(f"\n{'dataset':<12}{'load s':>8}{'train':>8}{'test':>8}")
        for name, d in loads:
            if not d:
                continue
            times = []
            for _ in range(3):
                t = time.perf_counter()
                s = load_dataset(name, data_dir=d, download=False)
                times.append(time.perf_counter() - t)
            print(f"{name:<12}{statistics.median(times):>8.2f}{len(s['train']):>8}{len(s['test']):>8}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
