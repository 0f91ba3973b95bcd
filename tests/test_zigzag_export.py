"""ZigZag interchange: exported YAML structure, conversion rules, errors, and (when the
optional ``zigzag-dse`` package is importable) ZigZag parsing and running the files."""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import re

import jax
import jax.numpy as jnp
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

import hwmodel
from hwmodel import (
    ZIGZAG_DATAFLOWS,
    ZIGZAG_DIMS,
    Architecture,
    AreaModel,
    LayerSpec,
    MemoryLevel,
    Workload,
    architecture_from_zigzag,
    export_zigzag,
    zigzag_accelerator,
    zigzag_mapping,
    zigzag_workload,
)

INF = math.inf
HAVE_ZIGZAG = importlib.util.find_spec("zigzag") is not None
NEED_ZIGZAG = pytest.mark.skipif(
    not HAVE_ZIGZAG,
    reason="zigzag-dse is not installed in this environment (optional extra `zigzag`: "
    "pip install '.[zigzag,test]' in a virtualenv and run pytest from it; see benchmarks/ZIGZAG.md)",
)


# ---------------------------------------------------------------------------------
# stand-in architectures (kept inside the tests)
# ---------------------------------------------------------------------------------
def _lvl(name, kind, holds, per_pe, cap, shared, rd, wr, bw):
    f = lambda x: jnp.asarray(x, jnp.float32)  # noqa: E731
    return MemoryLevel(name, kind, tuple(holds), per_pe, f(cap), f(shared), f(rd), f(wr), f(bw))


def small_arch(*, noc_energy=2.0, rows=4, cols=3, glb_bw=16.0, word_bits=(16, 16, 16), **kw):
    """An Eyeriss-shaped machine: DRAM, pooled GLB, NoC, per-PE RF (W, I, O partitions)."""
    levels = (
        _lvl("DRAM", "dram", "WIO", False, [INF] * 3, INF, [200.0] * 3, [200.0] * 3, 4.0),
        _lvl("GLB", "sram", "IO", False, [INF] * 3, 8 * 1024 * 8, [0, 6.0, 6.0], [0, 6.0, 6.0], glb_bw),
        _lvl("NoC", "noc", "", False, [INF] * 3, INF, [noc_energy] * 3, [noc_energy] * 3, INF),
        _lvl("RF", "rf", "WIO", True, [224 * 16, 12 * 16, 24 * 16], INF, [1.0] * 3, [1.0] * 3, 4.0),
    )
    return Architecture(
        name="small",
        levels=levels,
        pe_rows=jnp.float32(rows),
        pe_cols=jnp.float32(cols),
        clock_hz=jnp.float32(200e6),
        word_bits=jnp.asarray(word_bits, jnp.float32),
        mac_energy_pj=jnp.float32(1.0),
        nonmac_energy_pj=jnp.float32(0.0),
        area=AreaModel(jnp.float32(0.01), jnp.asarray([0, 0.1, 0, 0.5], jnp.float32), jnp.float32(0)),
        **kw,
    )


def tiny_workload():
    return Workload(
        (
            LayerSpec("conv1", "conv", M=2, C=1, P=4, Q=4, R=3, S=3, H=6, W=6),
            LayerSpec("conv2", "conv", G=2, M=2, C=2, P=2, Q=2, R=3, S=3, stride=(2, 2), H=5, W=5),
            LayerSpec("fc", "matmul", N=2, M=3, C=8),
        ),
        name="tiny",
    )


# A ZigZag-style accelerator description written here (does not need zigzag installed):
# the shape and numbers of ZigZag's eyeriss_like.yaml, 2x2 array.
def zz_eyeriss_dict(rows=2, cols=2):
    def port(name, typ, bw, alloc):
        return {"name": name, "type": typ, "bandwidth_min": bw, "bandwidth_max": bw, "allocation": alloc}

    def rf(size, r, w, op, bw):
        ports = [port("r_port_1", "read", bw, [f"{op}, tl"] + ([f"{op}, th"] if op == "O" else [])),
                 port("w_port_1", "write", bw, [f"{op}, fh"] + ([f"{op}, fl"] if op == "O" else []))]
        return {"size": size, "r_cost": r, "w_cost": w, "area": 0.3, "latency": 1,
                "operands": [op], "ports": ports, "served_dimensions": []}

    allo = ["O, fh", "O, tl", "O, fl", "O, th"]
    return {
        "name": "zz_eyeriss",
        "memories": {
            "rf_A": rf(512, 1.0, 1.5, "I1", 8),
            "rf_W": rf(512, 1.0, 1.5, "I2", 8),
            "rf_O": rf(128, 1.5, 2.0, "O", 24),
            "sram_O": {"size": 65536, "r_cost": 10.0, "w_cost": 15.0, "area": 3, "latency": 1,
                       "operands": ["O"], "ports": [port("rw_port_1", "read_write", 128, allo)],
                       "served_dimensions": ["D1", "D2"]},
            "sram_W": {"size": 524288, "r_cost": 20.0, "w_cost": 25.0, "area": 6, "latency": 1,
                       "operands": ["I2"],
                       "ports": [port("r_port_1", "read", 128, ["I2, tl"]),
                                 port("w_port_1", "write", 128, ["I2, fh"])],
                       "served_dimensions": ["D1", "D2"]},
            "sram_IO": {"size": 8388608, "r_cost": 100.0, "w_cost": 130.0, "area": 25, "latency": 1,
                        "operands": ["I1", "O"],
                        "ports": [port("rw_port_1", "read_write", 384, ["I1, fh", "I1, tl"] + allo)],
                        "served_dimensions": ["D1", "D2"]},
            "dram": {"size": 10**10, "r_cost": 1000.0, "w_cost": 1000.0, "area": 0, "latency": 1,
                     "operands": ["I1", "I2", "O"],
                     "ports": [port("rw_port_1", "read_write", 64,
                                    ["I1, fh", "I1, tl", "I2, fh", "I2, tl"] + allo)],
                     "served_dimensions": ["D1", "D2"]},
        },
        "operational_array": {"unit_energy": 0.5, "unit_area": 0.1, "dimensions": ["D1", "D2"],
                              "sizes": [rows, cols]},
    }


# ---------------------------------------------------------------------------------
# workload
# ---------------------------------------------------------------------------------
_EQ_RE = re.compile(r"^O(\[\w+\])+\s*\+?\s*=\s*\w(\[\w+\])+\s*[*+]\s*\w(\[(?:\w+)?\])+\s*$")
_REL_RE = re.compile(r"^(\w+)\s*=\s*(?:(\w+)\s*\*\s*)?(\w+)\s*\+\s*(?:(\w+)\s*\*\s*)?(\w+)$")


def _input_extent(a, b, sa, sb):
    """Brute-force count of distinct sa*i + sb*j (the input rows a window touches)."""
    return len({sa * i + sb * j for i in range(a) for j in range(b)})


conv_layers = st.builds(
    lambda g, n, m, c, p, q, r, s, u, v, dh, dw: LayerSpec(
        "L", "conv", G=g, N=n, M=m, C=c, P=p, Q=q, R=r, S=s, stride=(u, v), dilation=(dh, dw),
        H=(p - 1) * u + (r - 1) * dh + 1, W=(q - 1) * v + (s - 1) * dw + 1,
    ),
    *(st.integers(1, 4) for _ in range(8)),
    *(st.integers(1, 3) for _ in range(4)),
)


@given(conv_layers)
def test_conv_layer_export_matches_loop_nest(layer):
    arch = small_arch()
    (d,) = zigzag_workload(Workload((layer,)), arch)
    assert d["operator_type"] == "Conv" and d["name"] == "L" and d["id"] == 0
    assert _EQ_RE.match(d["equation"])
    sizes = dict(zip(d["loop_dims"], d["loop_sizes"]))
    # every one of our dims maps to a ZigZag dim with the same bound -> equal MACs
    for ours, theirs in ZIGZAG_DIMS.items():
        assert sizes[theirs] == layer.bounds[ours]
    assert math.prod(d["loop_sizes"]) == layer.macs
    # the stride / dilation relations give the padded input window, as our model
    rel = {}
    for text in d["dimension_relations"]:
        m = _REL_RE.match(text)
        assert m, text
        lhs, ca, a, cb, b = m.groups()
        rel[lhs] = (int(ca), a, int(cb), b)
    assert rel["ix"] == (layer.stride[1], "ox", layer.dilation[1], "fx")
    assert rel["iy"] == (layer.stride[0], "oy", layer.dilation[0], "fy")
    # the input rows the relation touches are our loop nest's (p*U + r*Dh)
    assert _input_extent(layer.P, layer.R, *rel["iy"][::2]) == len(
        {p * layer.stride[0] + r * layer.dilation[0] for p in range(layer.P) for r in range(layer.R)}
    )
    assert _input_extent(layer.P, layer.R, *rel["iy"][::2]) <= layer.window_h
    assert d["operand_precision"] == {"W": 16, "I": 16, "O": 16, "O_final": 16}
    assert d["operand_source"] == {"W": 0, "I": 0}


def test_matmul_dynamic_and_precision():
    wl = Workload(
        (
            LayerSpec("q", "matmul", N=4, M=8, C=16, w_bits=8, i_bits=8, o_bits=32),
            LayerSpec("qk", "matmul", G=2, N=4, M=4, C=8, dynamic=True),
        )
    )
    q, qk = zigzag_workload(wl, precision="layer")
    assert q["operator_type"] == "Gemm" and q["loop_dims"] == ["G", "B", "K", "C"]
    assert q["loop_sizes"] == [1, 4, 8, 16] and math.prod(qk["loop_sizes"]) == wl[1].macs
    assert q["operand_precision"] == {"W": 8, "I": 8, "O": 32, "O_final": 32}
    assert q["operand_source"] == {"W": 0, "I": 0}  # constant weights
    assert qk["operand_source"] == {"W": 0, "I": 0}  # both operands from the previous layer
    with pytest.raises(ValueError, match="needs the architecture"):
        zigzag_workload(wl)
    with pytest.raises(ValueError, match="precision must be"):
        zigzag_workload(wl, small_arch(), precision="bits")


def test_reserved_and_empty_names():
    with pytest.raises(ValueError, match="reserves"):
        zigzag_workload(Workload((LayerSpec("default", "matmul", M=2, C=2),)), small_arch())
    with pytest.raises(ValueError, match="no layers"):
        zigzag_workload(Workload(()), small_arch())


# ---------------------------------------------------------------------------------
# accelerator
# ---------------------------------------------------------------------------------
def test_accelerator_structure_and_energy_per_bit():
    arch = small_arch()
    acc = zigzag_accelerator(arch, noc="drop")
    mems = acc["memories"]
    # innermost first: the RF partitions, then GLB, then DRAM; no NoC memory
    assert list(mems) == ["RF_O", "RF_I", "RF_W", "GLB", "DRAM"]
    assert acc["operational_array"]["sizes"] == [4, 3]
    assert acc["operational_array"]["unit_energy"] == 1.0
    assert mems["RF_W"]["size"] == 224 * 16 and mems["RF_I"]["size"] == 12 * 16
    assert mems["RF_O"]["size"] == 24 * 16 and mems["GLB"]["size"] == 8 * 1024 * 8
    assert mems["GLB"]["operands"] == ["I1", "O"] and mems["DRAM"]["operands"] == ["I2", "I1", "O"]
    for name, m in mems.items():
        assert m["served_dimensions"] == ([] if name.startswith("RF") else ["D1", "D2"])
        widths = {p["bandwidth_max"] for p in m["ports"]}
        assert len(widths) == 1
        (bits,) = widths
        # same energy per bit as our per-word numbers (16-bit words)
        ours = {"RF": 1.0, "GLB": 6.0, "DRAM": 200.0}[name.split("_")[0]]
        assert m["r_cost"] == pytest.approx(ours / 16 * bits)
        assert m["w_cost"] == pytest.approx(ours / 16 * bits)
        allocs = [a for p in m["ports"] for a in p["allocation"]]
        for op in m["operands"]:
            want = {"fh", "tl", "fl", "th"} if op == "O" else {"fh", "tl"}
            assert {a.split(", ")[1] for a in allocs if a.startswith(op + ",")} == want
    assert mems["GLB"]["ports"][0]["bandwidth_max"] == 16 * 16  # 16 words/cycle x 16 bits
    assert mems["DRAM"]["ports"][0]["bandwidth_max"] == 4 * 16
    assert mems["RF_W"]["ports"][0]["bandwidth_max"] == 16  # one word per access


def test_accelerator_errors():
    with pytest.raises(ValueError, match="NoC"):
        zigzag_accelerator(small_arch())
    zigzag_accelerator(small_arch(noc_energy=0.0))  # a free NoC is just not written
    with pytest.raises(ValueError, match="dense execution only"):
        zigzag_accelerator(small_arch(sparsity="skip"), noc="drop")
    with pytest.raises(ValueError, match="default_bandwidth_bits"):
        zigzag_accelerator(small_arch(glb_bw=INF), noc="drop")
    acc = zigzag_accelerator(small_arch(glb_bw=INF), noc="drop", default_bandwidth_bits=128)
    assert acc["memories"]["GLB"]["ports"][0]["bandwidth_max"] == 128
    with pytest.raises(ValueError, match="integer"):
        zigzag_accelerator(small_arch(rows=2.5), noc="drop")
    with pytest.raises(ValueError, match="noc must be"):
        zigzag_accelerator(small_arch(), noc="fold")
    # operands sharing a ZigZag memory with different energies per bit
    arch = small_arch()
    glb = arch.levels[1]
    bad = arch.replace(
        levels=(arch.levels[0], glb.__class__(**{**glb.__dict__, "read_energy_pj": jnp.asarray([0, 6.0, 7.0])}),
                *arch.levels[2:])
    )
    with pytest.raises(ValueError, match="energy per bit differs"):
        zigzag_accelerator(bad, noc="drop")
    # per-operand partitions inside a binding pool
    rf = arch.levels[3]
    pooled = arch.replace(
        levels=(*arch.levels[:3], rf.__class__(**{**rf.__dict__, "shared_bits": jnp.float32(1000.0)}))
    )
    with pytest.raises(ValueError, match="shared pool"):
        zigzag_accelerator(pooled, noc="drop")


def test_export_under_jit_is_a_clear_error():
    wl = tiny_workload()

    @jax.jit
    def f(scale):
        arch = small_arch(noc_energy=0.0)
        arch = arch.replace(mac_energy_pj=arch.mac_energy_pj * scale)
        zigzag_accelerator(arch)
        return scale

    with pytest.raises(TypeError, match="outside jit"):
        f(jnp.float32(1.0))
    assert len(wl) == 3


# ---------------------------------------------------------------------------------
# mapping
# ---------------------------------------------------------------------------------
@pytest.mark.parametrize("dataflow", sorted(ZIGZAG_DATAFLOWS))
def test_mapping_hints_and_pe_operands(dataflow):
    wl = tiny_workload()
    df = ZIGZAG_DATAFLOWS[dataflow]
    mp = zigzag_mapping(wl, small_arch(), dataflow=dataflow)
    assert [e["name"] for e in mp] == ["default", "conv1", "conv2", "fc"]
    for e in mp:
        assert e["memory_operand_links"] == {"O": "O", "W": "I2", "I": "I1"}
        assert set(e["spatial_mapping_hint"]) == {"D1", "D2"}
    # conv: rows -> D1, cols -> D2, in ZigZag's names
    assert mp[1]["spatial_mapping_hint"] == {
        "D1": [ZIGZAG_DIMS[d] for d in df.rows], "D2": [ZIGZAG_DIMS[d] for d in df.cols]
    }
    # matmul: only G N M C exist; never an empty hint
    for oa, dims in (("D1", df.rows), ("D2", df.cols)):
        got = mp[3]["spatial_mapping_hint"][oa]
        want = [ZIGZAG_DIMS[d] for d in dims if d in "GNMC"]
        assert got == (want or got) and got and set(got) <= {"G", "B", "K", "C"}
    # the accelerator gets per-PE memories only for the operands the dataflow keeps there
    acc = zigzag_accelerator(small_arch(), dataflow=dataflow, noc="drop")
    rf = [m for m in acc["memories"].values() if m["served_dimensions"] == []]
    assert sorted(op for m in rf for op in m["operands"]) == sorted(
        {"W": "I2", "I": "I1", "O": "O"}[o] for o in df.pe_keep
    )


def test_dataflows_match_the_mapper():
    specs = getattr(hwmodel, "DATAFLOW_SPECS", None)
    if specs is None:
        pytest.skip("hwmodel.DATAFLOW_SPECS (the cost model's dataflows) is not on this branch")
    assert set(specs) == set(ZIGZAG_DATAFLOWS)
    for name, spec in specs.items():
        df = ZIGZAG_DATAFLOWS[name]
        assert set(df.pe_keep) == set(spec.pe_keep), name
        assert set(df.rows) == set(spec.spatial_y), name
        assert set(df.cols) == set(spec.spatial_x), name


def test_mapping_pinned_temporal_order():
    wl, arch = tiny_workload(), small_arch()
    layer = wl[0]  # conv1: M=2 C=1 P=4 Q=4 R=3 S=3

    class M:  # two storage levels, outer to inner; spatial R 3 on rows, P 2 on columns
        temporal = ((1, 1, 2, 2, 1, 1, 1, 1), (1, 1, 1, 1, 4, 1, 1, 3))
        order = (("G", "N", "M", "P", "Q", "C", "R", "S"), ("G", "N", "C", "R", "S", "M", "P", "Q"))
        spatial_x = (1, 1, 1, 2, 1, 1, 1, 1)
        spatial_y = (1, 1, 1, 1, 1, 1, 3, 1)

    mp = zigzag_mapping(wl, arch, spatial={"conv1": M()}, pin_temporal=True)
    # innermost first: level 1 (S 3 then Q 4, in reverse of its outer-to-inner order), then level 0
    assert mp[1]["temporal_ordering"] == [["OX", 4], ["FX", 3], ["OY", 2], ["K", 2]]
    assert mp[1]["spatial_mapping"] == {"D1": ["FY, 3"], "D2": ["OY, 2"]}
    assert "temporal_ordering" not in zigzag_mapping(wl, arch, spatial={"conv1": M()})[1]
    M.temporal = ((1, 1, 2, 1, 1, 1, 1, 1), (1, 1, 1, 1, 4, 1, 1, 3))
    with pytest.raises(ValueError, match="factors of P multiply to 2"):
        zigzag_mapping(wl, arch, spatial={"conv1": M()}, pin_temporal=True)
    with pytest.raises(TypeError, match="no temporal/order"):
        zigzag_mapping(wl, arch, spatial={"conv1": {"D1": {"R": 3}}}, pin_temporal=True)
    assert layer.macs == 2 * 4 * 4 * 3 * 3


def test_mapping_explicit_and_errors():
    wl = tiny_workload()
    arch = small_arch()
    mp = zigzag_mapping(wl, arch, spatial={"conv1": {"D1": {"R": 3}, "D2": {"P": 2}}})
    assert mp[1]["spatial_mapping"] == {"D1": ["FY, 3"], "D2": ["OY, 2"]}

    class M:  # anything with spatial_y (rows) / spatial_x (columns) in DIMS order
        spatial_y = (1, 1, 1, 1, 1, 1, 3, 1)  # R 3
        spatial_x = (1, 1, 2, 2, 1, 1, 1, 1)  # M 2, P 2 -> 4 columns > 3
    with pytest.raises(ValueError, match="exceeds the array"):
        zigzag_mapping(wl, arch, spatial={"conv1": M()})
    M.spatial_x = (1, 1, 1, 2, 1, 1, 1, 1)
    assert zigzag_mapping(wl, arch, spatial={"conv1": M()})[1]["spatial_mapping"] == {
        "D1": ["FY, 3"], "D2": ["OY, 2"]
    }
    with pytest.raises(TypeError, match="spatial_x"):
        zigzag_mapping(wl, arch, spatial={"conv1": 3})
    with pytest.raises(ValueError, match="unknown array dimensions"):
        zigzag_mapping(wl, arch, spatial={"conv1": {"D3": {}}})
    with pytest.raises(ValueError, match="valid: .'is', 'nlr', 'os', 'rs', 'ws'"):
        zigzag_mapping(wl, arch, dataflow="xyz")
    with pytest.raises(ValueError, match="valid"):
        zigzag_accelerator(arch, dataflow="xyz", noc="drop")
    with pytest.raises(ValueError, match="unknown layer"):
        zigzag_mapping(wl, arch, spatial={"nope": {}})
    with pytest.raises(ValueError, match="exceeds the array"):
        zigzag_mapping(wl, arch, spatial={"conv1": {"D1": {"R": 3, "M": 2}}})
    with pytest.raises(ValueError, match="not valid for a matmul"):
        zigzag_mapping(wl, arch, spatial={"fc": {"D1": {"R": 1}}})
    with pytest.raises(ValueError, match=r"in \[1, 3\]"):
        zigzag_mapping(wl, arch, spatial={"conv1": {"D1": {"R": 4}}})


# ---------------------------------------------------------------------------------
# files
# ---------------------------------------------------------------------------------
def test_export_writes_yaml_atomically(tmp_path):
    wl, arch = tiny_workload(), small_arch()
    files = export_zigzag(wl, arch, tmp_path / "out", noc="drop", dataflow="ws")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "accelerator.yaml", "mapping.yaml", "workload.yaml"
    ]  # and no temporary files left behind
    assert yaml.safe_load(files.workload.read_text()) == zigzag_workload(wl, arch)
    assert yaml.safe_load(files.accelerator.read_text()) == zigzag_accelerator(
        arch, dataflow="ws", noc="drop"
    )
    assert yaml.safe_load(files.mapping.read_text()) == zigzag_mapping(wl, arch, dataflow="ws")
    # an error is raised before anything is written
    with pytest.raises(ValueError, match="NoC"):
        export_zigzag(wl, arch, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------------
# import
# ---------------------------------------------------------------------------------
def test_import_zigzag_eyeriss_like(tmp_path):
    src = tmp_path / "hw.yaml"
    src.write_text(yaml.safe_dump(zz_eyeriss_dict(rows=3, cols=2), sort_keys=False))
    arch = architecture_from_zigzag(src, word_bits=(8, 8, 16), clock_hz=1e8, merge_partitions=False)
    hwmodel.validate_architecture(arch)
    assert arch.level_names == ("dram", "sram_IO", "sram_W", "sram_O", "RF")
    assert float(arch.pe_rows) == 3 and float(arch.pe_cols) == 2
    assert float(arch.mac_energy_pj) == 0.5
    lv = {lvl.name: lvl for lvl in arch.levels}
    assert lv["RF"].per_pe and lv["RF"].holds == ("W", "I", "O")
    assert [float(x) for x in lv["RF"].capacity_bits] == [512, 512, 128]
    # RF: one word per access; a 16-bit psum through a 24-bit port is one access
    assert [float(x) for x in lv["RF"].read_energy_pj] == [1.0, 1.0, 1.5]
    assert [float(x) for x in lv["RF"].write_energy_pj] == [1.5, 1.5, 2.0]
    assert float(lv["RF"].bandwidth_words) == 2 * 8 / 8 + 2 * 8 / 8 + 2 * 24 / 16
    # shared memories: energy per bit kept
    assert float(lv["dram"].read_energy_pj[0]) == pytest.approx(1000 * 8 / 64)
    assert float(lv["dram"].read_energy_pj[2]) == pytest.approx(1000 * 16 / 64)
    assert float(lv["sram_IO"].read_energy_pj[1]) == pytest.approx(100 * 8 / 384)
    assert float(lv["sram_IO"].shared_bits) == 8388608 and lv["sram_IO"].holds == ("I", "O")
    assert float(lv["sram_W"].bandwidth_words) == 256 / 8  # separate read + write ports
    assert float(lv["dram"].bandwidth_words) == 64 / 16
    # round trip: exporting it gives back the same energies per bit and sizes
    acc = zigzag_accelerator(arch)
    src_mems = zz_eyeriss_dict()["memories"]
    for name in ("sram_O", "sram_W", "sram_IO", "dram"):
        m, o = acc["memories"][name], src_mems[name]
        assert m["operands"] == sorted(o["operands"], key=["I2", "I1", "O"].index)
        if name != "dram":
            assert m["size"] == o["size"]
        ob = o["ports"][0]["bandwidth_max"]
        mb = m["ports"][0]["bandwidth_max"]
        assert m["r_cost"] / mb == pytest.approx(o["r_cost"] / ob, rel=1e-6)
        assert m["w_cost"] / mb == pytest.approx(o["w_cost"] / ob, rel=1e-6)
    assert acc["memories"]["RF_O"]["r_cost"] == 1.5 and acc["memories"]["RF_I"]["r_cost"] == 1.0

    # default: the W-only and O-only SRAMs become one level with two partitions
    merged = architecture_from_zigzag(src, word_bits=(8, 8, 16))
    hwmodel.validate_architecture(merged)
    assert merged.level_names == ("dram", "sram_IO", "sram_W+sram_O", "RF")
    m = merged.levels[2]
    assert m.holds == ("W", "O") and not math.isfinite(float(m.shared_bits))
    assert [float(x) for x in m.capacity_bits] == [524288, INF, 65536]
    assert float(m.read_energy_pj[0]) == pytest.approx(20 * 8 / 128)
    assert float(m.read_energy_pj[2]) == pytest.approx(10 * 16 / 128)
    assert float(m.bandwidth_words) == 256 / 8 + 128 / 16
    for a, b in zip(arch.levels, merged.levels):  # the levels around it are unchanged
        if a.name == b.name:
            for f in ("capacity_bits", "shared_bits", "read_energy_pj", "write_energy_pj"):
                assert jnp.array_equal(getattr(a, f), getattr(b, f))
    exported = zigzag_accelerator(merged)["memories"]
    assert exported["sram_W+sram_O_W"]["size"] == 524288
    assert exported["sram_W+sram_O_O"]["size"] == 65536


def test_import_errors(tmp_path):
    d = zz_eyeriss_dict()
    del d["memories"]
    with pytest.raises(ValueError, match="missing key 'memories'"):
        architecture_from_zigzag(d)
    d = zz_eyeriss_dict()
    d["memories"]["rf_A"]["operands"] = ["X"]
    with pytest.raises(ValueError, match="valid: I1, I2, O"):
        architecture_from_zigzag(d)
    d = zz_eyeriss_dict()
    d["memories"]["rf_A"]["operands"] = ["I1", "I2"]
    with pytest.raises(ValueError, match="one operand per per-PE memory"):
        architecture_from_zigzag(d)
    with pytest.raises(ValueError, match="cannot read"):
        architecture_from_zigzag(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ValueError, match="not valid YAML"):
        architecture_from_zigzag(bad)


# ---------------------------------------------------------------------------------
# with ZigZag itself
# ---------------------------------------------------------------------------------
@NEED_ZIGZAG
def test_zigzag_validators_accept_exported_files(tmp_path):
    from zigzag.parser.accelerator_validator import AcceleratorValidator
    from zigzag.parser.mapping_validator import MappingValidator
    from zigzag.parser.workload_validator import WorkloadValidator

    wl, arch = tiny_workload(), small_arch()
    for df in sorted(ZIGZAG_DATAFLOWS):
        files = export_zigzag(wl, arch, tmp_path / df, noc="drop", dataflow=df)
        for cls, path in (
            (WorkloadValidator, files.workload),
            (AcceleratorValidator, files.accelerator),
            (MappingValidator, files.mapping),
        ):
            v = cls(yaml.safe_load(path.read_text()))
            assert v.validate(), (cls.__name__, df)


@NEED_ZIGZAG
def test_zigzag_runs_on_exported_tiny_layer(tmp_path):
    from zigzag.api import get_hardware_performance_zigzag

    layer = LayerSpec("c", "conv", M=4, C=2, P=4, Q=4, R=3, S=3, stride=(1, 1), H=6, W=6)
    wl = Workload((layer,), name="one")
    arch = architecture_from_zigzag(zz_eyeriss_dict(rows=3, cols=4))
    files = export_zigzag(wl, arch, tmp_path / "zz", dataflow="rs")
    logging.disable(logging.WARNING)
    try:
        energy, latency, cmes = get_hardware_performance_zigzag(
            str(files.workload), str(files.accelerator), str(files.mapping),
            opt="energy", dump_folder=str(tmp_path / "dump"), loma_show_progress_bar=False,
        )
    finally:
        logging.disable(logging.NOTSET)
    (cme, _), = cmes[0][1]
    assert cme.layer.total_mac_count == layer.macs
    assert cme.mac_energy == pytest.approx(0.5 * layer.macs)
    assert energy > cme.mac_energy and latency >= layer.macs / 12
    # the spatial unrolling respects the rs hints (FY, C on rows; OY, K on columns)
    sm = cme.spatial_mapping_int.mapping_dict_origin
    dims = {str(d) for lvl in sm[next(iter(sm))] for d, f in lvl if f > 1}
    assert dims and dims <= {"FY", "C", "OY", "K"}
