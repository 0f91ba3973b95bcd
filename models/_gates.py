"""Pruning-gate hooks: one uniform site per prunable output channel group / head.

Every prunable place in a zoo model calls a :class:`Gate` module on the activation it
may prune. The default gate is the identity (it returns its input unchanged, so it
adds no parameter, no operation and nothing to a jaxpr). Later work replaces the
gates in place with :func:`set_gates` (learned masks, hard-concrete gates, fixed
channel masks ...) and reads their keep fractions with :func:`gate_sites`.

Conventions (what a gate sees):

* ``kind="channel"``: the activation is ``[..., C]`` (NHWC feature maps ``[B, H, W, C]``,
  dense features ``[B, D]`` or token features ``[B, T, D]``); the gate acts on the last
  axis, ``size == C``. The gate sits after the layer's normalization and activation
  (``conv -> BatchNorm -> ReLU -> gate``), so a zero gate value removes that output
  channel's whole contribution to the rest of the network (BatchNorm's shift cannot
  bring it back).
* ``kind="head"``: the activation is the per-head attention output ``Z = A V`` of shape
  ``[B, T, H, F]`` (before the heads are concatenated and projected by ``WZ``); the gate
  acts on axis -2, ``size == H``. A zero value removes that head's contribution.

Site metadata (see :class:`GateSite`): the module path of the gate, the path of the
layer whose output it gates (``layer``; for a head gate, the attention module, e.g.
``blocks.3.attn``) and the layers whose *input* channels are exactly the gated tensor's
channels (``consumers``), so pruning a channel there also removes an input channel of
each consumer. A gate placed before a residual addition has no consumers (the
residual stream keeps the channel). Paths are the dotted module paths that
``nnx`` reports for parameters (``("blocks", 3, "attn", "q", "kernel")`` ->
``blocks.3.attn.q``), i.e. what a jaxpr-based extractor recovers from parameter paths.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "GATE_KINDS",
    "Gate",
    "GateParam",
    "GateSite",
    "ScaleGate",
    "gate_sites",
    "set_gates",
]

GateKind = Literal["channel", "head"]
GATE_KINDS: tuple[str, ...] = ("channel", "head")

_creation_order = itertools.count()


class GateParam(nnx.Param):
    """Variable type of learnable gate values (a subclass of ``nnx.Param``).

    Filters: ``nnx.Param`` selects weights *and* gates; ``GateParam`` selects gates
    only; ``nnx.All(nnx.Param, nnx.Not(GateParam))`` selects the weights only.
    """


class Gate(nnx.Module):
    """Identity gate: the base class and the default at every prunable site.

    Subclasses override ``__call__`` (scale the activation per unit, see the module
    docstring for the axis conventions; :meth:`apply` does the broadcasting) and
    :meth:`keep` (per-unit keep values in ``[0, 1]``, read by the cost model). A
    stochastic gate should define a ``deterministic`` attribute: ``model.train()`` /
    ``model.eval()`` set it like Dropout's.

    Args:
      size: number of gated units (channels, or heads).
      kind: ``"channel"`` or ``"head"``.
    """

    def __init__(self, size: int, kind: GateKind = "channel"):
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"Gate: size must be a positive int, got {size!r}")
        if kind not in GATE_KINDS:
            raise ValueError(f"Gate: kind must be one of {GATE_KINDS}, got {kind!r}")
        self.size = size
        self.kind = kind
        # Site metadata, set by the model that places the gate (see `place_gate`)
        # and carried over by `set_gates`. Paths are relative to the enclosing
        # zoo model (`ZooModel`), or to the root module if there is none.
        self.site_layer: str = ""
        self.site_consumers: tuple[str, ...] = ()
        self.site_order: int = next(_creation_order)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Identity: returns ``x`` itself (no operation is traced)."""
        return x

    def keep(self) -> jax.Array:
        """Per-unit keep values, float32 ``[size]`` in ``[0, 1]`` (all ones here)."""
        return jnp.ones((self.size,), jnp.float32)

    def keep_fraction(self) -> jax.Array:
        """Mean of :meth:`keep`: the fraction of units kept (float32 scalar)."""
        return jnp.mean(self.keep())

    def apply(self, x: jax.Array, values: jax.Array) -> jax.Array:
        """Multiplies ``x`` by per-unit ``values [size]`` along this gate's axis.

        Args:
          x: the activation (``[..., C]`` for channel gates, ``[B, T, H, F]`` for
            head gates).
          values: ``[size]`` scale per unit; cast to ``x.dtype``.

        Returns:
          ``x`` scaled per unit, same shape and dtype.
        """
        axis = -1 if self.kind == "channel" else -2
        if x.ndim < -axis or x.shape[axis] != self.size:
            raise ValueError(
                f"{type(self).__name__} for layer {self.site_layer!r} ({self.kind}, "
                f"size {self.size}) got an activation of shape {x.shape}; expected "
                f"size {self.size} on axis {axis}"
            )
        # full-rank broadcast shape (explicit: rank promotion may be disabled)
        shape = (1,) * (x.ndim + axis) + (self.size,) + (1,) * (-axis - 1)
        return x * jnp.reshape(values.astype(x.dtype), shape)


class ScaleGate(Gate):
    """Multiplicative gate with one learnable value per unit (``GateParam [size]``).

    ``y = x * values`` along the gate's axis. ``keep()`` is the hard indicator
    ``values != 0`` (not differentiable; learned relaxed gates should override it).

    Args:
      size: number of gated units.
      kind: ``"channel"`` or ``"head"``.
      init: initial value of every unit (a scalar), or an array ``[size]``.
      param_dtype: dtype of the stored values.
    """

    def __init__(
        self,
        size: int,
        kind: GateKind = "channel",
        *,
        init: float | jax.Array = 1.0,
        param_dtype=jnp.float32,
    ):
        super().__init__(size, kind)
        values = jnp.broadcast_to(jnp.asarray(init, param_dtype), (size,))
        self.values = GateParam(jnp.array(values))

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.apply(x, self.values[...])

    def keep(self) -> jax.Array:
        return (self.values[...] != 0).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class GateSite:
    """One prunable site of a model.

    Attributes:
      path: dotted module path of the gate (e.g. ``features.2.gate``).
      size: number of gated units (output channels, or heads).
      kind: ``"channel"`` or ``"head"``.
      layer: dotted path of the layer whose output is gated (``features.2.conv``);
        for head gates the attention module (``blocks.3.attn``).
      consumers: dotted paths of layers whose input channels are exactly the gated
        units (pruning a unit removes one input channel -- for a head gate, one
        block of ``head_dim`` input features -- of each); empty when the gated
        tensor is added into a residual stream.
      gate: the gate module now at ``path`` (not part of equality / hashing).
    """

    path: str
    size: int
    kind: str
    layer: str
    consumers: tuple[str, ...]
    gate: Gate = dataclasses.field(compare=False, repr=False)


def _join(base: str, rel: str) -> str:
    if not rel:
        return base
    return f"{base}.{rel}" if base else rel


def _path_str(parts) -> str:
    return ".".join(str(p) for p in parts)


def gate_sites(model: nnx.Module) -> tuple[GateSite, ...]:
    """Lists every gate in ``model`` with its site metadata, in forward order.

    Args:
      model: an ``nnx.Module`` (a zoo model, or any module containing zoo models or
        :class:`Gate` modules).

    Returns:
      A tuple of :class:`GateSite`, in the order the gates were created (for zoo
      models, the order they are applied in the forward pass).
    """
    from models._base import ZooModel  # local: avoid an import cycle

    modules = {tuple(p): m for p, m in nnx.iter_modules(model)}
    sites = []
    for parts, mod in modules.items():
        if not isinstance(mod, Gate):
            continue
        # Site paths are stored relative to the nearest enclosing zoo model.
        base = ()
        for k in range(len(parts) - 1, -1, -1):
            if isinstance(modules.get(parts[:k]), ZooModel):
                base = parts[:k]
                break
        b = _path_str(base)
        sites.append(
            (
                mod.site_order,
                GateSite(
                    path=_path_str(parts),
                    size=mod.size,
                    kind=mod.kind,
                    layer=_join(b, mod.site_layer),
                    consumers=tuple(_join(b, c) for c in mod.site_consumers),
                    gate=mod,
                ),
            )
        )
    sites.sort(key=lambda t: (t[0], t[1].path))
    return tuple(s for _, s in sites)


def set_gates(
    model: nnx.Module, factory: Callable[[GateSite], Gate | None]
) -> tuple[GateSite, ...]:
    """Replaces the gates of ``model`` in place.

    Args:
      model: the model (modified in place).
      factory: called once per site (see :func:`gate_sites`) and returns the new
        gate, a :class:`Gate` instance of the same ``size`` and ``kind``, or None to
        leave that site as it is. Example: ``lambda s: ScaleGate(s.size, s.kind)``.

    Returns:
      The sites after replacement (as :func:`gate_sites` would return them).

    Raises:
      TypeError: the factory returned something that is not a ``Gate``.
      ValueError: the new gate's size or kind differs from the site's, or one gate
        object is returned for two sites.
    """
    # validate every replacement first, so a failing factory leaves the model unchanged
    placed: dict[int, str] = {}
    plan = []
    for site in gate_sites(model):
        new = factory(site)
        if new is None:
            continue
        if not isinstance(new, Gate):
            raise TypeError(
                f"set_gates: factory returned {type(new).__name__} for site "
                f"{site.path!r}; it must return a models.Gate (or None to keep the site)"
            )
        if new.size != site.size or new.kind != site.kind:
            raise ValueError(
                f"set_gates: site {site.path!r} (gating {site.layer!r}) needs a "
                f"{site.kind} gate of size {site.size}; factory returned a "
                f"{new.kind} gate of size {new.size}"
            )
        if id(new) in placed:
            raise ValueError(
                f"set_gates: factory returned the same Gate object for sites "
                f"{placed[id(new)]!r} and {site.path!r}; create one gate per site"
            )
        placed[id(new)] = site.path
        plan.append((site, new))
    for site, new in plan:
        old = site.gate
        new.site_layer = old.site_layer
        new.site_consumers = old.site_consumers
        new.site_order = old.site_order
        parts = site.path.split(".")
        parent = model
        for p in parts[:-1]:
            parent = parent[int(p)] if p.isdigit() else getattr(parent, p)
        last = parts[-1]
        if last.isdigit():
            parent[int(last)] = new
        else:
            setattr(parent, last, new)
    return gate_sites(model)


def number_gates(model: nnx.Module) -> None:
    """Renumbers the gates of a freshly built model 0, 1, ... in creation order.

    Zoo models call this at the end of ``__init__`` so that the (static) order
    metadata is the same for every instance of an architecture (and so is the
    graphdef). Creation order is forward order in the zoo models.
    """
    gates = [m for _, m in nnx.iter_modules(model) if isinstance(m, Gate)]
    gates.sort(key=lambda g: g.site_order)
    for i, g in enumerate(gates):
        g.site_order = i


def place_gate(
    size: int, layer: str, consumers: tuple[str, ...] = (), kind: GateKind = "channel"
) -> Gate:
    """Creates the default (identity) gate of a site; used by the zoo models.

    Args:
      size: number of units.
      layer: path (relative to the zoo model) of the layer whose output is gated.
      consumers: paths (relative to the zoo model) of the layers reading the gated
        units as input channels.
      kind: ``"channel"`` or ``"head"``.

    Returns:
      A :class:`Gate` carrying the site metadata.
    """
    g = Gate(size, kind)
    g.site_layer = layer
    g.site_consumers = tuple(consumers)
    return g
