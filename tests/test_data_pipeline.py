"""codesign.data: Dataset, statistics, validation split, batching, normalize, augmentation,
synthetic data and the load_dataset front door.  Each fast path is checked against a
slow obvious reference."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from codesign.data import (DATASETS, Dataset, augment_cifar, augment_params, channel_stats,
                           epoch_permutation, iterate_batches, load_dataset, normalize,
                           num_batches, split_indices)


def small_ds(n=10, shape=(4, 4, 3), num_classes=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, *shape), dtype=np.uint8)
    y = (np.arange(n) % num_classes).astype(np.int32)
    mean, std = channel_stats(x)
    return Dataset("synthetic", x, y, num_classes, mean, std, split="train")


# ----------------------------------------------------------------------------- Dataset

def test_dataset_basics_and_read_only():
    ds = small_ds()
    assert ds.shape == (4, 4, 3) and len(ds) == 10
    assert "n=10" in repr(ds) and "shape=(4, 4, 3)" in repr(ds)
    with pytest.raises(ValueError, match="read-only"):
        ds.images[0, 0, 0, 0] = 1
    with pytest.raises(AttributeError):
        ds.name = "x"


@pytest.mark.parametrize("kwargs, match", [
    (dict(images=np.zeros((2, 4, 4, 3), np.float32)), "images must be a uint8 array"),
    (dict(images=np.zeros((2, 4, 4), np.uint8)), "images must be a uint8 array"),
    (dict(labels=np.zeros(2, np.int64)), "labels must be an int32 array"),
    (dict(labels=np.zeros(3, np.int32)), r"labels must be an int32 array \[2\]"),
    (dict(labels=np.array([0, 5], np.int32)), r"labels must lie in 0..2, found 0..5"),
    (dict(mean=(0.5,)), r"mean needs one value per channel \(3\)"),
    (dict(std=(0.1, 0.0, 0.1)), "std must be positive"),
    (dict(num_classes=0), "num_classes must be a positive int"),
    (dict(class_names=("a", "b")), "2 class_names for 3 classes"),
])
def test_dataset_validation(kwargs, match):
    base = dict(name="x", images=np.zeros((2, 4, 4, 3), np.uint8), labels=np.zeros(2, np.int32),
                num_classes=3, mean=(0.1, 0.2, 0.3), std=(0.1, 0.1, 0.1))
    with pytest.raises(ValueError, match=match):
        Dataset(**{**base, **kwargs})


# ----------------------------------------------------------------------------- statistics

@given(hnp.arrays(np.uint8, hnp.array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=5)))
def test_channel_stats_matches_float64_reference(x):
    mean, std = channel_stats(x, chunk=2)
    ref = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 1, 2)), rtol=1e-9, atol=1e-12)


def test_channel_stats_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8"):
        channel_stats(np.zeros((2, 3, 3, 1), np.float32))
    with pytest.raises(ValueError, match="N>=1"):
        channel_stats(np.zeros((0, 3, 3, 1), np.uint8))


# ----------------------------------------------------------------------------- validation split

@given(st.integers(1, 300), st.data())
def test_split_indices_partition(n, data):
    val = data.draw(st.integers(0, n - 1))
    seed = data.draw(st.integers(0, 2**32))
    tr, va = split_indices(n, val, seed)
    assert len(va) == val and len(tr) == n - val
    assert np.array_equal(np.sort(np.concatenate([tr, va])), np.arange(n))
    assert np.all(np.diff(tr) > 0) and np.all(np.diff(va) > 0)
    tr2, va2 = split_indices(n, val, seed)
    assert np.array_equal(tr, tr2) and np.array_equal(va, va2)


def test_split_depends_on_seed():
    assert not np.array_equal(split_indices(1000, 100, 0)[1], split_indices(1000, 100, 1)[1])


@pytest.mark.parametrize("val, match", [(10, r"val_size must be in 0..9"), (-1, "val_size must be in"),
                                        (0.1, "integer number of examples"), (True, "integer")])
def test_split_rejects_bad_val_size(val, match):
    with pytest.raises(ValueError, match=match):
        split_indices(10, val, 0)


def test_load_dataset_val_split():
    full = load_dataset("synthetic", shape=(6, 6, 2), n_train=100, n_test=10, seed=3)
    s = load_dataset("synthetic", shape=(6, 6, 2), n_train=100, n_test=10, seed=3, val_size=30)
    again = load_dataset("synthetic", shape=(6, 6, 2), n_train=100, n_test=10, seed=3, val_size=30)
    assert set(s) == {"train", "val", "test"}
    assert (len(s["train"]), len(s["val"]), len(s["test"])) == (70, 30, 10)
    tr, va = split_indices(100, 30, 3)
    np.testing.assert_array_equal(s["train"].images, full["train"].images[tr])
    np.testing.assert_array_equal(s["val"].labels, full["train"].labels[va])
    np.testing.assert_array_equal(s["val"].images, again["val"].images)
    # statistics come from the reduced train split and are shared by every split
    assert s["train"].mean == channel_stats(full["train"].images[tr])[0]
    assert s["val"].mean == s["test"].mean == s["train"].mean
    assert s["train"].mean != full["train"].mean


# ----------------------------------------------------------------------------- batching

def test_iterate_batches_deterministic_and_complete():
    ds = small_ds(n=23)
    ep = lambda s, e: [(x.copy(), y.copy()) for x, y in iterate_batches(ds, 5, seed=s, epoch=e)]  # noqa
    a, b = ep(0, 3), ep(0, 3)
    assert len(a) == num_batches(ds, 5) == 4
    for (xa, ya), (xb, yb) in zip(a, b):
        assert xa.shape == (5, 4, 4, 3) and xa.dtype == np.uint8 and ya.dtype == np.int32
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    # reference: the batches are the dataset rows in the epoch's permutation order
    order = epoch_permutation(23, seed=0, epoch=3)
    np.testing.assert_array_equal(np.concatenate([x for x, _ in a]), ds.images[order[:20]])
    assert not np.array_equal(epoch_permutation(23, seed=0, epoch=4), order)
    assert not np.array_equal(epoch_permutation(23, seed=1, epoch=3), order)


def test_iterate_batches_resume_reproduces_epoch():
    ds = small_ds(n=17)
    full_run = [[y.copy() for _, y in iterate_batches(ds, 4, seed=7, epoch=e)] for e in range(3)]
    resumed = [y.copy() for _, y in iterate_batches(ds, 4, seed=7, epoch=2)]
    for a, b in zip(full_run[2], resumed):
        np.testing.assert_array_equal(a, b)


def test_iterate_batches_remainder_and_no_shuffle():
    ds = small_ds(n=11)
    batches = list(iterate_batches(ds, 4, seed=0, epoch=0, shuffle=False, drop_remainder=False))
    assert [len(y) for _, y in batches] == [4, 4, 3] == [4, 4, 3][:num_batches(11, 4, False)]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in batches]), ds.images)
    shuffled = list(iterate_batches(ds, 4, seed=0, epoch=0, drop_remainder=False))
    assert sorted(np.concatenate([y for _, y in shuffled]).tolist()) == sorted(ds.labels.tolist())
    batches[0][0][0, 0, 0, 0] ^= 1  # batches are writable copies
    assert [len(y) for _, y in iterate_batches(ds, 4, seed=0, epoch=0)] == [4, 4]


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=0), "batch_size must be a positive integer"),
    (dict(batch_size=20), "batch_size 20 exceeds the 10 examples"),
    (dict(seed=-1), "seed must be a non-negative integer"),
    (dict(epoch=1.5), "epoch must be a non-negative integer"),
])
def test_iterate_batches_errors(kwargs, match):
    args = {**dict(batch_size=4, seed=0, epoch=0), **kwargs}
    with pytest.raises(ValueError, match=match):
        iterate_batches(small_ds(), args.pop("batch_size"), **args)


# ----------------------------------------------------------------------------- normalize

def test_normalize_matches_reference_and_jits():
    ds = small_ds(n=6)
    ref = (ds.images.astype(np.float64) / 255.0 - np.array(ds.mean)) / np.array(ds.std)
    out = normalize(ds.images, ds.mean, ds.std)
    assert out.dtype == jnp.float32 and out.shape == ds.images.shape
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-5)
    jitted = jax.jit(lambda x: normalize(x, ds.mean, ds.std))(jnp.asarray(ds.images))
    np.testing.assert_allclose(np.asarray(jitted), ref, rtol=1e-5, atol=1e-5)
    # the full train split normalizes to mean 0, std 1 per channel
    np.testing.assert_allclose(np.asarray(out).mean(axis=(0, 1, 2)), 0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out).std(axis=(0, 1, 2)), 1, atol=1e-5)


def test_normalize_errors():
    x = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match=r"mean needs one value per channel \(3\)"):
        normalize(x, (0.5,), (0.2, 0.2, 0.2))
    with pytest.raises(ValueError, match="std must be positive"):
        normalize(x, (0.5,) * 3, (0.2, 0.0, 0.2))


# ----------------------------------------------------------------------------- augmentation

def augment_reference(images: np.ndarray, offsets: np.ndarray, flips: np.ndarray, pad=4):
    """Slow obvious reference: pad, crop, flip, one image at a time."""
    out = np.empty_like(images)
    h, w = images.shape[1:3]
    for i, img in enumerate(images):
        p = np.zeros((h + 2 * pad, w + 2 * pad, img.shape[2]), img.dtype)
        p[pad:pad + h, pad:pad + w] = img
        crop = p[offsets[i, 0]:offsets[i, 0] + h, offsets[i, 1]:offsets[i, 1] + w]
        out[i] = crop[:, ::-1] if flips[i] else crop
    return out


def unique_images(b=64, h=32, w=32, c=3):
    # every pixel value distinct and nonzero, so crops/flips are identifiable
    return (np.arange(b * h * w * c, dtype=np.float32) + 1).reshape(b, h, w, c)


def test_augment_matches_reference():
    x = unique_images()
    key = jax.random.key(0)
    out = np.asarray(augment_cifar(key, jnp.asarray(x)))
    offsets, flips = (np.asarray(a) for a in augment_params(key, len(x)))
    assert out.shape == x.shape and out.dtype == x.dtype
    np.testing.assert_array_equal(out, augment_reference(x, offsets, flips))


def test_augment_actually_crops_and_flips():
    x = unique_images(b=512, h=8, w=8, c=1)
    out = np.asarray(augment_cifar(jax.random.key(1), jnp.asarray(x)))
    # identify each output by brute force among all 81 crops x 2 flips
    seen = set()
    for i in range(len(x)):
        hits = [(dy, dx, f) for dy, dx, f in itertools.product(range(9), range(9), (False, True))
                if np.array_equal(out[i], augment_reference(x[i:i + 1], np.array([[dy, dx]]),
                                                            np.array([f]))[0])]
        assert len(hits) == 1
        seen.add(hits[0])
    assert {f for _, _, f in seen} == {False, True}
    assert len({(dy, dx) for dy, dx, _ in seen}) == 81  # every offset occurs in 512 draws
    assert (out == 0).any() and (out != 0).any()  # zero padding shows up


def test_augment_deterministic_and_key_dependent():
    x = jnp.asarray(unique_images(b=16))
    a = augment_cifar(jax.random.key(5), x)
    b = augment_cifar(jax.random.key(5), x)
    c = augment_cifar(jax.random.key(6), x)
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert not np.array_equal(np.asarray(a), np.asarray(c))
    legacy = augment_cifar(jax.random.PRNGKey(5), x)  # raw uint32 keys work too
    assert legacy.shape == x.shape


def test_augment_inside_jit_with_normalize_and_uint8():
    ds = small_ds(n=8, shape=(32, 32, 3))

    @jax.jit
    def step(key, images):
        return augment_cifar(key, normalize(images, ds.mean, ds.std))

    out = step(jax.random.key(0), jnp.asarray(ds.images))
    assert out.shape == (8, 32, 32, 3) and out.dtype == jnp.float32
    u8 = augment_cifar(jax.random.key(0), jnp.asarray(ds.images))
    assert u8.dtype == jnp.uint8
    offsets, flips = (np.asarray(a) for a in augment_params(jax.random.key(0), 8))
    np.testing.assert_array_equal(np.asarray(u8), augment_reference(ds.images, offsets, flips))
    with pytest.raises(ValueError, match="NHWC"):
        augment_cifar(jax.random.key(0), jnp.zeros((4, 32, 32)))


# ----------------------------------------------------------------------------- synthetic + front door

def test_synthetic_deterministic_balanced_any_shape():
    a = load_dataset("synthetic", shape=(5, 7, 2), num_classes=3, n_train=31, n_test=9, seed=4)
    b = load_dataset("synthetic", shape=(5, 7, 2), num_classes=3, n_train=31, n_test=9, seed=4)
    c = load_dataset("synthetic", shape=(5, 7, 2), num_classes=3, n_train=31, n_test=9, seed=5)
    assert a["train"].images.shape == (31, 5, 7, 2) and a["test"].images.shape == (9, 5, 7, 2)
    np.testing.assert_array_equal(a["train"].images, b["train"].images)
    assert not np.array_equal(a["train"].images, c["train"].images)
    assert sorted(np.bincount(a["train"].labels).tolist()) == [10, 10, 11]
    assert a["train"].num_classes == 3


def test_synthetic_is_learnable_in_a_few_steps():
    s = load_dataset("synthetic", shape=(8, 8, 1), num_classes=10, n_train=256, n_test=64, seed=0)
    tr, te = s["train"], s["test"]
    x = normalize(tr.images, tr.mean, tr.std).reshape(len(tr), -1)
    xt = normalize(te.images, tr.mean, tr.std).reshape(len(te), -1)
    w = jnp.zeros((x.shape[1], 10))

    def loss(w):
        logits = x @ w
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), jnp.asarray(tr.labels)[:, None], 1))

    grad = jax.jit(jax.grad(loss))
    for _ in range(10):  # ten full-batch gradient steps of a linear classifier
        w = w - 0.1 * grad(w)
    acc = float(jnp.mean(jnp.argmax(xt @ w, axis=1) == jnp.asarray(te.labels)))
    assert acc >= 0.95


@pytest.mark.parametrize("kwargs, match", [
    (dict(shape=(8, 8)), r"shape must be \(H, W, C\)"),
    (dict(num_classes=1), "num_classes must be an integer >= 2"),
    (dict(n_train=0), "n_train must be an integer >= 1"),
    (dict(noise=-1.0), "noise must be a number >= 0"),
])
def test_synthetic_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        load_dataset("synthetic", **kwargs)


def test_load_dataset_errors():
    assert DATASETS == ("mnist", "mnist-5k", "cifar10", "synthetic")
    valid = "valid: mnist, mnist-5k, cifar10, synthetic"
    with pytest.raises(ValueError, match=f"unknown dataset 'imagenet'; {valid}"):
        load_dataset("imagenet")
    with pytest.raises(ValueError, match=r"unexpected keyword argument\(s\) \['shape'\]; "
                                         r"they apply only to 'synthetic'"):
        load_dataset("mnist-5k", shape=(28, 28, 1))
    with pytest.raises(ValueError, match="seed must be a non-negative integer"):
        load_dataset("mnist-5k", seed=-3)
    with pytest.raises(ValueError, match=r"val_size must be in 0..4999"):
        load_dataset("mnist-5k", val_size=5000)


def test_augment_on_batch_sharded_input_matches_single_device():
    """Data-parallel use: with the batch sharded over 2 (virtual) devices the result is
    identical and stays sharded (run in a subprocess: the device count is fixed at start)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    code = """
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from codesign.data import augment_cifar, normalize
assert len(jax.devices()) == 2
mesh = Mesh(np.array(jax.devices()), ('data',))
x = np.random.default_rng(0).integers(0, 256, (16, 32, 32, 3), dtype=np.uint8)
f = jax.jit(lambda k, x: augment_cifar(k, normalize(x, (0.5,) * 3, (0.25,) * 3)))
a = f(jax.random.key(0), jax.device_put(x, NamedSharding(mesh, P('data'))))
b = f(jax.random.key(0), jnp.asarray(x))
assert a.sharding.spec == P('data'), a.sharding
assert np.array_equal(np.asarray(a), np.asarray(b))
print('ok')
"""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=root)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
