"""``codesign cost``: table, JSON, errors (one line on stderr, exit 2)."""

from __future__ import annotations

import json

import pytest

from codesign import _cli_cost
from codesign.cli import main as cli_main


def test_json_has_the_contract_keys(capsys):
    rc = _cli_cost.main(["alexnet", "--arch", "eyeriss", "--json", "--batch", "2"])
    out = capsys.readouterr().out
    assert rc == 0
    assert out.count("\n") == 1
    d = json.loads(out)
    for k in ("model", "arch", "dataflow", "batch", "macs", "energy_pj", "latency_s", "cycles",
              "power_w", "dram_bytes", "onchip_bytes", "area_mm2", "utilization", "layers"):
        assert k in d, k
    assert d["model"] == "alexnet" and d["arch"] == "eyeriss" and d["batch"] == 2
    assert d["dataflow"] == "rs"
    assert len(d["layers"]) == 8
    for layer in d["layers"]:
        for k in ("name", "macs", "energy_pj", "cycles", "latency_s", "utilization",
                  "dram_bytes", "energy_breakdown_pj", "bound"):
            assert k in layer
        assert set(layer["energy_breakdown_pj"]) >= {"DRAM", "GLB", "NoC", "RF", "MAC"}
        assert layer["bound"] in ("compute", "DRAM", "GLB", "NoC", "RF")
    assert abs(sum(l["energy_pj"] for l in d["layers"]) - d["energy_pj"]) < 1e-4 * d["energy_pj"]
    assert d["macs"] == 2 * 724406816  # AlexNet (grouped, 227x227): 724 M MACs per image


def test_table_through_the_dispatcher(capsys):
    rc = cli_main(["cost", "alexnet", "--arch", "eyeriss", "--dataflow", "ws",
                   "--objective", "edp"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "conv1" in out and "fc8" in out and "report card" in out
    assert "ws dataflow, objective edp" in out


@pytest.mark.parametrize("argv,needle", [
    (["alexnet", "--arch", "nosuch"], "valid: a preset"),
    (["alexnet", "--arch", "eyeriss", "--dataflow", "xs"], "choose from 'ws', 'os', 'is', 'rs'"),
    (["alexnet", "--arch", "eyeriss", "--objective", "speed"], "choose from 'energy', 'edp'"),
    (["nosuchnet", "--arch", "eyeriss"], "unknown model 'nosuchnet'; valid: "),
    (["alexnet", "--arch", "eyeriss", "--batch", "-3"], "must be a positive int"),
    (["alexnet"], "required: --arch; valid presets: eyeriss"),
    (["alexnet", "--arch", "/nonexistent/a.yaml"], "not found"),
])
def test_errors_are_one_line_exit_2(capsys, argv, needle):
    rc = _cli_cost.main(argv)
    err = capsys.readouterr().err
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("codesign cost: ")
    assert needle in err
    if "nosuchnet" in argv:
        assert "alexnet" in err and "resnet50" in err


def test_invalid_yaml_is_one_line(capsys, tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\npe_array: {rows: 0, cols: 4}\n")
    rc = _cli_cost.main(["alexnet", "--arch", str(p)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "bad.yaml" in err


def test_huge_batch_is_exact_or_one_line(capsys):
    """A batch beyond int32: exact counts while they fit the model's exact range
    (float64 integers), else one line naming the layer and what is valid."""
    rc = _cli_cost.main(["lenet5", "--arch", "eyeriss", "--batch", "3000000000", "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    d = json.loads(out)
    assert d["batch"] == 3000000000 and d["macs"] == 3000000000 * 416520
    assert d["energy_pj"] > 0 and all(l["legal"] for l in d["layers"])
    rc = _cli_cost.main(["alexnet", "--arch", "eyeriss", "--batch", "3000000000"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("codesign cost: ")
    assert "layer 'conv" in err and "MACs" in err and "2^53" in err


def test_binary_arch_file_is_one_line_naming_the_file(capsys, tmp_path):
    p = tmp_path / "accel.yaml"
    p.write_bytes(bytes(range(256)) * 4)
    rc = _cli_cost.main(["lenet5", "--arch", str(p)])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith("codesign cost: ")
    assert str(p) in err and "UTF-8" in err
