"""Accelerator descriptions: a PE array under a memory hierarchy (DESIGN.md section 3).

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
from typing import Literal

import jax
import jax.numpy as jnp

__all__ = [
    "OPERANDS",
    "MemoryLevel",
    "AreaModel",
    "Architecture",
]

OPERANDS = ("W", "I", "O")
"""Operand order used by every per-operand array: weights, inputs, outputs."""

Array = jax.Array


def _register(cls, data, meta):
    jax.tree_util.register_dataclass(cls, data_fields=data, meta_fields=meta)
    return cls


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


_register(
    MemoryLevel,
    data=["capacity_bits", "shared_bits", "read_energy_pj", "write_energy_pj", "bandwidth_words"],
    meta=["name", "kind", "holds", "per_pe"],
)


@dataclasses.dataclass(frozen=True)
class AreaModel:
    """A simple linear area model (all leaves, mm^2).

    ``area = pe_mm2 * rows * cols + sum_levels(sram_mm2_per_kb[level] * KB(level) *
    instances(level)) + fixed_mm2``.

    Attributes:
      pe_mm2: area of one PE's datapath (MAC + control), mm^2.
      sram_mm2_per_kb: ``[n_levels]`` mm^2 per KB of storage at each level (0 for
        DRAM and the NoC).
      fixed_mm2: everything else (I/O, control), mm^2.
    """

    pe_mm2: Array
    sram_mm2_per_kb: Array
    fixed_mm2: Array


_register(AreaModel, data=["pe_mm2", "sram_mm2_per_kb", "fixed_mm2"], meta=[])


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


_register(
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
    """Convert a Python number / sequence to a float32 array leaf."""
    return jnp.asarray(x, dtype=jnp.float32)
