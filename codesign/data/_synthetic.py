"""``synthetic``: tiny, learnable random image data of any shape (for tests)."""

from __future__ import annotations

import numpy as np

from ._dataset import check_seed

__all__ = ["make_synthetic_arrays"]


def _positive(value, what: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"synthetic: {what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def make_synthetic_arrays(*, shape=(28, 28, 1), num_classes: int = 10, n_train: int = 256,
                          n_test: int = 64, noise: float = 24.0, seed: int = 0
                          ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Class prototypes plus Gaussian noise: a small network fits it in a few steps.

    Each class has one random uint8 prototype image; an example is its class's
    prototype plus independent N(0, ``noise``^2) noise per pixel, rounded and clipped
    to 0..255.  Labels are balanced (counts differ by at most one) and shuffled.
    Everything is fixed by ``seed``; train and test share the prototypes.

    Args:
        shape: image shape ``(H, W, C)``.
        num_classes: number of classes (>= 2).
        n_train: training examples (>= 1).
        n_test: test examples (>= 1).
        noise: noise standard deviation in pixel levels (0..255 scale, >= 0).
        seed: non-negative integer.

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``; images uint8
        ``[N, H, W, C]``, labels int32 ``[N]``.
    """
    if not isinstance(shape, (tuple, list)) or len(shape) != 3:
        raise ValueError(f"synthetic: shape must be (H, W, C), got {shape!r}")
    shape = tuple(_positive(s, f"shape[{i}]") for i, s in enumerate(shape))
    num_classes = _positive(num_classes, "num_classes", 2)
    n_train = _positive(n_train, "n_train")
    n_test = _positive(n_test, "n_test")
    if isinstance(noise, bool) or not isinstance(noise, (int, float)) or not noise >= 0:
        raise ValueError(f"synthetic: noise must be a number >= 0, got {noise!r}")
    seed = check_seed(seed, "seed")
    rng = np.random.default_rng([seed, 0x73796E])  # "syn"
    protos = rng.integers(0, 256, size=(num_classes, *shape)).astype(np.float32)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        labels = rng.permutation(np.arange(n) % num_classes).astype(np.int32)
        x = protos[labels] + rng.normal(0.0, noise, size=(n, *shape)).astype(np.float32)
        out[split] = (np.clip(np.rint(x), 0, 255).astype(np.uint8), labels)
    return out
