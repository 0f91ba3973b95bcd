"""Interchange with other tools.

* :mod:`~hwmodel.interop.zigzag`: ZigZag workload / accelerator / mapping export and
  :func:`~hwmodel.architecture_from_zigzag` (the peer check).
"""
