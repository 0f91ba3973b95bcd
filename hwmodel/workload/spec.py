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

import collections
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
        functions, residual adds, pooling ...) attributed to this layer: one op per
        output element of each element-wise primitive, one per input element of each
        reduction, output elements x window size for pooling; layout changes are free
        (the full rules are in ``hwmodel.workload.extract``).  The extractor attributes such
        work to the nearest preceding MAC layer in program order.
      batch: the network batch size this layer was traced with (for "per inference"
        figures), or None if unknown.
      padding: ``((top, bottom), (left, right))`` zero padding of the input, in
        elements (may be negative: cropping), for convolutions; zeros for matmuls.
        Informational: P and Q already account for it.
      lhs_dilation: ``(Dh_in, Dw_in)`` input (lhs) dilation of a transposed /
        fractionally strided convolution: the loop nest runs over the dilated,
        padded input, so the zeros it inserts are counted as MACs, like padding.
      heads: for a batched matmul, the number of attention heads folded into ``G``
        (``G`` = batch x heads); 1 otherwise.  Informational.
      weight_param: pytree path of the parameter that feeds the weight operand
        (e.g. ``blocks.3.attn.q.kernel``), with the scan iteration index filled in;
        ``""`` when the weight is not a named parameter (dynamic operand, closed-over
        constant).  Two layers with the same non-empty ``weight_param`` share weights.
      source: ``file:line (function)`` of the user code that issued the primitive,
        as far as JAX recorded it; ``""`` if unknown.
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
    padding: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))
    lhs_dilation: tuple[int, int] = (1, 1)
    heads: int = 1
    weight_param: str = ""
    source: str = ""

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
        for f in ("stride", "dilation", "lhs_dilation"):
            v = getattr(self, f)
            if len(v) != 2 or any((not isinstance(x, int)) or x < 1 for x in v):
                raise ValueError(
                    f"LayerSpec {self.name!r}: {f} must be two positive ints, got {v!r}"
                )
        pad = self.padding
        if (
            len(pad) != 2
            or any(len(pair) != 2 for pair in pad)
            or any(not isinstance(x, int) or isinstance(x, bool) for pair in pad for x in pair)
        ):
            raise ValueError(
                f"LayerSpec {self.name!r}: padding must be ((top, bottom), (left, right)) "
                f"ints, got {pad!r}"
            )
        for f in ("nonmac_ops",):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ValueError(
                    f"LayerSpec {self.name!r}: {f} must be a non-negative int, got {v!r}"
                )
        if not isinstance(self.heads, int) or isinstance(self.heads, bool) or self.heads < 1:
            raise ValueError(
                f"LayerSpec {self.name!r}: heads must be a positive int, got {self.heads!r}"
            )
        for f in ("w_bits", "i_bits", "o_bits"):
            v = getattr(self, f)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(
                    f"LayerSpec {self.name!r}: {f} must be a positive int, got {v!r}"
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

    # ---- matmul view (GEMM vocabulary) ----------------------------------------------
    @property
    def gemm_m(self) -> int:
        """Rows of the GEMM ``[M x K] @ [K x N]`` per group: canonical ``N*P*Q``."""
        return self.N * self.P * self.Q

    @property
    def gemm_k(self) -> int:
        """Contracted length of the GEMM per group: canonical ``C*R*S``."""
        return self.C * self.R * self.S

    @property
    def gemm_n(self) -> int:
        """Columns of the GEMM per group: canonical ``M``."""
        return self.M

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
        counts = collections.Counter(layer.name for layer in self.layers)
        dup = sorted(n for n, k in counts.items() if k > 1)
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

    @property
    def unique_weights(self) -> int:
        """Parameters counting each shared weight once.

        Layers whose ``weight_param`` is the same non-empty path (a weight reused by
        several layers, e.g. a recurrent cell unrolled by ``scan`` over a closed-over
        parameter) are counted once; layers without a ``weight_param`` are all counted.
        """
        seen: set[str] = set()
        total = 0
        for layer in self.layers:
            if layer.weight_param:
                if layer.weight_param in seen:
                    continue
                seen.add(layer.weight_param)
            total += layer.weights
        return total

    def summary(self) -> dict:
        """Totals per table category, as a paper's model-spec table reports them.

        Returns:
          A dict with ``total_macs, total_weights, total_nonmac_ops, layers`` (count)
          and, for each category ``conv``, ``fc`` (matmul with a static weight) and
          ``attention`` (matmul with two dynamic operands): ``<cat>_layers``,
          ``<cat>_macs``, ``<cat>_weights``, ``<cat>_input_activations``,
          ``<cat>_output_activations``.  Counts are ints (MACs, elements).
        """
        out: dict = {
            "total_macs": self.total_macs,
            "total_weights": self.total_weights,
            "total_nonmac_ops": self.total_nonmac_ops,
            "num_layers": len(self.layers),
        }
        for cat in CATEGORIES:
            sel = [layer for layer in self.layers if layer.category == cat]
            out[f"{cat}_layers"] = len(sel)
            out[f"{cat}_macs"] = sum(layer.macs for layer in sel)
            out[f"{cat}_weights"] = sum(layer.weights for layer in sel)
            out[f"{cat}_input_activations"] = sum(layer.input_activations for layer in sel)
            out[f"{cat}_output_activations"] = sum(layer.output_activations for layer in sel)
        return out

    def to_dict(self) -> dict:
        """A JSON-ready description: ``model, batch``, the ``summary()`` totals,
        ``layers`` (one dict per layer: name, kind, category, loop bounds, stride,
        dilation, bits, macs, weights, input/output activations, nonmac_ops, dynamic,
        heads, weight_param, source) and ``unrecognized`` (primitive, where, reason)."""
        layers = []
        for layer in self.layers:
            d = {
                "name": layer.name,
                "kind": layer.kind,
                "category": layer.category,
                "macs": layer.macs,
                "weights": layer.weights,
                "input_activations": layer.input_activations,
                "output_activations": layer.output_activations,
                "nonmac_ops": layer.nonmac_ops,
                "dynamic": layer.dynamic,
            }
            d.update(layer.bounds)
            d.update(
                stride=list(layer.stride),
                dilation=list(layer.dilation),
                lhs_dilation=list(layer.lhs_dilation),
                padding=[list(p) for p in layer.padding],
                H=layer.H,
                W=layer.W,
                heads=layer.heads,
                w_bits=layer.w_bits,
                i_bits=layer.i_bits,
                o_bits=layer.o_bits,
                weight_param=layer.weight_param,
                source=layer.source,
            )
            layers.append(d)
        return {
            "model": self.name,
            "batch": self.batch,
            **self.summary(),
            "layers": layers,
            "unrecognized": [dataclasses.asdict(u) for u in self.unrecognized],
        }

    def table(self, *, per_layer: bool = True) -> str:
        """A plain-text model-spec table: one row per layer (name, kind, shape,
        weights, MACs, input/output activations, non-MAC ops) and a summary per
        category (CONV, FC/matmul, attention) with the number of layers of each kind.

        Args:
          per_layer: include the per-layer rows (else only the summary).

        Returns:
          The table as a string (no trailing newline).
        """
        lines = [f"model {self.name}   batch {self.batch if self.batch is not None else '?'}"]
        if per_layer:
            head = ("layer", "kind", "shape", "weights", "MACs", "in act", "out act", "nonMAC")
            rows = [head]
            for layer in self.layers:
                rows.append(
                    (
                        layer.name,
                        _KIND_LABEL[layer.category],
                        _shape_str(layer),
                        f"{layer.weights:,}",
                        f"{layer.macs:,}",
                        f"{layer.input_activations:,}",
                        f"{layer.output_activations:,}",
                        f"{layer.nonmac_ops:,}",
                    )
                )
            lines += _format_rows(rows, right_from=3)
            lines.append("")
        s = self.summary()
        rows = [("kind", "layers", "weights", "MACs", "in act", "out act")]
        for cat in CATEGORIES:
            rows.append(
                (
                    _KIND_LABEL[cat],
                    f"{s[f'{cat}_layers']:,}",
                    f"{s[f'{cat}_weights']:,}",
                    f"{s[f'{cat}_macs']:,}",
                    f"{s[f'{cat}_input_activations']:,}",
                    f"{s[f'{cat}_output_activations']:,}",
                )
            )
        rows.append(
            (
                "total",
                f"{len(self.layers):,}",
                f"{self.total_weights:,}",
                f"{self.total_macs:,}",
                "",
                "",
            )
        )
        lines += _format_rows(rows, right_from=1)
        lines.append(f"non-MAC (element-wise/reduction) ops: {self.total_nonmac_ops:,}")
        if self.unrecognized:
            lines.append(f"UNRECOGNIZED ({len(self.unrecognized)}), not counted above:")
            for u in self.unrecognized:
                lines.append(f"  {u.primitive} at {u.where}: {u.reason}")
        return "\n".join(lines)


CATEGORIES = ("conv", "fc", "attention")
"""Table categories of ``LayerSpec.category``, in table order."""

_KIND_LABEL = {"conv": "CONV", "fc": "FC", "attention": "ATTN"}


def _shape_str(layer: LayerSpec) -> str:
    if layer.kind == "conv":
        s = f"{layer.M}x{layer.C}x{layer.R}x{layer.S}"
        if layer.G > 1:
            s = f"{layer.G}g {s}"
        if layer.stride != (1, 1):
            s += f" /{layer.stride[0]}" + (
                f",{layer.stride[1]}" if layer.stride[1] != layer.stride[0] else ""
            )
        if layer.dilation != (1, 1):
            s += f" d{layer.dilation[0]},{layer.dilation[1]}"
        return s + f" -> {layer.P}x{layer.Q}"
    s = f"{layer.N}x{layer.C} @ {layer.C}x{layer.M}"
    return f"{layer.G}x[{s}]" if layer.G > 1 else s


def _format_rows(rows, right_from: int) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [
            c.rjust(w) if i >= right_from else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths))
        ]
        out.append("  ".join(cells).rstrip())
    return out
