"""hwmodel: a differentiable hardware cost model in pure JAX (never imports flax).

Public API (re-exported explicitly):

* Workloads: :class:`LayerSpec`, :class:`Workload`, :class:`Unrecognized`.
* Architectures: :class:`Architecture`, :class:`MemoryLevel`, :class:`AreaModel`,
  ``OPERANDS``.
"""

from hwmodel._arch import OPERANDS, Architecture, AreaModel, MemoryLevel
from hwmodel._workload import DIMS, LayerSpec, Unrecognized, Workload

__all__ = [
    "DIMS",
    "OPERANDS",
    "Architecture",
    "AreaModel",
    "LayerSpec",
    "MemoryLevel",
    "Unrecognized",
    "Workload",
]
