import pytest

from hwmodel import LayerSpec, Workload


def test_conv_counts_match_definition():
    spec = LayerSpec(name="c", kind="conv", N=2, M=8, C=3, P=5, Q=4, R=3, S=2, H=7, W=5)
    assert spec.macs == 2 * 8 * 3 * 5 * 4 * 3 * 2
    assert spec.weights == 8 * 3 * 3 * 2
    assert spec.output_activations == 2 * 8 * 5 * 4
    assert spec.input_activations == 2 * 3 * 7 * 5
    assert spec.window_h == 7 and spec.window_w == 5


def test_dynamic_matmul_has_no_weights():
    spec = LayerSpec(name="qk", kind="matmul", G=4, N=16, M=16, C=8, dynamic=True)
    assert spec.weights == 0
    assert spec.weight_operand_size == 4 * 16 * 8
    assert spec.category == "attention"


@pytest.mark.parametrize("field", ["M", "C", "P"])
def test_bad_bounds_raise(field):
    with pytest.raises(ValueError, match=field):
        LayerSpec(name="x", kind="conv", **{field: 0})


def test_duplicate_layer_names_raise():
    a = LayerSpec(name="a", kind="matmul")
    with pytest.raises(ValueError, match="duplicate"):
        Workload(layers=(a, a))
