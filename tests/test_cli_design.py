"""``codesign design``: files written, the YAML loads and costs the same, one-line errors."""

from __future__ import annotations

import csv
import json

import pytest

import hwmodel
from codesign import cli


def _run(capsys, *args):
    rc = cli.main(["design", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def test_design_writes_csv_plot_yaml(capsys, tmp_path):
    wd = tmp_path / "run"
    rc, out, err = _run(capsys, "lenet5", "--area-mm2", "12.25", "--dataflow", "rs",
                        "--restarts", "1", "--rounds", "1", "--steps", "3", "--no-presets",
                        "--quiet", "--workdir", str(wd))
    assert rc == 0, err
    rows = list(csv.DictReader((wd / "designs.csv").read_text().splitlines()))
    assert rows and all(r["dataflow"] == "rs" for r in rows)
    assert (wd / "designs.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    arch = hwmodel.load_arch(str(wd / "design.yaml"))
    best = min((r for r in rows if r["feasible"] == "1"), key=lambda r: float(r["objective"]))
    assert int(best["pe_rows"]) == int(arch.pe_rows) and int(best["pe_cols"]) == int(arch.pe_cols)
    assert float(hwmodel.area_mm2(arch)) <= 12.25 * (1 + 1e-5)  # codesign.design.AREA_RTOL
    assert "found / baseline" in out and "report card" in out
    # the file loads with --arch and costs the same numbers as the CSV row
    assert cli.main(["cost", "lenet5", "--arch", str(wd / "design.yaml"), "--objective", "edp",
                     "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["energy_pj"] == pytest.approx(float(best["lenet5_energy_pj"]), rel=1e-6)
    assert d["latency_s"] == pytest.approx(float(best["lenet5_latency_s"]), rel=1e-6)


def test_design_at_given_word_widths_round_trips(capsys, tmp_path):
    """--word-bits W=8,I=8: the design has 8-bit W / I words, the CSV names the width
    knobs, and the YAML costs what the CSV says."""
    wd = tmp_path / "w8"
    rc, out, err = _run(capsys, "lenet5", "--area-mm2", "12.25", "--dataflow", "rs",
                        "--word-bits", "W=8,I=8", "--restarts", "1", "--rounds", "1", "--steps",
                        "3", "--polish", "4", "--no-presets", "--quiet", "--workdir", str(wd))
    assert rc == 0, err
    rows = list(csv.DictReader((wd / "designs.csv").read_text().splitlines()))
    assert {r["bits.W"] for r in rows} == {"8"} and {r["bits.I"] for r in rows} == {"8"}
    arch = hwmodel.load_arch(str(wd / "design.yaml"))
    assert [float(b) for b in arch.word_bits] == [8, 8, 16]
    best = min((r for r in rows if r["feasible"] == "1"), key=lambda r: float(r["objective"]))
    assert cli.main(["cost", "lenet5", "--arch", str(wd / "design.yaml"), "--objective", "edp",
                     "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["energy_pj"] == pytest.approx(float(best["lenet5_energy_pj"]), rel=1e-6)
    assert "words W 8 / I 8 b" in out


@pytest.mark.parametrize("args, msg", [
    (["lenet5", "--area-mm2", "1"], "smaller than the smallest legal eyeriss design"),
    (["lenet5", "--area-mm2", "10", "--objective", "power"], "invalid choice: 'power'"),
    (["nosuchnet", "--area-mm2", "10"], "unknown model 'nosuchnet'; valid:"),
    (["lenet5", "--area-mm2", "10", "--weights", "1,2"], "--weights '1,2': expected 1"),
    (["lenet5"], "--area-mm2"),
    (["lenet5", "--area-mm2", "10", "--word-bits", "X=8"], "--word-bits 'X=8': expected"),
    (["lenet5", "--area-mm2", "10", "--word-bits", "W=8:4"], "expected integers 1 <= lo <= hi"),
    (["lenet5", "--area-mm2", "10", "--word-bits", "W=32"], "<= 16 (the base architecture's W"),
])
def test_bad_input_is_one_line(capsys, tmp_path, args, msg):
    rc, out, err = _run(capsys, *args, "--workdir", str(tmp_path / "x"))
    assert rc == 2
    assert msg in err and err.count("\n") == 1 and err.startswith("codesign design: ")
