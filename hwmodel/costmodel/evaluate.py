"""From access counts to energy, cycles and legality (any array namespace).

Used by the mapper (numpy float64, concrete architecture) and by :func:`hwmodel.cost`
(``jax.numpy``, traceable in the architecture's leaves and the knobs).

Energy (pJ) = sum over levels and operands of ``reads * read_energy + writes *
write_energy`` (a NoC level's reads are words delivered towards the PEs, its writes
words collected from them) + ``MACs * mac_energy`` + ``nonmac_ops * nonmac_energy``.

Cycles = max(compute cycles, each level's accesses / (bandwidth * instances)), where
the compute cycles are the product of all temporal loop factors (each PE does one MAC
per cycle) and a per-PE level has ``used_pes`` instances.  ``bound`` is the index of the
winning term: 0 = compute, ``1 + i`` = level ``i`` of ``arch.levels`` (ties: the earlier
term wins).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from hwmodel._util import register_pytree
from hwmodel.arch.architecture import Architecture
from hwmodel.costmodel.counts import Counts
from hwmodel.mapping.loopnest import ArchStructure

__all__ = ["ArchArrays", "Metrics", "arch_arrays", "assemble_levels", "metrics", "legality",
           "safe_div"]


@dataclasses.dataclass(frozen=True)
class ArchArrays:
    """An architecture's leaves as arrays of one namespace (stacked over levels, in
    ``arch.levels`` order), as the evaluation reads them; built by :func:`arch_arrays`.

    Attributes:
      read, write: ``[n_levels, 3]`` pJ per word read / written, per operand W, I, O.
      bw: ``[n_levels]`` words per cycle per instance (``inf``: unlimited).
      cap: ``[n_levels, 3]`` bits each operand may hold per instance.
      shared: ``[n_levels]`` bits all operands together may hold per instance.
      mac, nonmac: ``[]`` pJ per MAC / per element-wise (non-MAC) operation.
      rows, cols: ``[]`` PE array rows / columns (whole numbers unless relaxed).
      clock: ``[]`` Hz.
      word_bits: ``[3]`` bits per word of W, I, O.
    """

    read: Any
    write: Any
    bw: Any
    cap: Any
    shared: Any
    mac: Any
    nonmac: Any
    rows: Any
    cols: Any
    clock: Any
    word_bits: Any


register_pytree(ArchArrays, [f.name for f in dataclasses.fields(ArchArrays)], [])


@dataclasses.dataclass(frozen=True)
class Metrics:
    """Energy, cycles and the roofline bound of stacked mappings, from :func:`metrics`.

    ``B`` = stacked mappings, ``n_levels`` = levels of ``arch.levels`` (storage and NoC,
    in that order), the last axis of a ``[..., 3]`` array the operands W, I, O.

    Attributes:
      reads, writes: ``[B, n_levels, 3]`` words read from / written into each level
        (tile traffic plus per-MAC accesses, scaled by bits and sparsity).
      energy_level_op: ``[B, n_levels, 3]`` pJ of those accesses.
      energy_mac, energy_nonmac: ``[B]`` pJ of the MACs / the element-wise operations.
      energy: ``[B]`` pJ in all.
      compute_cycles: ``[B]`` cycles of the MACs alone (one MAC per PE per cycle).
      bw_cycles: ``[B, n_levels]`` cycles each level's accesses need at its bandwidth.
      cycles: ``[B]`` the largest of ``compute_cycles`` and ``bw_cycles`` (roofline).
      bound: ``[B]`` int: which term wins, 0 = compute, ``1 + i`` = level ``i``.
    """

    reads: Any
    writes: Any
    energy_level_op: Any
    energy_mac: Any
    energy_nonmac: Any
    energy: Any
    compute_cycles: Any
    cycles: Any
    bw_cycles: Any
    bound: Any


register_pytree(Metrics, [f.name for f in dataclasses.fields(Metrics)], [])


def safe_div(xp, a, b):
    """``a / b`` with 0 where ``b == 0`` -- and a zero (not NaN) gradient there."""
    ok = b != 0
    return xp.where(ok, a / xp.where(ok, b, 1), 0 * a)


def arch_arrays(xp, arch: Architecture, *, relaxed: bool = True) -> ArchArrays:
    """The architecture's leaves as ``xp`` arrays (stacked over levels).

    Args:
      xp: array namespace.
      arch: the architecture (leaves may be tracers when ``xp`` is jax.numpy).
      relaxed: if False, PE rows / cols are rounded down to integers (a fractional PE
        does not exist); if True they are used as continuous values.

    Returns:
      :class:`ArchArrays` (float32 under jax.numpy, float64 under numpy).
    """
    f = lambda v: xp.asarray(v, dtype=xp.float32 if xp is not np else np.float64)  # noqa: E731
    rows, cols = f(arch.pe_rows), f(arch.pe_cols)
    if not relaxed:
        rows, cols = xp.floor(rows), xp.floor(cols)
    return ArchArrays(
        read=xp.stack([f(l.read_energy_pj).reshape(3) for l in arch.levels]),
        write=xp.stack([f(l.write_energy_pj).reshape(3) for l in arch.levels]),
        bw=xp.stack([f(l.bandwidth_words).reshape(()) for l in arch.levels]),
        cap=xp.stack([f(l.capacity_bits).reshape(3) for l in arch.levels]),
        shared=xp.stack([f(l.shared_bits).reshape(()) for l in arch.levels]),
        mac=f(arch.mac_energy_pj).reshape(()),
        nonmac=f(arch.nonmac_energy_pj).reshape(()),
        rows=rows.reshape(()),
        cols=cols.reshape(()),
        clock=f(arch.clock_hz).reshape(()),
        word_bits=f(arch.word_bits).reshape(3),
    )


def assemble_levels(xp, st: ArchStructure, storage_part, noc_part):
    """Interleave ``[..., n_s, 3]`` storage and ``[..., n_noc, 3]`` NoC arrays into
    ``[..., n_levels, 3]`` in ``arch.levels`` order."""
    parts = [None] * len(st.level_names)
    for j, i in enumerate(st.storage):
        parts[i] = storage_part[..., j, :]
    for k, i in enumerate(st.noc):
        parts[i] = noc_part[..., k, :]
    return xp.stack(parts, axis=-2)


def metrics(xp, cnt: Counts, aa: ArchArrays, st: ArchStructure, *,
            per_pe_level: tuple[bool, ...], scale_t=None, scale_m=None, mac_scale=None,
            cycle_scale=None, nonmac_ops=None) -> Metrics:
    """Energy, cycles and the roofline bound from counts.

    Args:
      xp: array namespace.
      cnt: :class:`~hwmodel.costmodel.counts.Counts` (leading ``[B]``).
      aa: :class:`ArchArrays`.
      st: architecture structure.
      per_pe_level: per level of ``arch.levels``, whether it is per PE.
      scale_t: ``[B, 3]`` multiplier of fill/drain traffic words per operand (bits,
        compression); None = 1.
      scale_m: ``[B, 3]`` multiplier of per-MAC operand accesses (bits, gating).
      mac_scale: ``[B]`` multiplier of MAC energy (gating, bits).
      cycle_scale: ``[B]`` multiplier of compute cycles (skipping).
      nonmac_ops: ``[B]`` element-wise ops charged at ``aa.nonmac``.

    Returns:
      :class:`Metrics` (``B`` leading).
    """
    rt = assemble_levels(xp, st, cnt.reads_t, cnt.noc_reads_t)
    rm = assemble_levels(xp, st, cnt.reads_m, cnt.noc_reads_m)
    wt = assemble_levels(xp, st, cnt.writes_t, cnt.noc_writes_t)
    wm = assemble_levels(xp, st, cnt.writes_m, cnt.noc_writes_m)
    if scale_t is not None:
        rt = rt * scale_t[:, None, :]
        wt = wt * scale_t[:, None, :]
    if scale_m is not None:
        rm = rm * scale_m[:, None, :]
        wm = wm * scale_m[:, None, :]
    reads, writes = rt + rm, wt + wm
    e_lo = reads * aa.read[None] + writes * aa.write[None]
    macs = cnt.macs
    e_mac = macs * aa.mac
    if mac_scale is not None:
        e_mac = e_mac * mac_scale
    e_nonmac = (nonmac_ops * aa.nonmac) if nonmac_ops is not None else xp.zeros_like(e_mac)
    energy = xp.sum(xp.sum(e_lo, axis=-1), axis=-1) + e_mac + e_nonmac
    compute = cnt.cycles
    if cycle_scale is not None:
        compute = compute * cycle_scale
    inst = xp.stack(
        [cnt.used_pes if pp else xp.ones_like(cnt.used_pes) for pp in per_pe_level],
        axis=-1,
    )  # [B, n_levels]
    acc = xp.sum(reads + writes, axis=-1)  # [B, n_levels]
    fin = xp.isfinite(aa.bw)  # unlimited bandwidth -> no bandwidth term (and no NaN grads)
    bw = xp.where(fin, aa.bw, 1.0)
    bw_cycles = xp.where(fin[None, :], safe_div(xp, acc, bw[None, :] * inst), 0.0 * acc)
    terms = xp.concatenate([compute[:, None], bw_cycles], axis=-1)
    cycles = xp.max(terms, axis=-1)
    bound = xp.argmax(terms, axis=-1)
    return Metrics(
        reads=reads, writes=writes, energy_level_op=e_lo, energy_mac=e_mac,
        energy_nonmac=e_nonmac, energy=energy, compute_cycles=compute, cycles=cycles,
        bw_cycles=bw_cycles, bound=bound,
    )


def legality(xp, tiles, aa: ArchArrays, st: ArchStructure, keep, SX, SY, *, bits=None):
    """Whether each mapping fits: tiles within capacities, spatial within the array.

    Args:
      tiles: ``[B, n_s, 3]`` per-instance tile words of every storage level
        (:attr:`Counts.tiles <hwmodel.costmodel.counts.Counts>`, or
        :func:`hwmodel.mapping.tiles.tiles_only`).
      keep: ``[B, n_s, 3]`` bool (numpy).
      SX, SY: ``[B, 8]`` spatial factors.
      bits: ``[B, 3]`` bits per word of each operand (default: the architecture's).

    Returns:
      (legal ``[B]`` bool, slack ``[B]``): slack is the smallest relative margin
      ``1 - need / capacity`` over all checks (negative = illegal), for smooth
      relaxations.
    """
    wb = aa.word_bits[None, :] if bits is None else bits
    kf = xp.asarray(keep.astype(np.float64 if xp is np else np.float32))
    need = tiles * wb[:, None, :] * kf  # [B, n_s, 3]
    cap = xp.stack([aa.cap[i] for i in st.storage])  # [n_s, 3]
    shared = xp.stack([aa.shared[i] for i in st.storage])  # [n_s]
    slack_op = 1.0 - need / cap[None]
    slack_sh = 1.0 - xp.sum(need, axis=-1) / shared[None]
    px = xp.prod(SX, axis=-1)
    py = xp.prod(SY, axis=-1)
    slack_x = 1.0 - safe_div(xp, px, aa.cols)
    slack_y = 1.0 - safe_div(xp, py, aa.rows)
    slack = xp.minimum(
        xp.minimum(xp.min(xp.min(slack_op, axis=-1), axis=-1), xp.min(slack_sh, axis=-1)),
        xp.minimum(slack_x, slack_y),
    )
    legal = (xp.all(xp.all(need <= cap[None], axis=-1), axis=-1)
             & xp.all(xp.sum(need, axis=-1) <= shared[None], axis=-1)
             & (px <= aa.cols) & (py <= aa.rows))
    return legal, slack
