"""Accelergy energy reference tables (ERT.yaml / ERT_summary.yaml) as energy source."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import hwmodel

# A small ERT in the format Accelergy 0.3 writes (ERT.yaml): full hierarchical names
# with instance ranges, several argument variants per action, 64-bit GLB and DRAM
# accesses (4 x 16-bit words per action).  The numbers are made up but distinct, so
# each mapping is checked.
ERT_V03 = """\
ERT:
  version: 0.3
  tables:
  - name: system.DRAM
    actions:
    - name: read
      arguments: null
      energy: 520.0
    - name: write
      arguments: null
      energy: 540.0
    - name: idle
      arguments: null
      energy: 0
  - name: system.eyeriss.shared_glb
    actions:
    - name: read
      arguments:
        address_delta: 0
        data_delta: 0
      energy: 10.5
    - name: read
      arguments:
        address_delta: 1
        data_delta: 1
      energy: 76.0
    - name: write
      arguments:
        address_delta: 1
        data_delta: 1
      energy: 80.0
    - name: idle
      arguments: null
      energy: 0.02
  - name: system.eyeriss.ifmap_NoC
    actions:
    - name: transfer_random
      arguments: null
      energy: 0.7
    - name: transfer_repeated
      arguments: null
      energy: 0.3
  - name: system.eyeriss.weights_NoC
    actions:
    - name: transfer_random
      arguments: null
      energy: 0.9
  - name: system.eyeriss.psum_read_NoC
    actions:
    - name: transfer_random
      arguments: null
      energy: 0.5
  - name: system.eyeriss.psum_write_NoC
    actions:
    - name: transfer_random
      arguments: null
      energy: 0.6
  - name: system.eyeriss.PE[0..167].ifmap_spad
    actions:
    - name: read
      arguments: {address_delta: 1, data_delta: 1}
      energy: 0.23
    - name: read
      arguments: {address_delta: 0, data_delta: 0}
      energy: 0.05
    - name: write
      arguments: {address_delta: 1, data_delta: 1}
      energy: 0.26
  - name: system.eyeriss.PE[0..167].weights_spad
    actions:
    - name: read
      arguments: {address_delta: 1, data_delta: 1}
      energy: 1.5
    - name: write
      arguments: {address_delta: 1, data_delta: 1}
      energy: 1.7
  - name: system.eyeriss.PE[0..167].psum_spad
    actions:
    - name: read
      arguments: {address_delta: 1, data_delta: 1}
      energy: 0.27
    - name: update
      arguments: {address_delta: 1, data_delta: 1}
      energy: 0.29
  - name: system.eyeriss.PE[0..167].mac
    actions:
    - name: mac_random
      arguments: null
      energy: 2.3
    - name: mac_gated
      arguments: null
      energy: 0.1
"""

ERT_SUMMARY = """\
ERT_summary:
  version: 0.3
  table_summary:
  - name: eyeriss_like.PE[0..167].mac
    actions:
    - name: mac_random
      energy: 2.2
    - name: idle
      energy: 0.066
  - name: eyeriss_like.PE[0..167].ifmap_spad
    actions:
    - name: write
      average_energy: 0.146
      max_energy: 0.237
      min_energy: 0.055
    - name: read
      average_energy: 0.146
      max_energy: 0.237
      min_energy: 0.055
"""


@pytest.fixture
def ert_file(tmp_path):
    p = tmp_path / "ERT.yaml"
    p.write_text(ERT_V03)
    return p


def test_parse_ert_takes_max_over_argument_variants(ert_file):
    ert = hwmodel.load_ert(ert_file)
    assert ert.tables["system.eyeriss.shared_glb"]["read"] == 76.0
    assert ert.tables["system.eyeriss.PE[0..167].ifmap_spad"]["read"] == 0.23
    assert ert.find("ifmap_spad") == ["system.eyeriss.PE[0..167].ifmap_spad"]
    assert ert.find("eyeriss.shared_glb") == ["system.eyeriss.shared_glb"]
    assert "psum_spad" in ert.short_names()


def test_preset_energies_from_ert(ert_file):
    base = hwmodel.load_arch("eyeriss_45nm")
    a = hwmodel.load_arch("eyeriss_45nm", ert=ert_file)
    assert float(a.mac_energy_pj) == pytest.approx(2.3)  # mac_random
    dram, glb, noc, rf = a.levels
    assert np.allclose(dram.read_energy_pj, 520 / 4) and np.allclose(dram.write_energy_pj, 540 / 4)
    assert np.allclose(glb.read_energy_pj, [0, 76 / 4, 76 / 4]) and np.allclose(glb.write_energy_pj, [0, 20, 20])
    assert np.allclose(noc.read_energy_pj, [0.9, 0.7, 0.5]) and np.allclose(noc.write_energy_pj, [0.9, 0.7, 0.6])
    assert np.allclose(rf.read_energy_pj, [1.5, 0.23, 0.27])
    assert np.allclose(rf.write_energy_pj, [1.7, 0.26, 0.29])  # psum: 'update' (no 'write')
    # everything else is the preset's
    assert float(a.nonmac_energy_pj) == float(base.nonmac_energy_pj)
    assert np.array_equal(rf.capacity_bits, base.level("RF").capacity_bits)
    assert float(hwmodel.area_mm2(a)) == float(hwmodel.area_mm2(base))
    # the 65 nm preset names the same components
    b = hwmodel.load_arch("eyeriss", ert=ert_file)
    assert float(b.level("GLB").read_energy_pj[1]) == pytest.approx(19.0)
    assert float(b.nonmac_energy_pj) == 2.0  # 1 unit x 2 pJ, not from the ERT


def test_ert_as_dict_and_summary(tmp_path):
    import yaml

    a = hwmodel.load_arch("eyeriss_45nm", ert=yaml.safe_load(ERT_V03))
    assert float(a.mac_energy_pj) == pytest.approx(2.3)
    text = f"""
name: summary_user
energy_unit: pJ
pe_array: {{rows: 2, cols: 2}}
clock: 100 MHz
word_bits: 16
mac_energy: 9
nonmac_energy: 1
ert_file: ERT_summary.yaml
mac_ert: {{component: mac, action: mac_random}}
area: {{pe_mm2: 0.01, fixed_mm2: 0}}
levels:
  - {{name: DRAM, kind: dram, holds: [W, I, O], bandwidth: 2, energy: 100}}
  - name: RF
    kind: rf
    per_pe: true
    holds: [I]
    size: 12 x 16 b
    area_mm2_per_kb: 0.01
    ert: ifmap_spad
"""
    (tmp_path / "ERT_summary.yaml").write_text(ERT_SUMMARY)
    (tmp_path / "arch.yaml").write_text(text + "  - {name: GLB, kind: sram, holds: [W, O], size: 1 KB, energy: 5, area_mm2_per_kb: 0.01}\n")
    with pytest.raises(hwmodel.ArchitectureError, match="shared levels .* below the per-PE level|below the per-PE"):
        hwmodel.load_arch(tmp_path / "arch.yaml")
    (tmp_path / "arch.yaml").write_text(text)
    a = hwmodel.load_arch(tmp_path / "arch.yaml")
    assert float(a.mac_energy_pj) == pytest.approx(2.2)  # from the summary, not 9
    assert np.allclose(a.level("RF").read_energy_pj, [0, 0.237, 0])  # max_energy


def _arch_file(tmp_path, ert_value: str) -> str:
    text = f"""\
name: t
energy_unit: pJ
pe_array: {{rows: 2, cols: 2}}
clock: 100 MHz
word_bits: 16
mac_energy: 1
nonmac_energy: 1
area: {{pe_mm2: 0.01, fixed_mm2: 0}}
levels:
  - name: DRAM
    kind: dram
    holds: [W, I, O]
    bandwidth: 2
    energy: 100
    ert: {ert_value}
"""
    p = tmp_path / "t.yaml"
    p.write_text(text)
    return str(p)


def test_ert_errors(tmp_path, ert_file):
    p = _arch_file(tmp_path, "HBM")
    with pytest.raises(hwmodel.ArchitectureError) as e:
        hwmodel.load_arch(p, ert=ert_file)
    msg = str(e.value)
    assert msg.startswith(f"{p}:15: ") and "has no component 'HBM'" in msg and "'shared_glb'" in msg

    p = _arch_file(tmp_path, "{read: DRAM, read_action: burst}")
    with pytest.raises(hwmodel.ArchitectureError, match=r"has no action burst; valid: one of \['idle', 'read', 'write'\]"):
        hwmodel.load_arch(p, ert=ert_file)

    p = _arch_file(tmp_path, "{read: DRAM, words_per_action: 0}")
    with pytest.raises(hwmodel.ArchitectureError, match="words_per_action is 0"):
        hwmodel.load_arch(p, ert=ert_file)

    p = _arch_file(tmp_path, "{read: DRAM, word_per_action: 4}")
    with pytest.raises(hwmodel.ArchitectureError, match="unknown key 'word_per_action'.*'words_per_action'"):
        hwmodel.load_arch(p, ert=ert_file)

    amb = tmp_path / "amb.yaml"
    amb.write_text(ERT_V03 + "  - name: other.DRAM\n    actions:\n    - {name: read, energy: 1}\n")
    p = _arch_file(tmp_path, "DRAM")
    with pytest.raises(hwmodel.ArchitectureError, match="ambiguous"):
        hwmodel.load_arch(p, ert=amb)

    # An ERT for a file that names no components is an error, not silently unused.
    q = tmp_path / "plain.yaml"
    q.write_text(Path(p).read_text().replace("    ert: DRAM\n", ""))
    with pytest.raises(hwmodel.ArchitectureError, match="no level has an 'ert' key"):
        hwmodel.load_arch(q, ert=ert_file)

    bad = tmp_path / "bad_ert.yaml"
    bad.write_text("tables: []\n")
    with pytest.raises(hwmodel.ArchitectureError, match="no top-level 'ERT'"):
        hwmodel.load_ert(bad)
    bad.write_text("ERT:\n  tables:\n  - name: x\n    actions:\n    - {name: read, energy: lots}\n")
    with pytest.raises(hwmodel.ArchitectureError, match=r"bad_ert.yaml:5: x.read.energy must be a number"):
        hwmodel.load_ert(bad)
    with pytest.raises(FileNotFoundError):
        hwmodel.load_arch("eyeriss", ert=tmp_path / "missing.yaml")


def test_ert_energy_without_yaml_energy(tmp_path, ert_file):
    p = _arch_file(tmp_path, "{read: DRAM, words_per_action: 4}")
    Path(p).write_text(Path(p).read_text().replace("    energy: 100\n", ""))
    a = hwmodel.load_arch(p, ert=ert_file)
    assert np.allclose(a.level("DRAM").read_energy_pj, 130)
    with pytest.raises(hwmodel.ArchitectureError, match="no energy given"):
        hwmodel.load_arch(p)  # no ERT: the level has no energy at all
