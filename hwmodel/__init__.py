"""hwmodel: a differentiable hardware cost model in pure JAX (never imports flax).

Public API (re-exported explicitly):

* Workloads: :class:`LayerSpec`, :class:`Workload`, :class:`Unrecognized`,
  ``CATEGORIES``; extraction from any JAX function: :func:`extract_workload`,
  :class:`ExtractionError`.
* Architectures: :class:`Architecture`, :class:`MemoryLevel`, :class:`AreaModel`,
  ``OPERANDS``.
* ZigZag interchange (peer check): :func:`export_zigzag`, :func:`zigzag_workload`,
  :func:`zigzag_accelerator`, :func:`zigzag_mapping`, :func:`architecture_from_zigzag`,
  :class:`ZigZagFiles`, ``ZIGZAG_DIMS``, ``ZIGZAG_DATAFLOW_HINTS``.
"""

from hwmodel._arch import OPERANDS, Architecture, AreaModel, MemoryLevel
from hwmodel._extract import ExtractionError, extract_workload
from hwmodel._workload import CATEGORIES, DIMS, LayerSpec, Unrecognized, Workload
from hwmodel._zigzag import (
    ZIGZAG_DATAFLOW_HINTS,
    ZIGZAG_DIMS,
    ZigZagFiles,
    architecture_from_zigzag,
    export_zigzag,
    zigzag_accelerator,
    zigzag_mapping,
    zigzag_workload,
)

__all__ = [
    "CATEGORIES",
    "DIMS",
    "ExtractionError",
    "OPERANDS",
    "Architecture",
    "AreaModel",
    "LayerSpec",
    "MemoryLevel",
    "Unrecognized",
    "Workload",
    "ZIGZAG_DATAFLOW_HINTS",
    "ZIGZAG_DIMS",
    "ZigZagFiles",
    "architecture_from_zigzag",
    "export_zigzag",
    "zigzag_accelerator",
    "zigzag_mapping",
    "zigzag_workload",
    "extract_workload",
]
