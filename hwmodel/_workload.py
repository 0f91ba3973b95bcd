"""Layer specs and workloads: what a network computes, in the DESIGN.md vocabulary.

Every MAC-bearing operation is described by one canonical loop nest (the
Timeloop/Eyeriss convolution nest, extended with a group dimension ``G``)::

    for g in G:            # conv feature groups, or batched-matmul batch dims
      for n in N:          # batch (conv) / rows of the left operand (matmul)
        for m in M:        # output channels per group / columns of the right operand
          for p in P:      # output rows
            for q in Q:    # output columns
              for c in C:  # input channels per group / contracted dims
                for r in R:      # filter rows
                  for s in S:    # filter columns
                    O[g,n,m,p,q] += I[g,n,c, p*U + r*Dh, q*V + s*Dw] * W[g,m,c,r,s]

``U, V`` are the strides and ``Dh, Dw`` the dilations.  A matmul ``[N x C] @ [C x M]``
is the nest with ``P = Q = R = S = 1``; attention's batched matmuls put batch x heads
in ``G``.  The input operand of the loop nest is the *padded* input window
(``H = (P-1)*U + (R-1)*Dh + 1`` rows), as in Timeloop; the real, unpadded input
extent is kept in ``H, W`` for activation counts.

Specs are static metadata (plain ints and strings, hashable); continuous knobs
(densities, keep fractions, bit widths) are passed to the cost model separately as
arrays, one entry per layer.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

__all__ = ["LayerSpec", "Unrecognized", "Workload"]

LayerKind = Literal["conv", "matmul"]


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One MAC-bearing layer as a canonical 8-deep loop nest (see module docstring).

    Attributes:
      name: module path where recoverable (e.g. ``blocks.3.attn.qk``), else a
        generated ``<primitive>_<index>`` name.
      kind: ``"conv"`` (from ``conv_general_dilated``) or ``"matmul"``
        (from ``dot_general``: dense layers, batched matmuls, einsums).
      G, N, M, C, P, Q, R, S: loop bounds (all >= 1).
      stride: ``(U, V)`` output-to-input step along rows and columns.
      dilation: ``(Dh, Dw)`` filter (rhs) dilation.
      H, W: real (unpadded) input rows/columns, for activation counts; for matmuls 1.
      dynamic: True when both operands are computed from the input (attention's
        ``Q K^T`` and ``A V``): the "weight" operand is then activation data that
        cannot be preloaded, and it is not counted as parameters.
      w_bits, i_bits, o_bits: operand bit widths taken from the traced dtypes.
      nonmac_ops: element-wise / reduction work (softmax, normalization, activation
        functions, residual adds, pooling ...) attributed to this layer: the count of
        scalar results those primitives produce (one op per output element each).
      batch: the network batch size this layer was traced with (for "per inference"
        figures), or None if unknown.
    """

    name: str
    kind: LayerKind
    G: int = 1
    N: int = 1
    M: int = 1
    C: int = 1
    P: int = 1
    Q: int = 1
    R: int = 1
    S: int = 1
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    H: int = 1
    W: int = 1
    dynamic: bool = False
    w_bits: int = 32
    i_bits: int = 32
    o_bits: int = 32
    nonmac_ops: int = 0
    batch: int | None = None

    def __post_init__(self):
        for f in ("G", "N", "M", "C", "P", "Q", "R", "S", "H", "W"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(
                    f"LayerSpec {self.name!r}: {f} must be a positive int, got {v!r}"
                )
        if self.kind not in ("conv", "matmul"):
            raise ValueError(
                f"LayerSpec {self.name!r}: kind must be 'conv' or 'matmul', got {self.kind!r}"
            )
        for f in ("stride", "dilation"):
            v = getattr(self, f)
            if len(v) != 2 or any((not isinstance(x, int)) or x < 1 for x in v):
                raise ValueError(
                    f"LayerSpec {self.name!r}: {f} must be two positive ints, got {v!r}"
                )

    # ---- loop-nest geometry ------------------------------------------------------
    @property
    def bounds(self) -> dict[str, int]:
        """Loop bounds by dimension name, in canonical order G N M P Q C R S."""
        return {d: getattr(self, d) for d in DIMS}

    @property
    def window_h(self) -> int:
        """Rows of the (padded) input window the loop nest reads: (P-1)U + (R-1)Dh + 1."""
        return (self.P - 1) * self.stride[0] + (self.R - 1) * self.dilation[0] + 1

    @property
    def window_w(self) -> int:
        """Columns of the (padded) input window: (Q-1)V + (S-1)Dw + 1."""
        return (self.Q - 1) * self.stride[1] + (self.S - 1) * self.dilation[1] + 1

    # ---- counts ---------------------------------------------------------------------
    @property
    def macs(self) -> int:
        """Multiply-accumulates: G*N*M*C*P*Q*R*S."""
        return math.prod(self.bounds.values())

    @property
    def weight_operand_size(self) -> int:
        """Elements of the second operand (weights, or K/V for dynamic matmuls): G*M*C*R*S."""
        return self.G * self.M * self.C * self.R * self.S

    @property
    def weights(self) -> int:
        """Parameters (0 for dynamic-operand matmuls)."""
        return 0 if self.dynamic else self.weight_operand_size

    @property
    def input_activations(self) -> int:
        """Elements of the real (unpadded) input: G*N*C*H*W."""
        return self.G * self.N * self.C * self.H * self.W

    @property
    def output_activations(self) -> int:
        """Elements of the output: G*N*M*P*Q."""
        return self.G * self.N * self.M * self.P * self.Q

    @property
    def is_attention(self) -> bool:
        """A matmul whose operands are both activations (``Q K^T``, ``A V``)."""
        return self.kind == "matmul" and self.dynamic

    @property
    def category(self) -> Literal["conv", "fc", "attention"]:
        """Table category: CONV, FC/matmul with a static weight, or attention."""
        if self.kind == "conv":
            return "conv"
        return "attention" if self.dynamic else "fc"


DIMS = ("G", "N", "M", "P", "Q", "C", "R", "S")
"""Canonical loop dimension names, outer to inner in the reference nest."""


@dataclasses.dataclass(frozen=True)
class Unrecognized:
    """A primitive the extractor could not attribute to a layer (never silently dropped).

    Attributes:
      primitive: the jaxpr primitive name.
      where: module path / source location it came from, as far as known.
      reason: why it was not understood.
    """

    primitive: str
    where: str
    reason: str


@dataclasses.dataclass(frozen=True)
class Workload:
    """An ordered tuple of layers plus what the extractor could not understand.

    Attributes:
      layers: the MAC-bearing layers in execution order.
      name: model name (free text).
      batch: the batch size the workload was traced with, or None.
      unrecognized: primitives that were not understood (see ``Unrecognized``).
    """

    layers: tuple[LayerSpec, ...]
    name: str = "workload"
    batch: int | None = None
    unrecognized: tuple[Unrecognized, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "unrecognized", tuple(self.unrecognized))
        names = [layer.name for layer in self.layers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"Workload {self.name!r}: duplicate layer names {dup}")

    def __len__(self) -> int:
        return len(self.layers)

    def __iter__(self):
        return iter(self.layers)

    def __getitem__(self, i):
        return self.layers[i]

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def total_weights(self) -> int:
        return sum(layer.weights for layer in self.layers)

    @property
    def total_nonmac_ops(self) -> int:
        return sum(layer.nonmac_ops for layer in self.layers)
