"""Size-dependent access energy: what a buffer access costs when the buffer is resized.

An :class:`~hwmodel.Architecture` quotes one energy per word for each memory level, at
that level's size.  When a design search or a co-design run resizes a buffer, the
quoted energy no longer holds: a larger SRAM has longer word- and bit-lines and a
deeper decoder, so each access costs more (CACTI; Accelergy's SRAM estimators).
:func:`scale_access_energy` rescales the per-word read and write energies of every
sized on-chip level (kinds ``sram`` and ``rf``) by a power law in its capacity,

    ``E(size) = E(ref_size) * (size / ref_size) ** exponent``,

relative to a reference architecture whose energies were quoted at its own sizes (the
preset the design started from).  At the reference sizes every factor is exactly 1,
so the reference's figures do not move.

**Exponent.** :data:`DEFAULT_ENERGY_EXPONENT` = 0.5 (energy per access grows as the
square root of the capacity).  Source: the on-chip memories of the Accelergy 45 nm
table the ``eyeriss_45nm`` preset ships (ifmap spad 12 words 0.24 pJ, psum spad 16
words 0.25 pJ, weight spad 192 words 1.59 pJ, global buffer 65,536 words 18.8 pJ per
16-bit word): a least-squares fit of ``log(energy)`` against ``log(words)`` over those
four gives 0.50 (``tests/test_scaling.py`` recomputes it from the preset).  DRAM (its
energy is the interface's, not the array size's) and networks (no storage) are never
scaled.  Exponent 0 returns the architecture unchanged (sizes do not change energies:
the plain cost model's assumption).

:func:`scale_word_bits` does the same for a change of **word width** (a co-design that
quantizes the network to 8-bit weights wants 8-bit words in the hardware): every
per-word energy of operand ``x`` scales by ``bits[x] / base_bits[x]`` (energy per bit
constant: a narrower word drives fewer bit-lines and wires), the MAC energy by
``(bits_W * bits_I) / (base_W * base_I)`` (an array multiplier's energy grows with the
product of its operand widths), and capacities stay in bits, so a narrower word packs
more words into the same buffer.  What it does not change: the area (a narrower
multiplier is smaller; the area model does not credit it, so a narrow design is priced
conservatively), the bandwidths in words per cycle (also conservative: a port moves as
many words, not more), and the element-wise (non-MAC) energy.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from hwmodel._util import is_traced
from hwmodel.arch.architecture import Architecture, MemoryLevel, _xp
from hwmodel.arch.kinds import OPERANDS, level_kind

__all__ = ["DEFAULT_ENERGY_EXPONENT", "scale_access_energy", "access_energy_factors",
           "scale_word_bits"]

DEFAULT_ENERGY_EXPONENT = 0.5
"""Energy per access ~ capacity ** 0.5 (fit to the Accelergy 45 nm on-chip memories;
see the module docstring)."""


def _is_scaled(level: MemoryLevel) -> bool:
    kind = level_kind(level.kind)
    return kind.holds_data and kind.on_chip and kind.needs_size and bool(level.holds)


def _sizes(level: MemoryLevel, xp) -> jax.Array:
    """``[3]`` bits that each operand's accesses see: its partition where finite,
    else the shared pool (``inf`` for operands the level does not hold)."""
    cap = xp.asarray(level.capacity_bits)
    shared = xp.asarray(level.shared_bits) * xp.ones_like(cap)
    return xp.where(xp.isfinite(cap), cap, shared)


def access_energy_factors(level: MemoryLevel, reference: MemoryLevel,
                          exponent: float = DEFAULT_ENERGY_EXPONENT) -> jax.Array:
    """``[3]`` factors by which ``level``'s per-word energies scale against ``reference``.

    ``(size / ref_size) ** exponent`` per operand, where size is the operand's partition
    (bits) or, for a shared pool, the pool's size; 1 where either size is infinite (an
    operand the level does not hold), for levels that are not sized on-chip storage
    (DRAM, NoC), and for ``exponent == 0``.  Differentiable w.r.t. the sizes.

    Args:
      level: the resized level (leaves may be tracers).
      reference: the same level at the sizes its energies were quoted at.
      exponent: the power law's exponent (a Python float >= 0).

    Returns:
      ``[3]`` float32 factors (numpy for numpy leaves, else JAX).
    """
    xp = np if isinstance(level.capacity_bits, (np.ndarray, np.generic)) else jnp
    ones = xp.ones((len(OPERANDS),), xp.float32)
    if exponent == 0 or not _is_scaled(level):
        return ones
    size, ref = _sizes(level, xp), _sizes(reference, np)
    ok = np.isfinite(ref) & (ref > 0)
    safe_ref = np.where(ok, ref, 1.0).astype(np.float32)
    finite = xp.isfinite(size) & ok
    ratio = xp.where(finite, size, safe_ref) / safe_ref
    return xp.where(finite, ratio ** exponent, ones).astype(xp.float32)


def scale_access_energy(arch: Architecture, reference: Architecture,
                        exponent: float = DEFAULT_ENERGY_EXPONENT) -> Architecture:
    """``arch`` with each sized on-chip level's read/write energies (pJ per word)
    rescaled to its size, relative to ``reference`` (see the module docstring).

    Args:
      arch: the resized architecture (leaves may be tracers: traceable under ``jit``,
        ``grad``, ``vmap``).
      reference: an architecture with the same levels (names, in order) whose
        energies hold at its own sizes, e.g. the preset a design search started from.
        Its leaves must be concrete.
      exponent: ``E ~ size ** exponent``; 0 returns ``arch`` unchanged.

    Returns:
      An :class:`Architecture` equal to ``arch`` except for ``read_energy_pj`` and
      ``write_energy_pj`` of its ``sram`` / ``rf`` levels.

    Raises:
      ValueError: a negative or non-finite exponent, or ``reference`` does not have
        ``arch``'s levels (names listed).
    """
    if not (isinstance(exponent, (int, float)) and np.isfinite(exponent) and exponent >= 0):
        raise ValueError(f"access-energy exponent {exponent!r}: expected a finite number >= 0 "
                         f"(0: sizes do not change energies; default {DEFAULT_ENERGY_EXPONENT})")
    names, ref_names = arch.level_names, reference.level_names
    if names != ref_names:
        raise ValueError(f"scale_access_energy: architecture levels {list(names)} differ from "
                         f"the reference's {list(ref_names)}; valid: the same levels in order")
    if exponent == 0:
        return arch
    levels = []
    for lvl, ref in zip(arch.levels, reference.levels):
        if not _is_scaled(lvl):
            levels.append(lvl)
            continue
        f = access_energy_factors(lvl, ref, exponent)
        levels.append(dataclasses.replace(lvl, read_energy_pj=lvl.read_energy_pj * f,
                                          write_energy_pj=lvl.write_energy_pj * f))
    return arch.replace(levels=tuple(levels))


def scale_word_bits(arch: Architecture, word_bits) -> Architecture:
    """``arch`` with word widths ``word_bits`` and its energies rescaled to them (see
    the module docstring): per-word read / write energies of every level (DRAM, buffers,
    NoC, register files) for operand ``x`` times ``word_bits[x] / arch.word_bits[x]``,
    ``mac_energy_pj`` times ``word_bits[W] * word_bits[I] / (arch W * arch I)``.
    Capacities (bits), bandwidths (words/cycle), area and ``nonmac_energy_pj`` are
    unchanged.  At ``word_bits == arch.word_bits`` every factor is exactly 1.

    Args:
      arch: the architecture whose energies hold at its own ``word_bits``.
      word_bits: ``[3]`` new widths in bits (W, I, O); may be traced (continuous
        widths for a relaxed search), concrete values must be positive and finite.

    Returns:
      An :class:`Architecture` (traceable under ``jit`` / ``grad`` / ``vmap``).

    Raises:
      ValueError: concrete ``word_bits`` of the wrong shape, or not positive and finite.
    """
    if not is_traced(word_bits):
        wb = np.asarray(word_bits, np.float64)
        if wb.shape != (len(OPERANDS),):
            raise ValueError(f"scale_word_bits: word_bits has shape {wb.shape}; valid: shape "
                             f"[{len(OPERANDS)}] (bits of {', '.join(OPERANDS)})")
        if not np.all(np.isfinite(wb) & (wb > 0)):
            raise ValueError(f"scale_word_bits: word_bits {wb.tolist()}; valid: positive, "
                             "finite bit widths, e.g. [8, 8, 16]")
    xp = jnp if is_traced((word_bits, arch)) else _xp(arch.word_bits)
    new = xp.asarray(word_bits, xp.float32)
    old = xp.asarray(arch.word_bits, xp.float32)
    f = new / old  # [3]
    levels = tuple(dataclasses.replace(lvl, read_energy_pj=lvl.read_energy_pj * f,
                                       write_energy_pj=lvl.write_energy_pj * f)
                   for lvl in arch.levels)
    return arch.replace(levels=levels, word_bits=new,
                        mac_energy_pj=arch.mac_energy_pj * (f[0] * f[1]))
