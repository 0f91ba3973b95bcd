"""Unstructured (weight) pruning: global magnitude and energy-aware magnitude pruning.

``codesign train ... --method M --prune-target T`` selects one (:data:`PRUNE_METHODS`):

* ``magnitude``: the baseline. One threshold over all prunable kernels: the weights
  with the smallest ``|w|`` are removed, wherever they are.
* ``energy-magnitude``: energy-aware magnitude pruning, in the spirit of Yang, Chen and
  Sze (CVPR 2017, "Designing energy-efficient convolutional neural networks using
  energy-aware pruning"): layers are pruned according to what their weights cost on the
  target hardware, magnitude order inside a layer. Each weight is ranked by
  ``|w| / e_l``, where ``e_l`` is the marginal saving of the hardware objective per
  weight removed from its layer ``l``: ``e_l = (dH / d density_l) / n_l``, taken with
  ``jax.grad`` of the cost model with respect to the per-layer weight densities (at the
  current densities, recomputed at every pruning step). A weight is cheap to remove
  when it is small, and worth removing when its layer spends much energy per weight
  (a convolution kernel reused at every pixel) rather than little (a fully connected
  weight used once). With equal ``e_l`` everywhere the order is global magnitude's.
  The ranking is ``|w| / e_l ** p`` (``--prune-energy-power p``, default 0.5): ``p = 1``
  ranks by magnitude per unit saved, which on small CNNs empties whole layers (a first
  conv layer's weights each cost ~20x a dense layer's; removing them all wrecks the
  network beyond what fine-tuning restores), ``p = 0`` is global magnitude.

Prunable kernels are the weights (``kernel``, ndim >= 2) of the layers of the extracted
workload (convolutions, dense layers; not embeddings, biases or norms). Each gets a
:class:`PruneMask` (a bool :class:`nnx.Variable` of the kernel's shape) attached to its
module before the optimizer is built, so checkpoints and ``--resume`` carry the masks.

Schedule: ``--prune-steps N`` pruning steps, at the start of epochs 1..N; step ``i``
prunes to ``T ** (i / N)`` (geometric toward the target ``T``), and the epochs between
and after the steps fine-tune with the masks fixed. Masks only shrink (a pruned weight
never returns). After every optimizer step, inside the jitted step, the masks are
re-applied to the kernels and to the optimizer's state for them (momentum / Adam
moments), so a pruned weight stays exactly zero and no stale momentum can move it.

Targets (``--prune-target-kind``): ``weights`` (default): ``T`` is the kept fraction of
all prunable weights; ``energy``: ``T`` is the hardware objective (``--hw-objective``,
energy per inference by default) as a fraction of the dense model's on the run's
hardware; the pruner keeps the largest set (in its ranking order) that meets it.

Hardware: ``--hw-arch`` / ``--hw-dataflow`` / ``--hw-batch`` with ``--hw-sparsity`` and
``--hw-compression`` overriding the architecture's ``sparsity`` / ``compression``
(``preset``: keep the architecture's own). Weight sparsity saves energy only on an
architecture that gates (``gate``) or skips (``skip``) zero operands; compressed storage
(``bitmask``, ``rle``) also shrinks weight traffic. The ``eyeriss`` preset has sparsity
``none``, on which pruned weights cost as much as dense ones: ``energy-magnitude`` and
energy targets then refuse to run (nothing to rank by).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import hwmodel
from codesign._config import PRUNE_METHODS, ConfigError
from codesign.objective import HardwareObjective, objective_value

__all__ = [
    "PRUNE_METHODS",
    "PruneMask",
    "PruningHooks",
    "apply_masks",
    "attach_masks",
    "build_objective",
    "energy_per_weight",
    "masks",
    "method_hooks",
    "prepare_model",
    "prunable_layers",
    "prune",
    "prune_schedule",
    "pruning_summary",
    "report_markdown",
    "run_arch",
    "select_keep",
    "weight_densities",
]

MASK_ATTR = "kernel_mask"


class PruneMask(nnx.Variable):
    """The keep mask of a kernel: bool, the kernel's shape (True: kept). Not trained."""


def _module_path(path: tuple) -> str:
    return ".".join(str(p) for p in path)


def prunable_layers(model: nnx.Module, layer_names: Any = None) -> dict[str, nnx.Module]:
    """The modules whose ``kernel`` is prunable, by layer name (their dotted module path).

    Args:
      model: any NNX model.
      layer_names: the names of the layers of the model's extracted workload (only
        those modules are prunable); None: every module with a ``kernel`` of ndim >= 2.

    Returns:
      ``{layer name: module}`` in graph order.
    """
    names = None if layer_names is None else set(layer_names)
    out = {}
    for path, node in nnx.iter_graph(model):
        if not isinstance(node, nnx.Module) or not path:
            continue
        k = getattr(node, "kernel", None)
        if not isinstance(k, nnx.Param) or np.ndim(k[...]) < 2:
            continue
        name = _module_path(path)
        if names is None or name in names:
            out[name] = node
    return out


def attach_masks(model: nnx.Module, layer_names: Any = None) -> dict[str, nnx.Module]:
    """Gives every prunable kernel (see :func:`prunable_layers`) an all-True
    :class:`PruneMask` (attribute ``kernel_mask`` of its module), in place; a mask
    already there is kept. Call before building the optimizer.

    Raises:
      ConfigError: the model has no prunable kernel.
    """
    layers = prunable_layers(model, layer_names)
    if not layers:
        raise ConfigError("unstructured pruning: the model has no prunable kernel (a conv or "
                          "dense layer of the extracted workload with a 'kernel' parameter)")
    for mod in layers.values():
        if not isinstance(getattr(mod, MASK_ATTR, None), PruneMask):
            setattr(mod, MASK_ATTR, PruneMask(jnp.ones(mod.kernel[...].shape, jnp.bool_)))
    return layers


def _masked(model: nnx.Module) -> dict[str, nnx.Module]:
    return {_module_path(p): n for p, n in nnx.iter_graph(model)
            if isinstance(n, nnx.Module) and isinstance(getattr(n, MASK_ATTR, None), PruneMask)}


def masks(model: nnx.Module) -> dict[str, np.ndarray]:
    """``{layer name: bool mask}`` of the model's masked kernels (host copies)."""
    return {n: np.asarray(m.kernel_mask[...]) for n, m in _masked(model).items()}


def weight_densities(model: nnx.Module) -> dict[str, float]:
    """``{layer name: kept fraction of its kernel}`` from the masks."""
    return {n: float(np.mean(m)) for n, m in masks(model).items()}


def _opt_vars(optimizer: Any, model: nnx.Module) -> dict[str, list]:
    """The optimizer-state variables that mirror each masked kernel, by layer name.

    An optimizer-state variable mirrors a parameter when the longest suffix of its
    path that is a parameter path of the model is that parameter's path (optax states
    such as momentum ``trace`` or Adam's ``mu`` / ``nu`` hold one array per parameter,
    at the parameter's path) and the shapes agree.
    """
    param_paths = {tuple(p) for p, _ in nnx.iter_graph(model) if isinstance(_, nnx.Param)}
    masked = _masked(model)
    out: dict[str, list] = {n: [] for n in masked}
    for path, var in nnx.iter_graph(optimizer):
        if not isinstance(var, nnx.Variable) or not path or path[0] != "opt_state":
            continue
        path = tuple(path)
        match = next((path[i:] for i in range(1, len(path)) if path[i:] in param_paths), None)
        if match is None or match[-1] != "kernel":
            continue
        name = _module_path(match[:-1])
        if name in out and np.shape(var[...]) == masked[name].kernel[...].shape:
            out[name].append(var)
    return out


def apply_masks(model: nnx.Module, optimizer: Any = None) -> None:
    """Zeroes the pruned entries of every masked kernel (and, given the optimizer, of its
    optimizer state: momentum, Adam moments), in place. Jit-able (the train step's
    after-update hook); with all-True masks it changes nothing."""
    masked = _masked(model)
    opt = _opt_vars(optimizer, model) if optimizer is not None else {}
    for name, mod in masked.items():
        m = mod.kernel_mask[...]
        mod.kernel.set_value(jnp.where(m, mod.kernel[...], jnp.zeros((), mod.kernel[...].dtype)))
        for var in opt.get(name, ()):
            var.set_value(jnp.where(m, var[...], jnp.zeros((), var[...].dtype)))


def prune_schedule(target: float, steps: int) -> list[float]:
    """The per-step targets ``target ** (i / steps)``, ``i = 1..steps`` (the last is
    ``target``)."""
    return [float(target) ** ((i + 1) / steps) for i in range(steps)]


# --------------------------------------------------------------------------------------
# Hardware
# --------------------------------------------------------------------------------------


def run_arch(config) -> hwmodel.Architecture:
    """The run's architecture: ``hw_arch`` with ``hw_sparsity`` / ``hw_compression``
    applied (``preset``: the architecture's own)."""
    if config.hw_arch == "none":
        raise ConfigError(f"method {config.method!r} needs a hardware model: --hw-arch must name "
                          "an architecture, not 'none'")
    arch = hwmodel.load_arch(config.hw_arch)
    changes = {}
    if config.hw_sparsity != "preset":
        changes["sparsity"] = config.hw_sparsity
    if config.hw_compression != "preset":
        changes["compression"] = config.hw_compression
    return arch.replace(**changes) if changes else arch


def build_objective(model: nnx.Module, config, image_shape) -> HardwareObjective:
    """The run's :class:`HardwareObjective` on :func:`run_arch` (objective ``hw_objective``).

    Raises:
      ConfigError: no hardware, or a method / target that needs weight sparsity to save
        something on an architecture whose sparsity is ``none``.
    """
    arch = run_arch(config)
    obj = HardwareObjective(model, tuple(image_shape), arch=arch, dataflow=config.hw_dataflow,
                            objective=config.hw_objective, batch=config.hw_batch)
    needs = ("--method energy-magnitude" if config.method == "energy-magnitude" else
             "--prune-target-kind energy" if config.prune_target_kind == "energy" else None)
    if needs and arch.sparsity == "none":
        raise ConfigError(
            f"{needs} needs hardware that exploits weight sparsity, but {arch.name!r} has "
            "sparsity 'none' (pruned weights cost as much as dense ones); pass --hw-sparsity "
            "gate or skip (e.g. with --hw-compression bitmask)")
    if config.method in PRUNE_METHODS and config.prune_target_kind == "energy":
        floor = float(obj.relative(_ones(obj), weight_density=jnp.zeros(len(obj.layers))))
        if config.prune_target <= floor:
            raise ConfigError(
                f"config field 'prune_target': {config.prune_target:g} of the dense "
                f"{config.hw_objective} is not above the smallest reachable {floor:.4g} (every "
                "prunable weight removed) on this hardware; raise the target")
    return obj


def _ones(obj: HardwareObjective) -> dict[str, jax.Array]:
    return {b.path: jnp.ones((b.size,), jnp.float32) for b in obj.bindings}


def _layer_index(obj: HardwareObjective, names) -> list[int]:
    index = {l.name: i for i, l in enumerate(obj.layers)}
    return [index[n] for n in names]


def _density_vector(obj: HardwareObjective, densities: Mapping[str, float]) -> jax.Array:
    d = np.ones(len(obj.layers), np.float32)
    for i, n in zip(_layer_index(obj, densities), densities):
        d[i] = densities[n]
    return jnp.asarray(d)


def energy_per_weight(obj: HardwareObjective, densities: Mapping[str, float],
                      sizes: Mapping[str, int]) -> dict[str, float]:
    """The marginal saving of the objective per weight removed, per layer.

    ``e_l = (dH / d density_l) / n_l`` at the given densities (``jax.grad`` of the
    relaxed cost model; units of the objective per weight, e.g. pJ per inference per
    weight for energy).

    Args:
      obj: the run's objective.
      densities: ``{layer name: kept fraction}`` of the prunable layers.
      sizes: ``{layer name: number of weights}``.
    """
    d = _density_vector(obj, densities)
    ones = _ones(obj)
    grad = np.asarray(jax.grad(lambda dw: obj.value(ones, weight_density=dw))(d))
    idx = _layer_index(obj, densities)
    return {n: float(grad[i]) / sizes[n] for n, i in zip(densities, idx)}


# --------------------------------------------------------------------------------------
# Choosing the masks
# --------------------------------------------------------------------------------------


def select_keep(scores: Mapping[str, np.ndarray], current: Mapping[str, np.ndarray], *,
                kept: int | None = None, fits: Any = None) -> dict[str, np.ndarray]:
    """New masks: the highest-scoring currently kept weights, over all layers at once.

    Exactly one of ``kept`` (the number of weights to keep) and ``fits`` (a
    predicate on ``{layer: density}``, monotone: true for every smaller set once true)
    is given; with ``fits`` the largest prefix of the ranking that fits is kept (found
    by bisection). Ties break by layer order, then by position (stable). Weights
    already pruned stay pruned.

    Args:
      scores: ``{layer: float array}`` (any shape; higher is kept first).
      current: ``{layer: bool array}`` the current masks (same shapes).
    """
    names = list(scores)
    flat = [np.where(current[n].ravel(), np.asarray(scores[n], np.float64).ravel(), -np.inf)
            for n in names]
    sizes = np.array([f.size for f in flat])
    layer_of = np.repeat(np.arange(len(names)), sizes)
    allv = np.concatenate(flat)
    order = np.argsort(-allv, kind="stable")
    alive = int(sum(int(current[n].sum()) for n in names))

    def densities(k: int) -> dict[str, float]:
        counts = np.bincount(layer_of[order[:k]], minlength=len(names))
        return {n: float(c) / s for n, c, s in zip(names, counts, sizes)}

    if (kept is None) == (fits is None):
        raise ValueError("select_keep: pass exactly one of kept= and fits=")
    if kept is None:
        lo, hi = 0, alive  # fits(lo) assumed (or nothing fits: keep 0), find the largest fitting
        if fits(densities(alive)):
            lo = alive
        else:
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if fits(densities(mid)):
                    lo = mid
                else:
                    hi = mid
        kept = lo
    kept = int(min(max(kept, 0), alive))
    keep_flat = np.zeros(allv.size, bool)
    keep_flat[order[:kept]] = True
    out, start = {}, 0
    for n, s in zip(names, sizes):
        out[n] = keep_flat[start:start + s].reshape(np.shape(current[n]))
        start += s
    return out


def prune(model: nnx.Module, optimizer: Any, *, method: str, target: float, kind: str = "weights",
          objective: HardwareObjective | None = None, energy_power: float = 0.5
          ) -> dict[str, Any]:
    """One pruning step, in place: new masks on the model's masked kernels, applied to the
    kernels and the optimizer state.

    Args:
      model: a model with masks (:func:`attach_masks`).
      optimizer: its ``nnx.Optimizer`` (or None).
      method: ``magnitude`` (rank by ``|w|``) or ``energy-magnitude`` (rank by
        ``|w| / e_l``, :func:`energy_per_weight`).
      target: in (0, 1]: the kept fraction of the prunable weights (``kind="weights"``)
        or the objective as a fraction of dense (``kind="energy"``).
      kind: ``weights`` or ``energy``.
      objective: the hardware objective (needed for energy-magnitude and energy targets).
      energy_power: ``p`` of energy-magnitude's ranking ``|w| / e_l ** p``.

    Returns:
      ``{"prune_target", "prune_density" (kept fraction of all prunable weights),
      "prune_hw" (the objective relative to dense, None without objective)}``.
    """
    if method not in PRUNE_METHODS:
        raise ConfigError(f"unknown pruning method {method!r}; valid: {', '.join(PRUNE_METHODS)}")
    if kind not in ("weights", "energy"):
        raise ConfigError(f"unknown pruning target kind {kind!r}; valid: weights, energy")
    if not 0 < target <= 1:
        raise ConfigError(f"pruning target must be in (0, 1], got {target!r}")
    if objective is None and (method == "energy-magnitude" or kind == "energy"):
        raise ConfigError(f"{method} with a {kind} target needs a hardware objective")
    mods = _masked(model)
    current = {n: np.asarray(m.kernel_mask[...]) for n, m in mods.items()}
    mags = {n: np.abs(np.asarray(m.kernel[...], np.float64)) for n, m in mods.items()}
    sizes = {n: int(v.size) for n, v in current.items()}
    dens = {n: float(v.mean()) for n, v in current.items()}
    if method == "energy-magnitude":
        e = energy_per_weight(objective, dens, sizes)
        if all(v <= 0 for v in e.values()):
            raise ConfigError("energy-magnitude: removing weights saves nothing on this hardware "
                              "(zero marginal saving in every layer); use --hw-sparsity gate or skip")
        scores = {n: mags[n] / e[n] ** energy_power if e[n] > 0 else np.full_like(mags[n], np.inf)
                  for n in mags}
    else:
        scores = mags
    if kind == "weights":
        new = select_keep(scores, current, kept=int(round(target * sum(sizes.values()))))
    else:
        rel = jax.jit(lambda dw: objective.relative(_ones(objective), weight_density=dw))
        new = select_keep(scores, current, fits=lambda d: float(
            rel(_density_vector(objective, d))) <= target)
    for n, m in mods.items():
        m.kernel_mask.set_value(jnp.asarray(new[n]))
    apply_masks(model, optimizer)
    total = sum(sizes.values())
    density = float(sum(int(v.sum()) for v in new.values())) / total
    hw = None
    if objective is not None:
        d = {n: float(v.mean()) for n, v in new.items()}
        hw = float(objective.relative(_ones(objective), weight_density=_density_vector(objective, d)))
    return {"prune_target": float(target), "prune_density": density, "prune_hw": hw}


# --------------------------------------------------------------------------------------
# Training hooks and the report
# --------------------------------------------------------------------------------------


def prepare_model(model: nnx.Module, config, input_shape) -> nnx.Module:
    """Attaches the masks of a pruning run (no-op for other methods); call before building
    the optimizer. ``input_shape``: one example's shape (to extract the layers)."""
    if config.method in PRUNE_METHODS:
        import models

        model.eval()
        try:
            wl = models.model_workload(model, batch=1, input_shape=tuple(input_shape))
        finally:
            model.train()
        attach_masks(model, [l.name for l in wl.layers if not l.dynamic])
    return model


@dataclasses.dataclass(eq=False)
class PruningHooks:
    """The training-loop hooks of a pruning run (see :mod:`codesign.train`).

    Attributes:
      config: the run config.
      objective: the run's :class:`HardwareObjective`.
      schedule: the per-step targets (:func:`prune_schedule`).
    """

    config: Any
    objective: HardwareObjective
    schedule: tuple[float, ...]

    def after_update(self, model: nnx.Module, optimizer: Any) -> None:
        """Inside the jitted step, after the optimizer update: re-apply the masks."""
        apply_masks(model, optimizer)

    def before_epoch(self, model: nnx.Module, optimizer: Any, epoch: int) -> dict | None:
        """Host side, before epoch ``epoch`` (0-based): the pruning step of that epoch, if
        any; returns what to log in the epoch's metrics row (None: nothing changed)."""
        if epoch >= len(self.schedule):
            return None
        model.eval()
        try:
            return prune(model, optimizer, method=self.config.method, target=self.schedule[epoch],
                         kind=self.config.prune_target_kind, objective=self.objective,
                         energy_power=self.config.prune_energy_power)
        finally:
            model.train()

    def report(self, model: nnx.Module, out: dict[str, Any]) -> str:
        """Adds the pruning figures to the report dict ``out`` (in place); returns
        ``report.md``."""
        from codesign import energy

        model.eval()
        try:
            hw = pruning_summary(model, self.objective)
        finally:
            model.train()
        out.update({k: hw[k] for k in ("energy_per_inference_uj", "latency_per_inference_ms",
                                       "dram_bytes_per_inference")})
        out["hw_arch"] = self.objective.arch.name
        out["hw_sparsity"] = self.objective.arch.sparsity
        out["hw_compression"] = self.objective.arch.compression
        out["macs_kept"] = hw["macs_per_inference"]
        out["method"] = self.config.method
        out["prune_target"] = self.config.prune_target
        out["prune_target_kind"] = self.config.prune_target_kind
        out["prune_steps"] = self.config.prune_steps
        out["weight_density"] = hw["weight_density_total"]
        out["hw"] = hw
        out["dense"] = energy.dense_report(self.objective, self.config)
        return report_markdown(out)


def method_hooks(model: nnx.Module, config, image_shape) -> PruningHooks | None:
    """The hooks of a pruning run (None for other methods)."""
    if config.method not in PRUNE_METHODS:
        return None
    obj = build_objective(model, config, image_shape)
    return PruningHooks(config, obj, tuple(prune_schedule(config.prune_target, config.prune_steps)))


def pruning_summary(model: nnx.Module, obj: HardwareObjective) -> dict[str, Any]:
    """The report's hardware figures of a weight-pruned model (inference mode).

    The same keys as :func:`codesign.energy.hardware_summary` (exact figures: workload
    re-mapped, the masks' densities as weight-density knobs; ``relaxed``: the dense
    mappings with the same knobs), plus ``weight_density`` (``{layer: kept fraction}``),
    ``weight_density_total`` (kept fraction of all prunable weights),
    ``macs_effective_per_inference`` (MACs the hardware performs after gating/skipping
    zero weights), ``hw_sparsity`` and ``hw_compression``.
    """
    from codesign.energy import _figures

    ms = masks(model)
    dens = {n: float(m.mean()) for n, m in ms.items()}
    total = float(sum(int(m.sum()) for m in ms.values())) / sum(m.size for m in ms.values())
    keeps = _ones(obj)
    exact = obj.exact_cost(keeps, weight_density=dens)
    relaxed = obj.cost(keeps, weight_density=_density_vector(obj, dens))
    sizes = {b.path: b.size for b in obj.bindings}
    out = _figures(exact)
    out["relaxed"] = _figures(relaxed)
    out["macs_effective_per_inference"] = float(exact.macs_effective) / exact.batch
    out["hw_objective"] = obj.objective
    out["hw_objective_relative"] = float(objective_value(exact, obj.objective)) / obj.dense_value
    out["hw_sparsity"] = obj.arch.sparsity
    out["hw_compression"] = obj.arch.compression
    out["kept_units"] = {p: [k, sizes[p]] for p, k in obj.kept_units(keeps).items()}
    out["layer_keep"] = {l.name: {"keep_out": 1.0, "keep_in": 1.0, "keep_groups": 1.0}
                         for l in obj.layers}
    out["weight_density"] = dens
    out["weight_density_total"] = total
    out["layers"] = [
        {"name": n, "macs": int(m), "energy_uj": float(e) / exact.batch * 1e-6,
         "weight_density": dens.get(n, 1.0)}
        for n, m, e in zip(exact.layer_names, exact.layer_macs, np.asarray(exact.layers.energy_pj))]
    return out


def report_markdown(rep: dict[str, Any]) -> str:
    """``report.md`` of a pruning run: the report card of
    :func:`codesign.energy.report_markdown` plus the per-layer weight densities."""
    from codesign.energy import report_markdown as card

    hw, dense = rep["hw"], rep["dense"]
    head = (f"Hardware: {rep.get('hw_arch')} with sparsity {hw['hw_sparsity']}, compression "
            f"{hw['hw_compression']}. Pruning: {rep['method']} to {rep['prune_target']:g} "
            f"({rep['prune_target_kind']}) in {rep['prune_steps']} steps; kept "
            f"{100 * hw['weight_density_total']:.2f}% of the prunable weights.")
    lines = [card(rep), head, "", "Weight density per layer:", "",
             "| layer | weight density | energy dense (uJ) | energy pruned (uJ) |",
             "|---|---:|---:|---:|"]
    pruned = {l["name"].removesuffix("-pruned"): l for l in hw["layers"]}
    for l in dense["layers"]:
        p = pruned.get(l["name"], {"energy_uj": 0.0, "weight_density": 1.0})
        lines.append(f"| {l['name']} | {p.get('weight_density', 1.0):.4f} | "
                     f"{l['energy_uj']:.4g} | {p['energy_uj']:.4g} |")
    return "\n".join(lines) + "\n"
