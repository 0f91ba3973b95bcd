"""Names every architecture module shares: the operands, memory-level kinds,
sparsity and compression modes."""

from __future__ import annotations

__all__ = ["OPERANDS", "LEVEL_KINDS", "SPARSITY_MODES", "COMPRESSION_MODES"]

OPERANDS = ("W", "I", "O")
"""Operand order used by every per-operand array: weights, inputs, outputs."""

LEVEL_KINDS = ("dram", "sram", "noc", "rf")
"""Valid :attr:`MemoryLevel.kind` values."""

SPARSITY_MODES = ("none", "gate", "skip")
"""Valid :attr:`Architecture.sparsity` values."""

COMPRESSION_MODES = ("none", "bitmask", "rle")
"""Valid :attr:`Architecture.compression` values."""
