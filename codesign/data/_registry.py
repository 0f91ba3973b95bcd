"""``load_dataset``: datasets by name."""

from __future__ import annotations

import inspect
import os

import numpy as np

from ._cifar import CIFAR10_CLASSES, load_cifar10_arrays
from ._dataset import Dataset, channel_stats, check_seed, split_indices
from ._embedded import load_mnist5k_arrays
from ._mnist import load_mnist_arrays
from ._synthetic import make_synthetic_arrays

__all__ = ["DATASETS", "dataset_options", "load_dataset"]

#: Names accepted by :func:`load_dataset`.
DATASETS = ("mnist", "mnist-5k", "cifar10", "synthetic")

_DIGITS = tuple(str(i) for i in range(10))


def dataset_options(name: str) -> tuple[str, ...]:
    """The extra keyword arguments :func:`load_dataset` accepts for dataset ``name``.

    ``synthetic`` takes :func:`~codesign.data.make_synthetic_arrays`' arguments except
    ``seed`` (that is ``load_dataset``'s own); the file datasets take none.

    Raises:
        ValueError: unknown name (the message lists the valid ones).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if name != "synthetic":
        return ()
    return tuple(p for p in inspect.signature(make_synthetic_arrays).parameters if p != "seed")


def load_dataset(name: str, *, data_dir: str | os.PathLike | None = None, download: bool = True,
                 val_size: int = 0, seed: int = 0, mirrors: str | list[str] | None = None,
                 **synthetic_kwargs) -> dict[str, Dataset]:
    """Load a dataset by name, split into train / test (and validation).

    Args:
        name: one of :data:`DATASETS`.
        data_dir: where ``mnist`` / ``cifar10`` files live (see the package docs for
            the layout); default ``$CODESIGN_DATA``, else ``$XDG_CACHE_HOME/codesign``
            or ``~/.cache/codesign``.  Unused by ``mnist-5k`` and ``synthetic``.
        download: fetch missing ``mnist`` / ``cifar10`` files from the official
            sources (md5-checked).
        val_size: examples moved from the train split into a ``"val"`` split
            (0: none); which ones depends only on ``seed``.
        seed: seed of the validation split (and of the ``synthetic`` data).
        mirrors: download base URL(s) overriding ``$CODESIGN_MNIST_URL`` /
            ``$CODESIGN_CIFAR10_URL`` and the official sources.
        **synthetic_kwargs: for ``synthetic`` only: ``shape=(H, W, C)``,
            ``num_classes``, ``n_train``, ``n_test``, ``noise`` (see
            :func:`~codesign.data.make_synthetic_arrays`).

    Returns:
        ``{"train": Dataset, "test": Dataset}`` plus ``"val"`` when ``val_size > 0``;
        every split carries the train split's per-channel ``mean`` / ``std``.

    Raises:
        ValueError: unknown name (the message lists the valid ones), bad
            ``val_size`` / ``seed``, or keyword arguments that ``name`` does not take.
        FileNotFoundError, DataFileError, DownloadError: see the loaders.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    seed = check_seed(seed, "seed")
    bad = sorted(set(synthetic_kwargs) - set(dataset_options(name)))
    if bad:
        valid = (f"valid: {', '.join(dataset_options(name))}" if name == "synthetic"
                 else "they apply only to 'synthetic'")
        raise ValueError(f"load_dataset({name!r}) got unexpected keyword argument(s) {bad}; {valid}")
    class_names: tuple[str, ...] = _DIGITS
    if name == "mnist":
        arrays = load_mnist_arrays(data_dir, download=download, mirrors=mirrors)
    elif name == "mnist-5k":
        arrays = load_mnist5k_arrays()
    elif name == "cifar10":
        arrays = load_cifar10_arrays(data_dir, download=download, mirrors=mirrors)
        class_names = CIFAR10_CLASSES
    else:
        arrays = make_synthetic_arrays(seed=seed, **synthetic_kwargs)
        class_names = ()
    num_classes = 10 if name != "synthetic" else synthetic_kwargs.get("num_classes", 10)

    train_x, train_y = arrays["train"]
    splits = {"train": arrays["train"]}
    if val_size:
        tr, va = split_indices(len(train_x), val_size, seed)
        splits = {"train": (train_x[tr], train_y[tr]), "val": (train_x[va], train_y[va])}
    else:
        split_indices(len(train_x), val_size, seed)  # validates val_size
    splits["test"] = arrays["test"]
    mean, std = channel_stats(splits["train"][0])
    return {split: Dataset(name=name, images=np.asarray(x), labels=np.asarray(y),
                           num_classes=int(num_classes), mean=mean, std=std, split=split,
                           class_names=class_names)
            for split, (x, y) in splits.items()}
