"""Stage 3, the mapping: how a layer's loop nest is placed on an architecture.

* :mod:`~hwmodel.mapping.loopnest`: :class:`~hwmodel.Mapping` (temporal factors and
  orders per storage level, spatial unrolling, bypass) and its stacked form.
* :mod:`~hwmodel.mapping.dataflows`: the dataflow families (WS, OS, IS, RS, NLR).
* :mod:`~hwmodel.mapping.tiles`: tile sizes and :func:`~hwmodel.validate_mapping`.
"""
