"""The strict architecture-YAML loader: every error names file, line and valid choices."""

from __future__ import annotations

import math

import numpy as np
import pytest

import hwmodel

BASE = """\
# a small Eyeriss-like test architecture
name: tiny
energy_unit: MAC
pj_per_unit: 2.0
pe_array: {rows: 4, cols: 4}
clock: 200 MHz
word_bits: 16
mac_energy: 1
nonmac_energy: 1
area:
  pe_mm2: 0.02
  fixed_mm2: 1.0
levels:
  - name: DRAM
    kind: dram
    holds: [W, I, O]
    bandwidth: 4 words/cycle
    energy: 200
  - name: GLB
    kind: sram
    holds: [I, O]
    size: 16 KB
    bandwidth: 16
    energy: 6
    area_mm2_per_kb: 0.02
  - name: NoC
    kind: noc
    energy: 2
  - name: RF
    kind: rf
    per_pe: true
    holds: [W, I, O]
    size: {W: 32 x 16 b, I: 8 x 16 b, O: 8 x 16 b}
    energy: 1
    area_mm2_per_kb: 0.03
"""


def line_of(text: str, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line containing needle."""
    hits = [i + 1 for i, ln in enumerate(text.splitlines()) if needle in ln]
    assert len(hits) >= nth, (needle, hits)
    return hits[nth - 1]


def load_bad(tmp_path, text: str) -> tuple[str, str]:
    path = tmp_path / "arch.yaml"
    path.write_text(text)
    with pytest.raises(hwmodel.ArchitectureError) as e:
        hwmodel.load_arch(path)
    assert isinstance(e.value, ValueError)
    return str(path), str(e.value)


def check(msg: str, path: str, line: int, *fragments: str):
    assert msg.startswith(f"{path}:{line}: "), msg
    assert "valid:" in msg, msg
    for f in fragments:
        assert f in msg, (f, msg)


def test_base_loads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text(BASE)
    a = hwmodel.load_arch(path)
    assert a.level_names == ("DRAM", "GLB", "NoC", "RF")
    assert float(a.level("GLB").read_energy_pj[1]) == 12.0  # 6 units x 2 pJ
    assert float(a.level("GLB").read_energy_pj[0]) == 0.0  # W bypasses the GLB
    assert math.isinf(float(a.level("NoC").bandwidth_words))
    assert np.array_equal(a.level("RF").capacity_bits, [512, 128, 128])


# --- one test per strict-loader error ----------------------------------------------


def test_unknown_key_top_level(tmp_path):
    text = BASE.replace("clock: 200 MHz", "clock: 200 MHz\nclok_hz: 5")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "clok_hz"), "unknown key 'clok_hz'", "'clock'", "'levels'")


def test_unknown_key_in_level_lists_valid_keys(tmp_path):
    text = BASE.replace("    size: 16 KB", "    sise: 16 KB")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "sise:"), "levels[1]", "unknown key 'sise'", "'size'", "'bandwidth'")


def test_duplicate_key(tmp_path):
    text = BASE.replace("    energy: 6\n", "    energy: 6\n    energy: 7\n")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "energy: 7"), "duplicate key 'energy'",
          f"first given on line {line_of(text, 'energy: 6')}", "each key at most once")


def test_wrong_type(tmp_path):
    text = BASE.replace("rows: 4", "rows: four")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "rows: four"), "pe_array.rows must be an integer", "'four'")
    text = BASE.replace("    energy: 6", "    energy: [6]")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "energy: [6]"), "must be a number, got a list")
    text = BASE.replace("    per_pe: true", "    per_pe: 1")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "per_pe: 1"), "per_pe must be true or false")


def test_zero_size(tmp_path):
    text = BASE.replace("size: 16 KB", "size: 0 KB")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "size: 0 KB"), "levels[1] (GLB).size", "size is 0 bits", "a positive size")


def test_negative_size(tmp_path):
    text = BASE.replace("W: 32 x 16 b", "W: -32 x 16 b")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "W: -32 x 16 b"), "levels[3] (RF).size[W]", "-512", "a positive size")


def test_level_cannot_hold_one_word(tmp_path):
    text = BASE.replace("I: 8 x 16 b", "I: 1 B")  # 8 bits < one 16-bit word
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "I: 1 B"), "levels[3] (RF).size[I]", "cannot hold one 16-bit I word",
          "a size >= 16 b for I, or remove I from holds")


def test_shared_level_cannot_hold_one_word_of_each(tmp_path):
    text = BASE.replace("size: 16 KB", "size: 24 b")  # I and O words need 32 bits
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "size: 24 b"), "cannot hold one word of each operand", ">= 32 b")


def test_level_name_used_twice(tmp_path):
    text = BASE.replace("  - name: NoC", "  - name: GLB")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "- name: GLB", nth=2), "level name 'GLB' is used twice",
          "a name not used by another level", "'DRAM'")


def test_operand_no_level_above_pes_holds(tmp_path):
    text = BASE.replace("holds: [W, I, O]\n    bandwidth: 4", "holds: [I, O]\n    bandwidth: 4")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "levels:"), "no level above the PEs holds operand W",
          "add 'W' to `holds` of one of the shared levels ['DRAM', 'GLB']")


def test_bad_size_unit(tmp_path):
    text = BASE.replace("size: 16 KB", "size: 16 kB")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "size: 16 kB"), "bad size unit 'kB'", "'KB'", "'KiB'", "'N x B b'")


def test_bare_number_size_has_no_unit(tmp_path):
    text = BASE.replace("size: 16 KB", "size: 16384")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "size: 16384"), "has no unit", "'N KB'")


def test_bad_clock_unit(tmp_path):
    text = BASE.replace("clock: 200 MHz", "clock: 200 mhz")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "clock:"), "bad frequency unit 'mhz'", "MHz")


def test_bad_bandwidth_unit(tmp_path):
    text = BASE.replace("bandwidth: 4 words/cycle", "bandwidth: 4 words/s")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "words/s"), "bad bandwidth unit 'words/s'", "'N GB/s'", "'unlimited'")


def test_bad_choice(tmp_path):
    text = BASE.replace("kind: sram", "kind: cache")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "kind: cache"), "kind is 'cache'", "['dram', 'sram', 'noc', 'rf']")
    text = BASE.replace("holds: [I, O]", "holds: [I, X]")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "holds: [I, X]"), "holds is 'X'", "['W', 'I', 'O']")


# --- more structural errors -----------------------------------------------------------


def test_missing_required_key(tmp_path):
    text = BASE.replace("nonmac_energy: 1\n", "")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "name: tiny"), "missing required key ['nonmac_energy']")
    text = BASE.replace("    bandwidth: 4 words/cycle\n", "")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "- name: DRAM"), "missing required key 'bandwidth'")


def test_energy_unit_rules(tmp_path):
    text = BASE.replace("pj_per_unit: 2.0\n", "")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "energy_unit"), "pj_per_unit is missing")
    text = BASE.replace("energy_unit: MAC", "energy_unit: pJ")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "pj_per_unit"), "only meaningful with energy_unit: MAC")
    text = BASE.replace("energy_unit: MAC", "energy_unit: nJ")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "energy_unit"), "energy_unit is 'nJ'", "['pJ', 'MAC']")


def test_energy_and_read_energy_conflict(tmp_path):
    text = BASE.replace("    energy: 6\n", "    energy: 6\n    read_energy: 5\n")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "read_energy: 5"), "both 'energy' and 'read_energy'")
    text = BASE.replace("    energy: 6\n", "    read_energy: 5\n")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "read_energy: 5"), "'read_energy' given without 'write_energy'")


def test_per_operand_energy_keys(tmp_path):
    text = BASE.replace("    energy: 6\n", "    energy: {W: 1, I: 6, O: 6}\n")  # GLB holds only I, O
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "energy: {W: 1"), "unknown key 'W'", "['I', 'O']")
    text = BASE.replace("    energy: 1\n", "    read_energy: {W: 1, I: 0.5, O: 0.5}\n    write_energy: 1\n")
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    a = hwmodel.load_arch(path)
    assert np.allclose(a.level("RF").read_energy_pj, [2, 1, 1]) and np.allclose(a.level("RF").write_energy_pj, 2)


def test_noc_rules(tmp_path):
    text = BASE.replace("    kind: noc\n", "    kind: noc\n    holds: [W]\n")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "holds: [W]"), "a noc level stores nothing")
    text = BASE.replace("    kind: noc\n", "    kind: noc\n    size: 1 KB\n")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "size: 1 KB"), "a noc level has no size")


def test_level_order_errors_point_at_level(tmp_path):
    text = BASE.replace("    kind: noc\n", "    kind: noc\n    per_pe: true\n")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "per_pe: true"), "a 'noc' level cannot be per PE")


def test_partitioned_size_needs_all_operands_or_total(tmp_path):
    text = BASE.replace("{W: 32 x 16 b, I: 8 x 16 b, O: 8 x 16 b}", "{W: 32 x 16 b, I: 8 x 16 b}")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, "{W: 32 x 16 b, I: 8"), "no partition for ['O'] and no total")
    text = BASE.replace("{W: 32 x 16 b, I: 8 x 16 b, O: 8 x 16 b}", "{W: 32 x 16 b, total: 64 B}")
    path = tmp_path / "ok.yaml"
    path.write_text(text)
    rf = hwmodel.load_arch(path).level("RF")
    assert float(rf.shared_bits) == 512 and math.isinf(float(rf.capacity_bits[1]))
    assert float(hwmodel.level_storage_bits(rf)) == 512


def test_yaml_syntax_error_has_line(tmp_path):
    text = BASE.replace("    energy: 6", "    energy: [6")
    path, msg = load_bad(tmp_path, text)
    assert msg.startswith(f"{path}:") and "not valid YAML" in msg and "valid:" in msg
    line = int(msg.split(":")[1])
    assert abs(line - line_of(text, "energy: [6")) <= 2


def test_units_are_exact(tmp_path):
    cases = {"16 KB": 16 * 8192, "16 KiB": 16 * 8192, "2 MB": 2 * 8 * 1024**2, "100 B": 800,
             "32 bits": 32, "3 x 16 b": 48, "1.5 KB": 1.5 * 8192, "4 bytes": 32}
    for text_size, bits in cases.items():
        path = tmp_path / "u.yaml"
        path.write_text(BASE.replace("size: 16 KB", f"size: {text_size}"))
        assert float(hwmodel.load_arch(path).level("GLB").shared_bits) == bits, text_size
    bws = {"4": 4, "64 bits/cycle": 4, "8 B/cycle": 4, "3.2 GB/s": 3.2e9 * 8 / 200e6 / 16,
           "unlimited": math.inf, "2.5 words/cycle": 2.5}
    for text_bw, words in bws.items():
        path = tmp_path / "b.yaml"
        path.write_text(BASE.replace("bandwidth: 4 words/cycle", f"bandwidth: {text_bw}"))
        assert float(hwmodel.load_arch(path).level("DRAM").bandwidth_words) == pytest.approx(words), text_bw
    path = tmp_path / "c.yaml"
    path.write_text(BASE.replace("clock: 200 MHz", "clock: 1.2 GHz").replace("pe_mm2: 0.02", "pe_mm2: 2e-2"))
    a = hwmodel.load_arch(path)
    assert float(a.clock_hz) == pytest.approx(1.2e9) and float(a.area.pe_mm2) == pytest.approx(0.02)


def test_errors_report_every_validation_problem(tmp_path):
    text = BASE.replace("size: 16 KB", "size: 0 KB").replace("rows: 4", "rows: 0")
    path, msg = load_bad(tmp_path, text)
    lines = msg.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"{path}:{line_of(text, 'rows: 0')}: pe_array.rows")
    assert lines[1].startswith(f"{path}:{line_of(text, 'size: 0 KB')}: levels[1] (GLB).size")


def test_bandwidth_area_rules(tmp_path):
    """``area_mm2_per_word_per_cycle`` prices a finite on-chip bandwidth: negative, on
    DRAM, or on an unlimited bandwidth is an error at its line."""
    key = "area_mm2_per_word_per_cycle"
    text = BASE.replace("    kind: noc\n", f"    kind: noc\n    {key}: -1\n")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, f"{key}: -1"), "a finite area >= 0")
    text = BASE.replace("    kind: dram\n", f"    kind: dram\n    {key}: 0.1\n")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, f"{key}: 0.1"), "a dram level's bandwidth is not chip area")
    text = BASE.replace("    kind: noc\n", f"    kind: noc\n    {key}: 0.1\n")
    path, msg = load_bad(tmp_path, text)
    check(msg, path, line_of(text, f"{key}: 0.1"), "bandwidth is unlimited", "a finite 'bandwidth'")


def test_bandwidth_area_round_trips_and_counts(tmp_path):
    """A priced bandwidth adds ``coefficient x words/cycle x instances`` to the level's
    area, and survives save / load."""
    key = "area_mm2_per_word_per_cycle"
    text = BASE.replace("    kind: noc\n", f"    kind: noc\n    bandwidth: 6 words/cycle\n    {key}: 0.25\n")
    path = tmp_path / "bw.yaml"
    path.write_text(text)
    a = hwmodel.load_arch(path)
    base = hwmodel.parse_arch_yaml(BASE, "base.yaml")
    br, br0 = hwmodel.area_breakdown_mm2(a), hwmodel.area_breakdown_mm2(base)
    noc = [l.name for l in a.levels if l.kind == "noc"][0]
    assert float(br[noc]) == pytest.approx(6 * 0.25) and float(br0[noc]) == 0.0
    assert float(hwmodel.area_mm2(a)) == pytest.approx(float(hwmodel.area_mm2(base)) + 1.5, rel=1e-6)
    out = tmp_path / "out.yaml"
    hwmodel.save_arch(a, out)
    assert f"{key}: 0.25" in out.read_text()
    b = hwmodel.load_arch(out)
    assert float(hwmodel.area_mm2(b)) == pytest.approx(float(hwmodel.area_mm2(a)), rel=1e-7)
