"""hwmodel: a differentiable hardware cost model in pure JAX (never imports flax).

Public API (re-exported explicitly):

* Workloads: :class:`LayerSpec`, :class:`Workload`, :class:`Unrecognized`,
  ``CATEGORIES``; extraction from any JAX function: :func:`extract_workload`,
  :class:`ExtractionError`.
* Architectures: :class:`Architecture`, :class:`MemoryLevel`, :class:`AreaModel`,
  ``OPERANDS``.
"""

from hwmodel._arch import OPERANDS, Architecture, AreaModel, MemoryLevel
from hwmodel._extract import ExtractionError, extract_workload
from hwmodel._workload import CATEGORIES, DIMS, LayerSpec, Unrecognized, Workload

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
    "extract_workload",
]
