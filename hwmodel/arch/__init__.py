"""Stage 2, the architecture: the hardware a workload runs on.

* :mod:`~hwmodel.arch.kinds`: operand names, memory-level kinds, sparsity and
  compression modes.
* :mod:`~hwmodel.arch.architecture`: :class:`~hwmodel.Architecture` (a pytree of
  sizes, energies, bandwidths), checks, area and on-chip memory.
* :mod:`~hwmodel.arch.yaml_read` / :mod:`~hwmodel.arch.yaml_write`: the strict YAML
  format (:mod:`~hwmodel.arch.yaml_nodes`: the node readers they share with
  :mod:`~hwmodel.arch.ert`, the Accelergy energy-table import).
* :mod:`~hwmodel.arch.scaling`: size-dependent energy per access, for designs whose
  buffers are resized (:func:`~hwmodel.scale_access_energy`).
* :mod:`~hwmodel.arch.load`: the shipped presets (``presets/*.yaml``) and
  :func:`~hwmodel.load_arch`.
"""
