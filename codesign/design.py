"""Hardware design-space search: the accelerator for one network or a weighted set of
networks, under an area budget (and optionally a latency budget).

**Design space** (:class:`DesignSpace`, built by :func:`design_space` from a base
architecture such as the ``eyeriss`` preset): integer knobs

* ``pe_rows``, ``pe_cols``: the PE array (PEs);
* the size of every on-chip buffer (``sram`` / ``rf`` levels): one knob per operand
  partition when the level is partitioned (``RF.W``, ``RF.I``, ``RF.O`` on eyeriss), one
  shared knob otherwise (``GLB``), in words of the level's operand width;
* the bandwidth (words/cycle) of every on-chip level whose bandwidth the architecture
  prices in area (``area_mm2_per_word_per_cycle``, :attr:`hwmodel.AreaModel.bandwidth_mm2`;
  knob ``LEVEL.bw``); no preset prices one, so their bandwidths stay fixed unless a
  YAML file adds the coefficient;
* the dataflow (WS, OS, IS, RS, NLR), a discrete choice that is **enumerated**, not
  relaxed: each dataflow is a different family of loop nests (what stays in the RF,
  which dims are spread over the array), the exact mapper searches one family at a
  time, and a softmax mixture of families is not a realizable accelerator; there are
  only five, so each gets its own continuous search and the best wins.

Word widths, per operand, are knobs only when asked for (``word_bits``; ``bits.W``,
``bits.I``, ``bits.O``, in bits): energies follow the widths
(:func:`hwmodel.scale_word_bits`: per-word energies linear in the width, MAC energy in
the product of the W and I widths; buffers keep their size in bits, so narrower words
pack more of them); the area does not change.

Fixed per search (the base architecture's values): technology (the energy per access
of every level *at the base sizes*, MAC energy), DRAM (energy, bandwidth), clock, bit
widths unless asked for, and the on-chip bandwidths that the area model does not price.  A resized
buffer's energy per access follows its size,
``E = E_base * (size / base size) ** energy_exponent``
(:func:`hwmodel.scale_access_energy`; default exponent 0.5, fit to the Accelergy 45 nm
on-chip memories; 0 makes energies size-independent): without it a larger buffer would
be free in energy and an energy search would always spend the whole area budget on
memory.  Bit widths are fixed by default because without the network's accuracy in
the loop a narrower word is always cheaper: the widths a network tolerates come from
training it at them (quantization-aware training, ``--weight-bits`` / ``--act-bits``);
an unpriced bandwidth is fixed because the area model (:func:`hwmodel.area_mm2`) would
charge nothing for it, so a search would simply take the upper bound.  A bandwidth
changes no energy, only the latency (a level's accesses / (bandwidth x instances)
bound the cycles), so it matters for the latency and EDP objectives.

**Constraints**: area ``hwmodel.area_mm2(arch) <= area_mm2`` (the architecture's own
linear area model); optionally every network's latency ``<= latency_s``.  Every
reported design is *legal*: integer knob values within the bounds, the area budget
met, :func:`hwmodel.validate_architecture` passes, and the exact mapper
(:func:`hwmodel.map_workload`) finds a legal mapping for every layer of every network.

**Objective** of a design: ``sum_n w_n * m_n / ref_n / sum_n w_n`` over networks ``n``,
where ``m_n`` is the energy (J), latency (s) or EDP (J s) per run of network ``n`` and
``ref_n`` the same metric of the *reference* design (the base architecture itself,
dataflow ``rs``): the objective is the weighted mean ratio to the baseline (1.0 = as
good as the baseline; for one network it is that network's ratio).

**Exact evaluation** (:class:`Evaluator`, counted in :attr:`Evaluator.count`): the
exact mapper re-maps every layer on the design (``map_workload``, objective ``energy``
for the energy objective, ``edp`` otherwise), then :func:`hwmodel.cost` evaluates those
mappings at integer sizes.  Every method below is charged the same way, so "exact
evaluations" compares search effort across methods.

**Gradient search** (:func:`gradient_search`), per dataflow:

1. Start points: the base design and ``restarts - 1`` random designs (log-uniform in
   the bounds), each projected into the budget and evaluated exactly
   (:meth:`Evaluator.propose`).  With ``top_dataflows`` set, only that many dataflows
   (the best on the start points) go on to step 2.
2. Rounds, alternating "re-map" and "descend".  *Re-map*: a candidate set
   (:func:`hwmodel.mapping_candidates`) holds the exact mapper's best ``per_layer``
   mappings for each restart's current projected design, for the same design grown
   ``grow`` x in every knob (mappings that need more hardware: the only way the
   relaxed model can see a benefit in growing) and shrunk ``1/grow`` x (mappings that
   fit in less), and for the smallest design (so every point of the box has a legal
   candidate).  *Descend*: ``steps`` Optax (Adam) steps on
   ``x = log(knob values)``, all restarts at once (``vmap``), on
   ``log(objective) + lam * g + rho/2 * p^2`` with ``g = log(area / budget)`` (``p``
   below) through
   the relaxed cost model (``hwmodel.cost(..., candidates=..., relaxed=True)``:
   continuous sizes; its forward value is the exact hard choice among the candidates
   that fit, its gradient flows through a softmin over the candidates weighted by
   ``sigmoid(capacity slack / 0.05)``; with size-independent energies a knob's gradient
   is nonzero only when some candidate is within a few percent of fitting).  The area budget is an equality
   constraint (``p = g``; augmented Lagrangian, ``lam <- lam + rho * g`` after each round) when
   energies are size-independent (``energy_exponent == 0``): then the objectives never
   get worse with more hardware (a larger array or buffer only admits more mappings),
   so the optimum spends the budget and the question is how to divide it among PEs,
   buffers and register files.  With size-dependent energies (the default) a larger
   buffer costs energy on every access, so the budget is an inequality
   (``p = relu(g)``, ``lam >= 0``), and the relaxed energy has a gradient with respect to
   every buffer size even for a fixed mapping.  A latency budget adds
   ``lam_t * gt + rho/2 * relu(gt)^2`` (an inequality).  ``x`` stays in the box.
   After the steps each restart's ``exp(x)`` is projected to a legal integer design
   within the budget and evaluated exactly, re-mapped by the exact mapper.
3. Polish: a coordinate pattern search (:func:`pattern_search`, ``polish`` exact
   evaluations, default 30) from the best design of step 2, in its dataflow: one knob
   at a time times 2, 1/2, then sqrt(2), 1/sqrt(2), then 2**(1/4), 2**(-1/4), each
   neighbour projected into the budget, re-mapped and evaluated exactly, every
   improvement taken at once.  The relaxed model sees a design only through the
   candidate mappings of its anchors, and which mapping is legal changes in jumps as a
   buffer shrinks past a tile, so the descent stops at the edge of its candidates'
   region; the exact neighbours see past that edge.  (On resnet20, EDP, RS: the descent
   alone 1052 uJ*ms in 14 evaluations, +8 polish evaluations 670, +30 635; the
   exhaustive 492-point grid's best is 702.)
4. The result is the best exactly evaluated design (all restarts, rounds, dataflows and
   the polish): a projected integer design whose numbers come from the exact mapper.

**Baselines** on the same space and the same exact evaluations:
:func:`random_search` (log-uniform designs, random dataflow, projected; a fixed seed
reproduces it), :func:`pattern_search` on its own (from any start, e.g. the base
design), :func:`local_search` (a (1+1) evolution strategy around a given design,
which a co-design run uses to follow a changing network: :mod:`codesign.joint`) and
:func:`grid_search` (every point of a Cartesian grid whose area,
computed for the whole grid in one ``vmap``-ed call, fits the budget).
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import math
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

import hwmodel

__all__ = [
    "OBJECTIVES",
    "DesignError",
    "Knob",
    "DesignSpace",
    "design_space",
    "Design",
    "Evaluator",
    "SearchResult",
    "exact_costs",
    "check_budget",
    "gradient_search",
    "gradient_candidates",
    "relaxed_loss",
    "pattern_search",
    "random_search",
    "local_search",
    "grid_search",
    "pareto_front",
    "designs_csv",
    "write_designs_csv",
    "plot_designs",
]

OBJECTIVES = ("energy", "latency", "edp")
"""Search objectives: energy (J), latency (s) or their product (J s), per run."""

_MAPPER_OBJECTIVE = {"energy": "energy", "latency": "edp", "edp": "edp"}
"""The exact mapper minimizes energy or EDP; a latency search maps for EDP."""

AREA_RTOL = 1e-5
"""Relative tolerance of the area check (areas are float32 sums: the eyeriss preset's
12.25 mm^2 evaluates to 12.2500124, 1.01e-6 above, so a budget of 12.25 must admit it)."""

REFERENCE_DATAFLOW = "rs"
"""Dataflow of the reference design (the base architecture) the objective is relative to."""


class DesignError(ValueError):
    """Bad search input (impossible budget, unknown objective, bad bounds): one line."""


# ----------------------------------------------------------------------------------
# The design space
# ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Knob:
    """One integer hardware knob.

    Attributes:
      name: ``"pe_rows"``, ``"pe_cols"``, a level name (its shared size, e.g. ``"GLB"``)
        or ``"LEVEL.X"`` (operand X's partition of a partitioned level, e.g. ``"RF.W"``).
      level: the level's name (None for the PE array).
      operand: index of the partition's operand in ``hwmodel.OPERANDS`` (None: the PE
        array or a shared size).
      unit_bits: bits per unit (a word of the operand at the base architecture's
        width, or of the widest operand the level holds); 0 for the PE array (unit: one
        PE), a bandwidth and a word width.
      lo, hi: inclusive integer bounds, in units.
      field: ``"size"`` (the PE array or a buffer size), ``"bandwidth"`` (the
        level's bandwidth in words/cycle per instance; name ``"LEVEL.bw"``) or
        ``"word_bits"`` (the word width of operand ``operand`` in bits, name
        ``"bits.X"``; level None).
    """

    name: str
    level: str | None
    operand: int | None
    unit_bits: float
    lo: int
    hi: int
    field: str = "size"

    @property
    def unit(self) -> str:
        if self.field == "bandwidth":
            return "words/cycle"
        if self.field == "word_bits":
            return "bits"
        return "PEs" if self.level is None else "words"


@dataclasses.dataclass(frozen=True, eq=False)
class DesignSpace:
    """The knobs of a base architecture and the dataflows searched.

    Attributes:
      base: the architecture whose fixed parameters every design keeps.
      knobs: the integer knobs (:class:`Knob`), in a fixed order: a design is a vector
        of their values (shape ``[n_knobs]``).
      dataflows: the dataflows searched (a subset of :data:`hwmodel.DATAFLOWS`).
      energy_exponent: how a resized buffer's energy per access scales with its
        size, ``E ~ size ** energy_exponent`` relative to the base architecture's
        sizes (:func:`hwmodel.scale_access_energy`; 0: sizes do not change energies).
    """

    base: hwmodel.Architecture
    knobs: tuple[Knob, ...]
    dataflows: tuple[str, ...]
    energy_exponent: float = hwmodel.DEFAULT_ENERGY_EXPONENT

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self.knobs)

    @property
    def lo(self) -> np.ndarray:
        """``[n_knobs]`` lower bounds (float64)."""
        return np.array([k.lo for k in self.knobs], np.float64)

    @property
    def hi(self) -> np.ndarray:
        """``[n_knobs]`` upper bounds (float64)."""
        return np.array([k.hi for k in self.knobs], np.float64)

    def base_values(self) -> np.ndarray:
        """The base architecture's knob values ``[n_knobs]`` (integers, as float64)."""
        out = []
        for k in self.knobs:
            if k.field == "word_bits":
                out.append(float(np.asarray(self.base.word_bits)[k.operand]))
                continue
            if k.level is None:
                out.append(float(np.asarray(getattr(self.base, k.name))))
                continue
            lvl = self.base.level(k.level)
            if k.field == "bandwidth":
                out.append(float(np.asarray(lvl.bandwidth_words)))
                continue
            bits = (np.asarray(lvl.shared_bits) if k.operand is None
                    else np.asarray(lvl.capacity_bits)[k.operand])
            out.append(float(bits) / k.unit_bits)
        return np.array(out, np.float64)

    def start_values(self) -> np.ndarray:
        """The base architecture's knob values clipped into the bounds (int64
        ``[n_knobs]``): the base design itself, or, where a knob is fixed elsewhere (a
        word width set to the network's bits), the base design at that value. Where
        searches start."""
        return np.clip(np.rint(self.base_values()), self.lo, self.hi).astype(np.int64)

    def arch(self, values, name: str | None = None) -> hwmodel.Architecture:
        """The base architecture with the knobs set to ``values`` (``[n_knobs]``),
        each resized buffer's energy per access scaled to its size
        (:attr:`energy_exponent`) and every energy scaled to the word widths
        (:func:`hwmodel.scale_word_bits`; buffer sizes stay in bits, so a narrower word
        packs more words).

        Traceable: ``values`` may be a tracer (continuous values for the relaxed
        model); with concrete integer values the result is an exact design.
        """
        v = jnp.asarray(values, jnp.float32)
        arch = self.base
        changes = {}
        per_level: dict[str, dict] = {}
        bandwidth: dict[str, object] = {}
        widths: dict[int, object] = {}
        for i, k in enumerate(self.knobs):
            if k.field == "word_bits":
                widths[k.operand] = v[i]
            elif k.level is None:
                changes[k.name] = v[i]
            elif k.field == "bandwidth":
                bandwidth[k.level] = v[i]
            else:
                per_level.setdefault(k.level, {})[k.operand] = v[i] * k.unit_bits
        levels = []
        for lvl in arch.levels:
            ch = per_level.get(lvl.name, {})
            upd = {}
            if lvl.name in bandwidth:
                upd["bandwidth_words"] = bandwidth[lvl.name]
            if not ch and not upd:
                levels.append(lvl)
                continue
            if None in ch:
                upd["shared_bits"] = ch[None]
            parts = [j for j in ch if j is not None]
            if parts:
                cap = jnp.asarray(lvl.capacity_bits, jnp.float32)
                upd["capacity_bits"] = jnp.stack(
                    [ch[j] if j in ch else cap[j] for j in range(len(hwmodel.OPERANDS))])
            levels.append(dataclasses.replace(lvl, **upd))
        out = arch.replace(levels=tuple(levels), **changes)
        if widths:
            base = jnp.asarray(arch.word_bits, jnp.float32)
            out = hwmodel.scale_word_bits(out, jnp.stack(
                [widths[j] if j in widths else base[j] for j in range(len(hwmodel.OPERANDS))]))
        out = hwmodel.scale_access_energy(out, self.base, self.energy_exponent)
        return out if name is None else out.replace(name=name)

    def areas(self, values) -> np.ndarray:
        """Area in mm^2 of many designs at once (``[N, n_knobs]`` -> ``[N]``), one
        ``vmap``-ed call of :func:`hwmodel.area_mm2`."""
        v = np.atleast_2d(np.asarray(values, np.float64))
        return np.asarray(_area_fn(self)(jnp.asarray(v, jnp.float32)), np.float64)

    def area(self, values) -> float:
        """Area of one design, mm^2."""
        return float(self.areas(values)[0])

    def min_area(self) -> float:
        """Area of the smallest design of the space (every knob at its lower bound)."""
        return self.area(self.lo)

    def project(self, values, area_mm2: float) -> np.ndarray:
        """The nearest legal integer design within the area budget.

        Clip to the bounds and round to the nearest integer; if the area then exceeds
        the budget, shrink every knob along the log-space segment towards the lower
        bounds, ``lo * (v / lo) ** t``, rounded down, with the largest ``t`` in [0, 1]
        that fits (bisection; the area only grows with ``t``).  Legal mappings are
        guaranteed by the lower bounds (:func:`design_space` checks the smallest
        design with the exact mapper).

        Args:
          values: ``[n_knobs]`` (any positive floats).
          area_mm2: the budget.

        Returns:
          ``[n_knobs]`` int64 knob values.

        Raises:
          DesignError: even the smallest design exceeds the budget.
        """
        lo, hi = self.lo, self.hi
        v = np.clip(np.asarray(values, np.float64), lo, hi)
        r = np.clip(np.rint(v), lo, hi)
        limit = area_mm2 * (1 + AREA_RTOL)
        if self.area(r) <= limit:
            return r.astype(np.int64)
        check_budget(self, area_mm2)
        lv, ll = np.log(v), np.log(lo)

        def at(t):
            return np.clip(np.floor(np.exp(ll + t[:, None] * (lv - ll)[None]) + 1e-9), lo, hi)

        a, b = 0.0, 1.0
        for _ in range(3):  # 3 x 32 points: t resolved to ~3e-5
            ts = np.linspace(a, b, 32)
            ok = self.areas(at(ts)) <= limit
            i = int(np.max(np.nonzero(ok)[0]))
            a, b = ts[i], ts[min(i + 1, len(ts) - 1)]
        return at(np.array([a]))[0].astype(np.int64)

    def is_per_pe(self, knob: Knob) -> bool:
        """Whether ``knob`` sizes a per-PE level (a register file)."""
        return (knob.level is not None and knob.field == "size"
                and self.base.level(knob.level).per_pe)

    def describe(self, values) -> str:
        """A one-line summary, e.g. ``12x14 PEs, GLB 108 KB, RF.W 224 / RF.I 12 / RF.O 24 words``."""
        v = [int(x) for x in np.asarray(values)]
        d = dict(zip(self.names, v))
        parts = []
        if "pe_rows" in d and "pe_cols" in d:
            parts.append(f"{d['pe_rows']}x{d['pe_cols']} PEs")
        widths = [f"{hwmodel.OPERANDS[k.operand]} {x}" for k, x in zip(self.knobs, v)
                  if k.field == "word_bits"]
        if widths:
            parts.append("words " + " / ".join(widths) + " b")
        for k, x in zip(self.knobs, v):
            if k.level is None:
                continue
            if k.field == "bandwidth":
                parts.append(f"{k.name} {x} words/cycle")
                continue
            kb = x * k.unit_bits / 8192.0
            small = (f"{k.name} {x} words" if not widths  # words of the base width
                     else f"{k.name} {x * k.unit_bits:g} b")
            parts.append(f"{k.name} {kb:.4g} KB" if kb >= 1 else small)
        return ", ".join(parts)


_AREA_FNS: dict = {}


def _area_fn(space: DesignSpace):
    fn = _AREA_FNS.get(id(space))
    if fn is None or fn[0] is not space:
        f = jax.jit(jax.vmap(lambda v: hwmodel.area_mm2(space.arch(v))))
        _AREA_FNS[id(space)] = fn = (space, f)
    return fn[1]


def check_budget(space: DesignSpace, area_mm2: float) -> None:
    """Raise :class:`DesignError` if ``area_mm2`` is below the smallest legal design."""
    if not (isinstance(area_mm2, (int, float)) and math.isfinite(area_mm2) and area_mm2 > 0):
        raise DesignError(f"area budget {area_mm2!r} mm^2: expected a positive number")
    m = space.min_area()
    if area_mm2 * (1 + AREA_RTOL) < m:
        raise DesignError(
            f"area budget {area_mm2:g} mm^2 is smaller than the smallest legal "
            f"{space.base.name} design ({m:.4g} mm^2: {space.describe(space.lo)}); "
            f"valid: a budget >= {m:.4g} mm^2")


def design_space(base="eyeriss", *, dataflows: Sequence[str] | None = None,
                 max_scale: float = 8.0,
                 bounds: Mapping[str, tuple[int, int]] | None = None,
                 energy_exponent: float = hwmodel.DEFAULT_ENERGY_EXPONENT,
                 word_bits: Mapping[str, int | tuple[int, int]] | None = None) -> DesignSpace:
    """The design space of a base architecture.

    Knobs: ``pe_rows``, ``pe_cols``, every on-chip buffer size and every priced
    on-chip bandwidth (``LEVEL.bw``; see the module docstring).  Default bounds: 1 PE /
    one word of each held operand / one word per cycle up to ``max_scale`` x the base
    value (rounded up).  The smallest design (every knob at its lower bound) must be a
    valid architecture on which every dataflow maps (checked when a search evaluates
    it).

    Args:
      base: a preset name, a YAML path or an :class:`hwmodel.Architecture`.
      dataflows: dataflows to search (default all of :data:`hwmodel.DATAFLOWS`).
      max_scale: default upper bound, as a multiple of the base value.
      bounds: per-knob ``(lo, hi)`` overrides (``lo == hi`` fixes a knob).
      energy_exponent: energy per access of a resized buffer ``~ size **
        energy_exponent`` (:func:`hwmodel.scale_access_energy`; default 0.5, fit to the
        Accelergy 45 nm on-chip memories; 0 keeps the base energies at every size).
      word_bits: word widths to search or set, by operand: ``{"W": (4, 16)}`` adds the
        knob ``bits.W`` searched in [4, 16] bits, ``{"I": 8}`` fixes it at 8 (knob
        with ``lo == hi``). Bounds lie in ``[1, base width]``: a wider word would need
        a wider multiplier and datapath that the area model does not charge. Operands
        not named keep the base width (no knob). The network must tolerate the widths
        searched: without its accuracy in the loop a narrower word is always cheaper
        (``codesign train --weight-bits / --act-bits`` trains a network for them).

    Returns:
      A :class:`DesignSpace`.

    Raises:
      DesignError: unknown dataflow or knob name, bad bounds, a level with both a
        finite shared size and finite partitions (not supported).
    """
    arch = hwmodel.load_arch(base) if not isinstance(base, hwmodel.Architecture) else base
    if not (isinstance(energy_exponent, (int, float)) and math.isfinite(energy_exponent)
            and 0 <= energy_exponent <= 2):
        raise DesignError(f"energy exponent {energy_exponent!r}: expected a number in [0, 2] "
                          f"(energy per access ~ size ** exponent; 0: size-independent, "
                          f"default {hwmodel.DEFAULT_ENERGY_EXPONENT})")
    dataflows = tuple(hwmodel.DATAFLOWS if dataflows is None else dataflows)
    bad = [d for d in dataflows if d not in hwmodel.DATAFLOWS]
    if bad or not dataflows:
        raise DesignError(f"unknown dataflow(s) {bad or '(none given)'}; valid: "
                          f"{', '.join(hwmodel.DATAFLOWS)}")
    wb = np.asarray(arch.word_bits, np.float64)
    knobs = []
    up = lambda x: max(1, int(math.ceil(x * max_scale - 1e-9)))  # noqa: E731
    for nm in ("pe_rows", "pe_cols"):
        knobs.append(Knob(nm, None, None, 0.0, 1, up(float(np.asarray(getattr(arch, nm))))))
    for lvl in arch.levels:
        if lvl.kind not in ("sram", "rf") or not lvl.holds:
            continue
        held = [hwmodel.OPERANDS.index(x) for x in lvl.holds]
        cap = np.asarray(lvl.capacity_bits, np.float64)
        shared = float(np.asarray(lvl.shared_bits))
        parts = [j for j in held if math.isfinite(cap[j])]
        if parts and math.isfinite(shared):
            raise DesignError(
                f"level {lvl.name!r} of {arch.name!r} has both a total size and per-operand "
                "sizes; the design search supports one or the other")
        if parts:
            for j in parts:
                knobs.append(Knob(f"{lvl.name}.{hwmodel.OPERANDS[j]}", lvl.name, j, wb[j], 1,
                                  up(cap[j] / wb[j])))
        else:
            ub = float(max(wb[j] for j in held))
            lo = int(math.ceil(sum(wb[j] for j in held) / ub))
            knobs.append(Knob(lvl.name, lvl.name, None, ub, lo, max(lo, up(shared / ub))))
    bw_coef = (np.zeros(len(arch.levels)) if arch.area.bandwidth_mm2 is None
               else np.asarray(arch.area.bandwidth_mm2, np.float64))
    for lvl, c in zip(arch.levels, bw_coef):
        bw = float(np.asarray(lvl.bandwidth_words))
        if c > 0 and math.isfinite(bw) and hwmodel.level_kind(lvl.kind).bandwidth_has_area:
            knobs.append(Knob(f"{lvl.name}.bw", lvl.name, None, 0.0, 1, up(bw), "bandwidth"))
    for x, b in (word_bits or {}).items():
        if x not in hwmodel.OPERANDS:
            raise DesignError(f"word_bits: unknown operand {x!r}; valid: "
                              f"{', '.join(hwmodel.OPERANDS)}")
        j = hwmodel.OPERANDS.index(x)
        lo, hi = (b, b) if isinstance(b, (int, np.integer)) else tuple(b)
        top = int(wb[j])
        if not (int(lo) == lo and int(hi) == hi and 1 <= lo <= hi <= top):
            raise DesignError(f"word_bits[{x!r}] = {b!r}: expected integers 1 <= lo <= hi <= "
                              f"{top} (the base architecture's {x} width; a wider word's "
                              "datapath would not be charged in area)")
        knobs.append(Knob(f"bits.{x}", None, j, 0.0, int(lo), int(hi), "word_bits"))
    for nm, (lo, hi) in (bounds or {}).items():
        names = [k.name for k in knobs]
        if nm not in names:
            raise DesignError(f"bounds: unknown knob {nm!r}; valid: {', '.join(names)}")
        i = names.index(nm)
        if not (int(lo) == lo and int(hi) == hi and knobs[i].lo <= lo <= hi):
            raise DesignError(f"bounds[{nm!r}] = ({lo}, {hi}): expected integers "
                              f"{knobs[i].lo} <= lo <= hi")
        knobs[i] = dataclasses.replace(knobs[i], lo=int(lo), hi=int(hi))
    return DesignSpace(arch, tuple(knobs), dataflows, float(energy_exponent))


# ----------------------------------------------------------------------------------
# Exact evaluation
# ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Design:
    """One exactly evaluated design.

    Attributes:
      index: evaluation number within its :class:`Evaluator` (0-based).
      method: what proposed it (``"gradient"``, ``"random"``, ``"grid"``, ...).
      dataflow: the dataflow.
      values: knob values (ints, :attr:`DesignSpace.names` order).
      area_mm2: area.
      energy_pj, latency_s: per network (in the evaluator's network order); NaN when
        illegal.
      objective: see the module docstring (inf when illegal or infeasible).
      legal: the area fits and every layer of every network has a legal mapping.
      feasible: legal and within the latency budget (if any).
      seconds: wall time of this evaluation (mapper + cost).
      error: why it is illegal ("" when legal).
    """

    index: int
    method: str
    dataflow: str
    values: tuple[int, ...]
    area_mm2: float
    energy_pj: tuple[float, ...]
    latency_s: tuple[float, ...]
    objective: float
    legal: bool
    feasible: bool
    seconds: float
    error: str = ""

    @property
    def edp(self) -> tuple[float, ...]:
        """Energy-delay product per network, J s."""
        return tuple(e * 1e-12 * t for e, t in zip(self.energy_pj, self.latency_s))


def _metric(objective: str, energy_pj, latency_s):
    if objective == "energy":
        return energy_pj * 1e-12
    if objective == "latency":
        return latency_s
    return energy_pj * 1e-12 * latency_s


def exact_costs(workloads: Sequence[hwmodel.Workload], arch: hwmodel.Architecture,
                dataflow: str, objective: str,
                knobs: Sequence[hwmodel.Knobs | None] | None = None) -> list[hwmodel.Cost]:
    """Map every network on ``arch`` with the exact mapper and cost the mappings
    (``knobs``: optional per-network :class:`hwmodel.Knobs`, e.g. a quantized network's
    bits on wider hardware; they do not change the mapping).

    Raises:
      hwmodel.NoLegalMapping: a layer has no legal mapping.
    """
    mobj = _MAPPER_OBJECTIVE[objective]
    out = []
    for i, wl in enumerate(workloads):
        maps = hwmodel.map_workload(wl, arch, dataflow=dataflow, objective=mobj)
        # one-shot evaluation: run eagerly instead of compiling a function that is
        # used once (every design has its own mappings)
        with jax.disable_jit():
            out.append(hwmodel.cost(wl, arch, dataflow=dataflow, objective=mobj, mappings=maps,
                                    knobs=None if knobs is None else knobs[i]))
    return out


class Evaluator:
    """Exact evaluations of designs of one space for one search problem, memoized.

    Args:
      space: the :class:`DesignSpace`.
      workloads: ``{name: hwmodel.Workload}`` (order kept).
      area_mm2: the area budget.
      objective: one of :data:`OBJECTIVES`.
      weights: per network weight (default 1 each).
      latency_s: optional latency budget per run of every network, s.
      reference: per network metric of the reference design; default: the base
        architecture with dataflow ``rs`` (or the first searched dataflow), evaluated
        exactly (not counted in :attr:`count`).

    Attributes:
      designs: every design evaluated, in order (repeats are not re-evaluated).
      count: number of exact evaluations (``len(designs)``).
      reference: per network metric values the objective divides by.
    """

    def __init__(self, space: DesignSpace, workloads: Mapping[str, hwmodel.Workload], *,
                 area_mm2: float, objective: str = "edp",
                 weights: Sequence[float] | None = None, latency_s: float | None = None,
                 reference: Sequence[float] | None = None):
        if objective not in OBJECTIVES:
            raise DesignError(f"unknown objective {objective!r}; valid: {', '.join(OBJECTIVES)}")
        if not workloads:
            raise DesignError("no network to design for; give at least one model")
        self.space = space
        self.names = tuple(workloads)
        self.workloads = tuple(workloads.values())
        self.objective = objective
        w = np.ones(len(self.names)) if weights is None else np.asarray(weights, np.float64)
        if w.shape != (len(self.names),) or not np.all(np.isfinite(w) & (w >= 0)) or w.sum() <= 0:
            raise DesignError(f"weights {list(np.atleast_1d(w))}: expected {len(self.names)} "
                              "non-negative numbers, not all zero")
        self.weights = w
        check_budget(space, float(area_mm2))
        self.area_budget = float(area_mm2)
        if latency_s is not None and not (math.isfinite(latency_s) and latency_s > 0):
            raise DesignError(f"latency budget {latency_s!r} s: expected a positive number")
        self.latency_budget = latency_s
        self.designs: list[Design] = []
        self._memo: dict = {}
        self.reference_dataflow = (REFERENCE_DATAFLOW if REFERENCE_DATAFLOW in space.dataflows
                                   else space.dataflows[0])
        if reference is None:
            cs = exact_costs(self.workloads, space.base, self.reference_dataflow, objective)
            reference = [float(_metric(objective, float(c.energy_pj), float(c.latency_s)))
                         for c in cs]
            self.reference_costs = cs
        else:
            self.reference_costs = None
        self.reference = np.asarray(reference, np.float64)

    @property
    def count(self) -> int:
        return len(self.designs)

    def objective_of(self, energy_pj, latency_s):
        """The search objective from per-network energies / latencies (numpy or JAX)."""
        m = [_metric(self.objective, e, t) / r
             for e, t, r in zip(energy_pj, latency_s, self.reference)]
        return sum(float(w) * x for w, x in zip(self.weights, m)) / float(self.weights.sum())

    def evaluate(self, values, dataflow: str, method: str) -> Design:
        """Exactly evaluate one integer design (memoized: a repeat is not recounted)."""
        v = tuple(int(x) for x in np.asarray(values))
        key = (v, dataflow)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        t0 = time.perf_counter()
        arch = self.space.arch(np.asarray(v, np.float64))
        area = float(np.asarray(hwmodel.area_mm2(arch)))
        n = len(self.workloads)
        nan = (float("nan"),) * n
        error = ""
        energy, latency = nan, nan
        lo_ok = all(k.lo <= x <= k.hi for k, x in zip(self.space.knobs, v))
        if not lo_ok:
            error = "knob out of bounds"
        elif area > self.area_budget * (1 + AREA_RTOL):
            error = f"area {area:.4g} mm^2 > budget {self.area_budget:g}"
        else:
            try:
                hwmodel.validate_architecture(arch)
                cs = exact_costs(self.workloads, arch, dataflow, self.objective)
                energy = tuple(float(c.energy_pj) for c in cs)
                latency = tuple(float(c.latency_s) for c in cs)
            except ValueError as e:  # NoLegalMapping, ArchitectureError
                error = " ".join(str(e).split())
        legal = not error
        feasible = legal and (self.latency_budget is None
                              or max(latency) <= self.latency_budget)
        obj = float(self.objective_of(energy, latency)) if feasible else float("inf")
        d = Design(len(self.designs), method, dataflow, v, area, energy, latency, obj, legal,
                   feasible, time.perf_counter() - t0, error)
        self.designs.append(d)
        self._memo[key] = d
        return d

    def propose(self, values, dataflow: str, method: str) -> Design:
        """Project ``values`` to a legal integer design within the budget, evaluate it
        exactly and return it.

        :meth:`DesignSpace.project` meets the area budget; legal mappings are checked
        by the exact mapper in the evaluation.  Legality is not monotone in the sizes
        (the mapper keeps maximal tiles, so a larger register file can demand a larger
        global-buffer tile), so when a layer has no legal mapping the design is
        repaired: the per-PE knobs are shrunk along the log segment towards their
        lower bounds (halfway, then all the way), which only lowers the area, and as
        a last resort every knob goes to its lower bound (the smallest design).  Each
        attempt is an exact evaluation (kept, with ``legal`` false, in
        :attr:`designs`).

        Raises:
          DesignError: even the smallest design has no legal mapping.
        """
        space = self.space
        v = space.project(values, self.area_budget).astype(np.float64)
        d = self.evaluate(v, dataflow, method)
        if d.legal:
            return d
        lo = space.lo
        pe = np.array([space.is_per_pe(k) for k in space.knobs])
        for t in (0.5, 0.0):
            w = np.where(pe, np.floor(np.exp(np.log(lo) + t * (np.log(v) - np.log(lo))) + 1e-9), v)
            d = self.evaluate(w, dataflow, method)
            if d.legal:
                return d
        d = self.evaluate(lo, dataflow, method)
        if not d.legal:
            raise DesignError(f"the smallest {space.base.name} design ({space.describe(lo)}) "
                              f"has no legal {dataflow} mapping: {d.error}")
        return d

    def best(self, method: str | None = None) -> Design | None:
        """The feasible design with the lowest objective (optionally of one method)."""
        ds = [d for d in self.designs if d.feasible and (method is None or d.method == method)]
        return min(ds, key=lambda d: (d.objective, d.index)) if ds else None


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """What a search found.

    Attributes:
      method: ``"gradient"``, ``"random"`` or ``"grid"``.
      best: the best feasible design (None if none was feasible).
      evaluations: exact evaluations this search made.
      seconds: wall time of the search.
      designs: the designs it evaluated, in order.
    """

    method: str
    best: Design | None
    evaluations: int
    seconds: float
    designs: tuple[Design, ...]


def _result(ev: Evaluator, method: str, start: int, t0: float) -> SearchResult:
    ds = tuple(ev.designs[start:])
    feas = [d for d in ds if d.feasible]
    best = min(feas, key=lambda d: (d.objective, d.index)) if feas else None
    return SearchResult(method, best, len(ds), time.perf_counter() - t0, ds)


def _progress(total: int, desc: str, show: bool, unit: str = "eval"):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not show, leave=False)


# ----------------------------------------------------------------------------------
# Gradient search
# ----------------------------------------------------------------------------------
def relaxed_loss(ev: Evaluator, candidates: Sequence[hwmodel.CandidateSet], *,
                 rho: float = 50.0):
    """The relaxed objective the gradient search descends, as a JAX function.

    Args:
      ev: the :class:`Evaluator` (networks, weights, reference, budgets).
      candidates: one :class:`hwmodel.CandidateSet` per network (same order).
      rho: penalty weight.

    Returns:
      ``loss(x, lam, lam_t) -> (value, (objective, g, gt))`` for ``x = log(knob
      values)`` ``[n_knobs]`` (continuous): ``value = log(objective) + lam * g + rho/2 *
      p^2 [+ lam_t * gt + rho/2 * relu(gt)^2]`` with ``g = log(area / area budget)``,
      ``p = g`` (area an equality, for size-independent energies) or ``p = relu(g)``
      (an inequality, with :attr:`DesignSpace.energy_exponent` > 0),
      ``gt = log(max latency / latency budget)`` (0 without a latency budget) and the
      objective of the relaxed cost model (``hwmodel.cost(..., relaxed=True)``).
    """
    space = ev.space
    mobj = _MAPPER_OBJECTIVE[ev.objective]
    lat_b = ev.latency_budget

    def loss(x, lam, lam_t):
        arch = space.arch(jnp.exp(x))
        es, ts = [], []
        for wl, cs in zip(ev.workloads, candidates):
            c = hwmodel.cost(wl, arch, candidates=cs, objective=mobj, relaxed=True)
            es.append(c.energy_pj)
            ts.append(c.latency_s)
        f = ev.objective_of(es, ts)
        g = jnp.log(hwmodel.area_mm2(arch) / ev.area_budget)
        pen = g if space.energy_exponent == 0 else jax.nn.relu(g)  # equality / inequality
        val = jnp.log(f) + lam * g + 0.5 * rho * pen ** 2
        gt = jnp.zeros_like(g)
        if lat_b is not None:
            gt = jnp.log(jnp.max(jnp.stack(ts)) / lat_b)
            val = val + lam_t * gt + 0.5 * rho * jax.nn.relu(gt) ** 2
        return val, (f, g, gt)

    return loss


def _relaxed_step(ev: Evaluator, cands: Sequence, rho: float, opt):
    """A jitted, restart-vmapped Adam step on :func:`relaxed_loss`, kept in the box."""
    space = ev.space
    lo = jnp.log(jnp.asarray(space.lo, jnp.float32))
    hi = jnp.log(jnp.asarray(space.hi, jnp.float32))
    vg = jax.vmap(jax.value_and_grad(relaxed_loss(ev, cands, rho=rho), has_aux=True))

    @jax.jit
    def step(x, lam, lam_t, state):
        (val, aux), g = vg(x, lam, lam_t)
        g = jnp.where(jnp.isfinite(g), g, 0.0)
        upd, state = opt.update(g, state, x)
        return jnp.clip(x + upd, lo[None], hi[None]), state, val, aux

    return step


def gradient_candidates(ev: Evaluator, designs, dataflow: str, *, per_layer: int = 4,
                        grow: float = 2.0) -> list[hwmodel.CandidateSet]:
    """The re-mapping step: per network, the exact mapper's best ``per_layer`` mappings
    on each of ``designs`` (``[n, n_knobs]`` integer), on each grown ``grow`` x and
    shrunk ``1/grow`` x (within the bounds), and on the smallest design
    (:func:`hwmodel.mapping_candidates`).  The grown and shrunk anchors give the relaxed
    model mappings that need more hardware and mappings that fit in less, so its
    gradient can see the benefit of moving either way (with size-dependent energies a
    smaller buffer is cheaper per access, but only a mapping that fits in it shows it)."""
    space = ev.space
    uniq = np.unique(np.atleast_2d(np.asarray(designs, np.float64)), axis=0)
    anchors = ([space.arch(space.lo)] + [space.arch(c) for c in uniq]
               + [space.arch(np.minimum(np.ceil(c * grow), space.hi)) for c in uniq]
               + [space.arch(np.maximum(np.floor(c / grow), space.lo)) for c in uniq])
    return [hwmodel.mapping_candidates(wl, anchors, dataflow=dataflow,
                                       objective=_MAPPER_OBJECTIVE[ev.objective],
                                       per_layer=per_layer) for wl in ev.workloads]


def gradient_search(ev: Evaluator, *, restarts: int = 4, rounds: int = 2, steps: int = 15,
                    lr: float = 0.1, rho: float = 50.0, per_layer: int = 4, grow: float = 2.0,
                    top_dataflows: int | None = None, polish: int = 30, seed: int = 0,
                    progress: bool = False) -> SearchResult:
    """Gradient search (see the module docstring for the scheme).

    Args:
      ev: the :class:`Evaluator` (space, networks, budget, objective).
      restarts: parallel starts per dataflow (the first is the base design).
      rounds: re-mapping rounds per dataflow.
      steps: Adam steps per round.
      lr: Adam learning rate in log space (0.1: ~10% per step at most).
      rho: penalty weight of the augmented Lagrangian.
      per_layer: candidate mappings per layer and design (``mapping_candidates``).
      grow: scale of the grown anchor designs of the re-mapping step.
      top_dataflows: continue only this many dataflows after the start points
        (None: all).
      polish: exact evaluations of the final :func:`pattern_search` from the best
        design found by the descent (0: none).
      seed: seed of the random start points.
      progress: show a progress bar.

    Returns:
      :class:`SearchResult` (method ``"gradient"``).
    """
    import optax

    t0 = time.perf_counter()
    start = ev.count
    space = ev.space
    rng = np.random.default_rng(seed)
    ll, lh = np.log(space.lo), np.log(space.hi)
    raw = [space.base_values()] + [np.exp(rng.uniform(ll, lh)) for _ in range(restarts - 1)]
    dfs = list(space.dataflows)
    n_go = len(dfs) if top_dataflows is None else max(1, min(top_dataflows, len(dfs)))
    bar = _progress(len(dfs) * restarts + n_go * rounds * restarts, "gradient search", progress,
                    unit="design")
    best_start, starts = {}, {}
    for df in dfs:
        ds = [ev.propose(r, df, "gradient") for r in raw]
        bar.update(restarts)
        starts[df] = np.array([d.values for d in ds], np.int64)
        best_start[df] = min(d.objective for d in ds)
    go = sorted(dfs, key=lambda d: (best_start[d], dfs.index(d)))[:n_go]
    opt = optax.adam(lr)
    for df in go:
        x = jnp.asarray(np.log(starts[df].astype(np.float64)), jnp.float32)
        state = opt.init(x)
        lam = jnp.zeros((restarts,), jnp.float32)
        lam_t = jnp.zeros((restarts,), jnp.float32)
        current = starts[df]
        for _ in range(rounds):
            cands = gradient_candidates(ev, current, df, per_layer=per_layer, grow=grow)
            step = _relaxed_step(ev, cands, rho, opt)
            aux = None
            for _ in range(steps):
                x, state, _, aux = step(x, lam, lam_t, state)
            if aux is not None:
                _, g, gt = aux
                lam = lam + rho * g
                if space.energy_exponent != 0:  # area is an inequality: lam >= 0
                    lam = jnp.maximum(0.0, lam)
                lam_t = jnp.maximum(0.0, lam_t + rho * gt)
            ds = [ev.propose(np.exp(np.asarray(xi, np.float64)), df, "gradient") for xi in x]
            bar.update(restarts)
            current = np.array([d.values for d in ds], np.int64)
    bar.close()
    if polish > 0:
        here = _result(ev, "gradient", start, t0).best
        if here is not None:
            pattern_search(ev, here.values, polish, dataflow=here.dataflow, method="polish",
                           progress=progress)
    return _result(ev, "gradient", start, t0)


# ----------------------------------------------------------------------------------
# Baselines
# ----------------------------------------------------------------------------------
def pattern_search(ev: Evaluator, start, evaluations: int, *, dataflow: str,
                   factors: Sequence[float] = (2.0, 2.0 ** 0.5, 2.0 ** 0.25),
                   method: str = "pattern", progress: bool = False) -> SearchResult:
    """Coordinate pattern search on exact evaluations (the exploratory moves of
    Hooke and Jeeves' method): from the best design so far (initially ``start``,
    ``[n_knobs]``, proposed and evaluated first), multiply one knob at a time by ``f``
    and by ``1/f`` (at least one unit of change), project the result into the budget
    (:meth:`Evaluator.propose`: growing one knob when the budget binds shrinks the
    others), evaluate it exactly and move to it at once if it is better.  When a whole
    sweep over the knobs finds nothing better, the next (finer) factor of ``factors``
    takes over; the search stops when the finest factor finds nothing or after
    ``evaluations`` exact evaluations (the last proposal may overrun by its repairs).
    Deterministic.

    Every point it accepts is an exactly evaluated legal design, so the result can only
    improve on ``start``.  It is the discrete step the relaxed model cannot take: the
    relaxed objective prices a design only through the candidate mappings of its
    anchors, while this step re-maps every neighbour with the exact mapper.
    """
    if not factors or any(not (f > 1) for f in factors):
        raise DesignError(f"pattern search factors {list(factors)}: expected numbers > 1")
    t0 = time.perf_counter()
    first = ev.count
    bar = _progress(evaluations, f"pattern search ({dataflow})", progress)
    best = ev.propose(np.asarray(start, np.float64), dataflow, method)
    bar.update(ev.count - first)
    n = len(ev.space.knobs)
    for f in factors:
        improved = True
        while improved and ev.count - first < evaluations:
            improved = False
            for i, s in itertools.product(range(n), (f, 1.0 / f)):
                if ev.count - first >= evaluations:
                    break
                v = np.asarray(best.values, np.float64).copy()
                v[i] = max(v[i] * s, v[i] + 1) if s > 1 else min(v[i] * s, v[i] - 1)
                before = ev.count
                d = ev.propose(v, dataflow, method)
                bar.update(ev.count - before)
                if d.feasible and (not best.feasible or d.objective < best.objective):
                    best, improved = d, True
    bar.close()
    return _result(ev, method, first, t0)


def random_search(ev: Evaluator, evaluations: int, *, seed: int = 0,
                  progress: bool = False) -> SearchResult:
    """Random search: designs drawn until ``evaluations`` exact evaluations are spent
    (the last proposal may overrun by its repairs), each a uniformly random dataflow and
    knob values log-uniform in the bounds, projected to a legal design within the budget
    (:meth:`Evaluator.propose`).  The same seed gives the same designs."""
    t0 = time.perf_counter()
    start = ev.count
    space = ev.space
    rng = np.random.default_rng(seed)
    ll, lh = np.log(space.lo), np.log(space.hi)
    bar = _progress(evaluations, "random search", progress)
    for _ in range(100 * evaluations):  # bounded: repeats of a design are not recounted
        if ev.count - start >= evaluations:
            break
        df = space.dataflows[int(rng.integers(len(space.dataflows)))]
        before = ev.count
        ev.propose(np.exp(rng.uniform(ll, lh)), df, "random")
        bar.update(ev.count - before)
    bar.close()
    return _result(ev, "random", start, t0)


def local_search(ev: Evaluator, start, evaluations: int, *, dataflow: str, sigma: float = 0.5,
                 seed: int = 0, progress: bool = False) -> SearchResult:
    """Local search around ``start`` (``[n_knobs]``), a (1+1) evolution strategy in log
    space: each proposal takes the best design found so far by this search (initially
    ``start``, evaluated first), multiplies each knob with probability 1/2 (at least
    one knob) by ``exp(N(0, sigma^2))``, projects it to a legal design within the
    budget (:meth:`Evaluator.propose`) and keeps it if it is better.  Stops after
    ``evaluations`` exact evaluations (the last proposal may overrun by its repairs);
    the same seed gives the same designs."""
    t0 = time.perf_counter()
    first = ev.count
    space = ev.space
    rng = np.random.default_rng(seed)
    bar = _progress(evaluations, "local search", progress)
    best = ev.propose(np.asarray(start, np.float64), dataflow, "local")
    bar.update(ev.count - first)
    n = len(space.knobs)
    for _ in range(100 * evaluations):  # bounded: repeats of a design are not recounted
        if ev.count - first >= evaluations:
            break
        mask = rng.random(n) < 0.5
        mask[rng.integers(n)] = True
        step = np.where(mask, rng.normal(0.0, sigma, n), 0.0)
        before = ev.count
        d = ev.propose(np.asarray(best.values, np.float64) * np.exp(step), dataflow, "local")
        bar.update(ev.count - before)
        if d.feasible and (not best.feasible or d.objective < best.objective):
            best = d
    bar.close()
    return _result(ev, "local", first, t0)


def grid_search(ev: Evaluator, grid: Mapping[str, Sequence[int]], *,
                progress: bool = False) -> SearchResult:
    """Exhaustive grid: every combination of the given knob values (knobs not in
    ``grid`` stay at the base value) and every dataflow of the space whose area fits
    the budget (areas of the whole grid in one ``vmap``-ed call) is evaluated exactly.

    Raises:
      DesignError: unknown knob or a value outside its bounds.
    """
    t0 = time.perf_counter()
    start = ev.count
    space = ev.space
    base = space.base_values()
    axes = []
    for k, b in zip(space.knobs, base):
        vals = grid.get(k.name, [int(round(b))])
        for x in vals:
            if not (int(x) == x and k.lo <= x <= k.hi):
                raise DesignError(f"grid[{k.name!r}]: value {x} outside [{k.lo}, {k.hi}]")
        axes.append(sorted({int(x) for x in vals}))
    for nm in grid:
        if nm not in space.names:
            raise DesignError(f"grid: unknown knob {nm!r}; valid: {', '.join(space.names)}")
    pts = np.array(list(itertools.product(*axes)), np.float64)
    fits = pts[space.areas(pts) <= ev.area_budget * (1 + AREA_RTOL)]
    bar = _progress(len(fits) * len(space.dataflows), "grid search", progress)
    for df in space.dataflows:
        for p in fits:
            ev.evaluate(p, df, "grid")
            bar.update(1)
    bar.close()
    return _result(ev, "grid", start, t0)


# ----------------------------------------------------------------------------------
# Output: CSV, Pareto front, plot
# ----------------------------------------------------------------------------------
def pareto_front(designs: Sequence[Design]) -> list[Design]:
    """Feasible designs not dominated in (area, objective), by increasing area."""
    from codesign._report import nondominated

    return nondominated((d for d in designs if d.feasible), key=lambda d: (d.area_mm2, d.objective))


def designs_csv(ev: Evaluator, designs: Sequence[Design] | None = None) -> str:
    """CSV text: one row per design: index, method, dataflow, knobs, area, per network
    energy / latency / EDP, objective, legal, feasible, seconds, error."""
    designs = ev.designs if designs is None else designs
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    head = ["index", "method", "dataflow", *ev.space.names, "area_mm2"]
    for n in ev.names:
        head += [f"{n}_energy_pj", f"{n}_latency_s", f"{n}_edp_js"]
    head += ["objective", "legal", "feasible", "seconds", "error"]
    w.writerow(head)
    for d in designs:
        row = [d.index, d.method, d.dataflow, *d.values, f"{d.area_mm2:.6g}"]
        for e, t, p in zip(d.energy_pj, d.latency_s, d.edp):
            row += [f"{e:.8g}", f"{t:.8g}", f"{p:.8g}"]
        row += [f"{d.objective:.8g}", int(d.legal), int(d.feasible), f"{d.seconds:.3f}", d.error]
        w.writerow(row)
    return buf.getvalue()


def write_designs_csv(path, ev: Evaluator) -> None:
    """Write :func:`designs_csv` to ``path`` atomically."""
    from codesign._report import atomic_write_text

    atomic_write_text(path, designs_csv(ev))


def plot_designs(path, ev: Evaluator, *, marks: Mapping[str, tuple[float, float]] | None = None,
                 best: Design | None = None) -> None:
    """Area vs objective of every feasible design (per method), the Pareto front, the
    budget, ``marks`` (``{label: (area, objective)}``, e.g. presets) and the best
    design; written to ``path`` (PNG) atomically (temp file + rename)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    feas = [d for d in ev.designs if d.feasible]
    for m in sorted({d.method for d in feas}):
        ds = [d for d in feas if d.method == m]
        ax.scatter([d.area_mm2 for d in ds], [d.objective for d in ds], s=10, alpha=0.5,
                   label=f"{m} ({len(ds)})")
    pf = pareto_front(feas)
    if pf:
        ax.step([d.area_mm2 for d in pf], [d.objective for d in pf], where="post", color="k",
                lw=1, label="Pareto front")
    for label, (a, o) in (marks or {}).items():
        if math.isfinite(o) and o > 0:
            ax.scatter([a], [o], marker="*", s=120, zorder=5)
            ax.annotate(label, (a, o), textcoords="offset points", xytext=(5, 5), fontsize=8)
    if best is not None:
        ax.scatter([best.area_mm2], [best.objective], marker="o", s=90, facecolors="none",
                   edgecolors="r", zorder=6, label="best")
    ax.axvline(ev.area_budget, color="gray", ls="--", lw=1, label="area budget")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("area (mm$^2$)")
    ref = f"{ev.space.base.name} ({ev.reference_dataflow})"
    ax.set_ylabel(f"{ev.objective} relative to {ref}")
    ax.set_title(f"{', '.join(ev.names)}: {ev.objective} vs area", fontsize=10)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    hwmodel.atomic_write_bytes(path, buf.getvalue())

