"""Architectures: presets, YAML round trip, area / on-chip metrics, grad and vmap."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import hwmodel
from hwmodel import OPERANDS

PRESETS = ("eyeriss", "eyeriss_45nm", "systolic_ws", "os_array")


def leaves_equal(a, b) -> bool:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    return ta == tb and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


# ----------------------------------------------------------------------------------
# Presets
# ----------------------------------------------------------------------------------


def test_list_presets():
    assert set(PRESETS) <= set(hwmodel.list_presets())
    assert list(hwmodel.list_presets()) == sorted(hwmodel.list_presets())


@pytest.mark.parametrize("name", PRESETS)
def test_preset_loads_and_validates(name):
    arch = hwmodel.load_arch(name)
    assert arch.name == name
    hwmodel.validate_architecture(arch)
    for leaf in jax.tree_util.tree_leaves(arch):
        assert leaf.dtype == jnp.float32
    assert set(hwmodel.architecture_problems(arch)) == set()


@pytest.mark.parametrize("name", PRESETS)
def test_preset_file_documents_provenance(name):
    with open(hwmodel.preset_path(name)) as f:
        text = f.read()
    header = text.split("\nname:")[0]
    assert all(ln.startswith("#") or not ln.strip() for ln in header.splitlines())
    assert "Provenance" in header
    assert f"hwmodel.load_arch('{name}').describe()" in header


def test_eyeriss_numbers_as_specified():
    a = hwmodel.load_arch("eyeriss")
    assert (float(a.pe_rows), float(a.pe_cols)) == (12, 14)
    assert float(a.clock_hz) == 200e6
    assert np.array_equal(a.word_bits, [16, 16, 16])
    unit = float(a.mac_energy_pj)  # 1 MAC = pj_per_unit
    assert unit == 2.0
    assert a.level_names == ("DRAM", "GLB", "NoC", "RF")
    rel = {l.name: np.asarray(l.read_energy_pj) / unit for l in a.levels}
    assert np.allclose(rel["DRAM"], 200) and np.allclose(rel["NoC"], 2) and np.allclose(rel["RF"], 1)
    assert np.allclose(rel["GLB"][1:], 6)
    glb, rf = a.level("GLB"), a.level("RF")
    assert glb.holds == ("I", "O") and float(glb.shared_bits) == 108 * 1024 * 8
    assert rf.per_pe and np.array_equal(rf.capacity_bits, [224 * 16, 12 * 16, 24 * 16])


def test_eyeriss_45nm_numbers_as_specified():
    a = hwmodel.load_arch("eyeriss_45nm")
    assert float(a.mac_energy_pj) == pytest.approx(2.2)
    rf = a.level("RF")
    assert np.allclose(rf.read_energy_pj, [1.59, 0.24, 0.25])
    assert float(a.level("GLB").read_energy_pj[1]) == pytest.approx(18.805)
    assert float(a.level("DRAM").read_energy_pj[0]) == 128


# ----------------------------------------------------------------------------------
# Round trip YAML -> Architecture -> YAML
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", PRESETS)
def test_round_trip(name, tmp_path):
    a = hwmodel.load_arch(name)
    text = hwmodel.arch_to_yaml(a)
    b = hwmodel.parse_arch_yaml(text, "roundtrip.yaml")
    assert leaves_equal(a, b)
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)  # names, kinds, options
    assert b.description == a.description
    assert hwmodel.arch_to_yaml(b) == text  # a fixed point
    path = tmp_path / "copy.yaml"
    hwmodel.save_arch(b, path)
    c = hwmodel.load_arch(path)
    assert leaves_equal(a, c) and c.to_yaml() == text


def test_round_trip_keeps_odd_values():
    a = hwmodel.load_arch("eyeriss")
    a = hwmodel.replace_level(a, "GLB", shared_bits=12345.5, read_energy_pj=[0.0, 1 / 3, 2e-7])
    a = a.replace(clock_hz=hwmodel.arch.architecture.as_leaf(123456789.0), sparsity="skip", compression="rle",
                  rle_run_bits=5, description="two\n  lines\n")
    hwmodel.validate_architecture(a)
    b = hwmodel.parse_arch_yaml(hwmodel.arch_to_yaml(a), "odd.yaml")
    assert leaves_equal(a, b)
    assert (b.sparsity, b.compression, b.rle_run_bits, b.description) == ("skip", "rle", 5, "two\n  lines\n")


# ----------------------------------------------------------------------------------
# Area and on-chip storage: hand-computed values
# ----------------------------------------------------------------------------------

KB = 1024


def test_eyeriss_area_and_onchip_hand_computed():
    a = hwmodel.load_arch("eyeriss")
    rf_bytes = (224 + 12 + 24) * 2  # 520 B per PE
    assert float(hwmodel.onchip_bytes(a)) == 108 * KB + 168 * rf_bytes
    expect = 168 * 0.02268 + 108 * 0.01895 + 168 * rf_bytes / KB * 0.02151 + 4.5581
    assert float(hwmodel.area_mm2(a)) == pytest.approx(expect, rel=1e-6)
    assert float(hwmodel.area_mm2(a)) == pytest.approx(12.25, abs=1e-3)  # the published core area
    br = hwmodel.area_breakdown_mm2(a)
    assert float(br["GLB"]) == pytest.approx(108 * 0.01895, rel=1e-6)
    assert float(br["DRAM"]) == 0 and float(br["NoC"]) == 0


def test_eyeriss_45nm_area_and_onchip_hand_computed():
    a = hwmodel.load_arch("eyeriss_45nm")
    rf_bytes = (192 + 12 + 16) * 2
    assert float(hwmodel.onchip_bytes(a)) == 128 * KB + 168 * rf_bytes
    expect = 168 * 0.0012395 + 128 * 0.0090824 + 168 * rf_bytes / KB * 0.010308 + 0.0033
    assert float(hwmodel.area_mm2(a)) == pytest.approx(expect, rel=1e-6)
    assert float(hwmodel.area_mm2(a)) == pytest.approx(2.118, abs=1e-3)


def test_systolic_ws_area_and_onchip_hand_computed():
    a = hwmodel.load_arch("systolic_ws")
    pe_bytes = 2 * 1 + 1 + 4  # W 2 x 8 b, I 8 b, O 32 b
    assert float(hwmodel.onchip_bytes(a)) == 256 * KB + 24 * KB * KB + 4 * KB * KB + 65536 * pe_bytes
    expect = 65536 * 0.0012122 + 256 * 0.0039058 + 24576 * 0.0039058 + 4096 * 0.0048486 + 134.71
    assert float(hwmodel.area_mm2(a)) == pytest.approx(expect, rel=1e-6)
    assert float(hwmodel.area_mm2(a)) == pytest.approx(331, abs=0.01)  # the TPU v1 die


def test_os_array_area_and_onchip_hand_computed():
    a = hwmodel.load_arch("os_array")
    pe_bytes = (1 + 8 + 1) * 2
    assert float(hwmodel.onchip_bytes(a)) == 256 * KB + 64 * pe_bytes
    expect = 64 * 0.02268 + 256 * 0.011742 + 64 * pe_bytes / KB * 0.02151 + 0.37573
    assert float(hwmodel.area_mm2(a)) == pytest.approx(expect, rel=1e-6)
    assert float(hwmodel.area_mm2(a)) == pytest.approx(4.86, abs=1e-3)  # ShiDianNao


def _ref_area_onchip(arch):
    """Slow, obvious reference: plain Python floats, level by level."""
    f = lambda x: float(np.asarray(x))  # noqa: E731
    n_pe = f(arch.pe_rows) * f(arch.pe_cols)
    area, onchip = f(arch.area.pe_mm2) * n_pe + f(arch.area.fixed_mm2), 0.0
    for i, l in enumerate(arch.levels):
        if l.kind in ("dram", "noc"):
            continue
        parts = [f(l.capacity_bits[OPERANDS.index(x)]) for x in l.holds]
        bits = min(f(l.shared_bits), sum(parts))
        inst = n_pe if l.per_pe else 1.0
        onchip += bits * inst / 8
        area += f(arch.area.sram_mm2_per_kb[i]) * bits / 8192 * inst
        if arch.area.bandwidth_mm2 is not None and f(arch.area.bandwidth_mm2[i]) > 0:
            area += f(arch.area.bandwidth_mm2[i]) * f(l.bandwidth_words) * inst
    return area, onchip


size = st.integers(1, 4096)


@given(rows=st.integers(1, 64), cols=st.integers(1, 64), glb_kb=st.integers(1, 512),
       rf=st.tuples(size, size, size), shared_rf=st.booleans(),
       coefs=st.tuples(*[st.floats(0, 1, allow_subnormal=False)] * 4),
       bw=st.tuples(st.integers(1, 64), st.integers(1, 8)),
       bw_coefs=st.tuples(*[st.floats(0, 0.1, allow_subnormal=False)] * 2))
def test_area_onchip_match_reference(rows, cols, glb_kb, rf, shared_rf, coefs, bw, bw_coefs):
    rf_size = (f"{sum(rf) * 16} b" if shared_rf else
               f"{{W: {rf[0]} x 16 b, I: {rf[1]} x 16 b, O: {rf[2]} x 16 b}}")
    text = f"""
name: rand
energy_unit: pJ
pe_array: {{rows: {rows}, cols: {cols}}}
clock: 1 GHz
word_bits: 16
mac_energy: 1
nonmac_energy: 1
area: {{pe_mm2: {coefs[0]!r}, fixed_mm2: {coefs[1]!r}}}
levels:
  - {{name: DRAM, kind: dram, holds: [W, I, O], bandwidth: 8, energy: 100}}
  - {{name: GLB, kind: sram, holds: [W, I, O], size: {glb_kb} KB, energy: 5, area_mm2_per_kb: {coefs[2]!r},
      bandwidth: {bw[0]}, area_mm2_per_word_per_cycle: {bw_coefs[0]!r}}}
  - {{name: RF, kind: rf, per_pe: true, holds: [W, I, O], size: {rf_size}, energy: 1, area_mm2_per_kb: {coefs[3]!r},
      bandwidth: {bw[1]}, area_mm2_per_word_per_cycle: {bw_coefs[1]!r}}}
"""
    arch = hwmodel.parse_arch_yaml(text, "rand.yaml")
    area, onchip = _ref_area_onchip(arch)
    assert float(hwmodel.area_mm2(arch)) == pytest.approx(area, rel=1e-5, abs=1e-6)
    assert float(hwmodel.onchip_bytes(arch)) == pytest.approx(onchip, rel=1e-6)
    assert float(hwmodel.onchip_bytes(arch)) == pytest.approx(glb_kb * 1024 + rows * cols * sum(rf) * 2, rel=1e-6)


# ----------------------------------------------------------------------------------
# jit / grad / vmap
# ----------------------------------------------------------------------------------


def test_grad_area_wrt_pe_rows_and_buffer_sizes():
    a = hwmodel.load_arch("eyeriss")
    g = jax.grad(hwmodel.area_mm2)(a)
    rf_kb = (224 + 12 + 24) * 2 / 1024
    cols = 14
    assert float(g.pe_rows) == pytest.approx(0.02268 * cols + 0.02151 * rf_kb * cols, rel=1e-5)
    assert float(g.pe_cols) == pytest.approx(0.02268 * 12 + 0.02151 * rf_kb * 12, rel=1e-5)
    assert float(g.levels[1].shared_bits) == pytest.approx(0.01895 / 8192, rel=1e-5)
    assert np.allclose(g.levels[3].capacity_bits, 0.02151 / 8192 * 168, rtol=1e-5)
    assert float(g.area.fixed_mm2) == 1.0
    assert np.allclose(g.area.sram_mm2_per_kb, [0, 108, 0, 168 * rf_kb], rtol=1e-6)
    for leaf in jax.tree_util.tree_leaves(g):  # finite although DRAM/levels hold inf
        assert np.all(np.isfinite(leaf))
    go = jax.grad(hwmodel.onchip_bytes)(a)
    assert float(go.levels[1].shared_bits) == pytest.approx(1 / 8)
    assert float(go.pe_rows) == pytest.approx(520 * 14)


def test_grad_finite_for_every_preset():
    for name in PRESETS:
        a = hwmodel.load_arch(name)
        for fn in (hwmodel.area_mm2, hwmodel.onchip_bytes):
            for leaf in jax.tree_util.tree_leaves(jax.grad(fn)(a)):
                assert np.all(np.isfinite(leaf)), name


def test_vmap_over_architectures():
    base = hwmodel.load_arch("eyeriss")
    archs = []
    for kb, dram_e in [(16, 100.0), (64, 200.0), (108, 400.0), (256, 800.0), (512, 1.0)]:
        a = hwmodel.replace_level(base, "GLB", shared_bits=kb * 8192)
        a = hwmodel.replace_level(a, "DRAM", read_energy_pj=[dram_e] * 3, write_energy_pj=[dram_e] * 3)
        archs.append(a.replace(name=f"glb{kb}"))
    batch = hwmodel.stack_archs(archs)
    assert batch.pe_rows.shape == (5,) and batch.levels[0].read_energy_pj.shape == (5, 3)
    hwmodel.validate_architecture(batch)  # batched validation
    areas = jax.jit(jax.vmap(hwmodel.area_mm2))(batch)
    onchip = jax.vmap(hwmodel.onchip_bytes)(batch)
    assert areas.shape == (5,)
    for k, a in enumerate(archs):
        assert float(areas[k]) == pytest.approx(float(hwmodel.area_mm2(a)), rel=1e-6)
        assert float(onchip[k]) == float(hwmodel.onchip_bytes(a))
    # the GLB size drives area: 512 KB - 16 KB at 0.01895 mm^2/KB
    assert float(areas[4] - areas[0]) == pytest.approx(496 * 0.01895, rel=1e-4)
    dram = jax.vmap(lambda a: a.levels[0].read_energy_pj[0])(batch)
    assert np.allclose(dram, [100, 200, 400, 800, 1])
    # gradients per architecture through vmap
    g = jax.vmap(jax.grad(hwmodel.area_mm2))(batch)
    assert np.allclose(g.levels[1].shared_bits, 0.01895 / 8192, rtol=1e-5)


def test_stack_archs_rejects_mismatch():
    with pytest.raises(ValueError, match="differs in structure"):
        hwmodel.stack_archs([hwmodel.load_arch("eyeriss"), hwmodel.load_arch("os_array")])
    with pytest.raises(ValueError, match="at least one"):
        hwmodel.stack_archs([])


def test_area_under_jit_matches_eager():
    for name in PRESETS:
        a = hwmodel.load_arch(name)
        assert float(jax.jit(hwmodel.area_mm2)(a)) == pytest.approx(float(hwmodel.area_mm2(a)), rel=1e-6)


# ----------------------------------------------------------------------------------
# validate_architecture on programmatic architectures
# ----------------------------------------------------------------------------------


def _problems(a):
    return [(hwmodel.arch.architecture.format_path(a.level_names, p.path), p.message, p.valid)
            for p in hwmodel.architecture_problems(a)]


def test_validate_catches_programmatic_errors():
    a = hwmodel.load_arch("eyeriss")
    as_leaf = hwmodel.arch.architecture.as_leaf
    cases = {
        "pe_array.rows": a.replace(pe_rows=as_leaf(0)),
        "clock": a.replace(clock_hz=as_leaf(-1)),
        "levels[3] (RF).size[I]": hwmodel.replace_level(a, "RF", capacity_bits=[3584.0, 8.0, 384.0]),
        "levels[1] (DRAM).name": hwmodel.replace_level(a, "GLB", name="DRAM"),
        "levels[2] (NoC).read_energy[W]": hwmodel.replace_level(a, "NoC", read_energy_pj=[-1.0, 1, 1]),
        "levels[0] (DRAM).bandwidth": hwmodel.replace_level(a, "DRAM", bandwidth_words=0.0),
        "levels": hwmodel.replace_level(a, "DRAM", holds=("I", "O")),
        "sparsity": a.replace(sparsity="sometimes"),
        "levels[1] (GLB).kind": hwmodel.replace_level(a, "GLB", kind="cache"),
    }
    for where, bad in cases.items():
        probs = _problems(bad)
        assert probs, where
        assert any(p[0] == where for p in probs), (where, probs)
        with pytest.raises(hwmodel.ArchitectureError) as e:
            hwmodel.validate_architecture(bad)
        assert where in str(e.value) and "valid:" in str(e.value)


def test_validate_level_order_rules():
    a = hwmodel.load_arch("eyeriss")
    lv = a.levels
    swapped = a.replace(levels=(lv[0], lv[1], lv[3], lv[2]))  # NoC below the per-PE RF
    assert any("below the per-PE level" in m for _, m, _ in _problems(swapped))
    dram_inner = a.replace(levels=(lv[1], lv[0], lv[2], lv[3]))
    assert any("outermost" in m for _, m, _ in _problems(dram_inner))


def test_validate_rejects_tracers():
    a = hwmodel.load_arch("eyeriss")
    with pytest.raises(TypeError, match="concrete"):
        jax.jit(lambda x: (hwmodel.validate_architecture(x), 0.0)[1])(a)


def test_replace_level_errors():
    a = hwmodel.load_arch("eyeriss")
    with pytest.raises(KeyError, match="levels"):
        hwmodel.replace_level(a, "L2", shared_bits=1.0)
    with pytest.raises(TypeError, match="fields"):
        hwmodel.replace_level(a, "GLB", size=1.0)


def test_describe_table():
    a = hwmodel.load_arch("eyeriss")
    text = a.describe()
    assert "12 x 14 = 168 PEs @ 200 MHz" in text
    assert re.search(r"GLB\s+sram\s+I,O\s+108 KB", text)
    assert "12.25 mm^2" in text and "193.312 KB" in text
    assert "200/200/200" in text  # DRAM relative to a MAC
    batch = hwmodel.stack_archs([a, a])
    assert hwmodel.describe(batch).splitlines()[1] == text.splitlines()[1]


def test_load_arch_bad_names(tmp_path):
    with pytest.raises(ValueError, match=r"unknown architecture 'eyeris'.*eyeriss"):
        hwmodel.load_arch("eyeris")
    with pytest.raises(ValueError, match="not found"):
        hwmodel.load_arch(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="unknown architecture preset"):
        hwmodel.preset_path("tpu")
    assert math.isinf(float(hwmodel.load_arch("eyeriss").level("NoC").bandwidth_words))


f32 = st.floats(0, 1e6, width=32, allow_subnormal=False)


@given(e=st.tuples(f32, f32, f32), w=st.tuples(f32, f32, f32), glb=st.floats(32, 1e7, width=32),
       rf=st.tuples(*[st.floats(16, 1e5, width=32)] * 3), bw=st.one_of(st.just(math.inf), st.floats(0.0625, 1e4, width=32)),
       clock=st.floats(1024, 4e9, width=32), coef=st.floats(0, 10, width=32, allow_subnormal=False),
       rows=st.integers(1, 512), bw_coef=st.floats(0, 1, width=32, allow_subnormal=False))
def test_round_trip_random_values(e, w, glb, rf, bw, clock, coef, rows, bw_coef):
    as_leaf = hwmodel.arch.architecture.as_leaf
    a = hwmodel.load_arch("eyeriss_45nm")
    a = hwmodel.replace_level(a, "NoC", read_energy_pj=list(e), write_energy_pj=list(w), bandwidth_words=bw)
    a = hwmodel.replace_level(a, "GLB", shared_bits=glb)
    a = hwmodel.replace_level(a, "RF", capacity_bits=list(rf))
    a = a.replace(clock_hz=as_leaf(clock), pe_rows=as_leaf(rows),
                  area=a.area.__class__(pe_mm2=as_leaf(coef), sram_mm2_per_kb=a.area.sram_mm2_per_kb,
                                        fixed_mm2=as_leaf(coef),
                                        bandwidth_mm2=as_leaf([0.0, bw_coef, 0.0, 0.0])))  # GLB's
    hwmodel.validate_architecture(a)
    text = hwmodel.arch_to_yaml(a)
    b = hwmodel.parse_arch_yaml(text, "random.yaml")
    assert leaves_equal(a, b), text
    assert hwmodel.arch_to_yaml(b) == text
