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
residual stream keeps the channel). A gate on a whole residual stream (``resnet20``
with ``stream_gates=True``) has several layers writing its channels: ``layer`` is the
first, ``producers`` the others (every output of them is a gated channel), and
``consumers`` every layer reading the stream. Paths are the dotted module paths that
``nnx`` reports for parameters (``("blocks", 3, "attn", "q", "kernel")`` ->
``blocks.3.attn.q``), i.e. what a jaxpr-based extractor recovers from parameter paths.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = [
    "GATE_KINDS",
    "Gate",
    "GateParam",
    "GateSite",
    "HardConcreteGate",
    "ScaleGate",
    "add_gates",
    "gate_sites",
    "gates_bypassed",
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
        self.site_producers: tuple[str, ...] = ()
        self.site_order: int = next(_creation_order)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Identity: returns ``x`` itself (no operation is traced)."""
        return x

    def draw(self) -> jax.Array | None:
        """The per-unit values ``[size]`` one forward pass multiplies by, or None for none.

        ``gate(x)`` is ``apply(x, draw())`` (or ``x`` when None). A model that applies one
        gate at several places (a residual stream's gate) calls :meth:`draw` once per
        forward pass and :meth:`apply` at each place, so every place sees the same sample.
        None here (the identity) and inside :func:`gates_bypassed`.
        """
        return None

    def keep(self) -> jax.Array:
        """Per-unit keep values, float32 ``[size]`` in ``[0, 1]`` (all ones here)."""
        return jnp.ones((self.size,), jnp.float32)

    def keep_fraction(self) -> jax.Array:
        """Mean of :meth:`keep`: the fraction of units kept (float32 scalar)."""
        return jnp.mean(self.keep())

    def hard_keep(self) -> jax.Array:
        """Per-unit 0/1 keep of the gate in inference mode (what a pruned model keeps);
        float32 ``[size]``. Here: :meth:`keep` (already 0/1 for fixed gates)."""
        return self.keep()

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
    """Multiplicative gate with one value per unit (``GateParam [size]``): a fixed mask.

    ``y = x * values`` along the gate's axis. Meant for *fixed* masks and scales (a
    pruned model's folded gate values, hand-made masks): :meth:`keep` is the hard
    indicator ``values != 0``, whose gradient is zero. Gates learned against the
    hardware cost need a differentiable keep: use :class:`HardConcreteGate`.

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
        """``x`` scaled per unit by ``values`` (see :meth:`Gate.apply` for the axis)."""
        v = self.draw()
        return x if v is None else self.apply(x, v)

    def draw(self) -> jax.Array | None:
        """``values`` (None inside :func:`gates_bypassed`)."""
        return None if _BYPASS.get() else self.values[...]

    def keep(self) -> jax.Array:
        """Hard keep indicator ``values != 0``, float32 ``[size]`` (zero gradient)."""
        return (self.values[...] != 0).astype(jnp.float32)


# Hard-concrete constants (Louizos, Welling, Kingma, ICLR 2018): temperature beta and
# the stretch interval (gamma, zeta) around [0, 1].
HC_BETA = 2.0 / 3.0
HC_GAMMA = -0.1
HC_ZETA = 1.1


class HardConcreteGate(Gate):
    """Learned L0 gate (hard-concrete distribution, Louizos et al. 2018), one per unit.

    Each unit has a learnable ``log_alpha`` (a :class:`GateParam`). In training mode
    (``deterministic=False``) the gate samples, per forward pass and unit,
    ``s = sigmoid((log u - log(1-u) + log_alpha) / beta)``, ``u ~ U(0, 1)``, and scales
    the unit by ``z = clip(s * (zeta - gamma) + gamma, 0, 1)``: exact zeros and ones occur
    with non-zero probability, and the sample is differentiable in ``log_alpha``
    (reparameterization). In inference mode (``model.eval()``) it uses the deterministic
    ``z = clip(sigmoid(log_alpha) * (zeta - gamma) + gamma, 0, 1)``.

    :meth:`keep` is ``P(z != 0) = sigmoid(log_alpha - beta * log(-gamma / zeta))``: a
    smooth function of ``log_alpha``, so the hardware cost model's gradient reaches
    every gate, weighted by what its layer's channels cost on the hardware.
    :meth:`hard_keep` is the inference-mode indicator ``z > 0`` (what a pruned model
    keeps).

    Why hard-concrete and not a sigmoid with a straight-through estimator: its expected
    keep is an exact, smooth probability (no biased surrogate gradient), its samples hit
    exact zeros during training (so the network learns to work without the unit), and
    its inference value is exactly 0 or 1 for most units once trained.

    Args:
      size: number of gated units.
      kind: ``"channel"`` or ``"head"``.
      rngs: random streams; the gate draws from the ``"gates"`` stream (the default
        stream when absent).
      init_keep: initial ``P(z != 0)`` of every unit, in (0, 1) (default 0.95).
      deterministic: inference mode (``model.eval()`` / ``model.train()`` set it).
    """

    def __init__(
        self,
        size: int,
        kind: GateKind = "channel",
        *,
        rngs: nnx.Rngs,
        init_keep: float = 0.95,
        deterministic: bool = False,
    ):
        super().__init__(size, kind)
        if not 0.0 < float(init_keep) < 1.0:
            raise ValueError(f"HardConcreteGate: init_keep must be in (0, 1), got {init_keep!r}")
        la = math.log(init_keep / (1.0 - init_keep)) + HC_BETA * math.log(-HC_GAMMA / HC_ZETA)
        self.log_alpha = GateParam(jnp.full((size,), la, jnp.float32))
        self.rngs = rngs["gates"].fork()
        self.deterministic = deterministic

    def sample(self) -> jax.Array:
        """A training-mode gate sample ``z [size]`` in ``[0, 1]`` (consumes one key)."""
        la = self.log_alpha[...]
        u = jax.random.uniform(self.rngs(), la.shape, la.dtype, 1e-6, 1.0 - 1e-6)
        s = jax.nn.sigmoid((jnp.log(u) - jnp.log1p(-u) + la) / HC_BETA)
        return jnp.clip(s * (HC_ZETA - HC_GAMMA) + HC_GAMMA, 0.0, 1.0)

    def values(self) -> jax.Array:
        """Inference-mode gate values ``z [size]`` in ``[0, 1]``."""
        s = jax.nn.sigmoid(self.log_alpha[...])
        return jnp.clip(s * (HC_ZETA - HC_GAMMA) + HC_GAMMA, 0.0, 1.0)

    def __call__(self, x: jax.Array) -> jax.Array:
        """``x`` scaled per unit by a sample (training) or the inference values."""
        v = self.draw()
        return x if v is None else self.apply(x, v)

    def draw(self) -> jax.Array | None:
        """A sample (training, consumes one key) or the inference values; None inside
        :func:`gates_bypassed`."""
        if _BYPASS.get():
            return None
        return self.values() if self.deterministic else self.sample()

    def keep(self) -> jax.Array:
        """Expected keep ``P(z != 0)``, float32 ``[size]`` in (0, 1); differentiable."""
        return jax.nn.sigmoid(self.log_alpha[...] - HC_BETA * math.log(-HC_GAMMA / HC_ZETA))

    def hard_keep(self) -> jax.Array:
        """Inference-mode keep indicator ``z > 0``, float32 ``[size]`` (zero gradient)."""
        return (self.values() > 0).astype(jnp.float32)


_BYPASS: contextvars.ContextVar[bool] = contextvars.ContextVar("gates_bypassed", default=False)


@contextlib.contextmanager
def gates_bypassed():
    """Within this context every :class:`Gate` returns its input unchanged.

    Used when extracting a gated model's workload: a gate is free on the hardware (its
    keep fractions reach the cost model as knobs, not as element-wise multiplies), so it
    must not be counted as non-MAC work. Trace-time only: it affects what is traced
    inside the ``with`` block.
    """
    token = _BYPASS.set(True)
    try:
        yield
    finally:
        _BYPASS.reset(token)


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
      producers: dotted paths of further layers whose outputs are exactly the gated
        units (a residual stream's gate: every layer adding into the stream); usually
        empty.
    """

    path: str
    size: int
    kind: str
    layer: str
    consumers: tuple[str, ...]
    gate: Gate = dataclasses.field(compare=False, repr=False)
    producers: tuple[str, ...] = ()


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
                    producers=tuple(_join(b, c) for c in mod.site_producers),
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

    Order: call it on the model itself, *before* building an ``nnx.Optimizer`` or an
    ``nnx.view`` of it. Both capture the model's structure: an optimizer built earlier
    has no state for the new gate parameters (its update fails with a pytree structure
    error), and an earlier view still holds the old gates. Build them afterwards.

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
        new.site_producers = old.site_producers
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


_GATED_CLASSES: dict[type, type] = {}


def _gated_class(cls: type) -> type:
    """A subclass of ``cls`` whose ``__call__`` applies ``self.out_gate`` to the output."""
    if cls not in _GATED_CLASSES:
        def __call__(self, *args, **kwargs):
            return self.out_gate(cls.__call__(self, *args, **kwargs))

        __call__.__doc__ = f"{cls.__name__}.__call__, then the output gate ``out_gate``."
        _GATED_CLASSES[cls] = type(cls)(
            f"Gated{cls.__name__}", (cls,), {"__call__": __call__, "__module__": __name__,
                                             "__qualname__": f"Gated{cls.__name__}"})
    return _GATED_CLASSES[cls]


def _get_path(model: nnx.Module, path: str):
    obj = model
    for p in path.split("."):
        try:
            obj = obj[int(p)] if p.isdigit() else getattr(obj, p)
        except (AttributeError, IndexError, KeyError, TypeError):
            return None
    return obj


def _features(mod, attr: str) -> int | None:
    v = getattr(mod, attr, None)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def add_gates(model: nnx.Module, layers: dict[str, Sequence[str]]) -> tuple[GateSite, ...]:
    """Places identity gates on the outputs of named layers of any NNX model.

    For models outside the zoo (whose layers carry no gate sites): each named layer
    (an ``nnx.Conv``, ``nnx.Linear`` or any module with ``out_features``) gets a channel
    :class:`Gate` on its output, stored as the attribute ``out_gate`` of the layer (path
    ``<layer>.out_gate``), and the site records the layers that consume the gated
    channels. Swap the identity gates for learned ones with :func:`set_gates`, *before*
    building an optimizer or an ``nnx.view`` of the model (both capture the model's
    structure).

    The gate acts on the layer's raw output, i.e. before the activation that follows
    it: for ReLU (and any activation with ``f(0) = 0``), a closed gate removes the
    channel exactly as a gate after the activation would. Do not gate a layer that is
    followed by BatchNorm (normalization undoes the gate's scale); zoo models place
    their gates after the normalization instead.

    Args:
      model: the model (modified in place).
      layers: ``{layer path: [consumer paths]}``, e.g.
        ``{"conv1": ["conv2"], "conv2": ["linear1"], "linear1": ["linear2"]}``; paths
        are the dotted module paths (``nnx.iter_modules``), the last layer (the
        logits) is usually not gated.

    Returns:
      All the model's gate sites (:func:`gate_sites`).

    Raises:
      ValueError: a path that names no module, a layer without ``out_features``, a
        layer gated twice, a consumer whose ``in_features`` is not a multiple of the
        gated channel count (or that is not a module).
    """
    plan = []
    for path, consumers in layers.items():
        mod = _get_path(model, path)
        if not isinstance(mod, nnx.Module):
            mods = [".".join(map(str, p)) for p, m in nnx.iter_modules(model)
                    if p and _features(m, "out_features")]
            raise ValueError(f"add_gates: no layer at {path!r}; layers with outputs: "
                             f"{', '.join(mods)}")
        size = _features(mod, "out_features")
        if size is None:
            raise ValueError(f"add_gates: layer {path!r} ({type(mod).__name__}) has no integer "
                             "out_features; gate an nnx.Conv / nnx.Linear output")
        if hasattr(mod, "out_gate"):
            raise ValueError(f"add_gates: layer {path!r} already has an output gate")
        if isinstance(consumers, str):
            consumers = (consumers,)
        for c in consumers:
            cm = _get_path(model, c)
            if not isinstance(cm, nnx.Module):
                raise ValueError(f"add_gates: consumer {c!r} of {path!r} names no module")
            fin = _features(cm, "in_features")
            if fin is None or fin % size:
                raise ValueError(
                    f"add_gates: consumer {c!r} of {path!r} has in_features {fin}, not a "
                    f"multiple of the {size} gated channels")
        plan.append((path, mod, size, tuple(consumers)))
    for path, mod, size, consumers in plan:
        g = Gate(size, "channel")
        g.site_layer = path
        g.site_consumers = consumers
        mod.__class__ = _gated_class(type(mod))
        mod.out_gate = g
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
    size: int, layer: str, consumers: tuple[str, ...] = (), kind: GateKind = "channel",
    producers: tuple[str, ...] = (),
) -> Gate:
    """Creates the default (identity) gate of a site; used by the zoo models.

    Args:
      size: number of units.
      layer: path (relative to the zoo model) of the layer whose output is gated.
      consumers: paths (relative to the zoo model) of the layers reading the gated
        units as input channels.
      kind: ``"channel"`` or ``"head"``.
      producers: paths of further layers whose outputs are the gated units (a
        residual stream written by several layers).

    Returns:
      A :class:`Gate` carrying the site metadata.
    """
    g = Gate(size, kind)
    g.site_layer = layer
    g.site_consumers = tuple(consumers)
    g.site_producers = tuple(producers)
    return g
