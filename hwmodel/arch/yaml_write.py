"""Writing an :class:`~hwmodel.Architecture` as YAML that reads back to equal leaves.

The format is the one :mod:`hwmodel.arch.yaml_read` documents and reads.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import yaml

from hwmodel._util import atomic_write_text
from hwmodel.arch.kinds import OPERANDS, level_kind

if TYPE_CHECKING:  # annotations only: architecture.py imports this module
    from hwmodel.arch.architecture import Architecture

__all__ = ["arch_to_yaml", "save_arch"]

def _f(x) -> str:
    """Shortest text that reads back to the same float32."""
    v = np.float32(x)
    if np.isinf(v):
        return "unlimited"
    s = repr(float(v)) if float(v).is_integer() and abs(v) < 1e15 else str(v)
    if s.endswith(".0"):
        s = s[:-2]
    if np.float32(float(s)) != v:  # never expected; keep the exact double text
        s = repr(float(v))
    return s


def _bits_text(b) -> str:
    b32 = np.float32(b)
    b = float(b32)
    if b.is_integer():
        for unit, mult in (("GB", 8 * 1024**3), ("MB", 8 * 1024**2), ("KB", 8192), ("B", 8)):
            if b >= mult and b % mult == 0:
                return f"{int(b // mult)} {unit}"
        return f"{int(b)} b"
    return f"{_f(b32)} b"


def _block(key: str, text: str) -> str:
    """``key: |`` literal block that reads back to exactly ``text`` (else quoted)."""
    body = text.rstrip("\n")
    chomp = "-" if not text.endswith("\n") else ("" if not text.endswith("\n\n") else "+")
    lines = body.split("\n")
    block = f"{key}: |{chomp}\n" + "\n".join(("  " + ln) if ln else "" for ln in lines)
    if chomp == "+":
        block += "\n" * (len(text) - len(body) - 1)
    try:
        if yaml.safe_load(block + "\n") == {key: text} and not body.startswith((" ", "\t")):
            return block
    except yaml.YAMLError:
        pass
    return f"{key}: {_q(text)}"


def _q(s: str) -> str:
    return yaml.safe_dump(s, default_style='"').strip()


def arch_to_yaml(arch: Architecture) -> str:
    """Write a concrete :class:`Architecture` as YAML that reads back to equal leaves.

    Energies are written in pJ (``energy_unit: pJ``), sizes in the largest exact unit,
    bandwidths in words per cycle.  ERT mappings of the source file are not kept (the
    energies they produced are).

    Args:
      arch: an unbatched architecture with concrete leaves.

    Returns:
      YAML text.
    """
    a = arch
    n = lambda x: np.asarray(x, dtype=np.float32)  # noqa: E731
    if np.ndim(a.pe_rows) != 0:
        raise ValueError("arch_to_yaml needs an unbatched architecture (leaves of shape [] / [3])")
    wb = n(a.word_bits)
    out = ["# Architecture written by hwmodel.arch_to_yaml (energies in pJ, sizes exact).",
           f"name: {_q(a.name)}"]
    if a.description:
        out.append(_block("description", a.description))
    out += ["energy_unit: pJ",
            f"pe_array: {{rows: {_f(a.pe_rows)}, cols: {_f(a.pe_cols)}}}"]
    hz = float(n(a.clock_hz))
    out.append(f"clock: {int(hz // 1e6)} MHz" if hz % 1e6 == 0 and np.float32(hz // 1e6 * 1e6) == n(a.clock_hz)
               else f"clock: {_f(hz)} Hz")
    if wb[0] == wb[1] == wb[2]:
        out.append(f"word_bits: {_f(wb[0])}")
    else:
        out.append("word_bits: {" + ", ".join(f"{x}: {_f(wb[j])}" for j, x in enumerate(OPERANDS)) + "}")
    out += [f"mac_energy: {_f(a.mac_energy_pj)}", f"nonmac_energy: {_f(a.nonmac_energy_pj)}"]
    if a.sparsity != "none":
        out.append(f"sparsity: {a.sparsity}")
    if a.compression != "none":
        out.append(f"compression: {a.compression}")
    if a.rle_run_bits != 4:
        out.append(f"rle_run_bits: {a.rle_run_bits}")
    out += ["area:", f"  pe_mm2: {_f(a.area.pe_mm2)}", f"  fixed_mm2: {_f(a.area.fixed_mm2)}", "levels:"]
    coef = n(a.area.sram_mm2_per_kb)
    bw_coef = (np.zeros_like(coef) if a.area.bandwidth_mm2 is None
               else n(a.area.bandwidth_mm2))
    for i, lvl in enumerate(a.levels):
        out.append(f"  - name: {_q(lvl.name)}")
        out.append(f"    kind: {lvl.kind}")
        kind = level_kind(lvl.kind)
        if kind.holds_data:
            out.append(f"    holds: [{', '.join(lvl.holds)}]")
        if lvl.per_pe:
            out.append("    per_pe: true")
        cap, sh = n(lvl.capacity_bits), n(lvl.shared_bits)
        if kind.holds_data:
            parts = {x: cap[OPERANDS.index(x)] for x in lvl.holds if np.isfinite(cap[OPERANDS.index(x)])}
            if parts:
                items = [f"{x}: {_q(_bits_text(v))}" for x, v in parts.items()]
                if np.isfinite(sh):
                    items.append(f"total: {_q(_bits_text(sh))}")
                out.append("    size: {" + ", ".join(items) + "}")
            elif np.isfinite(sh):
                out.append(f"    size: {_q(_bits_text(sh))}")
        bw = n(lvl.bandwidth_words)
        out.append(f"    bandwidth: {_f(bw)}")
        ops = lvl.holds if kind.holds_data else OPERANDS
        rd, wr = n(lvl.read_energy_pj), n(lvl.write_energy_pj)

        def en(v):
            vals = [v[OPERANDS.index(x)] for x in ops]
            if all(t == vals[0] for t in vals):
                return _f(vals[0])
            return "{" + ", ".join(f"{x}: {_f(t)}" for x, t in zip(ops, vals)) + "}"

        if np.array_equal(rd, wr):
            out.append(f"    energy: {en(rd)}")
        else:
            out.append(f"    read_energy: {en(rd)}")
            out.append(f"    write_energy: {en(wr)}")
        if kind.has_area or coef[i] != 0:
            out.append(f"    area_mm2_per_kb: {_f(coef[i])}")
        if bw_coef[i] != 0:
            out.append(f"    area_mm2_per_word_per_cycle: {_f(bw_coef[i])}")
    return "\n".join(out) + "\n"


def save_arch(arch: Architecture, path) -> None:
    """Write ``arch`` as YAML to ``path`` atomically (temp file + rename).

    Args:
      arch: a concrete, unbatched architecture.
      path: destination file.
    """
    atomic_write_text(path, arch_to_yaml(arch))
