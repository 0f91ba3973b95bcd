"""Stage 4, the cost: access counts, energy and time of mapped layers, and the
mapper that searches mappings by that cost.

* :mod:`~hwmodel.costmodel.counts`: exact access counts per level and operand, over
  any array namespace (numpy or ``jax.numpy``).
* :mod:`~hwmodel.costmodel.evaluate`: energy, cycles and legality from the counts.
* :mod:`~hwmodel.costmodel.mapper`: :func:`~hwmodel.map_workload`, the best mapping
  per layer within a dataflow (it scores candidates with the two modules above).
* :mod:`~hwmodel.costmodel.cost`: :func:`~hwmodel.cost`, the differentiable model
  (knobs, per-layer and total :class:`~hwmodel.Cost`, the report card).
* :mod:`~hwmodel.costmodel.simulate`: :func:`~hwmodel.simulate`, the brute-force
  loop-nest walk the counts are checked against.
"""
