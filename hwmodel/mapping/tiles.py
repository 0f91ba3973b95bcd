"""Tiles of a loop nest: their sizes, and whether a mapping is legal.

A storage level's tile of an operand spans the loops of that level and of every level
inside it (plus the spatial loops when the level is above the PE array); its words
follow from the loop extents and, for inputs, the window count
:func:`window_count`.  :func:`validate_mapping` checks a :class:`Mapping` against a
layer and an architecture (factorization, array size, bypass, capacity).  The access
counts built on these tiles are in :mod:`hwmodel.costmodel.counts`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from hwmodel._util import is_traced, register_pytree
from hwmodel.arch.architecture import Architecture
from hwmodel.arch.kinds import OPERANDS
from hwmodel.mapping.loopnest import ArchStructure, Mapping, MappingStack, arch_structure, stack_mappings
from hwmodel.workload.spec import DIMS, LayerSpec

__all__ = ["Geometry", "WindowSteps", "geometry", "window_count", "uncovered", "tile_words",
           "tiles_only", "window_steps", "tile_words_single", "validate_mapping"]

GI, NI, MI, PI, QI, CI, RI, SI = range(8)
"""Positions of the dims ``G N M P Q C R S`` in every ``[..., 8]`` array."""


def window_count(a, b, u, d, xp=np):
    """``h(a, b, U, D)``: distinct input rows ``p*U + r*D`` for ``p < a, r < b``.

    Args:
      a, b: extents of the output (P or Q) and filter (R or S) loops (arrays).
      u, d: stride and dilation divided by their gcd (coprime integers).
      xp: array namespace.

    Returns:
      ``a*min(b, u) + max(0, b - u)*min(a, d)`` (same shape as the broadcast inputs).
    """
    return a * xp.minimum(b, u) + xp.maximum(b - u, 0) * xp.minimum(a, d)


@dataclasses.dataclass(frozen=True)
class Geometry:
    """Per-item layer geometry: bounds and reduced strides/dilations (all ``[B]``)."""

    bounds: np.ndarray  # [B, 8] int64
    uh: np.ndarray
    dh: np.ndarray
    uw: np.ndarray
    dw: np.ndarray
    stride: np.ndarray  # [B, 2] raw (U, V)
    dilation: np.ndarray  # [B, 2] raw (Dh, Dw)


@dataclasses.dataclass(frozen=True)
class WindowSteps:
    """Reduced strides and dilations of the input window, the geometry every tile-word
    and count formula needs (see :func:`window_count`).

    Each field is an integer array (numpy ``int64``, or float in the differentiable
    path) of one shape, typically ``[B]`` (one value per stacked mapping) or a
    broadcastable view of it; plain Python ints work too.

    Attributes:
      uh, dh: row stride ``U`` and row dilation ``Dh`` divided by their gcd.
      uw, dw: column stride ``V`` and column dilation ``Dw`` divided by their gcd.
    """

    uh: Any
    dh: Any
    uw: Any
    dw: Any

    def map(self, fn) -> WindowSteps:
        """The same steps with ``fn`` applied to each field (e.g. a dtype or a new axis)."""
        return WindowSteps(fn(self.uh), fn(self.dh), fn(self.uw), fn(self.dw))


register_pytree(WindowSteps, ["uh", "dh", "uw", "dw"], [])


def geometry(layers) -> Geometry:
    """Geometry arrays for a sequence of :class:`LayerSpec` (one row per layer)."""
    layers = list(layers)
    bounds = np.array([[getattr(l, d) for d in DIMS] for l in layers], dtype=np.int64)
    uh, dh, uw, dw = [], [], [], []
    for l in layers:
        (U, V), (Dh, Dw) = l.stride, l.dilation
        g = math.gcd(U, Dh)
        uh.append(U // g)
        dh.append(Dh // g)
        g = math.gcd(V, Dw)
        uw.append(V // g)
        dw.append(Dw // g)
    a = lambda v: np.array(v, dtype=np.int64)  # noqa: E731
    return Geometry(bounds, a(uh), a(dh), a(uw), a(dw),
                    a([l.stride for l in layers]).reshape(-1, 2),
                    a([l.dilation for l in layers]).reshape(-1, 2))


def uncovered(ms: MappingStack, st: ArchStructure) -> np.ndarray:
    """``[B]`` bool: mappings outside the closed form's domain.

    The union of the per-PE I tiles seen by a shared parent is a window of the
    combined extents only if, along each direction (P/R rows, Q/S columns), every dim
    with a spatial factor > 1 has no loop with factor > 1 at a per-PE level *above*
    the child (these levels are bypassed by I; they would make the PEs' windows
    strided).  This only arises with two or more per-PE storage levels; such mappings
    are rejected by :func:`hwmodel.validate_mapping`.
    """
    n_s, A = st.n_storage, st.first_pe
    B = ms.T.shape[0]
    bad = np.zeros(B, dtype=bool)
    Sp = ms.SX * ms.SY
    for c in range(A + 1, n_s):
        # I boundary with shared parent and per-PE child c
        kept_above = ms.keep[:, :c, 1]
        idx = np.arange(c)
        p = np.where(kept_above, idx[None, :], -1).max(axis=-1)
        has = ms.keep[:, c, 1] & (p < A)
        between = np.prod(ms.T[:, A:c, :], axis=1)  # [B, 8]
        for d in (PI, RI, QI, SI):
            bad |= has & (between[:, d] > 1) & (Sp[:, d] > 1)
    return bad


def tile_words(xp, ext, geom: WindowSteps):
    """W, I, O tile words for extents ``ext`` ``[..., 8]`` -> three ``[...]`` arrays
    (``geom``'s fields broadcastable to ``ext[..., 0]``)."""
    G, N, M, P, Q, C, R, S = (ext[..., k] for k in range(8))
    rows = window_count(P, R, geom.uh, geom.dh, xp)
    cols = window_count(Q, S, geom.uw, geom.dw, xp)
    return G * M * C * R * S, G * N * C * rows * cols, G * N * M * P * Q


def tiles_only(xp, T, SX, SY, first_pe: int, geom: WindowSteps):
    """Per-instance tile words ``[B, n_s, 3]`` of every storage level (for legality)."""
    n_s = T.shape[1]
    Sp = SX * SY
    E = xp.ones_like(Sp)
    out = [None] * n_s
    for j in range(n_s - 1, -1, -1):
        E = E * T[:, j, :]
        out[j] = xp.stack(tile_words(xp, E * Sp if j < first_pe else E, geom), axis=-1)
    return xp.stack(out, axis=1)


def window_steps(g: Geometry, xp=np, dtype=None) -> WindowSteps:
    """The :class:`WindowSteps` of ``g`` as ``xp`` arrays ``[B]`` (``dtype`` for the JAX
    path)."""
    conv = (lambda v: xp.asarray(v)) if dtype is None else (lambda v: xp.asarray(v, dtype=dtype))
    return WindowSteps(g.uh, g.dh, g.uw, g.dw).map(conv)


def tile_words_single(layer: LayerSpec, mapping: Mapping, st: ArchStructure) -> np.ndarray:
    """Per-instance tile words ``[n_s, 3]`` of every storage level (int64)."""
    ms = stack_mappings([mapping])
    g = geometry([layer])
    return tiles_only(np, ms.T, ms.SX, ms.SY, st.first_pe, window_steps(g))[0]


def _word_bits(arch: Architecture) -> np.ndarray:
    return np.asarray(arch.word_bits, dtype=np.float64).reshape(3)


def validate_mapping(layer: LayerSpec, arch: Architecture, mapping: Mapping,
                     *, check_capacity: bool = True, check_model: bool = True) -> None:
    """Check that ``mapping`` is a legal loop nest for ``layer`` on ``arch``.

    Checks: level names, perfect factorization of every dim, spatial factors within
    the array, keep within what each level may hold (outermost keeps everything), and
    (``check_capacity``) every kept tile fits its level at the architecture's word
    widths.  The array-size and capacity checks are skipped when the architecture's
    leaves are traced (under jit/vmap): :attr:`hwmodel.Cost` then reports ``legal``.
    ``check_model`` also rejects the rare mappings outside the closed form's domain
    (:func:`uncovered`; the simulator handles them).

    Raises:
      ValueError: saying what is wrong, for which layer, level and dim.
    """
    st = arch_structure(arch)
    where = f"layer {layer.name!r} on {arch.name!r}"
    if tuple(mapping.levels) != st.storage_names:
        raise ValueError(
            f"{where}: mapping levels {list(mapping.levels)} != the architecture's storage "
            f"levels {list(st.storage_names)}"
        )
    got = mapping.bounds()
    for d in DIMS:
        if got[d] != getattr(layer, d):
            raise ValueError(
                f"{where}: dim {d}: the product of the mapping's factors is {got[d]} but "
                f"the layer's bound is {getattr(layer, d)} (factors must multiply to the "
                "bound exactly)"
            )
    traced = is_traced(arch)
    if traced:
        check_capacity = False
    cols = float("inf") if traced else float(np.asarray(arch.pe_cols))
    rows = float("inf") if traced else float(np.asarray(arch.pe_rows))
    if math.prod(mapping.spatial_x) > cols:
        raise ValueError(
            f"{where}: spatial_x uses {math.prod(mapping.spatial_x)} PE columns "
            f"({dict(zip(DIMS, mapping.spatial_x))}) but the array has {cols:g}"
        )
    if math.prod(mapping.spatial_y) > rows:
        raise ValueError(
            f"{where}: spatial_y uses {math.prod(mapping.spatial_y)} PE rows "
            f"({dict(zip(DIMS, mapping.spatial_y))}) but the array has {rows:g}"
        )
    for j, name in enumerate(st.storage_names):
        allowed = [x for x, h in zip(OPERANDS, st.holds[j]) if h]
        bad = [x for x in mapping.keep[j] if x not in allowed]
        if bad:
            raise ValueError(
                f"{where}: level {name!r} cannot hold {bad} (it may hold {allowed})"
            )
    if set(mapping.keep[0]) != set(OPERANDS):
        raise ValueError(
            f"{where}: the outermost level {st.storage_names[0]!r} must keep W, I and O, "
            f"mapping keeps {list(mapping.keep[0])}"
        )
    if check_model and uncovered(stack_mappings([mapping]), st)[0]:
        raise ValueError(
            f"{where}: unsupported mapping: I bypasses a per-PE level that has P/R/Q/S "
            "loops while the same dims are spread spatially (the PEs' input windows "
            "would be strided; the cost model's closed form does not cover it). Move "
            "those loops to the level that keeps I, or above the array"
        )
    if not check_capacity:
        return
    wb = _word_bits(arch)
    tiles = tile_words_single(layer, mapping, st)  # [n_s, 3] words per instance
    for j, name in enumerate(st.storage_names):
        if j == 0:
            continue
        lvl = arch.levels[st.storage[j]]
        cap = np.asarray(lvl.capacity_bits, dtype=np.float64).reshape(3)
        shared = float(np.asarray(lvl.shared_bits))
        bits = {x: tiles[j][i] * wb[i] for i, x in enumerate(OPERANDS) if x in mapping.keep[j]}
        for i, x in enumerate(OPERANDS):
            if x in bits and bits[x] > cap[i]:
                raise ValueError(
                    f"{where}: level {name!r}: the {x} tile is {tiles[j][i]} words x "
                    f"{wb[i]:g} b = {bits[x]:g} b but the {x} capacity is {cap[i]:g} b"
                )
        if sum(bits.values()) > shared:
            raise ValueError(
                f"{where}: level {name!r}: tiles "
                + ", ".join(f"{x}={b:g} b" for x, b in bits.items())
                + f" total {sum(bits.values()):g} b > shared capacity {shared:g} b"
            )
