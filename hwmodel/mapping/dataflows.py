"""Dataflows: named families of mappings (what stays in the PE, what is spread spatially).

A dataflow fixes what the per-PE levels keep ("what stays in the RF"), which dims may
be spread over PE rows and columns, which dims may have loops inside the PE, and the
loop-order templates tried at the shared level just above the array.  The mapper
(:mod:`hwmodel.costmodel.mapper`) searches within one family.
"""

from __future__ import annotations

import dataclasses

__all__ = ["DATAFLOWS", "DATAFLOW_SPECS", "DataflowSpec", "ORDER_TEMPLATES"]

# Loop-order templates (outer to inner) named by the operand they keep stationary at
# the level below: the dims irrelevant to that operand are innermost, so the tile of
# that operand at the next level down is not refetched while they iterate.
ORDER_TEMPLATES: dict[str, tuple[str, ...]] = {
    # W stationary: N P Q innermost (Q last: the input window slides along a row).
    "W": ("G", "M", "C", "R", "S", "N", "P", "Q"),
    # I stationary: M innermost.
    "I": ("G", "N", "C", "P", "R", "Q", "S", "M"),
    # O stationary: the reduction dims C R S innermost.
    "O": ("G", "N", "M", "P", "Q", "C", "R", "S"),
}


@dataclasses.dataclass(frozen=True)
class DataflowSpec:
    """A dataflow: a family of mappings (what stays in the PE, what is spatial).

    Attributes:
      name: short name (``"rs"``...).
      title: long name.
      pe_keep: operands the per-PE storage levels (RF) keep; the others bypass the
        PE and are fetched through the NoC every cycle (multicast / spatially
        reduced), intersected with what the architecture lets each level hold.
      spatial_x: dims that may be spread over PE columns.
      spatial_y: dims that may be spread over PE rows.
      pe_dims: dims that may have temporal loops at per-PE levels.
      array_orders: loop-order templates (keys of :data:`ORDER_TEMPLATES`) tried for
        the shared level just above the PE array; outer shared levels try all three.
      source: where the family comes from.
    """

    name: str
    title: str
    pe_keep: tuple[str, ...]
    spatial_x: tuple[str, ...]
    spatial_y: tuple[str, ...]
    pe_dims: tuple[str, ...]
    array_orders: tuple[str, ...]
    source: str


DATAFLOW_SPECS: dict[str, DataflowSpec] = {
    "ws": DataflowSpec(
        name="ws",
        title="weight stationary",
        pe_keep=("W",),
        spatial_x=("M",),
        spatial_y=("C", "R", "S"),
        pe_dims=("M", "C", "R", "S"),
        array_orders=("W",),
        source=(
            "Chen et al., ISCA 2016, Sec. V-A (WS: each PE keeps weights in its RF; "
            "ifmaps are broadcast and psums accumulate across the array; e.g. "
            "NeuFlow); Sze et al., Proc. IEEE 2017, Sec. V-B (TPU-like: filters "
            "over columns, input channels over rows)."
        ),
    ),
    "os": DataflowSpec(
        name="os",
        title="output stationary",
        pe_keep=("O",),
        spatial_x=("Q", "M"),
        spatial_y=("P", "N"),
        pe_dims=("N", "M", "P", "Q"),
        array_orders=("O",),
        source=(
            "Chen et al., ISCA 2016, Sec. V-A (OS: each PE accumulates its own "
            "outputs' psums in the RF; ShiDianNao-like, output pixels / channels "
            "spread over the array); Sze et al., Proc. IEEE 2017, Sec. V-B."
        ),
    ),
    "is": DataflowSpec(
        name="is",
        title="input stationary",
        pe_keep=("I",),
        spatial_x=("Q", "N"),
        spatial_y=("C", "P"),
        pe_dims=("N", "C", "P", "Q", "R", "S"),
        array_orders=("I",),
        source=(
            "Sze et al., Proc. IEEE 2017, Sec. V-B and the ISCA 2017 tutorial "
            "(input stationary: ifmap pixels stay in the RF while filters stream; "
            "e.g. SCNN, Parashar et al. ISCA 2017)."
        ),
    ),
    "rs": DataflowSpec(
        name="rs",
        title="row stationary (Eyeriss)",
        pe_keep=("W", "I", "O"),
        spatial_x=("P", "M"),
        spatial_y=("R", "C"),
        pe_dims=("S", "Q", "C", "M", "N"),
        array_orders=("W",),
        source=(
            "Chen et al., ISCA 2016, Sec. IV (row stationary: a PE runs a 1-D row "
            "convolution with a filter row, an input window and a psum row in its "
            "RF; filter rows over PE rows, output rows over PE columns, folded with "
            "channels and filters; inputs reused diagonally, psums accumulated "
            "vertically); Chen et al., JSSC 2017 (Eyeriss chip)."
        ),
    ),
    "nlr": DataflowSpec(
        name="nlr",
        title="no local reuse",
        pe_keep=(),
        spatial_x=("M",),
        spatial_y=("C",),
        pe_dims=(),
        array_orders=("W", "I", "O"),
        source=(
            "Chen et al., ISCA 2016, Sec. V-A (NLR: no RF data reuse; every operand "
            "comes from the global buffer, psums reduced across the array; "
            "DianNao / DaDianNao-like)."
        ),
    ),
}

DATAFLOWS: tuple[str, ...] = tuple(DATAFLOW_SPECS)
"""Names of the dataflow families: ws, os, is, rs, nlr."""
