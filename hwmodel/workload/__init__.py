"""Stage 1, the workload: what a network computes.

* :mod:`~hwmodel.workload.spec`: :class:`~hwmodel.LayerSpec` (one layer as the
  canonical loop nest ``G N M P Q C R S``) and :class:`~hwmodel.Workload`.
* :mod:`~hwmodel.workload.extract`: :func:`~hwmodel.extract_workload`, a workload
  from any JAX function by walking its jaxpr (no FLOPs run).
"""
