"""``codesign count``: table, JSON, and one-line errors with exit status 2."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from codesign._cli_count import main
from models._workload import model_workload

ROOT = pathlib.Path(__file__).resolve().parents[1]
REQUIRED = (
    "model batch total_macs total_weights conv_layers conv_macs conv_weights fc_layers "
    "fc_macs fc_weights attention_macs layers"
).split()
LAYER_KEYS = "name kind macs weights input_activations output_activations dynamic".split()


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_json_is_one_object_with_the_contract_keys(capsys):
    rc, out, err = run(capsys, "alexnet", "--json")
    assert rc == 0
    d = json.loads(out)  # exactly one JSON document on stdout
    assert out.count("\n") == 1
    for k in REQUIRED:
        assert k in d, k
    wl = model_workload("alexnet")
    assert (d["model"], d["batch"], d["input_shape"]) == ("alexnet", 1, [227, 227, 3])
    assert (d["total_macs"], d["total_weights"]) == (wl.total_macs, wl.total_weights)
    assert (d["conv_layers"], d["fc_layers"]) == (5, 3)
    assert d["conv_macs"] + d["fc_macs"] + d["attention_macs"] == d["total_macs"]
    assert len(d["layers"]) == 8
    for layer, spec in zip(d["layers"], wl.layers):
        for k in LAYER_KEYS:
            assert k in layer
        assert (layer["name"], layer["macs"], layer["weights"]) == (spec.name, spec.macs, spec.weights)


def test_json_attention_split_and_batch(capsys):
    rc, out, _ = run(capsys, "bert_base", "--input-shape", "32", "--batch", "2", "--json")
    assert rc == 0
    d = json.loads(out)
    assert d["batch"] == 2 and d["input_shape"] == [32]
    att = [x for x in d["layers"] if x["dynamic"]]
    assert len(att) == 24 and sum(x["macs"] for x in att) == d["attention_macs"]
    # Q K^T and A V: 12 layers x 2 x (batch 2 * 32 * 32 * 768)
    assert d["attention_macs"] == 12 * 2 * 2 * 32 * 32 * 768
    assert all(x["weights"] == 0 and x["kind"] == "matmul" for x in att)


def test_table_lists_layers_and_category_totals(capsys):
    rc, out, _ = run(capsys, "resnet50")
    assert rc == 0
    assert "stages.3.2.conv3" in out and "fc" in out
    summary = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in (["CONV"], ["FC"], ["total"])}
    assert summary["CONV"][1] == "53" and summary["FC"][1] == "1"
    assert summary["total"][3] == f"{model_workload('resnet50').total_macs:,}"
    rc, out, _ = run(capsys, "gpt3_175b", "--summary")
    assert rc == 0 and "ATTN" in out and "blocks.0" not in out


@pytest.mark.parametrize(
    "argv, match",
    [
        (["nope"], "unknown model 'nope'; valid: "),
        (["alexnet", "--input-shape", "22x"], "--input-shape '22x' must be comma-separated positive ints"),
        (["alexnet", "--input-shape", "0,3,3"], "must be comma-separated positive ints"),
        (["alexnet", "--input-shape", "224"], "'alexnet' takes an input shape H,W,C"),
        (["bert_base", "--input-shape", "4096"], "4096 tokens exceed its context of 512; valid: 1..512"),
        (["alexnet", "--batch", "0"], "--batch '0' must be a positive int"),
        (["alexnet", "--frobnicate"], "unrecognized arguments: --frobnicate"),
        ([], "required: model; valid models: lenet5"),
        (["vgg16", "--input-shape", "100,100,3"], "model 'vgg16' does not accept input shape 100,100,3 (batch 1)"),
    ],
)
def test_errors_are_one_line_with_status_2(capsys, argv, match):
    rc, out, err = run(capsys, *argv)
    assert rc == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith("codesign count: ")
    assert match in err
    if "unknown model" in match or "valid models" in match:
        for name in ("gpt3_175b", "mobilenet_v1", "resnet20", "vit_tiny"):  # reference + zoo
            assert name in err


def test_zoo_models_are_countable(capsys):
    rc, out, _ = run(capsys, "vit_tiny", "--json")
    d = json.loads(out)
    assert rc == 0 and d["input_shape"] == [28, 28, 1] and d["attention_macs"] > 0
    assert d["conv_layers"] == 1  # the patch embedding


def test_module_entry_point_prints_pure_json():
    proc = subprocess.run(
        [sys.executable, "-m", "codesign", "count", "mobilenet_v1", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    d = json.loads(proc.stdout)
    assert d["model"] == "mobilenet_v1" and d["conv_layers"] == 27 and d["fc_layers"] == 1


@pytest.mark.parametrize("name", ["lenet5", "mnist_cnn", "resnet20", "vit_tiny"])
def test_total_params_is_the_zoo_models_real_parameter_count(capsys, name):
    """Against a materialised model: every leaf of nnx.state(model, nnx.Param), summed by hand."""
    import math

    import jax
    from flax import nnx

    import models

    rc, out, _ = run(capsys, name, "--json")
    assert rc == 0
    model = models.create(name, rngs=nnx.Rngs(0))
    real = sum(math.prod(np.shape(x)) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    assert json.loads(out)["total_params"] == real
    assert json.loads(out)["total_params"] > json.loads(out)["total_weights"]  # biases at least


def test_total_params_follows_the_input_shape(capsys):
    from flax import nnx

    import models

    rc, out, _ = run(capsys, "vit_tiny", "--input-shape", "32,32,3", "--json")
    real = models.count_params(models.create("vit_tiny", rngs=nnx.Rngs(0), input_shape=(32, 32, 3)))
    assert rc == 0 and json.loads(out)["total_params"] == real != models.model_param_count("vit_tiny")


@pytest.mark.parametrize("name, published", [
    ("bert_base", "110M"), ("bert_large", "340M"), ("llama_7b", "6.7B"), ("gpt3_175b", "174,600M"),
])
def test_total_params_matches_the_published_sizes(name, published):
    """The reference transformers' total_params, from abstract shapes, round to the papers'."""
    from models._workload import model_param_count
    from models.reference import Published, get_reference

    n = model_param_count(name)
    assert Published(published, "").matches(n), (name, n)
    assert n == get_reference(name).param_count()
    wl = model_workload(name, input_shape=(16,))
    assert n > wl.total_weights  # embeddings, biases and norms are parameters, not MAC weights


def test_total_params_in_json_and_table_for_a_transformer(capsys):
    from models.reference import get_reference

    n = get_reference("bert_base").param_count()  # rebuilt from the hyper-parameters in test_reference
    rc, out, _ = run(capsys, "bert_base", "--input-shape", "16", "--json")
    assert rc == 0 and json.loads(out)["total_params"] == n
    rc, out, _ = run(capsys, "bert_base", "--input-shape", "16", "--summary")
    assert rc == 0 and f"{n:,} parameters in all" in out.splitlines()[0]
