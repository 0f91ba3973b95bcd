"""The memory-level kind table: every kind's properties are what the loader, the
checks and the area model do with a level of that kind."""

from __future__ import annotations

import pytest

import hwmodel
from tests.test_arch_yaml import BASE

GLB = BASE[BASE.index("  - name: GLB"):BASE.index("  - name: NoC")]  # the sram level


def _with_glb(text: str) -> str:
    return BASE.replace(GLB, text)


def test_table_covers_the_kinds_and_rejects_unknown_ones():
    assert set(hwmodel.LEVEL_KIND_PROPERTIES) == set(hwmodel.LEVEL_KINDS) == {"dram", "sram", "noc", "rf"}
    assert hwmodel.level_kind("rf").per_pe_allowed
    with pytest.raises(ValueError, match="unknown memory-level kind 'hbm'; valid: dram, sram, noc, rf"):
        hwmodel.level_kind("hbm")


@pytest.mark.parametrize("kind", ["sram", "rf"])
def test_a_size_and_an_area_are_required_exactly_where_the_table_says(kind):
    props = hwmodel.level_kind(kind)
    no_size = _with_glb(GLB.replace("kind: sram", f"kind: {kind}").replace("    size: 16 KB\n", ""))
    if props.needs_size:
        with pytest.raises(hwmodel.ArchitectureError, match="missing required key 'size'"):
            hwmodel.parse_arch_yaml(no_size)
    no_area = _with_glb(GLB.replace("kind: sram", f"kind: {kind}").replace("    area_mm2_per_kb: 0.02\n", ""))
    if props.has_area:
        with pytest.raises(hwmodel.ArchitectureError, match="missing required key 'area_mm2_per_kb'"):
            hwmodel.parse_arch_yaml(no_area)


def test_dram_needs_bandwidth_is_off_chip_and_has_no_area():
    props = hwmodel.level_kind("dram")
    assert props.needs_bandwidth and not props.on_chip and not props.has_area and not props.needs_size
    with pytest.raises(hwmodel.ArchitectureError, match="missing required key 'bandwidth'"):
        hwmodel.parse_arch_yaml(BASE.replace("    bandwidth: 4 words/cycle\n", "", 1))
    arch = hwmodel.parse_arch_yaml(BASE)
    assert float(hwmodel.level_storage_bits(arch.levels[0])) == 0.0  # off chip: not on-chip memory
    assert float(hwmodel.level_storage_bits(arch.levels[1])) == 16 * 1024 * 8


def test_a_level_that_holds_no_data_has_no_size():
    assert not hwmodel.level_kind("noc").holds_data
    with pytest.raises(hwmodel.ArchitectureError, match="a noc level has no size"):
        hwmodel.parse_arch_yaml(BASE.replace("    kind: noc\n", "    kind: noc\n    size: 1 KB\n"))
