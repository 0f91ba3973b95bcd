"""Datasets for ``codesign``: MNIST, CIFAR-10, an embedded MNIST subset, synthetic data.

Quick start::

    from codesign.data import load_dataset, iterate_batches, normalize, augment_cifar

    splits = load_dataset("mnist-5k", val_size=500, seed=0)   # offline, in the package
    train = splits["train"]                                   # Dataset: uint8 NHWC images
    for images, labels in iterate_batches(train, 128, seed=0, epoch=0):
        x = normalize(images, train.mean, train.std)          # float32 on the device

Datasets (:data:`DATASETS`):

``mnist``
    The four official IDX files of MNIST (LeCun, Cortes, Burges), plain or gzipped:
    60,000 train / 10,000 test images, uint8 ``[N, 28, 28, 1]``.
``cifar10``
    CIFAR-10 (Krizhevsky, 2009), official binary version (preferred) or python
    version: 50,000 train / 10,000 test images, uint8 ``[N, 32, 32, 3]``.
``mnist-5k``
    Real MNIST shipped inside the package: the first 5,000 official training images and
    the first 1,000 official test images (needs no files or network; see
    :mod:`codesign.data._embedded` for provenance).
``synthetic``
    Tiny learnable random data of any shape (class prototypes + noise), for tests:
    ``load_dataset("synthetic", shape=(28, 28, 1), num_classes=10, n_train=256, n_test=64)``.

Data directory (``data_dir`` argument, else ``$CODESIGN_DATA``, else
``$XDG_CACHE_HOME/codesign``, else ``~/.cache/codesign``)::

    <data_dir>/mnist/train-images-idx3-ubyte.gz     (or without .gz; also accepted
    <data_dir>/mnist/train-labels-idx1-ubyte.gz      directly in <data_dir>/)
    <data_dir>/mnist/t10k-images-idx3-ubyte.gz
    <data_dir>/mnist/t10k-labels-idx1-ubyte.gz
    <data_dir>/cifar10/cifar-10-batches-bin/data_batch_{1..5}.bin, test_batch.bin
    <data_dir>/cifar10/cifar-10-batches-py/data_batch_{1..5}, test_batch
                                                    (both also accepted in <data_dir>/)

Downloads (``download=True``, the default, when files are missing): MNIST from the
ossci-datasets S3 mirror, then the original site; CIFAR-10's binary archive from the
authors' page.  Sources are overridden by the ``mirrors`` argument or by
``$CODESIGN_MNIST_URL`` / ``$CODESIGN_CIFAR10_URL`` (base URLs separated by spaces; the
file name is appended).  Every download streams to a temp file, is md5-checked (the
published archive md5, or the md5 of its decompressed content for mirrors that
re-compress), and is renamed into place; archives are extracted member by member
(regular files only, no absolute or ``..`` paths).  Every file is checked again when it
is loaded (magic number, size, md5); a bad file raises :class:`DataFileError` naming the
file, what was expected and what was found.

Pipeline: :func:`iterate_batches` (order fixed by ``(seed, epoch)``), :func:`normalize`
(jittable, per-channel train-split statistics), :func:`augment_cifar` (jitted random
4-pixel-padded crop + horizontal flip, vectorized over the batch).
"""

from ._cifar import CIFAR10_CLASSES, download_cifar10, load_cifar10_arrays
from ._dataset import Dataset, channel_stats, split_indices
from ._download import default_data_dir
from ._embedded import load_mnist5k_arrays
from ._errors import DataFileError, DownloadError, option_wording
from ._mnist import download_mnist, load_mnist_arrays, read_idx
from ._pipeline import (augment_cifar, augment_params, epoch_permutation, iterate_batches,
                        normalize, num_batches)
from ._registry import DATASETS, dataset_options, load_dataset
from ._synthetic import make_synthetic_arrays

__all__ = [
    "DATASETS",
    "CIFAR10_CLASSES",
    "DataFileError",
    "Dataset",
    "DownloadError",
    "augment_cifar",
    "augment_params",
    "channel_stats",
    "dataset_options",
    "default_data_dir",
    "download_cifar10",
    "download_mnist",
    "epoch_permutation",
    "iterate_batches",
    "load_cifar10_arrays",
    "load_dataset",
    "load_mnist5k_arrays",
    "load_mnist_arrays",
    "make_synthetic_arrays",
    "normalize",
    "num_batches",
    "option_wording",
    "read_idx",
    "split_indices",
]
