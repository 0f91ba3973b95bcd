"""The model zoo: registry, shapes, modes, determinism, gradients, documented sizes."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models

NAMES = (
    "lenet5",
    "mnist_cnn",
    "vgg_small",
    "resnet20",
    "mobilenet_small",
    "vit_tiny",
)


def _batch(name, n=2, seed=1, shape=None):
    # numpy, not jax.random: nothing to compile (every distinct jitted shape costs a compile)
    shape = shape or models.get_info(name).default_input_shape
    return jnp.asarray(np.random.default_rng(seed).normal(size=(n,) + tuple(shape)), jnp.float32)


@pytest.fixture(scope="module")
def built():
    """One model per name (seed 0) shared by the tests of this file; tests that change
    a model work on an ``nnx.clone`` of it."""
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = models.create(name, rngs=nnx.Rngs(0))
        return nnx.clone(cache[name])

    return get


def _abstract(name, **kwargs):
    """The model with abstract parameters (``nnx.eval_shape``): nothing is computed."""
    return nnx.eval_shape(lambda: models.create(name, rngs=nnx.Rngs(0), **kwargs))


def _trace(model, shape):
    """Closed jaxpr of ``model(x)`` for ``x f32[shape]`` (eval mode) and the set of
    jaxpr input variables that hold parameters (``nnx.Param``)."""
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    closed = jax.make_jaxpr(lambda p, r, x: nnx.merge(graphdef, p, r)(x))(
        params, rest, jax.ShapeDtypeStruct(tuple(shape), jnp.float32)
    )
    n = len(jax.tree_util.tree_leaves(params))
    return closed, set(closed.jaxpr.invars[:n])


def _has(model, cls, pred=lambda m: True):
    return any(isinstance(m, cls) and pred(m) for _, m in nnx.iter_modules(model))


# ---- registry ---------------------------------------------------------------------------


def test_list_models_is_the_zoo():
    assert models.list_models() == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_info(name):
    info = models.get_info(name)
    assert info.name == name
    assert info.dataset in info.datasets
    assert info.dataset in ("mnist", "cifar10")
    h, w, c = info.default_input_shape
    assert (h, w, c) == ((28, 28, 1) if info.dataset == "mnist" else (32, 32, 3))
    assert info.num_classes == 10
    assert "dtype" in info.options and "param_dtype" in info.options
    assert info.description


def test_unknown_name_lists_valid_names():
    for fn in (
        lambda: models.create("alexnet", rngs=nnx.Rngs(0)),
        lambda: models.get_info("alexnet"),
    ):
        with pytest.raises(ValueError, match="unknown model 'alexnet'") as e:
            fn()
        for n in NAMES:
            assert n in str(e.value)


def test_unknown_option_lists_valid_options():
    with pytest.raises(ValueError, match="no option") as e:
        models.create("resnet20", rngs=nnx.Rngs(0), depth=56)
    assert "shortcut" in str(e.value) and "dtype" in str(e.value)


def test_rngs_must_be_nnx_rngs():
    with pytest.raises(TypeError, match="nnx.Rngs"):
        models.create("lenet5", rngs=0)


@pytest.mark.parametrize(
    "name, kwargs, match",
    [
        ("resnet20", dict(shortcut="C"), "shortcut"),
        ("vit_tiny", dict(patch_size=5), "patch_size"),
        ("vit_tiny", dict(pool="max"), "pool"),
        ("vit_tiny", dict(dim=30, num_heads=4), "divisible"),
        ("vgg_small", dict(input_shape=(30, 30, 3)), "divisible"),
        ("lenet5", dict(input_shape=(16, 16, 1)), "too small"),
        ("mnist_cnn", dict(input_shape=(28, 28)), "input_shape"),
        ("mnist_cnn", dict(num_classes=0), "num_classes"),
        ("mobilenet_small", dict(blocks=((64, 3),)), "stride"),
        ("vgg_small", dict(dropout_rate=1.0), "dropout_rate"),
    ],
)
def test_invalid_values_raise(name, kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.create(name, rngs=nnx.Rngs(0), **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_wrong_input_shape_raises(name, built):
    m = built(name)
    h, w, c = models.get_info(name).default_input_shape
    with pytest.raises(ValueError, match="built for NHWC input"):
        m(jnp.zeros((2, h, w, c + 1)))
    with pytest.raises(ValueError, match="built for NHWC input"):
        m(jnp.zeros((h, w, c)))


# ---- building, modes, determinism -------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
def test_builds_and_gives_logits(name, built):
    m = built(name)
    assert isinstance(m, models.ZooModel)
    x = _batch(name)
    for mode in ("train", "eval"):
        getattr(m, mode)()
        y = m(x)
        assert y.shape == (2, 10) and y.dtype == jnp.float32
        assert bool(jnp.all(jnp.isfinite(y)))
    shape = models.get_info(name).default_input_shape
    m7 = _abstract(name, num_classes=7)
    closed, _ = _trace(m7, (5,) + shape)
    assert closed.out_avals[0].shape == (5, 7)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_by_seed(name, built):
    a = built(name)
    b = models.create(name, rngs=nnx.Rngs(0))
    c = models.create(name, rngs=nnx.Rngs(1))
    sa, sb, sc = (jax.tree_util.tree_leaves(nnx.state(m, nnx.Param)) for m in (a, b, c))
    assert all(np.array_equal(u, v) for u, v in zip(sa, sb, strict=True))
    assert not all(np.array_equal(u, v) for u, v in zip(sa, sc, strict=True))
    assert nnx.graphdef(a) == nnx.graphdef(b)  # same static structure -> one jit cache entry
    x = _batch(name)
    # training mode (Dropout active where present): the same seed gives the same outputs
    np.testing.assert_array_equal(a(x), b(x))
    np.testing.assert_array_equal(a(x), b(x))


@pytest.mark.parametrize("name", NAMES)
def test_train_eval_modes(name, built):
    m = built(name)
    has_bn = _has(m, nnx.BatchNorm)
    has_dropout = _has(m, nnx.Dropout, lambda d: d.rate > 0)
    assert has_bn == (name in ("vgg_small", "resnet20", "mobilenet_small"))
    assert has_dropout == (name == "vit_tiny")
    x = _batch(name)

    def bn_stats():
        return [np.asarray(v) for v in jax.tree_util.tree_leaves(nnx.state(m, nnx.BatchStat))]

    s0 = bn_stats()
    y_train = m(x)
    y_train2 = m(x)
    s1 = bn_stats()
    m.eval()
    y_eval = m(x)
    y_eval2 = m(x)
    s2 = bn_stats()
    # eval: deterministic, per-example (no batch statistics), BN statistics frozen
    np.testing.assert_array_equal(y_eval, y_eval2)
    x_other = x.at[1].set(-x[1])  # same shape: no new compile
    np.testing.assert_allclose(m(x_other)[0], y_eval[0], rtol=1e-5, atol=1e-5)
    assert all(np.array_equal(u, v) for u, v in zip(s1, s2, strict=True))
    if has_bn:
        assert not all(np.array_equal(u, v) for u, v in zip(s0, s1, strict=True))
        assert not np.allclose(y_train, y_eval, atol=1e-4)
    if has_dropout:
        assert not np.allclose(y_train, y_train2, atol=1e-6)  # fresh masks each call
        assert not np.allclose(y_train, y_eval, atol=1e-6)
    if not has_bn and not has_dropout:
        np.testing.assert_array_equal(y_train, y_eval)
        np.testing.assert_array_equal(y_train, y_train2)
    m.train()
    assert not np.allclose(m(x), y_eval, atol=1e-6) if (has_bn or has_dropout) else True


def test_dropout_rate_zero_makes_vit_deterministic_in_training(built):
    m = built("vit_tiny")
    m.set_attributes(nnx.Dropout, rate=0.0)
    x = _batch("vit_tiny")
    y = m(x)
    m.eval()
    np.testing.assert_array_equal(y, m(x))


def _matmul_operand_dtypes(jaxpr) -> set:
    out = set()
    for e in jaxpr.eqns:
        if e.primitive.name in ("dot_general", "conv_general_dilated"):
            out |= {str(v.aval.dtype) for v in e.invars}
        for p in e.params.values():
            for sub in p if isinstance(p, (list, tuple)) else (p,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    out |= _matmul_operand_dtypes(sub.jaxpr)
    return out


@pytest.mark.parametrize("name", NAMES)
def test_dtype_overrides(name):
    shape = (2,) + models.get_info(name).default_input_shape
    # abstract models (nnx.eval_shape): only tracing, nothing is compiled or run
    m = _abstract(name, dtype=jnp.bfloat16)
    assert {v.dtype for v in jax.tree_util.tree_leaves(nnx.state(m, nnx.Param))} == {
        jnp.dtype(jnp.float32)
    }
    closed, _ = _trace(m, shape)
    assert _matmul_operand_dtypes(closed.jaxpr) == {"bfloat16"}
    assert closed.out_avals[0].dtype == jnp.float32
    mp = _abstract(name, param_dtype=jnp.bfloat16)
    assert {v.dtype for v in jax.tree_util.tree_leaves(nnx.state(mp, nnx.Param))} == {
        jnp.dtype(jnp.bfloat16)
    }
    closed, _ = _trace(mp, shape)
    assert closed.out_avals[0].dtype == jnp.float32


def test_bfloat16_forward_runs_close_to_float32(built):
    m32 = built("lenet5")
    m16 = models.create("lenet5", rngs=nnx.Rngs(0), dtype=jnp.bfloat16)
    x = _batch("lenet5")
    y16, y32 = m16(x), m32(x)
    assert y16.dtype == jnp.float32
    np.testing.assert_allclose(y16, y32, atol=0.05 * float(jnp.max(jnp.abs(y32))) + 0.02)
    assert not np.array_equal(y16, y32)


def test_vit_configurable_input_patch_and_pool():
    x = _batch("vit_tiny", 2, shape=(32, 32, 3))
    m = models.create("vit_tiny", rngs=nnx.Rngs(0), input_shape=(32, 32, 3), patch_size=8,
                      pool="mean", depth=1)
    assert m(x).shape == (2, 10)
    assert not hasattr(m, "cls_token")
    assert m.pos_embed.shape == (1, 16, 64)  # 4x4 patches, no class token
    m2 = _abstract("vit_tiny", input_shape=(32, 32, 3))
    assert m2.pos_embed.shape == (1, 65, 64)


# ---- documented sizes ---------------------------------------------------------------------


def _jaxpr_macs(jaxpr) -> list[int]:
    """MACs of every dot_general / conv_general_dilated, recursing into sub-jaxprs."""
    out = []
    for e in jaxpr.eqns:
        if e.primitive.name == "dot_general":
            (lc, _), _ = e.params["dimension_numbers"]
            lhs = e.invars[0].aval.shape
            out.append(math.prod(e.outvars[0].aval.shape) * math.prod(lhs[i] for i in lc))
        elif e.primitive.name == "conv_general_dilated":
            rhs = e.invars[1].aval.shape
            spec = e.params["dimension_numbers"].rhs_spec  # (out, in, *spatial)
            per_output = rhs[spec[1]] * math.prod(rhs[i] for i in spec[2:])
            out.append(math.prod(e.outvars[0].aval.shape) * per_output)
        for p in e.params.values():
            for sub in p if isinstance(p, (list, tuple)) else (p,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    out += _jaxpr_macs(sub.jaxpr)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    out += _jaxpr_macs(sub)
    return out


def _doc_sizes(cls) -> list[tuple[int, int]]:
    pairs = re.findall(r"([\d,]+) parameters.*?([\d,]+) MACs", cls.__doc__, re.S)
    return [(int(p.replace(",", "")), int(m.replace(",", ""))) for p, m in pairs]


SIZE_CASES = [(n, {}, 0) for n in NAMES] + [
    ("resnet20", {"shortcut": "B"}, 1),
    ("vit_tiny", {"input_shape": (32, 32, 3)}, 1),
]


@pytest.mark.parametrize("name, kwargs, which", SIZE_CASES)
def test_docstring_sizes_match_the_model(name, kwargs, which):
    m = _abstract(name, **kwargs)
    doc_params, doc_macs = _doc_sizes(type(m))[which]
    assert models.count_params(m) == doc_params
    # independent count: the MAC-bearing primitives of the traced forward pass
    shape = tuple(kwargs.get("input_shape", models.get_info(name).default_input_shape))
    closed, _ = _trace(m, (1,) + shape)
    assert sum(_jaxpr_macs(closed.jaxpr)) == doc_macs
    # and linear in the batch size
    closed3, _ = _trace(m, (3,) + shape)
    assert sum(_jaxpr_macs(closed3.jaxpr)) == 3 * doc_macs


def test_count_params_is_param_leaves_only():
    m = _abstract("resnet20")
    by_hand = sum(
        int(np.prod(v.shape))
        for _, v in nnx.to_flat_state(nnx.state(m))
        if isinstance(v, nnx.Param)
    )
    assert models.count_params(m) == by_hand
    assert by_hand < sum(int(np.prod(v.shape)) for v in jax.tree_util.tree_leaves(nnx.state(m)))


def test_vit_attention_has_two_dynamic_matmuls_per_block():
    m = _abstract("vit_tiny", depth=3)
    closed, params = _trace(m, (1, 28, 28, 1))
    dots = [e for e in closed.jaxpr.eqns if e.primitive.name == "dot_general"]
    named = {}
    for e in dots:
        stack = str(e.source_info.name_stack)
        dynamic = not any(v in params for v in e.invars)
        if dynamic:
            named.setdefault(stack.split("/")[0], []).append(e)
    expected = {f"blocks.{i}.attn.{k}" for i in range(3) for k in ("qk", "av")}
    assert set(named) == expected
    t, h, e = 50, 4, 16
    for key, eqns in named.items():
        (eq,) = eqns
        want = (1, h, t, t) if key.endswith("qk") else (1, t, h, e)
        assert sorted(eq.outvars[0].aval.shape) == sorted(want)
    # the static-weight matmuls: q, k, v, o, fc1, fc2 per block + head
    assert len(dots) - len(expected) == 3 * 6 + 1


def test_initializers_have_the_stated_distributions():
    from models._base import he_normal, lecun_normal, xavier_uniform

    key = jax.random.key(3)
    shape = (3, 3, 64, 128)  # fan_in 576, fan_out 1152
    w = np.asarray(he_normal(key, shape))
    assert w.shape == shape and w.dtype == np.float32
    assert abs(w.mean()) < 0.01 * w.std()
    assert w.std() == pytest.approx(np.sqrt(2 / 576), rel=0.02)
    assert np.asarray(lecun_normal(key, shape)).std() == pytest.approx(np.sqrt(1 / 576), rel=0.02)
    u = np.asarray(xavier_uniform(key, (300, 500)))
    limit = np.sqrt(6 / 800)
    assert u.min() >= -limit and u.max() <= limit and u.max() > 0.99 * limit
    assert u.std() == pytest.approx(limit / np.sqrt(3), rel=0.02)
    # deterministic in the key, different across keys, same values under jit
    np.testing.assert_array_equal(w, he_normal(key, shape))
    assert not np.array_equal(w, he_normal(jax.random.key(4), shape))
    np.testing.assert_allclose(w, jax.jit(lambda k: he_normal(k, shape))(key), rtol=1e-6)


def test_package_docstring_table_matches_the_models():
    rows = re.findall(
        r"^(\w+)\s+(\d+)x(\d+)x(\d+)\s+([\d,]+)\s+([\d,]+)\s", models.__doc__, re.M
    )
    assert {r[0] for r in rows} == set(NAMES) and len(rows) == len(NAMES) + 1
    for name, h, w, c, params, macs in rows:
        shape = (int(h), int(w), int(c))
        m = _abstract(name, input_shape=shape)
        assert models.count_params(m) == int(params.replace(",", "")), name
        closed, _ = _trace(m, (1,) + shape)
        assert sum(_jaxpr_macs(closed.jaxpr)) == int(macs.replace(",", "")), name
