"""Hardware design search: gradient search against eyeriss, the best dataflow on
eyeriss, random search at the same number of exact evaluations, and an exhaustive grid.

Hardware only: every design has at most the ``eyeriss`` preset's area (its own area
model), objective EDP per inference (batch 1), knobs and scheme of
:mod:`codesign.design`.  Commands::

    python experiments/hw_search.py                                   # the 4 networks
    python experiments/hw_search.py --models resnet20 --grid          # + exhaustive grid
    python experiments/hw_search.py --arch experiments/archs/eyeriss_priced_bw.yaml

``--arch`` changes the base architecture (default ``eyeriss``; "eyeriss" below means
that base): its area is the budget, and a YAML file that prices a level's bandwidth
adds that bandwidth to the knobs (the grid keeps such knobs at the base's value).

Columns: ``eyeriss`` = EDP of the preset with RS (the reference); ``best df`` = the
best of the 5 dataflows on the unchanged preset; ``found`` = the gradient search's
design (its EDP relative to both); ``random`` = random search with the same number of
exact evaluations (and its EDP relative to the gradient search's: > 1 means the
gradient search is better); ``pattern`` = the gradient search's last step alone
(:func:`codesign.design.pattern_search` from ``eyeriss`` in the best dataflow on
``eyeriss``, no descent) with the same number of exact evaluations, the ablation that
shows what the descent adds; ``evals`` = exact evaluations (mapper + cost) of each
search (gradient / random / pattern); times are wall-clock seconds of the whole search
(including the reference evaluation of eyeriss, JIT compilation and the mapper), on
whatever machine runs it.

With ``--grid`` (RS only, to keep the grid exhaustive): the gradient search restricted
to RS against every point of a grid over PE rows / cols, GLB and RF sizes whose area
fits.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import hwmodel
import models
from codesign import design as D

DEFAULT_MODELS = ("resnet20", "vit_tiny", "alexnet", "resnet50")

GRID = {  # the exhaustive grid of --grid (eyeriss knobs; GLB and RF in 16-bit words)
    "pe_rows": [4, 8, 12, 16, 24, 32],
    "pe_cols": [4, 8, 14, 16, 24, 32],
    "GLB": [4096, 16384, 55296],
    "RF.W": [64, 224],
    "RF.I": [12, 24],
    "RF.O": [24, 48],
}


def _fmt(x: float) -> str:
    return f"{x:.4g}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--restarts", type=int, default=4)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--polish", type=int, default=30)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--top-dataflows", type=int, default=2)
    p.add_argument("--grid", action="store_true", help="also the exhaustive grid (RS)")
    p.add_argument("--energy-exponent", type=float, default=hwmodel.DEFAULT_ENERGY_EXPONENT,
                   help="energy per access ~ buffer size ** E (hwmodel.scale_access_energy)")
    p.add_argument("--arch", default="eyeriss",
                   help="base architecture: a preset name or a YAML file (default eyeriss)")
    args = p.parse_args(argv)

    base = hwmodel.load_arch(args.arch)
    budget = float(hwmodel.area_mm2(base))
    space = D.design_space(base, energy_exponent=args.energy_exponent)
    print(f"budget {budget:.4f} mm^2 ({base.name}), objective EDP, batch 1, seed {args.seed}, "
          f"energy per access ~ size ** {args.energy_exponent:g}; knobs {', '.join(space.names)}\n")
    head = ("network", "eyeriss EDP uJ*ms", "best df on eyeriss", "found EDP", "found df",
            "vs eyeriss", "vs best df", "random EDP", "random/found", "pattern EDP",
            "pattern/found", "evals", "grad s", "random s", "pattern s")
    rows = [head]
    for name in args.models:
        wl = models.model_workload(name)
        t0 = time.perf_counter()
        ev = D.Evaluator(space, {name: wl}, area_mm2=budget, objective="edp")
        res = D.gradient_search(ev, restarts=args.restarts, rounds=args.rounds,
                                steps=args.steps, top_dataflows=args.top_dataflows or None,
                                polish=args.polish,
                                seed=args.seed)
        t_grad = time.perf_counter() - t0
        ref = ev.reference[0]
        per_df = {}
        for df in hwmodel.DATAFLOWS:
            c = D.exact_costs([wl], base, df, "edp")[0]
            per_df[df] = float(c.energy_pj) * 1e-12 * float(c.latency_s)
        best_df = min(per_df, key=per_df.get)
        t0 = time.perf_counter()
        ev_r = D.Evaluator(space, {name: wl}, area_mm2=budget, objective="edp", reference=[ref])
        rnd = D.random_search(ev_r, res.evaluations, seed=args.seed)
        t_rnd = time.perf_counter() - t0
        t0 = time.perf_counter()
        ev_p = D.Evaluator(space, {name: wl}, area_mm2=budget, objective="edp", reference=[ref])
        pat = D.pattern_search(ev_p, space.base_values(), res.evaluations, dataflow=best_df)
        t_pat = time.perf_counter() - t0
        found = res.best.edp[0]
        p_edp = pat.best.edp[0]
        r_edp = rnd.best.edp[0]
        uj_ms = 1e6 * 1e3
        rows.append((name, _fmt(ref * uj_ms), f"{_fmt(per_df[best_df] * uj_ms)} ({best_df})",
                     _fmt(found * uj_ms), res.best.dataflow, f"{ref / found:.2f}x lower",
                     f"{per_df[best_df] / found:.2f}x lower", _fmt(r_edp * uj_ms),
                     f"{r_edp / found:.2f}", _fmt(p_edp * uj_ms), f"{p_edp / found:.2f}",
                     f"{res.evaluations} / {rnd.evaluations} / {pat.evaluations}",
                     f"{t_grad:.0f}", f"{t_rnd:.0f}", f"{t_pat:.0f}"))
        print(f"{name}: found {space.describe(res.best.values)}, {res.best.dataflow}, "
              f"{res.best.area_mm2:.3f} mm^2; random's best {space.describe(rnd.best.values)}, "
              f"{rnd.best.dataflow}\n  " + " | ".join(rows[-1]), flush=True)
    print()
    _table(rows)

    if args.grid:
        name = "resnet20" if "resnet20" in args.models else args.models[0]
        wl = models.model_workload(name)
        sp = D.design_space(base, dataflows=("rs",), energy_exponent=args.energy_exponent)
        ev = D.Evaluator(sp, {name: wl}, area_mm2=budget, objective="edp")
        t0 = time.perf_counter()
        g = D.gradient_search(ev, restarts=args.restarts, rounds=args.rounds, steps=args.steps,
                              polish=args.polish, seed=args.seed)
        t_g = time.perf_counter() - t0
        ev_grid = D.Evaluator(sp, {name: wl}, area_mm2=budget, objective="edp",
                              reference=ev.reference)
        grid = D.grid_search(ev_grid, GRID)
        print(f"\n{name}, RS only: gradient vs exhaustive grid "
              f"({' x '.join(str(len(v)) for v in GRID.values())} points, "
              f"{grid.evaluations} within the budget)")
        _table([
            ("search", "EDP uJ*ms", "vs grid best", "exact evals", "wall s", "design"),
            ("gradient", _fmt(g.best.edp[0] * 1e9), f"{g.best.edp[0] / grid.best.edp[0]:.3f}",
             str(g.evaluations), f"{t_g:.0f}", sp.describe(g.best.values)),
            ("grid", _fmt(grid.best.edp[0] * 1e9), "1", str(grid.evaluations),
             f"{grid.seconds:.0f}", sp.describe(grid.best.values)),
        ])
        print(f"grid / gradient exact evaluations: {grid.evaluations / g.evaluations:.1f}x")
    return 0


def _table(rows) -> None:
    w = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    print("| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(rows[0])) + " |")
    print("|" + "|".join("-" * (x + 2) for x in w) + "|")
    for r in rows[1:]:
        print("| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |")


if __name__ == "__main__":
    raise SystemExit(main())
