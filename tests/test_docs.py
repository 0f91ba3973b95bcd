"""docs/ matches the code: the tables that restate code facts, the links, no outside
citations."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import hwmodel

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _table(md: str, first_header: str) -> list[list[str]]:
    """Rows (cells stripped) of the markdown table whose header starts with ``first_header``."""
    lines = md.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith(f"| {first_header} |"))
    rows = []
    for ln in lines[start + 2:]:
        if not ln.startswith("|"):
            break
        rows.append([c.strip() for c in ln.strip().strip("|").split("|")])
    return rows


def test_dataflow_table_is_the_mappers():
    rows = _table((DOCS / "hardware.md").read_text(), "name")
    got = {r[0].split()[0].strip("`"): r for r in rows}
    assert set(got) == set(hwmodel.DATAFLOWS)
    for name, spec in hwmodel.DATAFLOW_SPECS.items():
        keep, cols, prows = got[name][1:4]
        assert (keep.split() if keep != "nothing" else []) == list(spec.pe_keep), name
        assert cols.split() == list(spec.spatial_x), name
        assert prows.split() == list(spec.spatial_y), name


def test_level_kind_table_is_the_codes():
    rows = _table((DOCS / "hardware.md").read_text(), "kind")
    got = {r[0].strip("`"): r for r in rows}
    assert set(got) == set(hwmodel.LEVEL_KINDS)
    yes = lambda cell: cell.startswith("yes")  # noqa: E731
    for name, k in hwmodel.LEVEL_KIND_PROPERTIES.items():
        _, holds, on_chip, per_pe, size, bandwidth, area, bw_area = got[name]
        assert (yes(holds), yes(on_chip), yes(per_pe)) == (k.holds_data, k.on_chip, k.per_pe_allowed), name
        assert size.startswith("required") == k.needs_size, name
        assert bandwidth.startswith("required") == k.needs_bandwidth, name
        assert area.startswith("required") == k.has_area, name
        assert bw_area.startswith("optional") == k.bandwidth_has_area, name


def test_relative_links_resolve():
    for md in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", md.read_text()):
            assert (md.parent / target).exists(), f"{md.name}: broken link {target}"


def test_nothing_cites_a_design_file_outside_the_repository():
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True).stdout.split()
    if not files:  # not a git checkout (e.g. an sdist): check what is here
        files = [str(p.relative_to(ROOT)) for p in ROOT.rglob("*") if p.is_file()]
    hits = []
    for f in files:
        p = ROOT / f
        if p.suffix in (".py", ".md", ".yaml", ".toml", ".txt") and p.exists():
            if "DESIGN" + ".md" in p.read_text(errors="replace"):
                hits.append(f)
    assert hits == []
