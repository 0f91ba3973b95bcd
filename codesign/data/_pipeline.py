"""Batching (deterministic shuffles), normalization and CIFAR-10 augmentation."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ._dataset import SHUFFLE_TAG, Dataset, check_seed

__all__ = ["iterate_batches", "num_batches", "epoch_permutation", "normalize", "augment_cifar"]


def num_batches(n: int | Dataset, batch_size: int, drop_remainder: bool = True) -> int:
    """Batches per epoch that :func:`iterate_batches` yields.

    Args:
        n: number of examples, or a :class:`Dataset`.
        batch_size: examples per batch (>= 1).
        drop_remainder: whether a last, smaller batch is dropped.

    Returns:
        ``n // batch_size`` or ``ceil(n / batch_size)``.
    """
    n = len(n) if isinstance(n, Dataset) else int(n)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    return n // batch_size if drop_remainder else -(-n // batch_size)


def epoch_permutation(n: int, *, seed: int, epoch: int) -> np.ndarray:
    """The example order of one epoch: a permutation of ``range(n)`` fixed by (seed, epoch).

    Args:
        n: number of examples.
        seed, epoch: non-negative integers.

    Returns:
        int64 ``[n]``.
    """
    seed = check_seed(seed, "seed")
    epoch = check_seed(epoch, "epoch")
    return np.random.default_rng([seed, epoch, SHUFFLE_TAG]).permutation(n)


def iterate_batches(ds: Dataset, batch_size: int, *, seed: int, epoch: int,
                    shuffle: bool = True, drop_remainder: bool = True
                    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yield the batches of one epoch, on the host.

    The order depends only on ``(seed, epoch)`` (and ``len(ds)``), so a run resumed at
    epoch ``e`` sees exactly the batches an uninterrupted run sees.

    Args:
        ds: the split to iterate.
        batch_size: examples per batch.
        seed: shuffling seed (non-negative int).
        epoch: epoch number (non-negative int).
        shuffle: False keeps the dataset order (for evaluation).
        drop_remainder: drop the last batch when it is smaller than ``batch_size``.

    Returns:
        An iterator of ``(images, labels)``: uint8 ``[B, H, W, C]`` and int32 ``[B]``.

    Raises:
        ValueError: bad batch size / seed / epoch, or ``drop_remainder`` with
            ``batch_size > len(ds)`` (the epoch would be empty).
    """
    steps = num_batches(len(ds), batch_size, drop_remainder)
    if shuffle:
        order = epoch_permutation(len(ds), seed=seed, epoch=epoch)
    else:
        check_seed(seed, "seed")
        check_seed(epoch, "epoch")
        order = None
    if steps == 0 and len(ds) > 0:
        raise ValueError(f"batch_size {batch_size} exceeds the {len(ds)} examples of "
                         f"{ds.name!r} {ds.split or ''} with drop_remainder=True: no batch "
                         "would be produced; use a smaller batch or drop_remainder=False")
    images, labels = ds.images, ds.labels

    def gen():
        for s in range(steps):
            lo, hi = s * batch_size, (s + 1) * batch_size
            if order is None:  # dataset order: a contiguous slice (copied, writable)
                yield np.array(images[lo:hi]), np.array(labels[lo:hi])
            else:
                idx = order[lo:hi]
                yield images[idx], labels[idx]

    return gen()


def _channel_vector(v, c: int, what: str, ndim: int) -> jax.Array:
    if isinstance(v, (tuple, list, np.ndarray)):
        arr = np.asarray(v, np.float32)
        if arr.shape != (c,):
            raise ValueError(f"normalize: {what} needs one value per channel ({c}), got shape {arr.shape}")
        if what == "std" and np.any(arr <= 0):
            raise ValueError(f"normalize: std must be positive, got {arr.tolist()}")
    arr = jnp.asarray(v, jnp.float32)
    if arr.shape != (c,):
        raise ValueError(f"normalize: {what} needs one value per channel ({c}), got shape {arr.shape}")
    return arr.reshape((1,) * (ndim - 1) + (c,))


def normalize(images, mean: Sequence[float], std: Sequence[float]) -> jax.Array:
    """``(images / 255 - mean) / std`` per channel, as float32 (jittable, runs on device).

    Args:
        images: uint8 (or any numeric) ``[..., C]`` pixel values on the 0..255 scale.
        mean: C per-channel means on the [0, 1] scale (e.g. ``Dataset.mean``).
        std: C per-channel standard deviations on the [0, 1] scale.

    Returns:
        float32 array of the same shape.
    """
    x = jnp.asarray(images)
    if x.ndim < 1:
        raise ValueError("normalize: images need a channel axis, got a scalar")
    c = x.shape[-1]
    m = _channel_vector(mean, c, "mean", x.ndim)
    s = _channel_vector(std, c, "std", x.ndim)
    return (x.astype(jnp.float32) / 255.0 - m) / s


def augment_params(key: jax.Array, batch: int, padding: int = 4) -> tuple[jax.Array, jax.Array]:
    """The random draws of :func:`augment_cifar`.

    Args:
        key: a JAX PRNG key.
        batch: number of images.
        padding: pixels of zero padding on each side.

    Returns:
        ``(offsets, flips)``: int32 ``[B, 2]`` top-left corner (row, col) of each crop
        in the padded image, uniform in ``0 .. 2 * padding``; bool ``[B]`` horizontal flip.
    """
    k_crop, k_flip = jax.random.split(key)
    offsets = jax.random.randint(k_crop, (batch, 2), 0, 2 * padding + 1, dtype=jnp.int32)
    flips = jax.random.bernoulli(k_flip, 0.5, (batch,))
    return offsets, flips


@partial(jax.jit, static_argnames=("padding",))
def augment_cifar(key: jax.Array, images: jax.Array, *, padding: int = 4) -> jax.Array:
    """Random crop with zero padding and random horizontal flip, per image (jitted).

    Each image is padded with ``padding`` zeros on every side, a window of the original
    size is cut at a uniformly random offset (``(2 * padding + 1) ** 2`` choices), and
    the window is mirrored left-right with probability 1/2.  Zero is the pad value in
    whatever scale ``images`` are in: after :func:`normalize` it is the channel mean;
    apply it to ``images / 255`` instead for black borders (as torchvision does).
    Implemented as two batched gathers (rows, then flipped columns): no per-image loop.

    Args:
        key: a JAX PRNG key; the same key gives the same result.
        images: ``[B, H, W, C]`` (NHWC), any dtype (float after normalization).
        padding: pixels of padding per side (static).

    Returns:
        Augmented images, same shape and dtype.
    """
    if images.ndim != 4:
        raise ValueError(f"augment_cifar needs NHWC images [B, H, W, C], got shape {images.shape}")
    b, h, w, c = images.shape
    offsets, flips = augment_params(key, b, padding)
    padded = jnp.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    rows = offsets[:, 0:1] + jnp.arange(h, dtype=jnp.int32)[None, :]  # [B, H]
    j = jnp.arange(w, dtype=jnp.int32)[None, :]
    cols = jnp.where(flips[:, None], w - 1 - j, j) + offsets[:, 1:2]  # [B, W]
    out = jnp.take_along_axis(padded, rows[:, :, None, None], axis=1,
                              mode="promise_in_bounds")  # [B, H, W + 2p, C]
    return jnp.take_along_axis(out, cols[:, None, :, None], axis=2, mode="promise_in_bounds")
