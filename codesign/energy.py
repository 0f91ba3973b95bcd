"""Energy-aware training: the training methods built on :mod:`codesign.objective`.

``codesign train ... --method M`` selects one (``METHODS``):

* ``none``: plain training (the hardware figures are only reported).
* ``gates``: learned structured pruning. Every gate site (channels, heads) gets a
  :class:`models.HardConcreteGate`; the loss is ``task + lambda * H / H_dense`` where ``H``
  is the hardware objective (``--hw-objective``: energy, latency, EDP, DRAM bytes per
  inference) of the gated network on ``--hw-arch`` / ``--hw-dataflow``, counted at
  ``--hw-batch``, with the gates' expected keep fractions as the cost model's knobs.
* ``flops-gates``: the same gates trained against MACs (the FLOPs-penalty baseline).

Penalty mode uses ``--energy-weight`` (``lambda``); budget mode (``--energy-budget B``, a
fraction of the dense model's objective, e.g. 0.05 for 20x less) replaces the fixed
weight by a Lagrange multiplier ``mu`` updated by dual ascent every step on the gap
``g = log(H / (B H_dense))`` (the constraint ``H <= B H_dense`` in log form, so that a
budget 30x below dense does not start with a 30x larger gap than one at half;
``--budget-ramp-epochs R`` lowers the target geometrically from dense (a quantized
network's dense cost at its bits: :func:`open_relative`) to ``B`` over the first ``R``
epochs, gradual pruning in the manner of Zhu and Gupta 2017, so the weights adapt while
the gates close instead of after):
``mu <- mu + dual_lr * g``; the loss is ``task + lam * g`` with ``lam = mu + g`` (a proportional term on top of the integral one: the "PI
Lagrangian" of Stooke, Achiam, Abbeel, ICML 2020, which damps the overshoot of plain
dual ascent; gates trained by Adam close at a rate set by their learning rate, not by
the multiplier's size, so a multiplier that reacts only through its integral keeps
closing gates long after the budget is met). Accuracy only grows with capacity, so at the best
network within the budget the constraint is active (``H = B H_dense``): we solve that
equality-constrained problem, whose multiplier is free in sign. This matters in
practice: with the usual projection ``mu >= 0`` a multiplier that overshoots closes too
many gates, then falls to 0 and nothing reopens them (a closed hard-concrete gate gets
no gradient from the task loss; it does from its expected keep, which a negative ``mu``
pushes up). At the end of a budget run, if the network's inference-mode cost is still
above the budget, the open gate units with the smallest ``log_alpha`` are closed one by
one until it fits (reported as ``budget_closed_units``), so the reported network always
meets its budget.

The in-loss objective prices the gated network with the *dense* network's mappings; the
deployed network is re-mapped by the exact mapper (smaller layers can get other tilings),
and the two differ by a few percent (up to 8% measured on mnist_cnn, 7% on resnet20 and
vit_tiny). So at the gate freeze epoch the fit is calibrated against the exact figure
(:func:`calibrate_to_exact`): when the re-mapped objective of the fitted network is more
than :data:`EXACT_BUDGET_RTOL` above the budget, the estimate's target is lowered by the
ratio and the gates are fitted again, a few rounds at most.

Gate parameters have their own optimizer (Adam, ``--gate-lr``): a gate's ``log_alpha``
must move by several units whatever the scale of its gradient, which plain SGD on the
weights' learning rate does not do.

``--init-from RUN`` starts from the weights of another run's latest checkpoint (the
usual way to build a front: train dense once, fine-tune energy-aware many times).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import models
from codesign._config import METHODS, ConfigError
from codesign.objective import HardwareObjective

__all__ = [
    "GATE_METHODS",
    "METHODS",
    "EnergyAwareLoss",
    "HardwareDesign",
    "HardwareDual",
    "build_objective",
    "copy_weights",
    "hardware_summary",
    "load_weights",
    "prepare_model",
    "with_gate_optimizer",
]

GATE_METHODS: tuple[str, ...] = ("gates", "flops-gates")


class HardwareDual(nnx.Variable):
    """The Lagrange multiplier of budget mode (a scalar, not a trained parameter)."""


class HardwareDesign(nnx.Variable):
    """A co-design run's current hardware: the knob values ``[n_knobs]`` of
    :class:`codesign.design.DesignSpace` (all 0 until the first search; not a trained
    parameter). Part of the checkpoint, so a resumed run trains against the hardware
    it had reached (:mod:`codesign.joint`)."""


def _gate_rngs(config) -> nnx.Rngs:
    return nnx.Rngs(gates=config.seed + 1_000_003)


def load_weights(model: nnx.Module, run_dir: str | Path) -> int:
    """Copies every matching parameter and batch statistic of ``run_dir``'s latest
    checkpoint into ``model`` (in place); returns the number of arrays loaded.

    A parameter matches by path and shape; gate parameters, optimizer state and RNG
    state are not loaded.

    Raises:
      ConfigError: no run / no checkpoint there, or a parameter of the model that the
        checkpoint lacks or holds with another shape.
    """
    from codesign._checkpoint import read_latest

    run_dir = Path(run_dir)
    ck = run_dir / "checkpoints"
    if not (run_dir / "config.json").is_file() or not ck.is_dir():
        raise ConfigError(f"init_from: {run_dir} is not a run directory (needs config.json and "
                          "checkpoints/); pass the workdir of a finished codesign train run")
    epoch, flat = read_latest(ck)  # read-only: the source run is never modified
    if epoch is None:
        raise ConfigError(f"init_from: {ck} holds no complete checkpoint")
    # checkpoints hold nnx.state((model, optimizer)): model entries start with "0."
    return _set_weights(model, {k[2:]: v for k, v in flat.items() if k.startswith("0.")},
                        str(run_dir))


def copy_weights(model: nnx.Module, source: nnx.Module) -> int:
    """Copies into ``model`` (in place) what :func:`load_weights` would load from a
    checkpoint of ``source``: every parameter and batch statistic, matched by path and
    shape (gates, budget multipliers and RNG state are not copied). The arrays are
    copies: ``model`` shares no buffer with ``source``. Returns the number copied.

    Raises:
      ConfigError: a parameter of ``model`` that ``source`` lacks or holds with another shape.
    """
    from codesign._checkpoint import flatten_state

    return _set_weights(model, flatten_state(nnx.state(source)),
                        f"the {type(source).__name__} model")


def _set_weights(model: nnx.Module, flat: dict[str, np.ndarray], source: str) -> int:
    """Sets every weight of ``model`` (all its state but gates, budget multipliers, the
    hardware design and RNG state) from ``flat`` (``{dotted path: array}``, the arrays of
    ``source``), cast to the model's dtypes; returns the number of arrays set."""
    from codesign._checkpoint import _path_str, flatten_state

    want = nnx.state(model, nnx.Not(nnx.Any(models.GateParam, HardwareDual, HardwareDesign,
                                            nnx.RngState)))
    loaded = {}
    for name, arr in flatten_state(want).items():
        src = flat.get(name)
        if src is None:
            raise ConfigError(f"init_from: {source} has no {name!r} (is it a run of the same "
                              "model and model_kwargs?)")
        if src.shape != arr.shape:
            raise ConfigError(f"init_from: {name!r} is {list(src.shape)} in {source}, "
                              f"{list(arr.shape)} in this model")
        loaded[name] = src.astype(arr.dtype)  # a copy (numpy's astype copies)
    leaves, treedef = jax.tree_util.tree_flatten_with_path(want)
    new = [jnp.asarray(loaded[_path_str(p)]) for p, _ in leaves]
    nnx.update(model, jax.tree_util.tree_unflatten(treedef, new))
    return len(new)


def prepare_model(model: nnx.Module, config) -> nnx.Module:
    """Applies the run's method to a freshly built model, before its optimizer exists:
    ``init_from`` weights, learned gates (gate methods), the budget multiplier."""
    if config.init_from:
        load_weights(model, config.init_from)
    if config.method in GATE_METHODS:
        rngs = _gate_rngs(config)
        models.set_gates(model, lambda s: models.HardConcreteGate(
            s.size, s.kind, rngs=rngs, init_keep=config.gate_init_keep))
        if config.energy_budget > 0:
            model.hw_dual = HardwareDual(jnp.zeros((), jnp.float32))
            model.hw_step = HardwareDual(jnp.zeros((), jnp.float32))  # steps taken (the ramp)
        if config.co_design:
            from codesign.joint import knob_count

            model.hw_design = HardwareDesign(jnp.zeros((knob_count(config),), jnp.float32))
    return model


def with_gate_optimizer(config, tx: optax.GradientTransformation) -> optax.GradientTransformation:
    """``tx`` for the weights, Adam(``gate_lr``) for :class:`models.GateParam` leaves."""
    if config.method not in GATE_METHODS:
        return tx

    def labels(params):
        def lab(path, _):
            return "gates" if any(getattr(k, "key", None) == "log_alpha" for k in path) else "weights"
        return jax.tree_util.tree_map_with_path(lab, params)

    return optax.multi_transform({"weights": tx, "gates": optax.adam(config.gate_lr)}, labels)


def build_objective(model: nnx.Module, config, image_shape) -> HardwareObjective:
    """The :class:`HardwareObjective` of a run (``hw_arch``, ``hw_dataflow``, ``hw_batch``;
    MACs for ``flops-gates``, else ``hw_objective``)."""
    if config.hw_arch == "none":
        raise ConfigError(f"method {config.method!r} needs a hardware model: --hw-arch must name "
                          "an architecture, not 'none'")
    objective = "macs" if config.method == "flops-gates" else config.hw_objective
    # a co-design run maps as its hardware search does (codesign.design: energy, else EDP)
    mapper = ("energy" if not config.co_design or objective == "energy" else "edp")
    obj = HardwareObjective(model, tuple(image_shape), arch=config.hw_arch,
                            dataflow=config.hw_dataflow, objective=objective,
                            batch=config.hw_batch, mapper_objective=mapper)
    if config.energy_budget > 0:
        floor = min_relative(obj)
        if config.energy_budget < floor:
            raise ConfigError(
                f"config field 'energy_budget': {config.energy_budget:g} of the dense "
                f"{objective} is below the smallest reachable {floor:.4g} (one unit kept at "
                "every gate site); raise the budget")
    return obj


def open_relative(obj: HardwareObjective) -> float:
    """The objective with every gate open, relative to the reference (1 for a float
    network on the reference hardware; below 1 for a quantized one, charged at its bits):
    where a budget ramp starts."""
    return float(obj.relative({b.path: np.ones(b.size, np.float32) for b in obj.bindings}))


def min_relative(obj: HardwareObjective) -> float:
    """The objective with one unit kept per gate, relative to dense (what a budget can reach)."""
    keeps = {b.path: np.eye(1, b.size, dtype=np.float32)[0] for b in obj.bindings}
    return float(obj.relative(keeps))


@dataclasses.dataclass(frozen=True, eq=False)
class EnergyAwareLoss:
    """``task + lambda * H/H_dense`` (penalty) or the budget Lagrangian (a train-step loss).

    Hashed by identity (a static argument of ``jit``). Logs the task loss's metrics
    (``loss``, ``accuracy``), ``hw`` (``H / H_dense`` with the gates' expected keeps),
    ``hw_term`` (what the hardware term adds to the loss) and, in budget mode, ``mu``.
    With ``weight == 0`` and no budget the hardware term is left out of the traced loss
    altogether, so the step is exactly the task loss's.

    Attributes:
      objective: the run's :class:`HardwareObjective`.
      task: the task loss, ``task(model, images, labels) -> (total, metrics)`` (e.g.
        :class:`codesign.train.ClassificationLoss`).
      weight: ``lambda`` (penalty mode).
      budget: the budget as a fraction of the dense objective (0: penalty mode).
      dual_lr: the dual ascent step.
      ramp_steps: budget mode: the target falls geometrically from ``ramp_start`` to
        ``budget`` over this many steps (counted in ``model.hw_step``), then stays (0: no
        ramp).
      ramp_start: where the ramp starts, a fraction of dense: the objective of the
        network with every gate open (:func:`open_relative`). 1 for a float network; a
        quantized one is charged at its bits and starts below 1 (8-bit resnet20: 0.66),
        and a ramp from 1 would spend its first steps above the network's own cost,
        winding the multiplier negative. A start at or below ``budget`` means no ramp.
    """

    objective: HardwareObjective
    task: Callable
    weight: float = 0.0
    budget: float = 0.0
    dual_lr: float = 0.002
    ramp_steps: int = 0
    ramp_start: float = 1.0

    def target(self, step):
        """The budget-mode target at optimizer step ``step`` (a fraction of dense)."""
        if self.ramp_steps <= 0 or self.ramp_start <= self.budget:
            return jnp.asarray(self.budget, jnp.float32)
        frac = jnp.minimum(1.0, step / self.ramp_steps)
        lo, hi = jnp.log(jnp.float32(self.budget)), jnp.log(jnp.float32(self.ramp_start))
        return jnp.exp(hi + frac * (lo - hi))

    def __call__(self, model, images, labels):
        total, metrics = self.task(model, images, labels)
        if self.budget <= 0 and self.weight == 0:
            return total, metrics  # lambda = 0: exactly the task loss
        rel = self.objective.relative(model)
        out = dict(metrics)
        out["hw"] = rel
        if self.budget > 0:
            target = self.target(model.hw_step[...])
            model.hw_step[...] = model.hw_step[...] + 1.0
            gap = jnp.log(rel / target)
            g = jax.lax.stop_gradient(gap)
            mu = model.hw_dual[...]
            model.hw_dual[...] = mu + self.dual_lr * g
            term = jax.lax.stop_gradient(mu + g) * gap
            out["mu"] = mu
            out["hw_target"] = target
        else:
            term = self.weight * rel
        out["hw_term"] = term
        return total + term, out


FROZEN_LOG_ALPHA = 20.0  # |log_alpha| at which a hard-concrete sample is exactly 0 or 1


def _relative_fn(obj: HardwareObjective):
    """A jitted ``keeps dict -> objective / dense`` (compiled once per objective)."""
    fn = getattr(obj, "_relative_jit", None)
    if fn is None:
        fn = jax.jit(lambda keeps: obj.relative(keeps))
        obj._relative_jit = fn
    return fn


def fit_to_budget(model: nnx.Module, obj: HardwareObjective, budget: float, *,
                  reopen: bool) -> tuple[int, int]:
    """Brings the gates' inference-mode keeps within ``budget`` (a fraction of dense),
    greedily by ``log_alpha``: closes the open units with the smallest ``log_alpha``, one
    at a time, until the objective fits; with ``reopen``, then tries the closed units
    (closed here or before) from the largest ``log_alpha`` down and reopens each that
    still fits, which gives the largest configuration the greedy order finds. At least
    one unit per gate stays open. In place: changed units get ``log_alpha`` -/+
    :data:`FROZEN_LOG_ALPHA` (reopened: at least the gate's largest). Returns
    ``(closed, reopened)`` unit counts (``reopened`` is 0 without ``reopen``).

    The two uses, each as it has always run:

    * ``reopen=True``, at the gate freeze epoch (:class:`GateHooks`): the objective is
      the jitted float32 one (many evaluations; what the loss sees); equal
      ``log_alpha`` of different gates close in the order of their paths (as strings).
    * ``reopen=False``, at the end of a budget run (:func:`codesign.train._fit_final`,
      before the last checkpoint is written): the eager float64 objective of the
      report's figures; equal ``log_alpha`` of different gates close in forward order.
    """
    sites = models.gate_sites(model)
    la = {s.path: np.asarray(s.gate.log_alpha[...], np.float64) for s in sites}
    keep = {s.path: (np.asarray(s.gate.hard_keep()) > 0).astype(np.float32) for s in sites}
    rel = _relative_fn(obj) if reopen else obj.relative

    def over() -> bool:
        return float(rel({p: jnp.asarray(k) for p, k in keep.items()})) > budget

    tie = {s.path: (s.path if reopen else n) for n, s in enumerate(sites)}
    closed = _close_until_within(la, keep, over, tie)
    reopened = _reopen_within(la, keep, over) if reopen else 0
    _set_keeps(sites, la, keep)
    return closed, reopened


EXACT_BUDGET_RTOL = 0.02
"""How far (relative) above its budget a budget run's network may end in the exact
re-mapped figure before :func:`calibrate_to_exact` refits it."""


def calibrate_to_exact(model: nnx.Module, obj: HardwareObjective, budget: float, *,
                       rtol: float = EXACT_BUDGET_RTOL, rounds: int = 6) -> dict[str, Any]:
    """Fits the gates to ``budget`` in the exact re-mapped figure.

    :func:`fit_to_budget` (with reopening) against the in-loss estimate first. The exact
    figure (``obj.relative_of(obj.exact_cost(model))``: the pruned network re-mapped,
    relative to the reference) can differ from the estimate either way, and not by a
    constant ratio (a quantized network's by more: 15% on 8-bit resnet20). While it is
    outside ``budget * (1 -/+ rtol)``, the estimate's target is scaled by ``budget /
    exact`` (kept strictly between the largest target known to fit and the smallest
    known not to, else their geometric mean) and the gates are fitted to it again from
    their state before the calibration, at most ``rounds`` times (not when every unit
    is open below the budget: nothing to reopen). A calibration that ends above the band
    refits to the largest target that fitted, when one did. Each round is one exact
    re-mapping (a second or two for resnet20). In place.

    Returns:
      ``{"budget_closed": n, "budget_reopened": n}`` (units the final fit closed /
      reopened, against the gates before the calibration), ``"budget_exact"`` (the exact
      figure), ``"budget_target"`` (the estimate's final target), ``"budget_rounds"``
      (refits).
    """
    sites = models.gate_sites(model)
    before = {s.path: s.gate.log_alpha[...] for s in sites}

    def fit(target: float) -> tuple[int, int, float]:
        for s in sites:
            s.gate.log_alpha.set_value(before[s.path])
        c, r = fit_to_budget(model, obj, target, reopen=True)
        return c, r, obj.relative_of(obj.exact_cost(model))

    def all_open() -> bool:
        return all(bool(np.all(np.asarray(s.gate.hard_keep()) > 0)) for s in sites)

    hi_ok = budget * (1 + rtol)
    target = budget
    closed, reopened, exact = fit(target)
    fits, fails = 0.0, np.inf  # the largest target known to fit, the smallest known not to
    n = 0
    while not budget * (1 - rtol) <= exact <= hi_ok and n < rounds:
        if exact < budget and all_open():
            break  # under the budget with every unit open: nothing to reopen
        if exact > hi_ok:
            fails = min(fails, target)
        else:
            fits = max(fits, target)
        target *= budget / exact
        if not fits < target < fails:
            target = float(np.sqrt(fits * fails))
        closed, reopened, exact = fit(target)
        n += 1
    if exact > hi_ok and fits > 0:
        target = fits
        closed, reopened, exact = fit(target)
    return {"budget_closed": closed, "budget_reopened": reopened, "budget_exact": exact,
            "budget_target": target, "budget_rounds": n}


def _close_until_within(la: dict, keep: dict, over: Callable[[], bool], tie: dict) -> int:
    """While ``over()`` (the keeps exceed the budget), closes (in ``keep``) the open unit
    with the smallest ``(log_alpha, tie[gate], index)`` of a gate with more than one open
    unit; returns how many."""
    closed = 0
    while over():
        cands = [(la[p][i], tie[p], i, p) for p, k in keep.items() if k.sum() > 1
                 for i in np.flatnonzero(k)]
        if not cands:
            break
        _, _, i, p = min(cands)
        keep[p][i] = 0.0
        closed += 1
    return closed


def _reopen_within(la: dict, keep: dict, over: Callable[[], bool]) -> int:
    """Reopens (in ``keep``) each closed unit, largest ``(log_alpha, gate path, index)``
    first, that does not make ``over()``; returns how many."""
    reopened = 0
    for _, p, i in sorted(((la[p][i], p, i) for p, k in keep.items() for i in np.flatnonzero(k == 0)),
                          reverse=True):
        keep[p][i] = 1.0
        if over():
            keep[p][i] = 0.0
        else:
            reopened += 1
    return reopened


def _set_keeps(sites, la: dict, keep: dict) -> None:
    """Writes ``keep`` into the gates: each unit whose inference-mode keep changes gets
    ``log_alpha`` ``-FROZEN_LOG_ALPHA`` (closed) or ``max(FROZEN_LOG_ALPHA, gate's largest)``
    (opened); the others keep theirs."""
    for s in sites:
        new = np.where(keep[s.path] > 0, max(FROZEN_LOG_ALPHA, la[s.path].max()),
                       -FROZEN_LOG_ALPHA)
        changed = (keep[s.path] > 0) != (np.asarray(s.gate.hard_keep()) > 0)
        if changed.any():
            s.gate.log_alpha.set_value(jnp.asarray(np.where(changed, new, la[s.path]), jnp.float32))


def freeze_gates(model: nnx.Module) -> int:
    """Pins every hard-concrete gate at its inference-mode keep (``log_alpha`` = +/-
    :data:`FROZEN_LOG_ALPHA`: training samples are then exactly 0 or 1 and the gradients
    vanish). Returns the number of open units."""
    n = 0
    for s in models.gate_sites(model):
        k = np.asarray(s.gate.hard_keep()) > 0
        s.gate.log_alpha.set_value(jnp.asarray(np.where(k, FROZEN_LOG_ALPHA, -FROZEN_LOG_ALPHA),
                                               jnp.float32))
        n += int(k.sum())
    return n


@dataclasses.dataclass(frozen=True)
class GateHooks:
    """The training-loop hooks of a gates run (see :func:`codesign.train.begin_epoch`):
    before the first of the last ``gate_freeze_epochs`` epochs, fit the gates to the
    budget (budget mode) and freeze them, so the weights adapt to the final network."""

    config: Any
    objective: HardwareObjective

    @property
    def freeze_epoch(self) -> int | None:
        n = min(self.config.gate_freeze_epochs, self.config.epochs - 1)
        return self.config.epochs - n if n > 0 else None

    def before_epoch(self, model: nnx.Module, optimizer: Any, epoch: int) -> dict | None:
        if epoch != self.freeze_epoch:
            return None
        model.eval()
        try:
            out = {}
            if self.config.energy_budget > 0:
                out.update(calibrate_to_exact(model, self.objective, self.config.energy_budget))
            out["gates_frozen_open_units"] = freeze_gates(model)
            out["hw_frozen"] = float(self.objective.relative(model, hard=True))
            return out
        finally:
            model.train()


def method_hooks(objective: HardwareObjective | None, config) -> GateHooks | None:
    """The hooks of a gates run (None for other methods)."""
    if objective is None or config.method not in GATE_METHODS:
        return None
    return GateHooks(config, objective)


def _figures(cost) -> dict[str, Any]:
    return {
        "energy_per_inference_uj": float(cost.energy_per_inference_pj) * 1e-6,
        "latency_per_inference_ms": float(cost.latency_s) / cost.batch * 1e3,
        "edp_uj_ms": float(cost.energy_per_inference_pj) * 1e-6 * float(cost.latency_s) / cost.batch * 1e3,
        "dram_bytes_per_inference": float(cost.dram_bytes_per_inference),
        "macs_per_inference": float(cost.macs_dense) / cost.batch,
        "energy_breakdown_uj": {k: float(v) / cost.batch * 1e-6
                                for k, v in cost.energy_breakdown_pj.items()},
        # the widths charged, MAC-weighted over the layers (a quantized network's bits)
        "weight_bits": _mean_bits(cost, cost.layers.w_bits),
        "act_bits": _mean_bits(cost, cost.layers.i_bits),
    }


def _mean_bits(cost, bits) -> float:
    macs = np.asarray(cost.layers.macs_dense, np.float64)
    b = np.asarray(bits, np.float64)
    return float(np.sum(b * macs) / np.sum(macs)) if np.sum(macs) > 0 else float(np.mean(b))


def hardware_summary(model: nnx.Module, obj: HardwareObjective) -> dict[str, Any]:
    """The report's hardware figures of a gated model in inference mode.

    Returns a dict with the exact figures of the pruned network (closed units removed,
    re-mapped: ``energy_per_inference_uj``, ``latency_per_inference_ms``, ``edp_uj_ms``,
    ``dram_bytes_per_inference``, ``macs_per_inference``, ``energy_breakdown_uj`` per
    memory level / MAC / nonMAC), the same under ``relaxed`` (the in-loss estimate:
    dense mappings, hard keeps as knobs), per-gate kept units ``kept_units`` and per-layer
    kept fractions ``layer_keep`` (``{layer: {keep_out, keep_in, keep_groups}}``).
    """
    relaxed = obj.cost(model, hard=True)
    exact = obj.exact_cost(model)
    weights = [l.weights for l in obj.pruned_workload(model)]
    knobs = obj.knobs(model, hard=True)
    layer_keep = {
        l.name: {"keep_out": float(knobs.keep_out[i]), "keep_in": float(knobs.keep_in[i]),
                 "keep_groups": float(knobs.keep_groups[i])}
        for i, l in enumerate(obj.layers)}
    sizes = {b.path: b.size for b in obj.bindings}
    out = _figures(exact)
    out["relaxed"] = _figures(relaxed)
    out["hw_objective"] = obj.objective
    out["hw_objective_relative"] = obj.relative_of(exact)
    out["kept_units"] = {p: [k, sizes[p]] for p, k in obj.kept_units(model).items()}
    out["layer_keep"] = layer_keep
    out["layers"] = [
        {"name": n, "macs": int(m), "weights": int(w), "energy_uj": float(e) / exact.batch * 1e-6}
        for n, m, w, e in zip(exact.layer_names, exact.layer_macs, weights,
                              np.asarray(exact.layers.energy_pj))]
    return out


def dense_summary(obj: HardwareObjective) -> dict[str, Any]:
    """:func:`hardware_summary`'s figures for the dense (ungated) network."""
    out = _figures(obj.dense_cost)
    out["layers"] = [
        {"name": n, "macs": int(m), "weights": int(l.weights),
         "energy_uj": float(e) / obj.dense_cost.batch * 1e-6}
        for n, m, l, e in zip(obj.dense_cost.layer_names, obj.dense_cost.layer_macs, obj.layers,
                              np.asarray(obj.dense_cost.layers.energy_pj))]
    return out


def dense_report(obj: HardwareObjective, config) -> dict[str, Any]:
    """The ``dense`` entry of a gated run's report: the same keys as the top level for the
    ungated network (hardware figures; ``test_accuracy`` of the ``init_from`` run when
    there is one, else None)."""
    out = dense_summary(obj)
    acc = None
    if config.init_from:
        rep = Path(config.init_from) / "report.json"
        if rep.is_file():
            import json

            acc = json.loads(rep.read_text(encoding="utf-8")).get("test_accuracy")
    out["test_accuracy"] = acc
    out["macs_kept"] = out["macs_per_inference"]
    return out


def report_markdown(rep: dict[str, Any]) -> str:
    """``report.md``: a gated run's report card, per layer and in total, against dense."""
    hw, dense = rep["hw"], rep["dense"]

    def pct(x):
        return "n/a" if x is None else f"{100 * x:.2f}%"

    lines = [
        f"# {rep['model']} on {rep['dataset']}: {rep['method']} ({hw['hw_objective']})", "",
        "| | dense | pruned | ratio |", "|---|---:|---:|---:|",
        f"| test accuracy | {pct(dense.get('test_accuracy'))} | {pct(rep['test_accuracy'])} | |",
    ]
    for key, name in (("energy_per_inference_uj", "energy per inference (uJ)"),
                      ("latency_per_inference_ms", "latency per inference (ms)"),
                      ("edp_uj_ms", "EDP (uJ x ms)"),
                      ("dram_bytes_per_inference", "DRAM bytes per inference"),
                      ("macs_per_inference", "MACs per inference")):
        d, p = dense[key], hw[key]
        lines.append(f"| {name} | {d:,.4g} | {p:,.4g} | {d / p:.2f}x |" if p else
                     f"| {name} | {d:,.4g} | {p:,.4g} | |")
    if "weight_bits" in hw and "weight_bits" in dense:
        lines.append(f"| bits per weight / input (MAC-weighted) | {dense['weight_bits']:.3g} / "
                     f"{dense['act_bits']:.3g} | {hw['weight_bits']:.3g} / {hw['act_bits']:.3g} | |")
    lines += ["", f"In-loss estimate (dense mappings, hard keeps): "
              f"{hw['relaxed']['energy_per_inference_uj']:.4g} uJ per inference; exact (pruned "
              f"workload re-mapped): {hw['energy_per_inference_uj']:.4g} uJ.", "",
              "Energy per memory level (uJ per inference):", "",
              "| level | dense | pruned |", "|---|---:|---:|"]
    for k, v in dense["energy_breakdown_uj"].items():
        lines.append(f"| {k} | {v:.4g} | {hw['energy_breakdown_uj'].get(k, 0.0):.4g} |")
    lines += ["", "Per layer:", "", "| layer | keep out | keep in | keep groups | MACs dense | "
              "MACs pruned | energy dense (uJ) | energy pruned (uJ) |", "|---|---:|---:|---:|---:|"
              "---:|---:|---:|"]
    pruned = {l["name"].removesuffix("-pruned"): l for l in hw["layers"]}
    for l in dense["layers"]:
        k = hw["layer_keep"].get(l["name"], {})
        p = pruned.get(l["name"], {"macs": 0, "energy_uj": 0.0})
        lines.append(f"| {l['name']} | {k.get('keep_out', 1):.3f} | {k.get('keep_in', 1):.3f} | "
                     f"{k.get('keep_groups', 1):.3f} | {l['macs']:,} | {p['macs']:,} | "
                     f"{l['energy_uj']:.4g} | {p['energy_uj']:.4g} |")
    lines += ["", "Kept units per gate: " + ", ".join(
        f"{g} {k}/{n}" for g, (k, n) in hw["kept_units"].items()), ""]
    return "\n".join(lines)
