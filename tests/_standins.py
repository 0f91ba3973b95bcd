"""TEMPORARY stand-ins for ``codesign.data`` and ``models`` (branches ``data``/``models``).

Installed only when the real modules are not importable, so the training tests run
before those branches are merged. Delete this file once they are.
"""

from __future__ import annotations

import dataclasses
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx


def install() -> None:
    try:
        import codesign.data  # noqa: F401
    except ImportError:
        _install_data()
    try:
        import models  # noqa: F401
    except ImportError:
        _install_models()


def _install_data() -> None:
    mod = types.ModuleType("codesign.data")

    @dataclasses.dataclass(frozen=True)
    class Dataset:
        name: str
        images: np.ndarray
        labels: np.ndarray
        num_classes: int
        mean: tuple
        std: tuple

        @property
        def shape(self):
            return self.images.shape[1:]

        def __len__(self):
            return len(self.labels)

    def load_dataset(name, *, data_dir=None, download=True, val_size=0, seed=0, shape=(28, 28, 1),
                     num_classes=10, n_train=256, n_test=64):
        if name != "synthetic":
            raise ValueError(f"stand-in: only 'synthetic', got {name!r}")
        rng = np.random.default_rng(seed)
        # learnable: class-dependent mean brightness pattern
        def make(n):
            y = rng.integers(0, num_classes, n).astype(np.int32)
            base = rng.integers(0, 60, (n, *shape))
            bump = (y[:, None, None, None] * 19) % 190
            x = np.clip(base + bump * (np.arange(shape[1])[None, None, :, None] % num_classes == y[:, None, None, None]), 0, 255)
            return x.astype(np.uint8), y
        xtr, ytr = make(n_train)
        xte, yte = make(n_test)
        m = tuple(float(v) for v in (xtr / 255.0).mean(axis=(0, 1, 2)))
        s = tuple(float(v) for v in (xtr / 255.0).std(axis=(0, 1, 2)))
        out = {}
        if val_size:
            out["val"] = Dataset(name, xtr[-val_size:], ytr[-val_size:], num_classes, m, s)
            xtr, ytr = xtr[:-val_size], ytr[:-val_size]
        out["train"] = Dataset(name, xtr, ytr, num_classes, m, s)
        out["test"] = Dataset(name, xte, yte, num_classes, m, s)
        return out

    def iterate_batches(ds, batch_size, *, seed, epoch, shuffle=True, drop_remainder=True):
        n = len(ds)
        idx = np.random.default_rng([seed, epoch]).permutation(n) if shuffle else np.arange(n)
        stop = n - n % batch_size if drop_remainder else n
        for i in range(0, stop, batch_size):
            j = idx[i:i + batch_size]
            yield ds.images[j], ds.labels[j]

    def normalize(images, mean, std):
        x = jnp.asarray(images).astype(jnp.float32) / 255.0
        return (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)

    def augment_cifar(key, images):
        kf, kc = jax.random.split(key)
        b, h, w, c = images.shape
        flip = jax.random.bernoulli(kf, 0.5, (b, 1, 1, 1))
        images = jnp.where(flip, images[:, :, ::-1, :], images)
        padded = jnp.pad(images, ((0, 0), (4, 4), (4, 4), (0, 0)))
        offs = jax.random.randint(kc, (b, 2), 0, 9)
        return jax.vmap(lambda im, o: jax.lax.dynamic_slice(im, (o[0], o[1], 0), (h, w, c)))(padded, offs)

    mod.Dataset = Dataset
    mod.DATASETS = ("mnist", "mnist-5k", "cifar10", "synthetic")
    mod.load_dataset = load_dataset
    mod.iterate_batches = iterate_batches
    mod.normalize = normalize
    mod.augment_cifar = augment_cifar
    import codesign
    sys.modules["codesign.data"] = mod
    codesign.data = mod


def _install_models() -> None:
    mod = types.ModuleType("models")

    class TinyCNN(nnx.Module):
        def __init__(self, *, rngs, num_classes=10, input_shape=(28, 28, 1), width=8, dropout=0.1):
            h, w, c = input_shape
            self.conv = nnx.Conv(c, width, (3, 3), rngs=rngs)
            self.bn = nnx.BatchNorm(width, rngs=rngs)
            self.drop = nnx.Dropout(dropout, rngs=rngs)
            self.head = nnx.Linear(width * (h // 4) * (w // 4), num_classes, rngs=rngs)

        def __call__(self, x):
            x = nnx.relu(self.bn(self.conv(x)))
            x = nnx.avg_pool(x, (4, 4), (4, 4))
            x = self.drop(x.reshape(x.shape[0], -1))
            return self.head(x)

    names = ("lenet5", "mnist_cnn", "vgg_small", "resnet20", "mobilenet_small", "vit_tiny")

    def list_models():
        return names

    def create(name, *, rngs, num_classes=None, input_shape=None, **overrides):
        if name not in names:
            raise ValueError(f"unknown model {name!r}; valid: {', '.join(names)}")
        return TinyCNN(rngs=rngs, num_classes=num_classes or 10, input_shape=input_shape or (28, 28, 1), **overrides)

    mod.list_models = list_models
    mod.create = create
    sys.modules["models"] = mod
