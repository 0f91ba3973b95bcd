"""train_step / eval_step, label smoothing, weight decay, BatchNorm and Dropout modes."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from codesign.config import Config
from codesign.train import (
    ClassificationLoss,
    apply_step,
    count_params,
    cross_entropy_loss,
    decay_mask,
    eval_step,
    make_optimizer,
    train_step,
)


class Tiny(nnx.Module):
    """conv -> BatchNorm -> relu -> pool -> dropout -> dense: every mode-dependent layer."""

    def __init__(self, rngs: nnx.Rngs, dropout: float = 0.5):
        self.conv = nnx.Conv(1, 4, (3, 3), rngs=rngs)
        self.bn = nnx.BatchNorm(4, momentum=0.9, rngs=rngs)
        self.drop = nnx.Dropout(dropout, rngs=rngs)
        self.head = nnx.Linear(4 * 4 * 4, 3, rngs=rngs)

    def __call__(self, x):
        x = nnx.relu(self.bn(self.conv(x)))
        x = nnx.avg_pool(x, (2, 2), (2, 2))
        return self.head(self.drop(x.reshape(x.shape[0], -1)))


def _data(seed=0, n=16):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 8, 8, 1)).astype(np.float32)
    y = rng.integers(0, 3, n).astype(np.int32)
    x[np.arange(n), y, y, 0] += 4.0  # learnable
    return jnp.asarray(x), jnp.asarray(y)


def _leaves(tree):
    out = []
    for x in jax.tree.leaves(tree):
        if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x = jax.random.key_data(x)
        out.append(np.asarray(x))
    return out


def test_train_step_reduces_loss_and_eval_matches():
    model = Tiny(nnx.Rngs(0), dropout=0.0)
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)
    x, y = _data()
    model.train()
    first = float(train_step(model, opt, x, y)["loss"])
    for _ in range(30):
        m = train_step(model, opt, x, y)
    assert float(m["loss"]) < 0.5 * first
    assert int(opt.step[...]) == 31
    model.eval()
    ev = eval_step(model, x, y)
    assert float(ev["count"]) == len(y)
    # eval accuracy recomputed by hand from the logits
    acc = float(np.mean(np.argmax(np.asarray(model(x)), -1) == np.asarray(y)))
    assert float(ev["correct"]) / float(ev["count"]) == pytest.approx(acc)


def test_eval_step_mask_ignores_padding():
    model = Tiny(nnx.Rngs(1))
    model.eval()
    x, y = _data(n=12)
    full = eval_step(model, x[:8], y[:8])
    xp = jnp.concatenate([x[:8], jnp.full_like(x[:4], 1e3)])
    yp = jnp.concatenate([y[:8], jnp.zeros(4, jnp.int32)])
    mask = jnp.arange(12) < 8
    masked = eval_step(model, xp, yp, mask)
    for k in ("loss_sum", "correct", "count"):
        np.testing.assert_allclose(float(masked[k]), float(full[k]), rtol=1e-5)


def test_batchnorm_train_updates_stats_eval_does_not():
    model = Tiny(nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
    x, y = _data()
    mean0 = np.asarray(model.bn.mean[...]).copy()
    model.train()
    train_step(model, opt, x, y)
    mean1 = np.asarray(model.bn.mean[...]).copy()
    assert not np.allclose(mean0, mean1), "training must update the BatchNorm running mean"
    # running mean = 0.9 * old + 0.1 * batch mean of the conv output (before the update)
    model.eval()
    before = _leaves(nnx.state(model))
    out1 = np.asarray(model(x))
    eval_step(model, x, y)
    out2 = np.asarray(model(x))
    after = _leaves(nnx.state(model))
    for a, b in zip(before, after):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out1, out2)  # eval: running stats, no dropout
    # eval output uses running statistics: changing the batch composition changes nothing
    np.testing.assert_allclose(np.asarray(model(x[:3])), out1[:3], rtol=1e-5, atol=1e-6)


def test_batchnorm_running_mean_formula():
    model = Tiny(nnx.Rngs(0), dropout=0.0)
    opt = nnx.Optimizer(model, optax.sgd(0.0), wrt=nnx.Param)
    x, y = _data()
    conv_out = np.asarray(model.conv(x))
    expected = 0.9 * np.asarray(model.bn.mean[...]) + 0.1 * conv_out.mean(axis=(0, 1, 2))
    model.train()
    train_step(model, opt, x, y)
    np.testing.assert_allclose(np.asarray(model.bn.mean[...]), expected, rtol=1e-5, atol=1e-6)


def test_dropout_active_in_train_only():
    model = Tiny(nnx.Rngs(0), dropout=0.5)
    x, _ = _data()
    model.train()
    a, b = np.asarray(model(x)), np.asarray(model(x))
    assert not np.allclose(a, b), "training-mode dropout must draw fresh masks"
    model.eval()
    c, d = np.asarray(model(x)), np.asarray(model(x))
    np.testing.assert_array_equal(c, d)


def _slow_smoothed_ce(logits, labels, a):
    out = []
    for row, lab in zip(np.asarray(logits, np.float64), np.asarray(labels)):
        k = len(row)
        logp = row - np.log(np.sum(np.exp(row - row.max()))) - row.max()
        target = [(1 - a) * (j == lab) + a / k for j in range(k)]
        out.append(-sum(t * lp for t, lp in zip(target, logp)))
    return np.array(out)


@pytest.mark.parametrize("a", [0.0, 0.1, 0.5])
def test_label_smoothing_matches_reference(a):
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(6, 5)).astype(np.float32) * 3
    labels = rng.integers(0, 5, 6).astype(np.int32)
    got = np.asarray(cross_entropy_loss(jnp.asarray(logits), jnp.asarray(labels), a))
    np.testing.assert_allclose(got, _slow_smoothed_ce(logits, labels, a), rtol=1e-5)


def test_decay_mask_excludes_biases_and_norm_scales():
    model = Tiny(nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    mask = decay_mask(nnx.to_pure_dict(params))
    assert bool(mask["conv"]["kernel"])
    assert bool(mask["head"]["kernel"])
    assert not bool(mask["conv"]["bias"]) and not bool(mask["head"]["bias"])
    assert not bool(mask["bn"]["scale"]) and not bool(mask["bn"]["bias"])


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_weight_decay_only_on_kernels(optimizer):
    """With zero gradients, one step shrinks kernels by lr*wd*w and leaves biases/scales."""
    lr, wd = 0.1, 0.01
    cfg = Config(optimizer=optimizer, learning_rate=lr, weight_decay=wd, momentum=0.0 if optimizer == "sgd" else 0.9,
                 schedule="constant", epochs=1)
    model = Tiny(nnx.Rngs(0))
    opt = nnx.Optimizer(model, make_optimizer(cfg, steps_per_epoch=10), wrt=nnx.Param)
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    zeros = jax.tree.map(jnp.zeros_like, nnx.state(model, nnx.Param))
    opt.update(model, zeros)
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    np.testing.assert_allclose(after["conv"]["kernel"], before["conv"]["kernel"] * (1 - lr * wd), rtol=1e-6)
    np.testing.assert_allclose(after["head"]["kernel"], before["head"]["kernel"] * (1 - lr * wd), rtol=1e-6)
    for path in (("conv", "bias"), ("head", "bias"), ("bn", "scale"), ("bn", "bias")):
        np.testing.assert_array_equal(after[path[0]][path[1]], before[path[0]][path[1]])


def test_sgd_nesterov_and_clipping_configured():
    cfg = Config(optimizer="sgd", nesterov=True, grad_clip_norm=1.0, schedule="constant", learning_rate=1.0,
                 momentum=0.0, epochs=1)
    model = Tiny(nnx.Rngs(0))
    opt = nnx.Optimizer(model, make_optimizer(cfg, steps_per_epoch=1), wrt=nnx.Param)
    before = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    big = jax.tree.map(lambda p: jnp.full_like(p, 100.0), nnx.state(model, nnx.Param))
    opt.update(model, big)
    after = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    delta = jax.tree.leaves(jax.tree.map(lambda a, b: np.asarray(a) - np.asarray(b), after, before))
    norm = float(np.sqrt(sum(float(np.sum(d.astype(np.float64) ** 2)) for d in delta)))
    assert norm == pytest.approx(1.0, rel=1e-4)  # clipped global norm times lr=1


def test_split_merge_jit_matches_nnx_jit():
    """The loop's split/merge + jax.jit path runs the same body as the public nnx.jit step."""
    x, y = _data()
    m1 = Tiny(nnx.Rngs(0))
    o1 = nnx.Optimizer(m1, optax.sgd(0.05, 0.9), wrt=nnx.Param)
    m1.train()
    for _ in range(3):
        train_step(m1, o1, x, y, label_smoothing=0.1)

    m2 = Tiny(nnx.Rngs(0))
    o2 = nnx.Optimizer(m2, optax.sgd(0.05, 0.9), wrt=nnx.Param)
    m2.train()
    graphdef, state = nnx.split((m2, o2))

    @functools.partial(jax.jit, donate_argnums=0)
    def step(state, x, y):
        m, o = nnx.merge(graphdef, state)
        apply_step(m, o, ClassificationLoss(0.1), x, y)
        return nnx.state((m, o))

    for _ in range(3):
        state = step(state, x, y)
    nnx.update((m2, o2), state)
    for a, b in zip(_leaves(nnx.state((m1, o1))), _leaves(nnx.state((m2, o2)))):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_count_params():
    model = Tiny(nnx.Rngs(0))
    expected = (3 * 3 * 1 * 4 + 4) + (4 + 4) + (64 * 3 + 3)
    assert count_params(model) == expected


def test_metric_sums_per_example_scalar_and_mask():
    """[B] metrics sum over (unmasked) rows, scalars count once per batch; bad shapes are named."""
    from codesign.train import metric_means, metric_sums

    v = jnp.array([1.0, 2.0, 3.0, 4.0])
    mask = jnp.array([True, True, False, True])
    s = metric_sums({"a": v, "b": jnp.float32(5.0)}, mask)
    assert float(s["a"][0]) == 7.0 and float(s["a"][1]) == 3.0
    assert float(s["b"][0]) == 5.0 and float(s["b"][1]) == 1.0
    total = jax.tree.map(jnp.add, s, metric_sums({"a": v, "b": jnp.float32(1.0)}))
    assert metric_means(total, ("b", "a")) == {"b": 3.0, "a": 17.0 / 7.0}
    assert list(metric_means(total, ("b", "a"))) == ["b", "a"]
    with pytest.raises(ValueError, match=r"metric 'c': expected a scalar or a per-example \[B\] array"):
        metric_sums({"c": jnp.ones((2, 2))})


def test_train_step_logs_every_term_of_a_custom_loss():
    """A LossFn returning (total, named terms) is minimized on its total; each term comes back."""
    import dataclasses

    from codesign.train import cross_entropy_loss

    @dataclasses.dataclass(frozen=True)
    class WithPenalty:
        weight: float

        def __call__(self, model, images, labels):
            losses = cross_entropy_loss(model(images), labels)
            penalty = sum(jnp.sum(p ** 2) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))
            total = losses.mean() + self.weight * penalty
            return total, {"loss": losses, "penalty": penalty, "total": total}

    x, y = _data()
    model = Tiny(nnx.Rngs(0), dropout=0.0)
    opt = nnx.Optimizer(model, optax.sgd(0.0), wrt=nnx.Param)  # lr 0: the values stay comparable
    model.train()
    m = train_step(model, opt, x, y, loss_fn=WithPenalty(0.5))
    assert set(m) == {"loss", "penalty", "total"}
    assert float(m["total"]) == pytest.approx(float(m["loss"]) + 0.5 * float(m["penalty"]), rel=1e-6)
