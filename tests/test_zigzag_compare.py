"""The helpers of benchmarks/zigzag_compare.py (the ZigZag side needs zigzag-dse)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import yaml

from hwmodel import LayerSpec, Workload, architecture_from_zigzag

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import zigzag_compare as zc  # noqa: E402

from test_zigzag_export import zz_eyeriss_dict  # noqa: E402

HAVE_ZIGZAG = importlib.util.find_spec("zigzag") is not None
NEED_ZIGZAG = pytest.mark.skipif(
    not HAVE_ZIGZAG, reason="zigzag-dse is not installed in this environment (optional extra)"
)


def test_builtin_tables_match_published_macs():
    wls = zc.builtin_workloads()
    # AlexNet conv1-5: 666 M MACs (Krizhevsky et al. / Eyeriss); LeNet-5 conv: 405,600
    assert wls["alexnet"].total_macs == 665_784_864
    assert wls["lenet5"].total_macs == 117_600 + 240_000 + 48_000


def test_with_bits_uses_architecture_words():
    arch = architecture_from_zigzag(zz_eyeriss_dict(), word_bits=(8, 8, 16))
    wl = zc.with_bits(zc.builtin_workloads()["lenet5"], arch)
    assert {(x.w_bits, x.i_bits, x.o_bits) for x in wl.layers} == {(8, 8, 16)}
    assert wl.total_macs == zc.builtin_workloads()["lenet5"].total_macs


def test_hw_for_dataflow_drops_unkept_pe_memories(tmp_path):
    src = tmp_path / "hw.yaml"
    src.write_text(yaml.safe_dump(zz_eyeriss_dict(), sort_keys=False))
    out = zc.zigzag_hw_for_dataflow(str(src), "ws", tmp_path / "ws.yaml")
    mems = yaml.safe_load(Path(out).read_text())["memories"]
    assert [n for n, m in mems.items() if m["served_dimensions"] == []] == ["rf_W"]
    out = zc.zigzag_hw_for_dataflow(str(src), "nlr", tmp_path / "nlr.yaml")
    mems = yaml.safe_load(Path(out).read_text())["memories"]
    assert all(m["served_dimensions"] for m in mems.values())
    assert list(mems)[-1] == "dram"


def test_our_level_of():
    arch = architecture_from_zigzag(zz_eyeriss_dict())
    assert zc.our_level_of("sram_IO", arch) == "sram_IO"
    assert zc.our_level_of("sram_W", arch) == "sram_W+sram_O"
    assert zc.our_level_of("sram_O", arch) == "sram_W+sram_O"
    assert zc.our_level_of("rf_O", arch) == "RF"


@NEED_ZIGZAG
def test_run_zigzag_breakdown_adds_up(tmp_path):
    arch = architecture_from_zigzag(zz_eyeriss_dict(rows=3, cols=4), word_bits=(8, 8, 16))
    wl = zc.with_bits(
        Workload((LayerSpec("c", "conv", M=4, C=2, P=4, Q=4, R=3, S=3, H=6, W=6),), name="one"), arch
    )
    src = tmp_path / "hw.yaml"
    src.write_text(yaml.safe_dump(zz_eyeriss_dict(rows=3, cols=4), sort_keys=False))
    res = zc.run_zigzag(wl, arch, str(src), "rs", 2, tmp_path / "run")
    row = res["rows"]["c"]
    assert row["macs"] == wl[0].macs
    assert row["mac_energy_pj"] == pytest.approx(0.5 * wl[0].macs)
    total = row["mac_energy_pj"] + sum(row["energy_by_memory_pj"].values())
    assert total == pytest.approx(row["energy_pj"], rel=1e-9)
    assert set(row["energy_by_memory_pj"]) <= set(zz_eyeriss_dict()["memories"])
    assert row["cycles"] >= row["ideal_cycles"] > 0


@NEED_ZIGZAG
@pytest.mark.parametrize(
    "layer",
    [
        LayerSpec("c", "conv", M=8, C=4, P=8, Q=8, R=3, S=3, H=10, W=10),
        LayerSpec("s", "conv", M=4, C=2, P=4, Q=4, R=3, S=3, stride=(2, 2), H=9, W=9),
        LayerSpec("g", "conv", G=2, M=4, C=4, P=6, Q=6, R=3, S=3, H=8, W=8),
    ],
    ids=lambda x: x.name,
)
def test_same_mapping_same_energy_as_zigzag(tmp_path, layer):
    """The peer check in miniature: our mapper's loop nest pinned in ZigZag (with our
    RF-read convention): equal MAC energy, and totals within 5% -- the documented
    residuals are ZigZag's port-access rounding and its partial-sum read-back into every
    PE of a reduction group (benchmarks/ZIGZAG.md); a counting error would be far
    larger (the DRAM and RF terms are checked against the same bound)."""
    import hwmodel

    src = tmp_path / "hw.yaml"
    src.write_text(yaml.safe_dump(zz_eyeriss_dict(rows=4, cols=4), sort_keys=False))
    arch = architecture_from_zigzag(src, word_bits=(8, 8, 16))
    wl = zc.with_bits(Workload((layer,), name="t"), arch)
    m = hwmodel.map_layer(wl[0], arch, dataflow="rs")
    ours = hwmodel.cost(wl, arch, dataflow="rs", mappings=[m]).layers
    z = zc.run_zigzag(wl, arch, str(src), "rs", 6, tmp_path / "run", same_data_free=False,
                      spatial={layer.name: m}, pin_temporal=True)["rows"][layer.name]
    ob = {k: float(v[0]) for k, v in dict(ours.energy_breakdown_pj).items()}
    zb: dict[str, float] = {}
    for mem, e in z["energy_by_memory_pj"].items():
        lvl = zc.our_level_of(mem, arch)
        zb[lvl] = zb.get(lvl, 0.0) + e
    assert ob["MAC"] == pytest.approx(z["mac_energy_pj"], rel=1e-6)
    assert float(ours.energy_pj[0]) == pytest.approx(z["energy_pj"], rel=0.05), (ob, zb)
    for lvl in ("dram", "RF"):
        assert ob[lvl] == pytest.approx(zb[lvl], rel=0.05), (lvl, ob, zb)
