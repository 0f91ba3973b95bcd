"""Accelerator descriptions: a PE array under a memory hierarchy (docs/hardware.md).

An :class:`Architecture` is a frozen dataclass registered as a JAX pytree.  Every
number that a co-design run may want a gradient for (sizes, energies, bandwidths,
clock, bit widths, area coefficients) is a *leaf*; names, the level structure and
options are static metadata.  Because leaves may be tracers (under ``jit``, ``grad``,
``vmap``), constructors never branch on leaf values: validation lives in
:func:`validate_architecture` and the YAML loader, which work on concrete values.

Operand order everywhere is ``OPERANDS = ("W", "I", "O")``: weights, input
activations, outputs / partial sums.  Per-operand leaves are arrays of shape ``[3]``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

from hwmodel._util import is_traced, register_pytree
from hwmodel.arch.kinds import (
    COMPRESSION_MODES,
    LEVEL_KIND_PROPERTIES,
    LEVEL_KINDS,
    OPERANDS,
    SPARSITY_MODES,
    level_kind,
)
from hwmodel.arch.yaml_write import arch_to_yaml

__all__ = [
    "MemoryLevel",
    "AreaModel",
    "Architecture",
    "ArchitectureError",
    "Problem",
    "architecture_problems",
    "validate_architecture",
    "level_storage_bits",
    "level_instances",
    "area_mm2",
    "area_breakdown_mm2",
    "onchip_bytes",
    "replace_level",
    "stack_archs",
    "describe",
]

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MemoryLevel:
    """One level of the memory hierarchy (or the on-chip network).

    Levels are listed outermost first in :attr:`Architecture.levels`: typically DRAM,
    global buffer, NoC, per-PE register file.  Levels with ``per_pe=True`` exist once
    per PE (the spatial fan-out of the PE array sits just above the first of them).

    Static (metadata) attributes:
      name: level name, unique within an architecture (``"DRAM"``, ``"GLB"``, ...).
      kind: ``"dram"`` (off-chip, unbounded), ``"sram"`` (on-chip buffer),
        ``"noc"`` (network: stores nothing, charges per word delivered to a PE) or
        ``"rf"`` (register file / scratchpad).
      holds: operands this level stores; the others bypass it.  A ``"noc"`` level
        holds nothing.
      per_pe: True if there is one instance per PE.

    Leaf attributes (float arrays, differentiable):
      capacity_bits: ``[3]`` capacity per operand partition in bits, per instance
        (``inf`` when the operand shares the pool below or is not held).
      shared_bits: scalar total capacity in bits per instance for all held operands
        together (``inf`` when the level is partitioned per operand).  A tile set is
        legal iff every ``tile_bits[x] <= capacity_bits[x]`` and
        ``sum(tile_bits over held x) <= shared_bits``.
      read_energy_pj: ``[3]`` pJ per word read, per operand, at the architecture's
        word width for that operand (for a ``"noc"`` level: pJ per word delivered).
      write_energy_pj: ``[3]`` pJ per word written, per operand.
      bandwidth_words: scalar words per cycle per instance (``inf`` = unlimited).
    """

    name: str
    kind: Literal["dram", "sram", "noc", "rf"]
    holds: tuple[str, ...]
    per_pe: bool
    capacity_bits: Array
    shared_bits: Array
    read_energy_pj: Array
    write_energy_pj: Array
    bandwidth_words: Array


register_pytree(
    MemoryLevel,
    data=["capacity_bits", "shared_bits", "read_energy_pj", "write_energy_pj", "bandwidth_words"],
    meta=["name", "kind", "holds", "per_pe"],
)


@dataclasses.dataclass(frozen=True)
class AreaModel:
    """A simple linear area model (all leaves, mm^2).

    ``area = pe_mm2 * rows * cols + sum_levels((sram_mm2_per_kb[level] * KB(level) +
    bandwidth_mm2[level] * bandwidth_words(level)) * instances(level)) + fixed_mm2``.

    Attributes:
      pe_mm2: area of one PE's datapath (MAC + control), mm^2.
      sram_mm2_per_kb: ``[n_levels]`` mm^2 per KB of storage at each level (0 for
        DRAM and the NoC).
      fixed_mm2: everything else (I/O, control), mm^2.
      bandwidth_mm2: ``[n_levels]`` mm^2 per word/cycle of each level's bandwidth,
        per instance (the banks, ports and wires that bandwidth takes; YAML
        ``area_mm2_per_word_per_cycle``); 0 where the bandwidth is not priced (DRAM,
        unlimited bandwidths, and every level of the presets).  ``None`` means 0 for
        every level.
    """

    pe_mm2: Array
    sram_mm2_per_kb: Array
    fixed_mm2: Array
    bandwidth_mm2: Array | None = None


register_pytree(AreaModel, data=["pe_mm2", "sram_mm2_per_kb", "fixed_mm2", "bandwidth_mm2"], meta=[])


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A spatial accelerator: PE array, memory levels, energies, clock, area.

    Static attributes:
      name: preset or file name.
      levels: memory levels, outermost first (each a :class:`MemoryLevel` pytree).
      sparsity: how zero operands are exploited: ``"none"`` (dense), ``"gate"``
        (zero MACs and reads are gated: energy saved, cycles not) or ``"skip"``
        (zero MACs skipped: energy and cycles saved).
      compression: storage format for sparse operands off-chip and in buffers:
        ``"none"``, ``"bitmask"`` (1 bit per dense element) or ``"rle"``
        (``rle_run_bits`` per nonzero).
      rle_run_bits: run-length field width for ``"rle"``.
      description: free text (provenance of the numbers).

    Leaf attributes:
      pe_rows, pe_cols: PE array shape (floats; integers at hard points).
      clock_hz: clock frequency, Hz.
      word_bits: ``[3]`` word width in bits per operand; energies and
        ``mac_energy_pj`` are quoted at these widths.
      mac_energy_pj: pJ per MAC.
      nonmac_energy_pj: pJ per element-wise / reduction op (softmax, norm, ...).
      area: the :class:`AreaModel`.
    """

    name: str
    levels: tuple[MemoryLevel, ...]
    pe_rows: Array
    pe_cols: Array
    clock_hz: Array
    word_bits: Array
    mac_energy_pj: Array
    nonmac_energy_pj: Array
    area: AreaModel
    sparsity: Literal["none", "gate", "skip"] = "none"
    compression: Literal["none", "bitmask", "rle"] = "none"
    rle_run_bits: int = 4
    description: str = ""

    @property
    def level_names(self) -> tuple[str, ...]:
        return tuple(lvl.name for lvl in self.levels)

    def level(self, name: str) -> MemoryLevel:
        for lvl in self.levels:
            if lvl.name == name:
                return lvl
        raise KeyError(
            f"architecture {self.name!r} has no level {name!r}; levels: {list(self.level_names)}"
        )

    @property
    def num_pes(self) -> Array:
        return self.pe_rows * self.pe_cols

    def replace(self, **changes) -> "Architecture":
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """A readable multi-line table of this architecture (see :func:`describe`)."""
        return describe(self)

    def to_yaml(self) -> str:
        """This architecture as YAML text that :func:`hwmodel.load_arch` reads back."""
        return arch_to_yaml(self)


register_pytree(
    Architecture,
    data=[
        "levels",
        "pe_rows",
        "pe_cols",
        "clock_hz",
        "word_bits",
        "mac_energy_pj",
        "nonmac_energy_pj",
        "area",
    ],
    meta=["name", "sparsity", "compression", "rle_run_bits", "description"],
)


def as_leaf(x) -> Array:
    """Convert a Python number / sequence to a float32 array leaf.

    Plain numbers go through numpy first: a host-to-device copy, where ``jnp.asarray``
    of a list would compile a conversion per shape (milliseconds each, at start-up).
    """
    if isinstance(x, (jax.Array, jax.core.Tracer)):
        return jnp.asarray(x, dtype=jnp.float32)
    return jax.device_put(np.asarray(x, dtype=np.float32))


# ----------------------------------------------------------------------------------
# Derived quantities (pure JAX, differentiable, work under jit / grad / vmap)
# ----------------------------------------------------------------------------------


def _xp(x):
    """numpy for numpy leaves (the one-shot float64 evaluation), else jax.numpy."""
    return np if isinstance(x, (np.ndarray, np.generic)) else jnp


def level_storage_bits(level: MemoryLevel) -> Array:
    """On-chip storage of one instance of ``level``, in bits (a JAX scalar).

    ``min(shared_bits, sum of capacity_bits over the held operands)``: a pool shared
    by all held operands counts once; per-operand partitions add up.  DRAM (off-chip)
    and NoC levels (which store nothing) count 0.

    Args:
      level: a :class:`MemoryLevel` (leaves may be tracers).

    Returns:
      float32 scalar, bits per instance (``inf`` only for an invalid, unbounded
      on-chip level; :func:`validate_architecture` rejects those).
    """
    xp = _xp(level.shared_bits)
    kind = level_kind(level.kind)
    if not (kind.holds_data and kind.on_chip) or not level.holds:
        return xp.zeros_like(level.shared_bits)
    cap = level.capacity_bits
    partitions = sum(cap[..., OPERANDS.index(x)] for x in level.holds)
    return xp.minimum(level.shared_bits, partitions)


def level_instances(arch: Architecture, level: MemoryLevel) -> Array:
    """How many copies of ``level`` the chip has: ``rows * cols`` if per PE, else 1."""
    if level.per_pe:
        return arch.pe_rows * arch.pe_cols
    return _xp(arch.pe_rows).ones_like(arch.pe_rows)


def area_breakdown_mm2(arch: Architecture) -> dict[str, Array]:
    """Area per component in mm^2 (JAX scalars), by the linear :class:`AreaModel`.

    Returns:
      ``{"PE": pe_mm2 * rows * cols, <level name>: (sram_mm2_per_kb[i] * KB +
      bandwidth_mm2[i] * bandwidth_words) * instances for every level, "fixed":
      fixed_mm2}`` where ``KB = storage_bits / 8192`` (1 KB = 1024 bytes).  DRAM is 0;
      a NoC is 0 unless its bandwidth is priced.
    """
    out: dict[str, Array] = {"PE": arch.area.pe_mm2 * arch.pe_rows * arch.pe_cols}
    bw_coef = arch.area.bandwidth_mm2
    for i, lvl in enumerate(arch.levels):
        kb = level_storage_bits(lvl) / 8192.0
        a = arch.area.sram_mm2_per_kb[..., i] * kb
        if bw_coef is not None:
            bw = lvl.bandwidth_words
            xp = _xp(bw)
            a = a + bw_coef[..., i] * xp.where(xp.isfinite(bw), bw, 0.0)  # unlimited: unpriced
        out[lvl.name] = a * level_instances(arch, lvl)
    out["fixed"] = arch.area.fixed_mm2
    return out


def area_mm2(arch: Architecture) -> Array:
    """Chip area in mm^2 (JAX scalar; differentiable w.r.t. every leaf).

    ``pe_mm2 * rows * cols + sum_levels((sram_mm2_per_kb * KB + bandwidth_mm2 *
    bandwidth_words) * instances) + fixed_mm2`` (see :func:`area_breakdown_mm2`).

    Args:
      arch: an :class:`Architecture` (leaves may be tracers or batched under vmap).

    Returns:
      float32 scalar, mm^2.
    """
    return sum(area_breakdown_mm2(arch).values())


def onchip_bytes(arch: Architecture) -> Array:
    """Total on-chip storage in bytes (JAX scalar): every level except DRAM, times its
    number of instances (per-PE register files count once per PE)."""
    total = 0.0 * arch.pe_rows  # the leaves' array type: numpy or JAX
    for lvl in arch.levels:
        total = total + level_storage_bits(lvl) * level_instances(arch, lvl)
    return total / 8.0


# ----------------------------------------------------------------------------------
# Helpers on architectures
# ----------------------------------------------------------------------------------


def replace_level(arch: Architecture, level_name: str, /, **changes) -> Architecture:
    """A copy of ``arch`` with fields of level ``level_name`` changed (even ``name``).

    Numbers are converted to float32 leaves, e.g.
    ``replace_level(arch, "DRAM", bandwidth_words=8.0)`` sets the DRAM bandwidth to 8
    words per cycle, ``replace_level(arch, "GLB", shared_bits=64 * 8192)`` makes the
    GLB 64 KB.  Call :func:`validate_architecture` on the result if the values are
    concrete.

    Raises:
      KeyError: no level of that name (lists the levels).
      TypeError: a field that :class:`MemoryLevel` does not have (lists the fields).
    """
    arch.level(level_name)  # raises KeyError with the valid names
    fields = [f.name for f in dataclasses.fields(MemoryLevel)]
    leaf_fields = {"capacity_bits", "shared_bits", "read_energy_pj", "write_energy_pj",
                   "bandwidth_words"}
    for k in changes:
        if k not in fields:
            raise TypeError(f"MemoryLevel has no field {k!r}; fields: {fields}")
    conv = {k: (as_leaf(v) if k in leaf_fields and not is_traced(v) else v)
            for k, v in changes.items()}
    levels = tuple(dataclasses.replace(l, **conv) if l.name == level_name else l for l in arch.levels)
    return arch.replace(levels=levels)


def stack_archs(archs) -> Architecture:
    """Stack architectures of the same structure into one batched architecture.

    Every leaf gets a leading batch axis, so ``jax.vmap(f)(stack_archs(archs))``
    evaluates ``f`` on each.  Structure (level names, kinds, holds, per_pe, options)
    must match; ``name``/``description`` are taken from the first.

    Args:
      archs: a non-empty sequence of :class:`Architecture`.

    Returns:
      An :class:`Architecture` whose leaves have shape ``[len(archs), ...]``.

    Raises:
      ValueError: empty input or mismatched structure (says which differs).
    """
    archs = list(archs)
    if not archs:
        raise ValueError("stack_archs needs at least one architecture")
    first = archs[0]
    norm = [a.replace(name=first.name, description=first.description) for a in archs]
    ref = jax.tree_util.tree_structure(norm[0])
    for k, a in enumerate(norm[1:], start=1):
        if jax.tree_util.tree_structure(a) != ref:
            raise ValueError(
                f"stack_archs: architecture {k} ({archs[k].name!r}) differs in structure "
                f"from architecture 0 ({first.name!r}): levels "
                f"{[(l.name, l.kind, l.holds, l.per_pe) for l in a.levels]} vs "
                f"{[(l.name, l.kind, l.holds, l.per_pe) for l in first.levels]}, options "
                f"{(a.sparsity, a.compression, a.rle_run_bits)} vs "
                f"{(first.sparsity, first.compression, first.rle_run_bits)}"
            )
    return jax.tree_util.tree_map(lambda *xs: jnp.stack([jnp.asarray(x) for x in xs]), *norm)


# ----------------------------------------------------------------------------------
# Validation (concrete values only)
# ----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Problem:
    """One thing wrong with an architecture.

    Attributes:
      path: where, as YAML keys: e.g. ``("levels", 1, "size", "W")``,
        ``("pe_array", "rows")``, ``("levels",)``.  The YAML loader maps it to a line.
      message: what is wrong, with the offending value.
      valid: what would be valid.
    """

    path: tuple
    message: str
    valid: str


class ArchitectureError(ValueError):
    """An invalid architecture (or architecture file).

    Attributes:
      problems: the list of :class:`Problem` found (may be empty for file-level
        errors such as YAML syntax errors, whose text is the message).
      file: the YAML file, when known.
    """

    def __init__(self, message: str, problems=(), file: str | None = None):
        super().__init__(message)
        self.problems = list(problems)
        self.file = file


def format_path(arch_or_names, path: tuple) -> str:
    """Render a problem path like ``levels[1] (GLB).size[W]``."""
    names = arch_or_names
    out = ""
    i = 0
    while i < len(path):
        p = path[i]
        if p == "levels" and i + 1 < len(path) and isinstance(path[i + 1], int):
            j = path[i + 1]
            nm = f" ({names[j]})" if names is not None and 0 <= j < len(names) else ""
            out += f"levels[{j}]{nm}"
            i += 2
            continue
        if p in OPERANDS and out:
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
        i += 1
    return out or "<architecture>"


def _fmt_bits(b: float) -> str:
    if not math.isfinite(b):
        return str(b)
    if b >= 8 * 1024**2 and b % (8 * 1024**2) == 0:
        return f"{b / (8 * 1024**2):g} MB"
    if b >= 8192 and b % 8192 == 0:
        return f"{b / 8192:g} KB"
    if b >= 8 and b % 8 == 0:
        return f"{b / 8:g} B"
    return f"{b:g} b"


def architecture_problems(arch: Architecture) -> list[Problem]:
    """Everything wrong with a concrete architecture (empty list if valid).

    Leaves may carry leading batch dimensions (a stacked architecture); every entry
    is checked.  See :func:`validate_architecture` for the rules.

    Raises:
      TypeError: leaves are tracers (call outside ``jit``/``grad``/``vmap``).
    """
    if is_traced(arch):
        raise TypeError(
            "validate_architecture needs concrete values; call it outside "
            "jit/grad/vmap (leaves of this architecture are tracers)"
        )
    pr = _Problems()
    kb_coef, bw_coef = _check_scalars(arch, pr)
    names = [l.name for l in arch.levels]
    seen: dict[str, int] = {}
    first_per_pe = None
    for i, lvl in enumerate(arch.levels):
        first_per_pe, known_kind = _check_level_structure(lvl, i, names, seen, first_per_pe, pr)
        if known_kind and _check_level_size(lvl, i, _f64(arch.word_bits), pr):
            _check_level_numbers(lvl, i, kb_coef, bw_coef, pr)
    _check_homes(arch, pr)
    return pr.problems


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


class _Problems:
    """Collects :class:`Problem` entries; formats and tests values for the messages."""

    def __init__(self):
        self.problems: list[Problem] = []

    def add(self, path, msg: str, valid: str) -> None:
        self.problems.append(Problem(tuple(path), msg, valid))

    @staticmethod
    def bad_pos(x, *, allow_inf=False, allow_zero=False) -> bool:
        """Whether any entry of ``x`` is not positive (``>= 0`` with ``allow_zero``) and
        finite (``inf`` allowed with ``allow_inf``)."""
        x = _f64(x)
        ok = (x >= 0) if allow_zero else (x > 0)
        ok = ok & (np.isfinite(x) | (allow_inf & (x == np.inf)))
        return not bool(np.all(ok))

    @staticmethod
    def show(x) -> str:
        x = _f64(x)
        return f"{x.item():g}" if x.size == 1 else np.array2string(x, precision=4)


def _check_scalars(arch: Architecture, pr: _Problems):
    """The PE array, clock, word widths, MAC energies, modes and area coefficients;
    returns the per-level area coefficients, or None when their shape is wrong."""
    n_levels = len(arch.levels)
    if n_levels == 0:
        pr.add(("levels",), "the architecture has no memory levels",
               "at least one level (typically DRAM, GLB, NoC, RF)")

    for nm, path in (("pe_rows", ("pe_array", "rows")), ("pe_cols", ("pe_array", "cols"))):
        v = _f64(getattr(arch, nm))
        if not bool(np.all(np.isfinite(v) & (v >= 1))):
            pr.add(path, f"{nm} is {pr.show(v)}", "a number >= 1 (an integer PE count)")
    if pr.bad_pos(arch.clock_hz):
        pr.add(("clock",), f"clock is {pr.show(arch.clock_hz)} Hz", "a positive frequency, e.g. '200 MHz'")
    wb = _f64(arch.word_bits)
    if wb.shape[-1:] != (3,):
        pr.add(("word_bits",), f"word_bits has shape {wb.shape}", "shape [3] (W, I, O)")
    else:
        for j, x in enumerate(OPERANDS):
            if pr.bad_pos(wb[..., j]):
                pr.add(("word_bits", x), f"word_bits[{x}] is {pr.show(wb[..., j])}", "a positive number of bits, e.g. 16")
    if pr.bad_pos(arch.mac_energy_pj, allow_zero=True):
        pr.add(("mac_energy",), f"mac_energy is {pr.show(arch.mac_energy_pj)} pJ", "a finite energy >= 0")
    if pr.bad_pos(arch.nonmac_energy_pj, allow_zero=True):
        pr.add(("nonmac_energy",), f"nonmac_energy is {pr.show(arch.nonmac_energy_pj)} pJ", "a finite energy >= 0")
    if arch.sparsity not in SPARSITY_MODES:
        pr.add(("sparsity",), f"sparsity is {arch.sparsity!r}", f"one of {list(SPARSITY_MODES)}")
    if arch.compression not in COMPRESSION_MODES:
        pr.add(("compression",), f"compression is {arch.compression!r}", f"one of {list(COMPRESSION_MODES)}")
    if not isinstance(arch.rle_run_bits, int) or isinstance(arch.rle_run_bits, bool) or arch.rle_run_bits < 1:
        pr.add(("rle_run_bits",), f"rle_run_bits is {arch.rle_run_bits!r}", "an integer >= 1")
    if pr.bad_pos(arch.area.pe_mm2, allow_zero=True):
        pr.add(("area", "pe_mm2"), f"pe_mm2 is {pr.show(arch.area.pe_mm2)}", "a finite area >= 0 (mm^2)")
    if pr.bad_pos(arch.area.fixed_mm2, allow_zero=True):
        pr.add(("area", "fixed_mm2"), f"fixed_mm2 is {pr.show(arch.area.fixed_mm2)}", "a finite area >= 0 (mm^2)")
    kb_coef = _f64(arch.area.sram_mm2_per_kb)
    if kb_coef.shape[-1:] != (n_levels,):
        pr.add(("area",), f"area.sram_mm2_per_kb has shape {kb_coef.shape} for {n_levels} levels",
               f"one entry per level: shape [{n_levels}]")
        kb_coef = None
    bw_coef = None
    if arch.area.bandwidth_mm2 is not None:
        bw_coef = _f64(arch.area.bandwidth_mm2)
        if bw_coef.shape[-1:] != (n_levels,):
            pr.add(("area",), f"area.bandwidth_mm2 has shape {bw_coef.shape} for {n_levels} levels",
                   f"one entry per level: shape [{n_levels}]")
            bw_coef = None
    return kb_coef, bw_coef


def _check_level_structure(lvl: MemoryLevel, i: int, names, seen: dict, first_per_pe, pr: _Problems):
    """Name, kind, holds, per-PE placement of level ``i``; returns ``(the first per-PE
    level so far, whether the kind is known)``."""
    L = ("levels", i)
    if not isinstance(lvl.name, str) or not lvl.name:
        pr.add(L + ("name",), f"level {i} has name {lvl.name!r}", "a non-empty string")
    elif lvl.name in seen:
        pr.add(L + ("name",), f"level name {lvl.name!r} is used twice (levels {seen[lvl.name]} and {i})",
               f"a name not used by another level; names in use: {names}")
    else:
        seen[lvl.name] = i
    if lvl.kind not in LEVEL_KINDS:
        pr.add(L + ("kind",), f"kind is {lvl.kind!r}", f"one of {list(LEVEL_KINDS)}")
        return first_per_pe, False
    kind = level_kind(lvl.kind)
    holds = tuple(lvl.holds)
    bad = [x for x in holds if x not in OPERANDS]
    if bad:
        pr.add(L + ("holds",), f"holds unknown operand(s) {bad}", f"a subset of {list(OPERANDS)}")
    if len(set(holds)) != len(holds):
        pr.add(L + ("holds",), f"holds lists an operand twice: {list(holds)}", f"each of {list(OPERANDS)} at most once")
    if not kind.holds_data and holds:
        pr.add(L + ("holds",), f"a {lvl.kind!r} level stores nothing but holds {list(holds)}",
               f"no holds for a {lvl.kind} level (it charges per word delivered)")
    if kind.holds_data and not holds:
        pr.add(L + ("holds",), f"a {lvl.kind!r} level holds no operand",
               f"a non-empty subset of {list(OPERANDS)}, or remove the level")
    if not kind.on_chip and i != 0:
        pr.add(L + ("kind",), f"a {lvl.kind!r} level must be the outermost level, but it is level {i}",
               "put DRAM first (levels are listed outermost first)")
    if lvl.per_pe:
        if not kind.per_pe_allowed:
            pr.add(L + ("per_pe",), f"a {lvl.kind!r} level cannot be per PE", "per_pe: false")
        if first_per_pe is None:
            first_per_pe = i
    elif first_per_pe is not None:
        pr.add(L + ("per_pe",),
               f"level {lvl.name!r} is shared but lies below the per-PE level {names[first_per_pe]!r}",
               "list shared levels (DRAM, buffers, NoC) before the per-PE levels")
    return first_per_pe, True


def _check_level_size(lvl: MemoryLevel, i: int, wb: np.ndarray, pr: _Problems) -> bool:
    """Level ``i``'s sizes: positive, finite on chip, room for one word of each held
    operand; False when the capacity array is malformed (the level's other numbers
    are then not checked)."""
    L = ("levels", i)
    kind = level_kind(lvl.kind)
    holds = tuple(lvl.holds)
    cap = _f64(lvl.capacity_bits)
    sh = _f64(lvl.shared_bits)
    if cap.shape[-1:] != (3,):
        pr.add(L + ("size",), f"capacity_bits has shape {cap.shape}", "shape [3] (W, I, O)")
        return False
    held_idx = [OPERANDS.index(x) for x in holds if x in OPERANDS]
    if kind.holds_data and held_idx:
        size_bad = False
        if bool(np.any(np.isnan(sh))) or bool(np.any(sh <= 0)):
            pr.add(L + ("size",), f"size is {pr.show(sh)} bits", "a positive size, e.g. '108 KB' or '224 x 16 b'")
            size_bad = True
        for j in held_idx:
            c = cap[..., j]
            if bool(np.any(np.isnan(c))) or bool(np.any(c <= 0)):
                pr.add(L + ("size", OPERANDS[j]), f"size for {OPERANDS[j]} is {pr.show(c)} bits",
                       "a positive size, e.g. '12 x 16 b'")
                size_bad = True
        part = sum(cap[..., j] for j in held_idx)
        storage = np.minimum(sh, part)
        if kind.needs_size and not bool(np.all(np.isfinite(storage))):
            pr.add(L + ("size",), f"on-chip level {lvl.name!r} has unbounded size",
                   "a finite size: one shared size ('108 KB') or one per held operand")
        if wb.shape[-1:] == (3,) and not size_bad:
            for j in held_idx:
                eff = np.minimum(cap[..., j], sh)
                w = wb[..., j]
                if bool(np.any(eff < w)):
                    pr.add(L + ("size", OPERANDS[j]),
                           f"level {lvl.name!r} claims to hold {OPERANDS[j]} but its "
                           f"{'partition' if np.all(np.isfinite(cap[..., j])) else 'size'} "
                           f"({_fmt_bits(float(np.min(eff)))}) cannot hold one {pr.show(w)}-bit {OPERANDS[j]} word",
                           f"a size >= {pr.show(w)} b for {OPERANDS[j]}, or remove {OPERANDS[j]} from holds")
            need = sum(wb[..., j] for j in held_idx)
            if len(held_idx) > 1 and bool(np.any(sh < need)) and bool(np.all(sh >= np.max(wb))):
                pr.add(L + ("size",),
                       f"level {lvl.name!r} ({_fmt_bits(float(np.min(sh)))}) cannot hold one word of each "
                       f"operand it holds ({[OPERANDS[j] for j in held_idx]}: {pr.show(need)} bits)",
                       f"a size >= {pr.show(need)} b")
    return True


def _check_level_numbers(lvl: MemoryLevel, i: int, kb_coef, bw_coef, pr: _Problems) -> None:
    """Level ``i``'s energies, bandwidth and area coefficient."""
    L = ("levels", i)
    for key, e in (("read_energy", lvl.read_energy_pj), ("write_energy", lvl.write_energy_pj)):
        e = _f64(e)
        if e.shape[-1:] != (3,):
            pr.add(L + (key,), f"{key} has shape {e.shape}", "shape [3] (W, I, O)")
            continue
        for j, x in enumerate(OPERANDS):
            if pr.bad_pos(e[..., j], allow_zero=True):
                pr.add(L + (key, x), f"{key} for {x} is {pr.show(e[..., j])} pJ", "a finite energy >= 0")
    if pr.bad_pos(lvl.bandwidth_words, allow_inf=True):
        pr.add(L + ("bandwidth",), f"bandwidth is {pr.show(lvl.bandwidth_words)} words/cycle",
               "a positive number of words per cycle, or 'unlimited'")
    if kb_coef is not None and pr.bad_pos(kb_coef[..., i], allow_zero=True):
        pr.add(L + ("area_mm2_per_kb",), f"area_mm2_per_kb is {pr.show(kb_coef[..., i])}", "a finite area >= 0 (mm^2 per KB)")
    if bw_coef is None:
        return
    c = bw_coef[..., i]
    key = L + ("area_mm2_per_word_per_cycle",)
    if pr.bad_pos(c, allow_zero=True):
        pr.add(key, f"area_mm2_per_word_per_cycle is {pr.show(c)}", "a finite area >= 0 (mm^2 per word/cycle)")
    elif bool(np.any(c > 0)):
        if not level_kind(lvl.kind).bandwidth_has_area:
            pr.add(key, f"a {lvl.kind} level's bandwidth is not chip area, but "
                   f"area_mm2_per_word_per_cycle is {pr.show(c)}", "0, or remove the key")
        elif not bool(np.all(np.isfinite(_f64(lvl.bandwidth_words)))):
            pr.add(key, f"area_mm2_per_word_per_cycle is {pr.show(c)} but the bandwidth is unlimited",
                   "a finite 'bandwidth' (words/cycle) for this level, or no bandwidth area")


def _check_homes(arch: Architecture, pr: _Problems) -> None:
    """Every operand needs a home above the PEs (a shared storage level)."""
    shared = [l for l in arch.levels if not l.per_pe and l.kind in LEVEL_KIND_PROPERTIES
              and LEVEL_KIND_PROPERTIES[l.kind].holds_data]
    for x in OPERANDS:
        if not any(x in l.holds for l in shared):
            pr.add(("levels",), f"no level above the PEs holds operand {x}",
                   f"add {x!r} to `holds` of one of the shared levels "
                   f"{[l.name for l in shared] or '(none: add a DRAM or buffer level)'}")


def validate_architecture(arch: Architecture) -> None:
    """Check a concrete architecture; raise if anything is wrong.

    Rules: PE rows/cols >= 1; clock > 0; word bits > 0; energies finite and >= 0;
    bandwidths > 0 (``inf`` allowed); level names unique and non-empty; kinds in
    :data:`LEVEL_KINDS`; ``holds`` a subset of ``OPERANDS`` (a NoC holds nothing,
    other levels hold something); DRAM only outermost; per-PE levels innermost and
    never DRAM/NoC; every held operand's capacity > 0 and at least one word; on-chip
    levels finite; each operand held by some level above the PEs; sparsity /
    compression / rle_run_bits valid; area coefficients finite and >= 0, one per level.

    Args:
      arch: an :class:`Architecture` with concrete leaves (possibly batched).

    Raises:
      ArchitectureError (a ValueError): lists every problem as
        ``where: what; valid: ...``.
      TypeError: the leaves are tracers.
    """
    problems = architecture_problems(arch)
    if problems:
        names = [l.name for l in arch.levels]
        lines = [f"  {format_path(names, p.path)}: {p.message}; valid: {p.valid}" for p in problems]
        raise ArchitectureError(
            f"invalid architecture {arch.name!r} ({len(problems)} problem"
            f"{'s' if len(problems) > 1 else ''}):\n" + "\n".join(lines),
            problems,
        )


# ----------------------------------------------------------------------------------
# Human-readable table
# ----------------------------------------------------------------------------------


def _num(x) -> float:
    return float(np.asarray(x, dtype=np.float64).reshape(-1)[0])


def _count(x: float) -> str:
    """A count: an exact integer when integral (``1000000000000``, not ``1e+12``)."""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _g(x: float, unit: str = "") -> str:
    if math.isinf(x):
        return "unlimited" if unit == "bw" else "inf"
    s = f"{x:.4g}"
    return s if unit in ("", "bw") else f"{s} {unit}"


def describe(arch: Architecture) -> str:
    """A readable table of a concrete architecture: array, clock, bits, per-level
    sizes, energies (pJ and relative to one MAC), bandwidth, area; totals.

    Batched architectures are described by their first entry.

    Args:
      arch: an :class:`Architecture` with concrete leaves.

    Returns:
      Multi-line text.
    """
    if is_traced(arch):
        raise TypeError("describe needs concrete values; call it outside jit/grad/vmap")
    nb = np.ndim(arch.pe_rows)  # leading batch dimensions of a stacked architecture
    a = jax.tree_util.tree_map(lambda x: np.asarray(x)[(0,) * nb], arch) if nb else arch
    rows, cols = _num(a.pe_rows), _num(a.pe_cols)
    wb = np.asarray(a.word_bits, dtype=np.float64)
    mac = _num(a.mac_energy_pj)
    br = {k: _num(v) for k, v in area_breakdown_mm2(a).items()}
    lines = [
        f"Architecture {a.name!r}",
        f"  PE array     {_count(rows)} x {_count(cols)} = {_count(rows * cols)} PEs @ "
        f"{_num(a.clock_hz) / 1e6:g} MHz",
        f"  word bits    W {wb[0]:g}, I {wb[1]:g}, O {wb[2]:g}",
        f"  MAC energy   {mac:.4g} pJ    non-MAC op {_num(a.nonmac_energy_pj):.4g} pJ",
        f"  sparsity     {a.sparsity}, compression {a.compression}"
        + (f" ({a.rle_run_bits}-bit runs)" if a.compression == "rle" else ""),
        "",
    ]
    hdr = ("level", "kind", "holds", "size per instance", "inst", "read pJ W/I/O", "write pJ W/I/O",
           "read xMAC W/I/O", "bw words/cyc", "area mm2")
    table = [hdr]
    for lvl in a.levels:
        cap = np.asarray(lvl.capacity_bits, dtype=np.float64)
        sh = _num(lvl.shared_bits)
        if not level_kind(lvl.kind).holds_data:
            size = "-"
        else:
            parts = [f"{x}:{_fmt_bits(cap[OPERANDS.index(x)])}" for x in lvl.holds
                     if math.isfinite(cap[OPERANDS.index(x)])]
            size = ", ".join(parts)
            if parts and math.isfinite(sh):
                size += f"; total {_fmt_bits(sh)}"
            elif not parts:
                size = (_fmt_bits(sh) + (" shared" if len(lvl.holds) > 1 else "")
                        if math.isfinite(sh) else "unbounded")
        inst = _count(_num(level_instances(a, lvl)))
        rd = np.asarray(lvl.read_energy_pj, dtype=np.float64)
        wr = np.asarray(lvl.write_energy_pj, dtype=np.float64)
        rel = rd / mac if mac > 0 else rd * np.nan
        fmt3 = lambda v: "/".join(f"{t:.3g}" for t in v)  # noqa: E731
        table.append((lvl.name, lvl.kind + (" per-PE" if lvl.per_pe else ""),
                      ",".join(lvl.holds) or "-", size, inst, fmt3(rd), fmt3(wr), fmt3(rel),
                      _g(_num(lvl.bandwidth_words), "bw"), f"{br[lvl.name]:.4g}"))
    widths = [max(len(str(r[k])) for r in table) for k in range(len(hdr))]
    for r in table:
        lines.append("  " + "  ".join(str(c).ljust(w) for c, w in zip(r, widths)).rstrip())
    lines += [
        "",
        f"  on-chip storage  {_num(onchip_bytes(a)) / 1024:.6g} KB",
        f"  area             {_num(area_mm2(a)):.4g} mm^2 (PEs {br['PE']:.4g}, "
        + ", ".join(f"{l.name} {br[l.name]:.4g}" for l in a.levels if br[l.name] != 0)
        + f", fixed {br['fixed']:.4g})",
    ]
    if a.description:
        lines += ["", "  " + a.description.strip().replace("\n", "\n  ")]
    return "\n".join(lines)
