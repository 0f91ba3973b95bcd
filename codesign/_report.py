"""Run artefacts: atomic file writes and the results table.

Every file a run writes goes through :func:`atomic_write_text` or
:func:`atomic_write_bytes` (write a temporary file in the same directory, flush +
fsync, then ``os.replace``), so a killed run never leaves a half-written
``config.json``, ``metrics.jsonl`` or ``report.json``.

:func:`nondominated` is the one Pareto-front function (sweeps, design searches).

The results table is driven by a list of :class:`Column` objects; to add a column
(for example energy per inference from the cost model) append a ``Column`` to
:data:`RESULT_COLUMNS` or pass ``columns=`` to :func:`results_table`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hwmodel import atomic_write_bytes, atomic_write_text

__all__ = [
    "RESULT_COLUMNS",
    "Column",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "format_count",
    "nondominated",
    "read_jsonl",
    "results_table",
]


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically (see :func:`atomic_write_text`)."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")


def nondominated(items: Iterable[Any], key: Callable[[Any], tuple[float, float]]) -> list[Any]:
    """The Pareto front of ``items`` when both coordinates of ``key(item)`` are minimized
    (negate a coordinate to maximize it), sorted by the first coordinate.

    An item is on the front when no other item is at least as good in both coordinates
    and strictly better in one.  Items with equal coordinates count once: the first in
    input order stands for them.  O(n log n).

    Args:
      items: any iterable (consumed once).
      key: ``item -> (x, y)``, numbers (infinities allowed, NaN not).

    Returns:
      The non-dominated items, by increasing ``x`` (so decreasing ``y``).
    """
    ranked = sorted(((key(it), i, it) for i, it in enumerate(items)), key=lambda t: (t[0], t[1]))
    out, best = [], None
    for (_, y), _, it in ranked:
        if best is None or y < best:
            out.append(it)
            best = y
    return out


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file (one JSON object per line); a missing file gives ``[]``.

    Raises:
      ValueError: a line is not valid JSON (names the file and line number).
    """
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not a JSON line ({e.msg})") from None
    return rows


def format_count(n: float | int | None) -> str:
    """Human-readable count: 1234 -> '1.23K', 4.5e6 -> '4.50M'; None -> 'n/a'."""
    if n is None:
        return "n/a"
    n = float(n)
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f}{unit}"
    return f"{n:.0f}"


def _pct(x: Any) -> str:
    return "n/a" if x is None else f"{100.0 * float(x):.2f}%"


def _secs(x: Any) -> str:
    return "n/a" if x is None else f"{float(x):.1f} s"


def _rate(x: Any) -> str:
    return "n/a" if x is None or not math.isfinite(float(x)) else f"{float(x):,.0f}"


def _unit(x: Any, unit: str) -> str:
    return "n/a" if x is None else f"{float(x):.4g} {unit}"


@dataclasses.dataclass(frozen=True)
class Column:
    """One column of the results table.

    Attributes:
      key: key looked up in each row (a ``report.json``-style dict).
      header: column title.
      fmt: turns the value (``None`` when the key is missing) into the cell text.
      align: ``"left"`` or ``"right"``.
    """

    key: str
    header: str
    fmt: Callable[[Any], str] = lambda v: "n/a" if v is None else str(v)
    align: str = "right"


RESULT_COLUMNS: list[Column] = [
    Column("model", "model", align="left"),
    Column("dataset", "dataset", align="left"),
    Column("test_accuracy", "accuracy", _pct),
    Column("params", "params", format_count),
    Column("macs", "MACs/image", format_count),
    Column("batch_size", "batch"),
    Column("wall_time_s", "wall time", _secs),
    Column("images_per_s", "images/s", _rate),
    Column("hw_arch", "accelerator", align="left"),
    Column("energy_per_inference_uj", "energy/inference", lambda v: _unit(v, "uJ")),
    Column("latency_per_inference_ms", "latency/inference", lambda v: _unit(v, "ms")),
    Column("dram_bytes_per_inference", "DRAM/inference", lambda v: _unit(v and v / 1e3, "kB")),
]


def results_table(
    rows: Iterable[Mapping[str, Any]], columns: Sequence[Column] | None = None
) -> str:
    """Format result rows (e.g. ``report.json`` dicts) as a plain-text table.

    Args:
      rows: one mapping per run; missing keys print as ``n/a``.
      columns: the columns to show, in order (default :data:`RESULT_COLUMNS`).

    Returns:
      The table as a string (header, rule, one line per row), no trailing newline.
    """
    columns = list(RESULT_COLUMNS if columns is None else columns)
    cells = [[c.header for c in columns]]
    for row in rows:
        cells.append([c.fmt(row.get(c.key)) for c in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    lines = []
    for j, r in enumerate(cells):
        padded = (
            v.ljust(w) if c.align == "left" else v.rjust(w) for v, w, c in zip(r, widths, columns)
        )
        lines.append("  ".join(padded).rstrip())
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)
