"""Joint network + hardware training (co-design): ``codesign train ... --method gates
--co-design --area-mm2 A``.

The network's learned gates (:mod:`codesign.energy`, penalty or budget mode) and the
accelerator's knobs (:mod:`codesign.design`: PE rows and columns, global-buffer and
register-file sizes of ``--hw-arch``, under ``hwmodel.area_mm2 <= A``; dataflow fixed
to ``--hw-dataflow``) are optimized together against task loss plus the hardware
objective (``--hw-objective``: energy, latency or EDP per inference).

**Scheme: block-coordinate descent.**

* *Hardware block*: before gate-training epoch ``e`` (``e = 0, N, 2N, ...`` with
  ``N = --co-design-every``, up to the epoch where the gates freeze), the hardware is
  searched for the *current* pruned network (its inference-mode keeps: the integer
  workload :meth:`HardwareObjective.pruned_workload` that would be deployed) by exact
  evaluations (exact mapper + cost model, :class:`codesign.design.Evaluator`):
  the current design and the starting preset first, then ``--co-design-evaluations``
  designs, half random (:func:`codesign.design.random_search`), half local moves
  around the best so far (:func:`codesign.design.local_search`)
  (:func:`hardware_search`). The current design is kept unless another is strictly
  better, so a search never raises the current network's hardware objective, and the
  result is never worse for it than the starting preset (when the preset fits in the
  budget; otherwise its projection into the budget is the candidate).
* *Network block*: the :class:`HardwareObjective` is rebuilt for the new design (the
  dense workload mapped on it by the exact mapper) and the train step is recompiled
  with it, so the gates train for the next epochs against that hardware's cost.
* After the last gate change (the gates freeze for the last ``--gate-freeze-epochs``
  epochs, after budget mode's fit; at the end, budget mode's final close), one final
  search for the final network. Since the search starts from the current design,
  the final network's objective on the found hardware is at most its objective on
  the design it trained against and on the starting preset.

*Why not a gradient on the hardware knobs inside the train step.* The relaxed cost
model prices a design only through the candidate mappings it was given, and which
mapping is legal changes in jumps as a buffer shrinks past a tile, so the gradient
search of :mod:`codesign.design` stops at the edge of its candidates' region and is
not clearly better than random search at the same number of exact evaluations
(README, "Hardware design search"). An exact evaluation of a small network costs
milliseconds to tens of milliseconds, so a few dozen per epoch cost seconds against an
epoch of tens of seconds, and every design the run trains against is a legal integer
design with exact numbers. The gates, in contrast, get exact gradients from the cost
model at fixed hardware: each block is optimized by the method that works for it.

**The reference is fixed.** ``H / H_ref`` in the loss (penalty mode's scale, budget
mode's constraint ``H <= B H_ref``, the ``hw`` column of ``metrics.jsonl``,
``hw_objective_relative`` in the report) divides by the *dense network on the starting
hardware* (``--hw-arch``), whatever hardware the run is on: dividing by the dense
network on the current hardware would move budget mode's target each time the
hardware changes (a design that halves the dense network's energy would halve the
allowed energy). So ``--energy-budget 0.03`` means "3% of the dense network's energy
on eyeriss", on whatever hardware is found; a better accelerator leaves room for more
channels at the same energy.

**Resume.** The current design is the model variable ``hw_design``
(:class:`codesign.energy.HardwareDesign`, in every checkpoint), so a resumed run
rebuilds the objective of the hardware it had reached before its next epoch.

**Output** (besides a gates run's files): ``hardware.yaml``, the final design (an
architecture file for ``--arch`` / :func:`hwmodel.load_arch`: load it, cost the
network, same numbers); ``report.json`` with the network on the found hardware (the
top-level figures and ``hw``), on the starting preset (``hw_start``), the dense network
on the starting preset (``dense``) and ``co_design`` (budget, the starting and found
designs, every search); ``report.md`` with both report cards.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

import hwmodel
from codesign import design, energy
from codesign._config import ConfigError
from codesign.objective import HardwareObjective

__all__ = ["HARDWARE_FILE", "CoDesignHooks", "hardware_search", "knob_count", "report_markdown",
           "search_space"]

HARDWARE_FILE = "hardware.yaml"
"""The final design, in the run directory."""


def search_space(config) -> design.DesignSpace:
    """The design space of a co-design run: ``hw_arch``'s knobs, dataflow ``hw_dataflow``;
    for a quantization-aware run (``weight_bits`` / ``act_bits``) the word widths of W /
    I are fixed knobs at the network's bits (hardware built for the network's operands)."""
    widths = {x: b for x, b in (("W", config.weight_bits), ("I", config.act_bits)) if b}
    try:
        return design.design_space(config.hw_arch, dataflows=(config.hw_dataflow,),
                                   energy_exponent=config.co_design_energy_exponent,
                                   word_bits=widths or None)
    except (design.DesignError, ValueError, OSError) as e:
        raise ConfigError(f"co_design: hw_arch {config.hw_arch!r}: {' '.join(str(e).split())}") from None


def knob_count(config) -> int:
    """Number of hardware knobs of the run's design space (the length of ``hw_design``)."""
    return len(search_space(config).knobs)


def _log(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


class CoDesignHooks:
    """The training-loop hooks of a co-design run (see :func:`codesign.train.begin_epoch`).

    Args:
      model: the gated model (its gates and ``hw_design`` variable exist).
      config: the run config (``co_design`` set).
      image_shape: one input's shape.
      start: the :class:`HardwareObjective` on the starting hardware (``hw_arch``), built
        by :func:`codesign.energy.build_objective`; its dense value is the fixed
        reference of every objective of the run.

    Attributes:
      objective: the :class:`HardwareObjective` of the current hardware (the train step's;
        :func:`codesign.train.begin_epoch` recompiles the step when it changes).
      values: the current design's knob values (int64 ``[n_knobs]``).
      searches: one record per search (epoch, evaluations, seconds, objective before and
        after, the design).

    Raises:
      ConfigError: the area budget is below the smallest legal design of the space.
    """

    def __init__(self, model: nnx.Module, config, image_shape, start: HardwareObjective):
        self.config = config
        self.image_shape = tuple(image_shape)
        self.space = search_space(config)
        try:
            design.check_budget(self.space, float(config.area_mm2))
        except design.DesignError as e:
            raise ConfigError(f"config field 'area_mm2': {e}") from None
        self.start = start
        self.reference = start.dense_value
        self.area_budget = float(config.area_mm2)
        # the starting preset, at the network's word widths when it is quantized
        self.start_values = self.space.start_values()
        self.widths = any(k.field == "word_bits" for k in self.space.knobs)
        if self.widths:
            _check_all_quantized(model, start)
        self.start_area = self.space.area(self.start_values)
        self.start_fits = self.start_area <= self.area_budget * (1 + design.AREA_RTOL)
        self.searches: list[dict[str, Any]] = []
        self.values = self.start_values
        self.objective = self._objective(model, self.values)
        if not self.start_fits:
            # the preset is over the budget: train from its projection into the budget
            self.values = self.space.project(self.start_values, self.area_budget)
            self.objective = self._objective(model, self.values)

    # ---- the current hardware -----------------------------------------------------
    @property
    def gate_hooks(self) -> energy.GateHooks:
        return energy.GateHooks(self.config, self.objective)

    @property
    def freeze_epoch(self) -> int | None:
        return self.gate_hooks.freeze_epoch

    def arch(self, values=None) -> hwmodel.Architecture:
        """The architecture of a design (default: the current one)."""
        v = self.values if values is None else values
        return self.space.arch(np.asarray(v, np.float64), name=f"{self.space.base.name}_codesign")

    def _objective(self, model: nnx.Module, values) -> HardwareObjective:
        if np.array_equal(np.asarray(values), self.start_values) and not self.widths:
            return self.start  # its reference is its own dense value
        return HardwareObjective(model, self.image_shape, arch=self.arch(values),
                                 dataflow=self.start.dataflow,
                                 objective=self.start.objective, batch=self.start.batch,
                                 mapper_objective=self.start.mapper_objective,
                                 reference_value=self.reference)

    def _set(self, model: nnx.Module, values) -> None:
        values = np.asarray(values, np.int64)
        if not np.array_equal(values, self.values):
            self.values = values
            self.objective = self._objective(model, values)
        model.hw_design.set_value(jnp.asarray(values, jnp.float32))

    def _sync(self, model: nnx.Module) -> bool:
        """Adopt the design held by the model (a resumed run); write ours into a fresh
        one. Returns whether the model's variable was written."""
        held = np.asarray(model.hw_design[...], np.float64)
        if not held.any():
            self._set(model, self.values)
            return True
        if not np.array_equal(np.rint(held).astype(np.int64), self.values):
            self._set(model, np.rint(held))
        return False

    # ---- the hardware block ----------------------------------------------------------
    def search(self, model: nnx.Module, label: str, seed: int) -> dict[str, Any]:
        """Search the hardware for the model's current pruned network (inference-mode
        keeps) and adopt the best design; returns the ``metrics.jsonl`` fields."""
        t0 = time.perf_counter()
        model.eval()
        try:
            wl = self.objective.pruned_workload(model)
        finally:
            model.train()
        current, best, ev = hardware_search(
            self.space, {self.config.model: wl}, self.values, area_mm2=self.area_budget,
            objective=self.start.objective, dataflow=self.config.hw_dataflow,
            evaluations=self.config.co_design_evaluations, seed=seed,
            also=[self.start_values])  # the starting preset (projected if over the budget)
        self._set(model, best.values)
        seconds = time.perf_counter() - t0
        scale = 1e6 if self.start.objective == "energy" else 1.0  # J -> uJ
        unit = {"energy": "uJ", "latency": "s", "edp": "J s"}[self.start.objective]
        rec = {
            "label": label, "evaluations": ev.count, "seconds": seconds,
            "before": _metric(current, self.start.objective) * scale,
            "after": _metric(best, self.start.objective) * scale,
            "unit": unit, "area_mm2": best.area_mm2,
            "knobs": dict(zip(self.space.names, (int(x) for x in best.values))),
            "design": self.space.describe(best.values),
        }
        self.searches.append(rec)
        _log(f"hardware search ({label}): {ev.count} exact evaluations in {seconds:.1f} s; "
             f"{self.start.objective} of the current network {rec['before']:.4g} -> "
             f"{rec['after']:.4g} {unit} ({'kept' if best is current else 'new'}: {rec['design']}, "
             f"{best.area_mm2:.4g} mm^2 of {self.area_budget:g})")
        return {"hw_search_s": seconds, "hw_search_evaluations": ev.count,
                "hw_search_before": rec["before"], "hw_search_after": rec["after"],
                "hw_design": rec["design"], "hw_area_mm2": best.area_mm2}

    # ---- the hooks of codesign.train ---------------------------------------------------
    def before_epoch(self, model: nnx.Module, optimizer: Any, epoch: int) -> dict | None:
        out: dict[str, Any] = {}
        wrote = self._sync(model)
        freeze = self.freeze_epoch
        training_gates = freeze is None or epoch < freeze
        if training_gates and epoch % self.config.co_design_every == 0:
            out.update(self.search(model, f"epoch {epoch + 1}", seed=self.config.seed + 7919 * epoch))
        g = self.gate_hooks.before_epoch(model, optimizer, epoch)
        if g:
            out.update(g)
        return out if (out or wrote) else None

    def finish(self, model: nnx.Module, workdir: Path | None) -> None:
        """The final search, for the final network (inference mode); writes
        ``hardware.yaml`` into ``workdir`` (None: write nothing)."""
        self._sync(model)
        self.search(model, "final", seed=self.config.seed + 104729)
        if workdir is not None:
            arch = self.arch().replace(description=(
                f"Found by codesign train --co-design --area-mm2 {self.area_budget:g} (model "
                f"{self.config.model}, {self.start.objective}, dataflow {self.config.hw_dataflow}) "
                f"from {self.space.base.name}: {self.space.describe(self.values)}; area "
                f"{self.space.area(self.values):.4g} mm^2."))
            hwmodel.save_arch(arch, Path(workdir) / HARDWARE_FILE)

    def report(self, model: nnx.Module, out: dict[str, Any]) -> str:
        """Adds the co-design figures to the report dict; returns ``report.md``'s text."""
        model.eval()
        try:
            out["hw_start"] = energy.hardware_summary(model, self.start)
        finally:
            model.train()
        out["dense"] = energy.dense_report(self.start, self.config)
        out["hw_arch"] = HARDWARE_FILE
        out["hw_area_mm2"] = self.space.area(self.values)
        out["co_design"] = {
            "area_budget_mm2": self.area_budget,
            "reference": f"the dense network on {self.space.base.name} ({self.config.hw_dataflow})",
            "start": {"arch": self.space.base.name, "area_mm2": self.start_area,
                      "fits_budget": bool(self.start_fits),
                      "knobs": dict(zip(self.space.names, (int(x) for x in self.start_values))),
                      "design": self.space.describe(self.start_values)},
            "found": {"arch": HARDWARE_FILE, "area_mm2": out["hw_area_mm2"],
                      "knobs": dict(zip(self.space.names, (int(x) for x in self.values))),
                      "design": self.space.describe(self.values)},
            "searches": self.searches,
            "search_time_s": sum(s["seconds"] for s in self.searches),
            "evaluations": sum(s["evaluations"] for s in self.searches),
        }
        return report_markdown(out)


def _check_all_quantized(model: nnx.Module, start: HardwareObjective) -> None:
    """A quantized co-design run builds hardware with the network's word widths: every
    layer that multiplies must then be quantized (else it would be charged at widths it
    does not have)."""
    left = [l.name for l in start.layers if l.macs > 0 and l.name not in start.layer_bits]
    if left:
        raise ConfigError(
            f"co_design with weight_bits / act_bits sets the hardware's word widths to the "
            f"network's bits, but these layers of {type(model).__name__} are not quantized: "
            f"{', '.join(left[:4])}{', ...' if len(left) > 4 else ''} (attention's matmuls and "
            "depthwise convolutions are not); valid: a model of conv / dense layers, or "
            "co-design without --weight-bits / --act-bits")


def hardware_search(space: design.DesignSpace, workloads, start, *, area_mm2: float,
                    objective: str, dataflow: str, evaluations: int, seed: int,
                    also=()) -> tuple[design.Design, design.Design, design.Evaluator]:
    """The hardware block of co-design: the best design for ``workloads`` near ``start``.

    Evaluates ``start`` (projected into the budget if it does not fit) and the designs
    ``also`` (e.g. the starting preset, so that the result is never worse than it), then
    ``ceil(evaluations / 2)`` random designs (:func:`codesign.design.random_search`)
    and local moves (:func:`codesign.design.local_search`) around the best so far
    until ``evaluations`` more exact evaluations are spent, all with ``dataflow``.

    Args:
      space: the design space.
      workloads: ``{name: hwmodel.Workload}`` (a co-design run: its pruned network).
      start: knob values ``[n_knobs]`` to start from (the current design).
      area_mm2, objective, dataflow: the budget, ``energy`` / ``latency`` / ``edp``,
        the dataflow.
      evaluations: exact evaluations after the start's.
      seed: seed of the random and local proposals.
      also: more designs (knob value vectors) evaluated first (not counted in
        ``evaluations``).

    Returns:
      ``(current, best, evaluator)``: the start's evaluation, the best design (the
      start unless another is strictly better) and the :class:`codesign.design.Evaluator`
      holding every evaluated design.

    Raises:
      RuntimeError: the start has no legal mapping even after repair.
    """
    ev = design.Evaluator(space, workloads, area_mm2=area_mm2, objective=objective,
                          reference=[1.0] * len(workloads))
    current = ev.propose(np.asarray(start, np.float64), dataflow, "current")
    if not current.feasible:
        raise RuntimeError(f"hardware search: the start design ({space.describe(start)}) has "
                           f"no legal {dataflow} mapping: {current.error}")
    for v in also:
        ev.propose(np.asarray(v, np.float64), dataflow, "start")
    first = ev.count
    design.random_search(ev, (evaluations + 1) // 2, seed=seed)
    design.local_search(ev, ev.best().values, evaluations - (ev.count - first), dataflow=dataflow,
                        seed=seed + 1)
    best = ev.best()
    if best.objective >= current.objective:
        best = current
    return current, best, ev


def _metric(d: design.Design, objective: str) -> float:
    """The objective of a one-network design: J, s or J s (:func:`codesign.design._metric`)."""
    return design._metric(objective, d.energy_pj[0], d.latency_s[0])


def report_markdown(rep: dict[str, Any]) -> str:
    """``report.md`` of a co-design run: the network on the found hardware and on the
    starting preset (each against the dense network on the starting preset), the two
    designs, and the searches."""
    co = rep["co_design"]
    start, found = co["start"], co["found"]
    found_card = energy.report_markdown(rep).split("\n", 1)[1]
    start_card = energy.report_markdown({**rep, "hw": rep["hw_start"]}).split("\n", 1)[1]
    lines = [f"# {rep['model']} on {rep['dataset']}: co-design ({rep['hw']['hw_objective']}, "
             f"area <= {co['area_budget_mm2']:g} mm^2)", "",
             "| hardware | knobs | area (mm^2) |", "|---|---|---:|",
             f"| start: {start['arch']} | {start['design']} | {start['area_mm2']:.4g} |",
             f"| found: {found['arch']} | {found['design']} | {found['area_mm2']:.4g} |", "",
             f"## The network on the found hardware ({found['arch']}); dense: on {start['arch']}",
             found_card,
             f"## The same network on the starting hardware ({start['arch']})", start_card,
             f"## Hardware searches ({co['evaluations']} exact evaluations, "
             f"{co['search_time_s']:.1f} s)", "",
             "| search | evaluations | seconds | before | after | design |",
             "|---|---:|---:|---:|---:|---|"]
    for s in co["searches"]:
        lines.append(f"| {s['label']} | {s['evaluations']} | {s['seconds']:.1f} | "
                     f"{s['before']:.4g} {s['unit']} | {s['after']:.4g} {s['unit']} | {s['design']} |")
    return "\n".join(lines) + "\n"
