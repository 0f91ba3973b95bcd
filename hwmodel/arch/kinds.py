"""Names every architecture module shares: the operands, the memory-level kinds and
their properties, the sparsity and compression modes.

Every module that treats a memory level differently by kind consults
:data:`LEVEL_KIND_PROPERTIES` (through :func:`level_kind`) instead of comparing kind
names, so adding a kind is one entry here.
"""

from __future__ import annotations

import dataclasses

__all__ = ["OPERANDS", "LEVEL_KINDS", "LEVEL_KIND_PROPERTIES", "LevelKind", "level_kind",
           "SPARSITY_MODES", "COMPRESSION_MODES"]

OPERANDS = ("W", "I", "O")
"""Operand order used by every per-operand array: weights, inputs, outputs."""


@dataclasses.dataclass(frozen=True)
class LevelKind:
    """What a kind of memory level is (static properties, no values).

    Attributes:
      name: the kind's name in YAML and :attr:`MemoryLevel.kind`.
      holds_data: stores operands (has ``holds`` and a size); False for a network,
        which only charges per word it delivers.
      on_chip: on the accelerator die; the one off-chip kind must be the outermost
        level, and its size may be unlimited.
      per_pe_allowed: may be replicated once per PE (``per_pe: true``).
      needs_size: a finite size is required (otherwise optional, default unlimited,
        or not allowed when the kind holds no data).
      needs_bandwidth: a bandwidth is required (otherwise optional, default
        unlimited): it bounds latency.
      has_area: its storage has an area per KB (``area_mm2_per_kb`` required);
        otherwise that coefficient must be 0.
      bandwidth_has_area: its bandwidth may be priced in area
        (``area_mm2_per_word_per_cycle``, optional, default 0): the banks, ports and
        wires of an on-chip level; off-chip bandwidth is not chip area.
    """

    name: str
    holds_data: bool
    on_chip: bool
    per_pe_allowed: bool
    needs_size: bool
    needs_bandwidth: bool
    has_area: bool
    bandwidth_has_area: bool


LEVEL_KIND_PROPERTIES: dict[str, LevelKind] = {
    k.name: k
    for k in (
        LevelKind("dram", holds_data=True, on_chip=False, per_pe_allowed=False,
                  needs_size=False, needs_bandwidth=True, has_area=False,
                  bandwidth_has_area=False),
        LevelKind("sram", holds_data=True, on_chip=True, per_pe_allowed=True,
                  needs_size=True, needs_bandwidth=False, has_area=True,
                  bandwidth_has_area=True),
        LevelKind("noc", holds_data=False, on_chip=True, per_pe_allowed=False,
                  needs_size=False, needs_bandwidth=False, has_area=False,
                  bandwidth_has_area=True),
        LevelKind("rf", holds_data=True, on_chip=True, per_pe_allowed=True,
                  needs_size=True, needs_bandwidth=False, has_area=True,
                  bandwidth_has_area=True),
    )
}
"""Kind name -> :class:`LevelKind`: ``dram`` (off-chip memory), ``sram`` (on-chip
buffer), ``noc`` (network: stores nothing), ``rf`` (register file / scratchpad)."""

LEVEL_KINDS = tuple(LEVEL_KIND_PROPERTIES)
"""Valid :attr:`MemoryLevel.kind` values."""


def level_kind(kind: str) -> LevelKind:
    """The properties of kind ``kind`` (a name from :data:`LEVEL_KINDS`).

    Raises:
      ValueError: an unknown kind, listing the valid ones.
    """
    try:
        return LEVEL_KIND_PROPERTIES[kind]
    except (KeyError, TypeError):
        raise ValueError(f"unknown memory-level kind {kind!r}; valid: {', '.join(LEVEL_KINDS)}") from None


SPARSITY_MODES = ("none", "gate", "skip")
"""Valid :attr:`Architecture.sparsity` values."""

COMPRESSION_MODES = ("none", "bitmask", "rle")
"""Valid :attr:`Architecture.compression` values."""
