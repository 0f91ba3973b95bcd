"""models._onednn: the oneDNN convolution (jax.ffi) equals lax.conv_general_dilated in
value and both gradients, is used where it should be, and falls back to XLA cleanly.

Tests that need the compiled library skip (with the reason) where it cannot be built;
with ``CODESIGN_REQUIRE_ONEDNN=1`` (set by ``.ci/run`` on Linux x86-64) they fail instead.

Tolerances: float32 sums in a different order. Every compared array must satisfy
``max |ours - lax| <= 2e-5 * max(1, max |lax|)`` (the largest error seen is ~3e-6 of the
largest value; a wrong tap, pad or group is off by O(1) of it).
"""

from __future__ import annotations

import dataclasses
import os
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from jax import lax

import models
from models import _onednn
from models._conv import conv_general_dilated

NHWC = ("NHWC", "HWIO", "NHWC")
TOL = 2e-5


@pytest.fixture(scope="module")
def onednn():
    try:
        _onednn._load()
    except _onednn.OneDNNUnavailable as e:
        if os.environ.get("CODESIGN_REQUIRE_ONEDNN") == "1":
            pytest.fail(f"CODESIGN_REQUIRE_ONEDNN=1 but the oneDNN convolution is unavailable: {e}")
        pytest.skip(f"oneDNN convolution unavailable here: {e}")


def _close(got, want):
    got, want = np.asarray(got), np.asarray(want)
    assert got.shape == want.shape and got.dtype == want.dtype
    err = float(np.abs(got - want).max()) if want.size else 0.0
    assert err <= TOL * max(1.0, float(np.abs(want).max()) if want.size else 0.0), err


def _lax(x, k, strides, pads, dil, groups):
    return lax.conv_general_dilated(x, k, strides, pads, rhs_dilation=dil, dimension_numbers=NHWC,
                                    feature_group_count=groups)


def _check(n, h, w, c, r, s, m, strides, pads, dil, groups, seed=0):
    """Value, input gradient and weight gradient of onednn_conv vs lax, jitted."""
    kx, kk, kg = jax.random.split(jax.random.key(seed), 3)
    x = jax.random.normal(kx, (n, h, w, c))
    k = jax.random.normal(kk, (r, s, c // groups, m))

    def ours(a, b):
        return _onednn.onednn_conv(a, b, strides, pads, dil, groups)

    def ref(a, b):
        return _lax(a, b, strides, pads, dil, groups)

    def value_and_grads(f):
        def run(a, b, g):
            y, vjp = jax.vjp(f, a, b)
            return (y, *vjp(g))
        return jax.jit(run)

    y_ref = ref(x, k)
    g = jax.random.normal(kg, y_ref.shape)
    got = value_and_grads(ours)(x, k, g)
    want = value_and_grads(ref)(x, k, g)
    for a, b in zip(got, want, strict=True):
        _close(a, b)
    # the primal (not differentiated) is lax's own conv: bit-identical
    np.testing.assert_array_equal(np.asarray(jax.jit(ours)(x, k)), np.asarray(y_ref))
    return value_and_grads(ours), (x, k, g)


def _custom_calls(fn, *args) -> set[str]:
    text = jax.jit(fn).lower(*args).as_text()
    return {t for t in _onednn._TARGETS if t in text}


CASES = [  # (N, H, W, C, R, S, M, strides, pads, dilation, groups)
    (2, 8, 8, 3, 3, 3, 4, (1, 1), ((1, 1), (1, 1)), (1, 1), 1),        # SAME 3x3
    (3, 9, 7, 4, 3, 3, 6, (2, 2), ((0, 1), (1, 1)), (1, 1), 2),        # strided, grouped
    (2, 8, 8, 6, 3, 3, 6, (1, 1), ((2, 2), (2, 2)), (2, 2), 6),        # depthwise, dilated
    (2, 9, 9, 8, 3, 3, 8, (2, 2), ((1, 1), (1, 1)), (1, 1), 8),        # depthwise, stride 2
    (2, 7, 5, 1, 5, 3, 2, (1, 2), ((2, 2), (0, 0)), (1, 1), 1),        # 1 channel, mixed
    (1, 6, 6, 4, 1, 1, 3, (2, 2), ((0, 0), (0, 0)), (1, 1), 1),        # 1x1 stride 2
    (2, 10, 10, 16, 3, 3, 32, (2, 2), ((0, 1), (0, 1)), (1, 1), 1),    # resnet-like downsample
    (1, 5, 5, 2, 5, 5, 3, (1, 1), ((0, 0), (0, 0)), (1, 1), 1),        # VALID, 1x1 output
]


@pytest.mark.parametrize("case", CASES)
def test_value_and_gradients_match_lax(onednn, case):
    fn, args = _check(*case)
    # and the train-time passes really run on oneDNN (all three custom calls)
    assert _custom_calls(fn, *args) == set(_onednn._TARGETS)


@st.composite
def problems(draw):
    groups = draw(st.sampled_from([1, 1, 2, 3, "depthwise"]))
    cg = draw(st.integers(1, 4))
    if groups == "depthwise":
        c = draw(st.integers(1, 8))
        groups, m = c, c * draw(st.integers(1, 2))
    else:
        c = cg * groups
        m = groups * draw(st.integers(1, 4))
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    strides = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    dil = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    er, es = (r - 1) * dil[0] + 1, (s - 1) * dil[1] + 1
    h, w = draw(st.integers(er, er + 7)), draw(st.integers(es, es + 7))
    mode = draw(st.sampled_from(["SAME", "VALID", "explicit"]))
    if mode == "explicit":
        pads = tuple((draw(st.integers(0, 3)), draw(st.integers(0, 3))) for _ in range(2))
    else:
        pads = tuple(tuple(p) for p in lax.padtype_to_pads((h, w), (er, es), strides, mode))
    n = draw(st.integers(1, 3))
    return n, h, w, c, r, s, m, strides, pads, dil, groups


@settings(max_examples=15)
@given(problems(), st.integers(0, 2**31 - 1))
def test_random_problems_match_lax(onednn, prob, seed):
    _check(*prob, seed=seed)


def test_drop_in_routes_to_onednn_and_string_padding(onednn):
    x = jax.random.normal(jax.random.key(1), (2, 9, 9, 4))
    k = jax.random.normal(jax.random.key(2), (3, 3, 2, 6))
    for pad in ("SAME", "VALID"):
        def f(a, b, pad=pad):
            return jnp.sum(conv_general_dilated(a, b, (2, 2), pad, rhs_dilation=(2, 1),
                                                dimension_numbers=NHWC, feature_group_count=2) ** 2)

        def g(a, b, pad=pad):
            return jnp.sum(lax.conv_general_dilated(a, b, (2, 2), pad, rhs_dilation=(2, 1),
                                                    dimension_numbers=NHWC, feature_group_count=2) ** 2)

        with models.conv_backend("onednn"):
            assert _custom_calls(jax.grad(f, argnums=(0, 1)), x, k) == set(_onednn._TARGETS)
            got = jax.jit(jax.grad(f, argnums=(0, 1)))(x, k)
        with models.conv_backend("xla"):
            assert _custom_calls(jax.grad(f, argnums=(0, 1)), x, k) == set()
        want = jax.grad(g, argnums=(0, 1))(x, k)
        for a, b in zip(got, want, strict=True):
            _close(a, b)


def test_unsupported_cases_go_to_lax(onednn):
    x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4))
    k = jax.random.normal(jax.random.key(2), (3, 3, 4, 4))

    def grad_calls(**kw):
        f = lambda a, b: jnp.sum(conv_general_dilated(a, b, (1, 1), ((1, 1), (1, 1)),  # noqa: E731
                                                      dimension_numbers=NHWC, **kw) ** 2)
        return _custom_calls(jax.grad(f, argnums=(0, 1)), x, k)

    with models.conv_backend("onednn"):
        assert grad_calls() == set(_onednn._TARGETS)
        assert grad_calls(lhs_dilation=(2, 2)) == set()              # transposed conv
        assert grad_calls(precision=lax.Precision.HIGHEST) == set()  # explicit precision
        # negative padding
        f = lambda a, b: jnp.sum(conv_general_dilated(a, b, (1, 1), ((-1, 0), (0, 0)),  # noqa: E731
                                                      dimension_numbers=NHWC) ** 2)
        assert _custom_calls(jax.grad(f), x, k) == set()
        # an explicit output type stays on XLA
        f = lambda a, b: jnp.sum(conv_general_dilated(a, b, (1, 1), "SAME",  # noqa: E731
                                                      dimension_numbers=NHWC,
                                                      preferred_element_type=jnp.float32))
        xb, kb = x.astype(jnp.bfloat16), k.astype(jnp.bfloat16)
        assert _custom_calls(jax.grad(f, argnums=(0, 1)), xb, kb) == set()


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[2], CASES[6]])
def test_bfloat16_matches_float32_within_rounding(onednn, case):
    """bfloat16 operands run on oneDNN too: value and both gradients equal the float32
    reference to bfloat16 precision (8 significant bits: relative 2^-8 = 0.4% per
    operand, accumulated in float32 by oneDNN)."""
    n, h, w, c, r, s, m, strides, pads, dil, groups = case
    kx, kk, kg = jax.random.split(jax.random.key(7), 3)
    x = jax.random.normal(kx, (n, h, w, c))
    k = jax.random.normal(kk, (r, s, c // groups, m))

    def run(f, dt):
        def go(a, b, g):
            y, vjp = jax.vjp(lambda a, b: f(a.astype(dt), b.astype(dt)).astype(jnp.float32), a, b)
            return (y, *vjp(g))
        return jax.jit(go)

    g = jax.random.normal(kg, _lax(x, k, strides, pads, dil, groups).shape)
    ours = run(lambda a, b: _onednn.onednn_conv(a, b, strides, pads, dil, groups), jnp.bfloat16)
    assert _custom_calls(ours, x, k, g) == set(_onednn._TARGETS)
    want = run(lambda a, b: _lax(a, b, strides, pads, dil, groups), jnp.float32)(x, k, g)
    for got, ref in zip(ours(x, k, g), want, strict=True):
        err = float(jnp.max(jnp.abs(got - ref)) / jnp.max(jnp.abs(ref)))
        assert err < 2e-2, err


@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_layer_impls_agree_and_auto_uses_onednn(onednn, stride):
    """The zoo's DepthwiseConv (mobilenet_small): every implementation gives the same
    value and gradients; "auto" runs oneDNN's kernels when the backend is oneDNN and the
    shifted multiply-adds ("taps") when it is XLA."""
    from models._depthwise import DepthwiseConv

    x = jax.random.normal(jax.random.key(3), (2, 9, 9, 8))

    def layer(impl):
        return DepthwiseConv(8, 3, stride, kernel_init=nnx.initializers.lecun_normal(),
                             dtype=None, param_dtype=jnp.float32, rngs=nnx.Rngs(0), impl=impl)

    def loss(kernel, a, impl):
        m = layer(impl)
        m.kernel[...] = kernel
        return jnp.sum(m(a) ** 2)

    kernel = layer("xla").kernel[...]
    grad = jax.grad(loss, argnums=(0, 1))
    want = jax.jit(grad, static_argnums=2)(kernel, x, "xla")
    with models.conv_backend("onednn"):
        assert _custom_calls(lambda k, a: grad(k, a, "auto"), kernel, x) == set(_onednn._TARGETS)
        got = {impl: jax.jit(grad, static_argnums=2)(kernel, x, impl)
               for impl in ("auto", "onednn", "taps")}
    with models.conv_backend("xla"):
        assert _custom_calls(lambda k, a: grad(k, a, "auto"), kernel, x) == set()
    for impl, g in got.items():
        for a, b in zip(g, want, strict=True):
            _close(a, b)


def test_concurrent_calls_from_threads(onednn):
    """The primitive cache and execution are safe when several threads call at once."""
    shapes = [(2, 8, 8, 4, 3, 3, 8, (1, 1), ((1, 1), (1, 1)), (1, 1), 1),
              (2, 9, 9, 6, 3, 3, 6, (2, 2), ((1, 1), (1, 1)), (1, 1), 3)]
    jobs = []
    for i, case in enumerate(shapes):
        fn, args = _check(*case, seed=i)
        jobs.append((fn, args, [np.asarray(v) for v in fn(*args)]))
    errors = []

    def worker(j):
        fn, args, want = jobs[j % len(jobs)]
        try:
            for _ in range(5):
                for a, b in zip(fn(*args), want, strict=True):
                    np.testing.assert_array_equal(np.asarray(a), b)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(j,)) for j in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_zoo_workloads_identical_with_both_backends(onednn):
    """The workload extractor sees the same conv layers whichever backend is set."""
    import hwmodel

    for name in models.list_models():
        shape = models.get_info(name).default_input_shape
        spec = jax.ShapeDtypeStruct((2, *shape), jnp.float32)
        out = {}
        for backend in ("xla", "onednn"):
            with models.conv_backend(backend):
                model = models.create(name, rngs=nnx.Rngs(0))
                model.eval()
                wl = hwmodel.extract_workload(model, spec)
            # every field but ``source`` (the file:line that issued the conv differs)
            rows = [{k: v for k, v in dataclasses.asdict(lay).items() if k != "source"}
                    for lay in wl.layers]
            out[backend] = (rows, list(wl.unrecognized), int(wl.total_macs))
        assert out["xla"] == out["onednn"], name
        assert not out["onednn"][1], (name, out["onednn"][1])
        assert any(row["kind"] == "conv" for row in out["onednn"][0]), name


# -- fallback -----------------------------------------------------------------------


@pytest.fixture
def disabled(monkeypatch):
    """The library as if it could not be built: the loader reports a reason."""
    monkeypatch.setattr(_onednn, "_loaded", (False, "disabled by the test"))
    monkeypatch.setattr(_onednn, "_notice_printed", False)


def test_fallback_auto_prints_one_notice_and_uses_lax(disabled, capsys):
    assert _onednn.resolve_conv_backend("auto") == "xla"
    assert _onednn.resolve_conv_backend("auto") == "xla"
    err = capsys.readouterr().err
    assert err.count("oneDNN convolution unavailable (disabled by the test)") == 1
    assert len(err.strip().splitlines()) == 1
    assert not models.onednn_available()
    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 3))
    k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
    f = lambda a, b: jnp.sum(conv_general_dilated(a, b, (1, 1), "SAME",  # noqa: E731
                                                  dimension_numbers=NHWC) ** 2)
    with models.conv_backend("auto"):
        assert _custom_calls(jax.grad(f, argnums=(0, 1)), x, k) == set()
        got = jax.grad(f, argnums=(0, 1))(x, k)
    want = jax.grad(lambda a, b: jnp.sum(lax.conv_general_dilated(
        a, b, (1, 1), "SAME", dimension_numbers=NHWC) ** 2), argnums=(0, 1))(x, k)
    for a, b in zip(got, want, strict=True):
        _close(a, b)


def test_depthwise_layer_without_library(disabled):
    """DepthwiseConv: "auto" falls back to the taps; "onednn" asked for is an error."""
    from models._depthwise import DepthwiseConv

    x = jax.random.normal(jax.random.key(0), (2, 8, 8, 4))
    kw = dict(kernel_init=nnx.initializers.lecun_normal(), dtype=None,
              param_dtype=jnp.float32, rngs=nnx.Rngs(0))
    auto, forced = (DepthwiseConv(4, 3, 1, impl=impl, **kw) for impl in ("auto", "onednn"))
    with models.conv_backend("auto"):
        assert _custom_calls(jax.grad(lambda a: jnp.sum(auto(a) ** 2)), x) == set()
        with pytest.raises(models.OneDNNUnavailable, match="disabled by the test"):
            forced(x)


def test_fallback_onednn_requested_is_an_error(disabled, tmp_path):
    with pytest.raises(models.OneDNNUnavailable, match="'onednn' requested, but disabled by the test"):
        _onednn.resolve_conv_backend("onednn")
    from codesign import train
    from codesign.config import Config, ConfigError

    cfg = Config(dataset="synthetic", model="lenet5", epochs=1, batch_size=8, keep_checkpoints=0,
                 progress=False, hw_arch="none", conv_backend="onednn",
                 dataset_kwargs={"n_train": 16, "n_test": 8})
    with pytest.raises(ConfigError, match="conv_backend.*disabled by the test"):
        train.train_and_evaluate(cfg, tmp_path / "run", print_table=False)
    assert models.get_conv_backend() == "auto"  # restored


@pytest.mark.parametrize("what", ["compiler", "platform", "wheel"])
def test_build_failures_are_reported_not_raised(monkeypatch, tmp_path, what):
    """A machine without g++, another platform, or no oneDNN wheel: 'auto' falls back."""
    monkeypatch.setattr(_onednn, "_loaded", None)
    monkeypatch.setattr(_onednn, "_notice_printed", False)
    monkeypatch.setenv("CODESIGN_ONEDNN_CACHE", str(tmp_path / "cache"))
    if what == "compiler":
        monkeypatch.setenv("CXX", "no-such-compiler-xyz")
        reason = "no C\\+\\+ compiler 'no-such-compiler-xyz'"
    elif what == "platform":
        monkeypatch.setattr(_onednn.platform, "machine", lambda: "aarch64")
        reason = "built only on Linux x86-64"
    else:
        monkeypatch.setattr(_onednn, "_dist_file", lambda dist, suffix: (_ for _ in ()).throw(
            _onednn.OneDNNUnavailable(f"the Python package {dist!r} is not installed")))
        reason = "'onednn-cpu-gomp' is not installed"
    with pytest.raises(_onednn.OneDNNUnavailable, match=reason):
        _onednn._load()
    assert _onednn.resolve_conv_backend("auto") == "xla"
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").glob("*.so"))


def test_build_is_atomic_and_cached(onednn, monkeypatch, tmp_path):
    """A fresh cache gets exactly one .so (no temporary left); a second call reuses it."""
    monkeypatch.setenv("CODESIGN_ONEDNN_CACHE", str(tmp_path))
    tc = _onednn._toolchain()
    results = []
    threads = [threading.Thread(target=lambda: results.append(_onednn._build(*tc))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0] == results[1]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".build")) == [
        results[0].name]
    mtime = results[0].stat().st_mtime_ns
    assert _onednn._build(*tc) == results[0] and results[0].stat().st_mtime_ns == mtime


def test_backend_names_checked():
    from codesign._config import CONV_BACKENDS

    assert CONV_BACKENDS == _onednn.BACKENDS
    with pytest.raises(ValueError, match="unknown 'cudnn'; valid: auto, xla, onednn"):
        models.set_conv_backend("cudnn")
    from codesign.config import Config, ConfigError

    with pytest.raises(ConfigError, match="conv_backend"):
        Config(conv_backend="cudnn")


def test_short_mnist_training_same_accuracy(onednn, tmp_path):
    """The embedded MNIST subset, 2 epochs: oneDNN and XLA reach the same test accuracy."""
    from codesign import train
    from codesign.config import get_preset

    acc = {}
    for backend in ("onednn", "xla"):
        cfg = get_preset("quickstart").replace(epochs=2, keep_checkpoints=0, progress=False,
                                               hw_arch="none", conv_backend=backend)
        rep = train.train_and_evaluate(cfg, tmp_path / backend, print_table=False)
        assert rep["conv_backend"] == backend
        acc[backend] = rep["test_accuracy"]
    assert acc["xla"] > 0.9, acc
    # 1,000 test digits: the runs agree to within 5 digits (float rounding moves a few)
    assert abs(acc["onednn"] - acc["xla"]) <= 0.005, acc


def test_short_mnist_training_bfloat16(onednn, tmp_path):
    """compute_dtype=bfloat16 (oneDNN bf16 convolutions, bf16 activations): the embedded
    MNIST subset, 2 epochs, within 1 point of float32 (1,000 test digits)."""
    from codesign import train
    from codesign.config import get_preset

    acc = {}
    for dt in ("float32", "bfloat16"):
        cfg = get_preset("quickstart").replace(epochs=2, keep_checkpoints=0, progress=False,
                                               hw_arch="none", conv_backend="onednn",
                                               compute_dtype=dt)
        rep = train.train_and_evaluate(cfg, tmp_path / dt, print_table=False)
        acc[dt] = rep["test_accuracy"]
    assert acc["float32"] > 0.9, acc
    assert abs(acc["bfloat16"] - acc["float32"]) <= 0.01, acc
