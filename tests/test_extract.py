"""extract_workload: sub-jaxprs, taint, non-MAC ops, names, errors (small, exact cases)."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax import lax

from hwmodel import ExtractionError, LayerSpec, Workload, extract_workload

f32 = jnp.float32


def S(*shape, dtype=f32):
    return jax.ShapeDtypeStruct(shape, dtype)


# ---------------------------------------------------------------------------------------
# basics
# ---------------------------------------------------------------------------------------


def test_dense_layer_from_param_dict():
    params = {"dense": {"kernel": S(8, 16), "bias": S(16)}}

    def f(p, x):
        return x @ p["dense"]["kernel"] + p["dense"]["bias"][None]

    wl = extract_workload(f, params, S(4, 8), param_argnums=0, name="mlp")
    assert wl.name == "mlp" and wl.batch == 4
    (layer,) = wl.layers
    assert (layer.name, layer.kind, layer.G, layer.N, layer.M, layer.C) == ("dense", "matmul", 1, 4, 16, 8)
    assert layer.macs == 4 * 16 * 8 and layer.weights == 8 * 16 and not layer.dynamic
    assert layer.weight_param == "dense.kernel"
    assert layer.nonmac_ops == 4 * 16  # the bias add: one op per output element
    assert layer.batch == 4


def test_no_flops_run_huge_shapes_are_fine():
    # 10^5 x 10^5 float32 would need 40 GB per operand; tracing needs none of it.
    wl = extract_workload(lambda x, w: x @ w, S(100_000, 100_000), S(100_000, 100_000), param_argnums=1)
    assert wl.total_macs == 10**15


def test_static_lhs_is_swapped_into_the_weight_slot():
    wl = extract_workload(lambda w, x: w @ x, S(5, 3), S(3, 7), param_argnums=0)
    (layer,) = wl.layers
    assert (layer.N, layer.M, layer.C) == (7, 5, 3)
    assert layer.weights == 15 and layer.input_activations == 21 and not layer.dynamic


def test_closed_over_constants_are_weights():
    w = np.ones((8, 4), np.float32)
    wl = extract_workload(lambda x: x @ w, S(2, 8))
    (layer,) = wl.layers
    assert not layer.dynamic and layer.weights == 32
    assert layer.name == "dot_general_0"  # no path, no scope: generated


def test_two_data_operands_are_dynamic():
    wl = extract_workload(lambda a, b: a @ b, S(4, 8), S(8, 3))
    (layer,) = wl.layers
    assert layer.dynamic and layer.weights == 0 and layer.category == "attention"


def test_param_through_elementwise_ops_stays_static():
    def f(p, x):
        w = jnp.transpose(p["w"] * 2.0 + 1.0)  # weight preprocessing (e.g. quantisation)
        return x @ w

    (layer,) = extract_workload(f, {"w": S(6, 5)}, S(3, 5), param_argnums=0).layers
    assert not layer.dynamic and layer.name == "w" and layer.weights == 30


def test_bits_come_from_dtypes():
    def f(p, x):
        return lax.dot_general(x, p["w"], (((1,), (0,)), ((), ())), preferred_element_type=jnp.int32)

    (layer,) = extract_workload(f, {"w": S(4, 4, dtype=jnp.int8)}, S(2, 4, dtype=jnp.int8), param_argnums=0)
    assert (layer.w_bits, layer.i_bits, layer.o_bits) == (8, 8, 32)
    (layer,) = extract_workload(lambda x, w: x @ w, S(2, 4, dtype=jnp.bfloat16), S(4, 4, dtype=jnp.bfloat16))
    assert (layer.w_bits, layer.i_bits, layer.o_bits) == (16, 16, 16)


def test_batch_inferred_or_given():
    assert extract_workload(lambda x, w: x @ w, S(6, 4), S(4, 4), param_argnums=1).batch == 6
    assert extract_workload(lambda x, w: x @ w, S(6, 4), S(4, 4), param_argnums=1, batch=3).batch == 3


# ---------------------------------------------------------------------------------------
# sub-jaxprs
# ---------------------------------------------------------------------------------------


def test_jit_custom_jvp_custom_vjp_and_remat_are_followed():
    @jax.custom_vjp
    def cv(x, w):
        return x @ w

    cv.defvjp(lambda x, w: (x @ w, (x, w)), lambda r, g: (g @ r[1].T, r[0].T @ g))

    def f(p, x):
        x = jax.jit(lambda a, b: a @ b)(x, p["a"])
        x = jax.nn.relu(x)  # custom_jvp
        x = cv(x, p["b"])
        x = jax.checkpoint(lambda a: a @ p["c"])(x)
        return x

    params = {k: S(4, 4) for k in "abc"}
    wl = extract_workload(f, params, S(2, 4), param_argnums=0)
    assert [layer.name for layer in wl.layers] == ["a", "b", "c"]
    assert wl.total_macs == 3 * 2 * 4 * 4
    assert wl.layers[0].nonmac_ops == 8  # relu: one max per element
    assert wl.unrecognized == ()


def test_scan_is_unrolled_one_layer_per_iteration_with_indexed_names():
    def f(p, x):
        def body(h, w):
            return jnp.tanh(h @ w["kernel"]), None

        return lax.scan(body, x, p["blocks"])[0]

    params = {"blocks": {"kernel": S(5, 8, 8)}}
    wl = extract_workload(f, params, S(3, 8), param_argnums=0)
    assert [layer.name for layer in wl.layers] == [f"blocks.{i}" for i in range(5)]
    assert [layer.weight_param for layer in wl.layers] == [f"blocks.{i}.kernel" for i in range(5)]
    assert all(layer.macs == 3 * 8 * 8 and layer.nonmac_ops == 24 for layer in wl.layers)


def test_scan_over_stacked_nnx_blocks_names_blocks_by_index():
    class Block(nnx.Module):
        def __init__(self, rngs):
            self.attn = nnx.Linear(4, 4, rngs=rngs)
            self.mlp = nnx.Linear(4, 4, rngs=rngs)

        def __call__(self, x):
            return self.mlp(self.attn(x))

    class Net(nnx.Module):
        def __init__(self, rngs):
            @nnx.split_rngs(splits=3)
            @nnx.vmap(in_axes=(0,), out_axes=0)
            def make(r):
                return Block(r)

            self.blocks = make(rngs)

        def __call__(self, x):
            g, s = nnx.split(self.blocks)
            return lax.scan(lambda h, st: (nnx.merge(g, st)(h), None), x, s)[0]

    net = nnx.eval_shape(lambda: Net(nnx.Rngs(0)))
    wl = extract_workload(net, S(2, 4))
    assert [layer.name for layer in wl.layers] == [
        f"blocks.{i}.{m}" for i in range(3) for m in ("attn", "mlp")
    ]


def test_nested_scans_index_both_levels():
    def f(p, x):
        def outer(h, w2):
            return lax.scan(lambda g, w: (g @ w, None), h, w2)[0], None

        return lax.scan(outer, x, p["stages"]["kernel"])[0]

    wl = extract_workload(f, {"stages": {"kernel": S(2, 3, 4, 4)}}, S(1, 4), param_argnums=0)
    assert [layer.name for layer in wl.layers] == [f"stages.{i}.{j}" for i in range(2) for j in range(3)]
    assert wl.layers[-1].weight_param == "stages.1.2.kernel"


def test_reverse_scan_indexes_by_slice():
    def f(p, x):
        return lax.scan(lambda h, w: (h @ w, None), x, p["w"], reverse=True)[0]

    wl = extract_workload(f, {"w": S(3, 4, 4)}, S(1, 4), param_argnums=0)
    assert [layer.name for layer in wl.layers] == ["w.2", "w.1", "w.0"]


def test_scan_with_closed_over_weight_counts_each_use_and_unique_weights_once():
    def f(p, x):
        return lax.scan(lambda h, _: (h @ p["cell"], None), x, None, length=4)[0]

    wl = extract_workload(f, {"cell": S(6, 6)}, S(2, 6), param_argnums=0)
    assert [layer.name for layer in wl.layers] == [f"cell.{i}" for i in range(4)]
    assert wl.total_weights == 4 * 36 and wl.unique_weights == 36


def test_scan_carry_that_becomes_data_makes_later_matmuls_dynamic():
    # the carry starts as a parameter, then mixes with data: the fixpoint must see it
    def f(p, x):
        def body(h, _):
            return h @ x, None  # h: first static (param), then data

        return lax.scan(body, p["h0"], None, length=2)[0]

    wl = extract_workload(f, {"h0": S(3, 3)}, S(3, 3), param_argnums=0)
    assert [layer.dynamic for layer in wl.layers] == [True, True]


def test_cond_counts_the_larger_branch():
    def f(p, x):
        small = lambda a: a @ p["w1"]  # noqa: E731
        big = lambda a: (a @ p["w2"]) @ p["w1"]  # noqa: E731
        return lax.cond(x.sum() > 0, small, big, x)

    wl = extract_workload(f, {"w1": S(8, 8), "w2": S(8, 8)}, S(2, 8), param_argnums=0)
    assert [layer.name for layer in wl.layers] == ["w2", "w1"]
    assert wl.total_macs == 2 * 2 * 8 * 8


def test_fori_loop_with_literal_bounds_is_unrolled():
    def f(p, x):
        return lax.fori_loop(0, jnp.int32(3), lambda i, a: a @ p["w"], x)  # while_loop

    wl = extract_workload(f, {"w": S(4, 4)}, S(2, 4), param_argnums=0)
    assert len(wl.layers) == 3 and wl.unrecognized == ()
    assert [layer.name for layer in wl.layers] == ["w.0", "w.1", "w.2"]
    # counter increment once per trip, the `i < 3` test once more than that
    assert wl.total_nonmac_ops == 3 * 1 + 4 * 1


def test_while_with_unknown_trip_count_is_reported_not_counted():
    def f(p, x):
        def cond(c):
            return c[0].sum() < 100.0

        def body(c):
            return (c[0] @ p["w"],)

        return lax.while_loop(cond, body, (x,))[0]

    wl = extract_workload(f, {"w": S(4, 4)}, S(2, 4), param_argnums=0)
    assert wl.layers == ()
    (u,) = [u for u in wl.unrecognized if u.primitive == "while"]
    assert "trip count" in u.reason and "32 MACs" in u.reason


def test_unsupported_primitives_are_reported_with_where():
    def f(p, x):
        with jax.named_scope("spectral"):
            y = jnp.fft.fft(x).real
        return y @ p["w"]

    wl = extract_workload(f, {"w": S(4, 4)}, S(2, 4), param_argnums=0)
    assert len(wl.layers) == 1
    (u,) = wl.unrecognized
    assert u.primitive == "fft" and "spectral" in u.where and "test_extract.py" in u.where


def test_3d_convolution_is_reported():
    def f(x, w):
        return lax.conv_general_dilated(x, w, (1, 1, 1), "VALID")

    wl = extract_workload(f, S(1, 2, 4, 4, 4), S(3, 2, 2, 2, 2), param_argnums=1)
    assert wl.layers == ()
    assert wl.unrecognized[0].primitive == "conv_general_dilated"
    assert "3-D" in wl.unrecognized[0].reason


# ---------------------------------------------------------------------------------------
# non-MAC ops and attribution
# ---------------------------------------------------------------------------------------


def test_nonmac_rules_and_attribution():
    def f(p, x):
        x = x * 2.0  # 6 ops, before any layer -> first layer
        y = x @ p["a"]  # [2, 4]
        y = jax.nn.relu(y) + 1.0  # 8 + 8
        s = y.sum(axis=1)  # reduction: one op per input element: 8
        y = y / s[:, None]  # 8 (broadcast is free)
        z = y @ p["b"]  # [2, 5]
        return lax.reduce_window(z, -jnp.inf, lax.max, (1, 2), (1, 1), "VALID")  # 2*4 outputs x 2

    wl = extract_workload(f, {"a": S(3, 4), "b": S(4, 5)}, S(2, 3), param_argnums=0)
    a, b = wl.layers
    assert a.nonmac_ops == 6 + 8 + 8 + 8 + 8
    assert b.nonmac_ops == 2 * 4 * 2
    assert wl.total_nonmac_ops == a.nonmac_ops + b.nonmac_ops


def test_softmax_is_attributed_to_the_score_matmul():
    def f(q, k):
        return jax.nn.softmax(q @ k.T, axis=-1)

    (layer,) = extract_workload(f, S(4, 8), S(6, 8)).layers
    # reduce_max 24, max 4, sub 24, exp 24, reduce_sum 24, div 24 (stop_gradient/broadcast free)
    assert layer.nonmac_ops == 24 + 4 + 24 + 24 + 24 + 24


def test_elementwise_only_function_reports_unattributed_ops():
    wl = extract_workload(lambda x: jnp.exp(x), S(3, 3))
    assert wl.layers == ()
    assert wl.unrecognized[0].primitive == "(element-wise)" and "9 non-MAC" in wl.unrecognized[0].reason


# ---------------------------------------------------------------------------------------
# names
# ---------------------------------------------------------------------------------------


def test_named_scopes_name_layers_without_params():
    w = np.ones((4, 4), np.float32)

    def f(x):
        with jax.named_scope("encoder"):
            with jax.named_scope("proj"):
                x = x @ w
            with jax.named_scope("blocks.3.attn.qk"):
                x = x @ x.T
        return x

    wl = extract_workload(f, S(4, 4))
    assert [layer.name for layer in wl.layers] == ["encoder.proj", "blocks.3.attn.qk"]


def test_names_are_unique():
    def f(p, x):
        return (x @ p["w"]) @ p["w"]

    wl = extract_workload(f, {"w": S(4, 4)}, S(1, 4), param_argnums=0)
    assert [layer.name for layer in wl.layers] == ["w", "w_1"]
    assert wl.unique_weights == 16 and wl.total_weights == 32


def test_nnx_module_layers_are_named_by_module_path():
    class Attn(nnx.Module):
        def __init__(self, rngs):
            self.q = nnx.Linear(8, 8, rngs=rngs)
            self.k = nnx.Linear(8, 8, rngs=rngs)
            self.v = nnx.Linear(8, 8, rngs=rngs)

        def __call__(self, x):
            a = jax.nn.softmax(self.q(x) @ jnp.swapaxes(self.k(x), -1, -2))
            return a @ self.v(x)

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.conv = nnx.Conv(3, 8, (3, 3), rngs=rngs)
            self.blocks = nnx.List([Attn(rngs), Attn(rngs)])

        def __call__(self, x):
            x = self.conv(x).reshape(x.shape[0], -1, 8)
            for b in self.blocks:
                x = b(x)
            return x

    net = nnx.eval_shape(lambda: Net(nnx.Rngs(0)))  # abstract parameters
    wl = extract_workload(net, S(2, 4, 4, 3))
    assert wl.name == "Net"
    names = [layer.name for layer in wl.layers]
    assert names[0] == "conv"
    assert names[1:8] == [
        "blocks.0.q", "blocks.0.k", "blocks.0.q@k", "blocks.0.v", "blocks.0.q@k@v", "blocks.1.q", "blocks.1.k",
    ]  # fmt: skip
    assert wl.layers[0].kind == "conv" and wl.layers[0].weight_param == "conv.kernel"
    assert [layer.dynamic for layer in wl.layers[1:6]] == [False, False, True, False, True]


def test_concrete_nnx_module_is_not_run():
    net = nnx.Linear(3, 5, rngs=nnx.Rngs(0))
    wl = extract_workload(net, S(7, 3))
    assert [layer.name for layer in wl.layers] == ["kernel"]  # a one-component path stays whole
    assert wl.total_macs == 7 * 3 * 5


# ---------------------------------------------------------------------------------------
# errors and the package boundary
# ---------------------------------------------------------------------------------------


def test_untraceable_function_names_function_and_shapes():
    def broken(x, w):
        return x @ w

    with pytest.raises(ExtractionError, match=r"'broken'.*float32\[2, 3\].*float32\[4, 5\]"):
        extract_workload(broken, S(2, 3), S(4, 5))


def test_param_argnums_out_of_range():
    with pytest.raises(ValueError, match="param_argnums entry 3 is out of range"):
        extract_workload(lambda x: x, S(2), param_argnums=3)


def test_hwmodel_does_not_import_flax():
    code = "import sys, hwmodel; assert not any(m.split('.')[0] == 'flax' for m in sys.modules), 'flax'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=str(__import__("pathlib").Path(__file__).parents[1]))


def test_workload_summary_and_dict_are_consistent():
    layers = (
        LayerSpec(name="c", kind="conv", M=4, C=3, P=2, Q=2, R=3, S=3, H=4, W=4),
        LayerSpec(name="f", kind="matmul", N=2, M=5, C=16),
        LayerSpec(name="a", kind="matmul", G=2, N=3, M=3, C=4, dynamic=True),
    )
    wl = Workload(layers, name="t", batch=1)
    s = wl.summary()
    assert (s["conv_layers"], s["fc_layers"], s["attention_layers"]) == (1, 1, 1)
    assert s["conv_macs"] + s["fc_macs"] + s["attention_macs"] == wl.total_macs
    assert s["attention_weights"] == 0 and s["total_weights"] == 108 + 80
    d = wl.to_dict()
    assert d["model"] == "t" and [x["name"] for x in d["layers"]] == ["c", "f", "a"]
    assert "CONV" in wl.table() and "ATTN" in wl.table()


def test_layerspec_added_fields_are_validated_and_gemm_view():
    spec = LayerSpec(name="c", kind="conv", G=2, N=3, M=4, C=5, P=6, Q=7, R=2, S=3)
    assert (spec.gemm_m, spec.gemm_k, spec.gemm_n) == (3 * 6 * 7, 5 * 2 * 3, 4)
    assert spec.macs == spec.G * spec.gemm_m * spec.gemm_k * spec.gemm_n
    for bad in (
        {"padding": ((1, 1),)},
        {"lhs_dilation": (0, 1)},
        {"heads": 0},
        {"w_bits": 0},
        {"nonmac_ops": -1},
    ):
        field = next(iter(bad))
        with pytest.raises(ValueError, match=field):
            LayerSpec(name="x", kind="conv", **bad)
