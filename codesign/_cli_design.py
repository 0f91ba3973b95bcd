"""``codesign design MODEL [MODEL ...] --area-mm2 A [--objective edp] [--dataflow ...]
[--arch eyeriss] [--workdir DIR]``: search the accelerator for one network or a
weighted set of networks under an area budget (:mod:`codesign.design`).

Writes into the workdir (default ``runs/design-<models>-<time>``):

* ``designs.csv``: every exactly evaluated design (knobs, dataflow, area, per network
  energy / latency / EDP, objective, legal, feasible, method);
* ``designs.png``: area vs objective, the Pareto front, the presets and the best design;
* ``design.yaml``: the best design, loadable with ``--arch FILE.yaml``
  (``codesign cost MODEL --arch DIR/design.yaml``);

and prints the best design's report card next to the base preset's.

Exit status: 0 on success; 2 for bad input (unknown model / objective / dataflow /
preset, an impossible area budget, bad weights): one line on stderr.

Examples::

    python -m codesign design resnet20 --area-mm2 12.25 --objective edp
    python -m codesign design resnet20 vit_tiny --weights 1,1 --area-mm2 12.25
    python -m codesign design alexnet --area-mm2 10 --dataflow rs ws --search random --evaluations 60
"""

from __future__ import annotations

import argparse
import datetime
import os
import time

from codesign._cli_common import Parser, UsageError, check_model, one_line, parse_batch, run

PROG = "codesign design"
SEARCHES = ("gradient", "random")


def _parser() -> argparse.ArgumentParser:
    from hwmodel import DATAFLOWS

    from codesign.design import OBJECTIVES

    p = Parser(prog=PROG, description="Search the accelerator (PE array, buffer and "
               "register-file sizes, dataflow) for one or more networks under an area budget.")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="zoo models or reference networks (e.g. resnet20 vit_tiny)")
    p.add_argument("--area-mm2", required=True, type=float, metavar="A",
                   help="area budget, mm^2 (the base architecture's area model)")
    p.add_argument("--objective", default="edp", choices=OBJECTIVES,
                   help="energy, latency or edp per run (default edp)")
    p.add_argument("--dataflow", nargs="+", default=None, choices=DATAFLOWS, metavar="DF",
                   help=f"dataflows to search (default all: {' '.join(DATAFLOWS)})")
    p.add_argument("--arch", default="eyeriss",
                   help="base architecture: technology, DRAM, clock and bit widths stay "
                        "fixed (preset name or .yaml; default eyeriss)")
    p.add_argument("--energy-exponent", type=float, default=None, metavar="E",
                   help="a resized buffer's energy per access scales as size ** E relative "
                        "to --arch's sizes (default 0.5, fit to the Accelergy 45 nm table; "
                        "0: size-independent)")
    p.add_argument("--word-bits", default=None, metavar="X=B[:B2],...",
                   help="word widths to set or search per operand W, I, O, in bits: "
                        "'W=8,I=8' fixes them, 'W=4:16' searches W in [4, 16] (the network "
                        "must tolerate them: train it with --weight-bits / --act-bits); "
                        "default: --arch's widths")
    p.add_argument("--weights", default=None, metavar="W1,W2,...",
                   help="weight of each model in the objective (default 1 each)")
    p.add_argument("--latency-ms", type=float, default=None, metavar="T",
                   help="latency budget per run of every model, ms (optional)")
    p.add_argument("--search", default="gradient", choices=SEARCHES,
                   help="gradient (default) or random")
    p.add_argument("--evaluations", type=int, default=60, metavar="N",
                   help="exact evaluations of --search random (default 60)")
    p.add_argument("--restarts", type=int, default=4, help="gradient: restarts (default 4)")
    p.add_argument("--rounds", type=int, default=2, help="gradient: re-mapping rounds (default 2)")
    p.add_argument("--steps", type=int, default=15, help="gradient: Adam steps per round (default 15)")
    p.add_argument("--polish", type=int, default=30, metavar="N",
                   help="gradient: exact evaluations of the final pattern search from the "
                        "descent's best design (default 30; 0: none)")
    p.add_argument("--top-dataflows", type=int, default=2, metavar="K",
                   help="gradient: descend on the K best dataflows of the start points "
                        "(default 2; 0 = all)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--batch", default="1", help="batch size N (default 1)")
    p.add_argument("--workdir", default=None, metavar="DIR",
                   help="output directory (default runs/design-<models>-<time>)")
    p.add_argument("--no-presets", action="store_true",
                   help="do not evaluate the presets for the plot")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _hint(msg: str) -> str:
    if "required" in msg and ("MODEL" in msg or "models" in msg):
        from models._workload import list_countable_models

        msg += f"; valid models: {', '.join(list_countable_models())}"
    return msg


def _weights(text, n):
    if text is None:
        return None
    try:
        w = [float(t) for t in text.split(",")]
    except ValueError:
        w = []
    if len(w) != n or any(not (x >= 0) for x in w) or sum(w) <= 0:
        raise UsageError(f"--weights {text!r}: expected {n} comma-separated non-negative "
                         "numbers (one per model), not all zero")
    return w


def parse_word_bits(text: str | None) -> dict[str, int | tuple[int, int]] | None:
    """``'W=8,I=4:16'`` -> ``{'W': 8, 'I': (4, 16)}`` (UsageError when malformed)."""
    if text is None:
        return None
    out: dict[str, int | tuple[int, int]] = {}
    for part in text.split(","):
        key, sep, val = part.strip().partition("=")
        try:
            nums = [int(t) for t in val.split(":")] if sep else []
        except ValueError:
            nums = []
        if key not in ("W", "I", "O") or key in out or len(nums) not in (1, 2):
            raise UsageError(f"--word-bits {text!r}: expected comma-separated OPERAND=BITS or "
                             "OPERAND=LO:HI with OPERAND one of W, I, O (each once), e.g. "
                             "'W=8,I=8' or 'W=4:16'")
        out[key] = nums[0] if len(nums) == 1 else (nums[0], nums[1])
    return out


def _preset_marks(ev, dataflow):
    """``{preset: (area, objective)}`` for every preset, exact, with ``dataflow``."""
    import hwmodel

    from codesign.design import exact_costs

    out = {}
    for name in hwmodel.list_presets():
        a = hwmodel.load_arch(name)
        try:
            cs = exact_costs(ev.workloads, a, dataflow, ev.objective)
        except ValueError:
            continue
        out[f"{name} ({dataflow})"] = (
            float(cs[0].area_mm2),
            float(ev.objective_of([float(c.energy_pj) for c in cs],
                                  [float(c.latency_s) for c in cs])))
    return out


def _summary(ev, best, best_costs) -> str:
    rows = [("", "baseline", "found", "found / baseline")]
    base = ev.reference_costs
    f = lambda v: f"{v:.4g}"  # noqa: E731
    rows.append(("architecture", f"{ev.space.base.name} ({ev.reference_dataflow})",
                 f"design.yaml ({best.dataflow})", ""))
    rows.append(("knobs", ev.space.describe(ev.space.base_values()),
                 ev.space.describe(best.values), ""))
    ab, af = float(base[0].area_mm2), best.area_mm2
    rows.append(("area mm^2", f(ab), f(af), f(af / ab)))
    for n, cb, cf in zip(ev.names, base, best_costs):
        eb, ef = float(cb.energy_pj) * 1e-6, float(cf.energy_pj) * 1e-6
        tb, tf = float(cb.latency_s) * 1e3, float(cf.latency_s) * 1e3
        rows.append((f"{n} energy uJ", f(eb), f(ef), f(ef / eb)))
        rows.append((f"{n} latency ms", f(tb), f(tf), f(tf / tb)))
        rows.append((f"{n} EDP uJ*ms", f(eb * tb), f(ef * tf), f(ef * tf / (eb * tb))))
    rows.append((f"objective ({ev.objective})", "1", f(best.objective), f(best.objective)))
    w = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows)


def _body(args: argparse.Namespace) -> int:
    batch = parse_batch(args.batch)
    for m in args.models:
        check_model(m)
    weights = _weights(args.weights, len(args.models))
    if (args.evaluations < 1 or args.restarts < 1 or args.rounds < 0 or args.steps < 0
            or args.polish < 0):
        raise UsageError("--evaluations and --restarts must be >= 1, --rounds, --steps and "
                         "--polish >= 0")
    import hwmodel
    from models._workload import model_workload

    from codesign import design as D

    try:
        base = hwmodel.load_arch(args.arch)
    except (ValueError, OSError) as e:
        raise UsageError(f"--arch: {one_line(e)}") from e
    t0 = time.perf_counter()
    try:
        space = D.design_space(base, dataflows=args.dataflow,
                               word_bits=parse_word_bits(args.word_bits),
                               energy_exponent=(hwmodel.DEFAULT_ENERGY_EXPONENT
                                                if args.energy_exponent is None
                                                else args.energy_exponent))
        wls = {m: model_workload(m, batch=batch) for m in dict.fromkeys(args.models)}
        lat = None if args.latency_ms is None else args.latency_ms * 1e-3
        ev = D.Evaluator(space, wls, area_mm2=args.area_mm2, objective=args.objective,
                         weights=weights, latency_s=lat)
    except ValueError as e:  # DesignError, NoLegalMapping
        raise UsageError(one_line(e)) from e
    workdir = args.workdir or (f"runs/design-{'-'.join(wls)}-"
                               f"{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    os.makedirs(workdir, exist_ok=True)
    show = not args.quiet
    try:
        if args.search == "gradient":
            res = D.gradient_search(ev, restarts=args.restarts, rounds=args.rounds,
                                    steps=args.steps, polish=args.polish, seed=args.seed,
                                    progress=show,
                                    top_dataflows=args.top_dataflows or None)
        else:
            res = D.random_search(ev, args.evaluations, seed=args.seed, progress=show)
    except D.DesignError as e:
        raise UsageError(one_line(e)) from e
    best = res.best
    D.write_designs_csv(os.path.join(workdir, "designs.csv"), ev)
    if best is None:
        raise UsageError(f"no feasible design found in {res.evaluations} evaluations "
                         "(latency budget too tight?); every design is in "
                         f"{os.path.join(workdir, 'designs.csv')}")
    arch = space.arch(best.values, name=f"{space.base.name}_design")
    arch = arch.replace(description=(
        f"Found by `codesign design {' '.join(wls)} --area-mm2 {args.area_mm2:g} "
        f"--objective {args.objective}` ({args.search} search, {res.evaluations} exact "
        f"evaluations) from {space.base.name}: {space.describe(best.values)}; "
        f"dataflow {best.dataflow}; area {best.area_mm2:.4g} mm^2."))
    yaml_path = os.path.join(workdir, "design.yaml")
    hwmodel.save_arch(arch, yaml_path)
    marks = {} if args.no_presets else _preset_marks(ev, best.dataflow)
    D.plot_designs(os.path.join(workdir, "designs.png"), ev, marks=marks, best=best)
    best_costs = D.exact_costs(ev.workloads, hwmodel.load_arch(yaml_path), best.dataflow,
                               ev.objective)
    for cb, cf in zip(ev.reference_costs, best_costs):
        print(f"=== baseline: {ev.space.base.name}, dataflow {ev.reference_dataflow}")
        print(cb.table())
        print(f"\n=== found design ({yaml_path}), dataflow {best.dataflow}")
        print(cf.table())
        print()
    print(_summary(ev, best, best_costs))
    print(f"\n{args.search} search: {res.evaluations} exact evaluations in {res.seconds:.1f} s "
          f"(whole command {time.perf_counter() - t0:.1f} s); wrote "
          f"{', '.join(os.path.join(workdir, f) for f in ('designs.csv', 'designs.png', 'design.yaml'))}")
    return 0


def main(argv: list[str]) -> int:
    """Run ``codesign design``; returns the exit status."""
    return run(PROG, _parser(), argv, _body, _hint)
