"""The :class:`Dataset` container, per-channel statistics and the validation split."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Dataset", "channel_stats", "split_indices"]

# Stream tags so that the validation split and the shuffles draw independent numbers.
VAL_TAG = 0x76616C  # "val"
SHUFFLE_TAG = 0x736866  # "shf"


def check_seed(value, what: str) -> int:
    """``value`` as a non-negative int, else ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


@dataclass(frozen=True, eq=False)
class Dataset:
    """One split of an image-classification dataset, held in host memory.

    Attributes:
        name: dataset name (one of :data:`~codesign.data.DATASETS`).
        images: uint8 ``[N, H, W, C]`` (NHWC), pixel values 0..255; read-only.
        labels: int32 ``[N]`` in ``0 .. num_classes - 1``; read-only.
        num_classes: number of classes.
        mean: per-channel mean of the *train* split on the [0, 1] scale (length C).
        std: per-channel (population) standard deviation of the train split, [0, 1] scale.
        split: ``"train"``, ``"val"`` or ``"test"``.
        class_names: one name per class (may be empty).

    ``ds.shape`` is ``(H, W, C)`` and ``len(ds)`` is ``N``.
    """

    name: str
    images: np.ndarray
    labels: np.ndarray
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split: str = ""
    class_names: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        where = f"Dataset {self.name!r} split {self.split!r}"
        x, y = self.images, self.labels
        if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
            got = f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
            raise ValueError(f"{where}: images must be a uint8 array [N, H, W, C], got {got}")
        if not isinstance(y, np.ndarray) or y.dtype != np.int32 or y.shape != (x.shape[0],):
            got = f"{y.dtype} {y.shape}" if isinstance(y, np.ndarray) else type(y).__name__
            raise ValueError(f"{where}: labels must be an int32 array [{x.shape[0]}], got {got}")
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, int) \
                or self.num_classes < 1:
            raise ValueError(f"{where}: num_classes must be a positive int, got {self.num_classes!r}")
        if y.size and (int(y.min()) < 0 or int(y.max()) >= self.num_classes):
            raise ValueError(f"{where}: labels must lie in 0..{self.num_classes - 1}, "
                             f"found {int(y.min())}..{int(y.max())}")
        c = x.shape[-1]
        for attr in ("mean", "std"):
            v = tuple(float(t) for t in getattr(self, attr))
            if len(v) != c:
                raise ValueError(f"{where}: {attr} needs one value per channel ({c}), got {v}")
            object.__setattr__(self, attr, v)
        if any(s <= 0 for s in self.std):
            raise ValueError(f"{where}: std must be positive, got {self.std}")
        names = tuple(self.class_names)
        if names and len(names) != self.num_classes:
            raise ValueError(f"{where}: {len(names)} class_names for {self.num_classes} classes")
        object.__setattr__(self, "class_names", names)
        # Read-only views: a Dataset never changes (the caller's arrays are untouched).
        for attr in ("images", "labels"):
            view = getattr(self, attr).view()
            view.flags.writeable = False
            object.__setattr__(self, attr, view)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Image shape ``(H, W, C)``."""
        return tuple(self.images.shape[1:])  # type: ignore[return-value]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, split={self.split!r}, n={len(self)}, "
                f"shape={self.shape}, num_classes={self.num_classes}, "
                f"mean={tuple(round(m, 4) for m in self.mean)}, "
                f"std={tuple(round(s, 4) for s in self.std)})")


def channel_stats(images: np.ndarray, chunk: int = 2048) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and population standard deviation on the [0, 1] scale.

    A per-channel histogram of the 256 pixel values is accumulated (in chunks of
    ``chunk`` images, so memory stays small); the moments are then computed from the
    integer counts without rounding error until the final division.

    Args:
        images: uint8 ``[N, H, W, C]``, N >= 1.
        chunk: images per chunk.

    Returns:
        ``(mean, std)``, each a tuple of C floats.
    """
    if not isinstance(images, np.ndarray) or images.dtype != np.uint8 or images.ndim != 4 \
            or images.shape[0] == 0:
        got = f"{images.dtype} {images.shape}" if isinstance(images, np.ndarray) else type(images)
        raise ValueError(f"channel_stats needs uint8 [N>=1, H, W, C] images, got {got}")
    c = images.shape[-1]
    hist = np.zeros(256 * c, np.int64)
    offset = np.arange(c, dtype=np.uint16) * 256  # bin = channel * 256 + value
    for i in range(0, images.shape[0], chunk):
        x = images[i:i + chunk].reshape(-1, c).astype(np.uint16) + offset
        hist += np.bincount(x.ravel(), minlength=256 * c)
    values = list(range(256))
    mean, std = [], []
    for counts in hist.reshape(c, 256).tolist():
        n = sum(counts)
        s1 = sum(k * v for k, v in zip(counts, values))
        s2 = sum(k * v * v for k, v in zip(counts, values))
        mean.append(s1 / (255 * n))
        std.append(((n * s2 - s1 * s1) ** 0.5) / (255 * n))  # n*s2 - s1^2 exact in ints
    return tuple(mean), tuple(std)


def split_indices(n: int, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic train/validation split of ``range(n)``.

    Args:
        n: number of training examples.
        val_size: examples held out, ``0 <= val_size < n``.
        seed: the split depends only on ``(n, val_size, seed)``.

    Returns:
        ``(train_idx, val_idx)``, each sorted int64 arrays, disjoint, covering ``range(n)``.
    """
    if isinstance(val_size, bool) or not isinstance(val_size, (int, np.integer)):
        raise ValueError(f"val_size must be an integer number of examples, got {val_size!r}")
    if not 0 <= val_size < n:
        raise ValueError(f"val_size must be in 0..{n - 1} (the train split has {n} examples), "
                         f"got {val_size}")
    seed = check_seed(seed, "seed")
    perm = np.random.default_rng([seed, VAL_TAG]).permutation(n)
    return np.sort(perm[val_size:]), np.sort(perm[:val_size])
