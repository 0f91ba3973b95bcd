"""Co-design against its baselines: one table from finished runs.

Rows (energy per inference at the run's costing batch, the run's dataflow):

* (a) the dense network on the starting preset (``--pruned`` run's ``dense`` entry);
* (b) the energy-aware-pruned network on the starting preset (``--pruned``: a
  ``codesign train --method gates`` run, fixed hardware);
* (c) the sequential baseline: (b)'s final network, then a hardware-only search
  (:func:`codesign.joint.hardware_search`, the co-design run's engine, from the starting
  preset (at the co-design run's word widths when it is quantized), area <= the co-design run's budget, as many exact evaluations as the whole
  co-design run spent unless ``--evaluations`` says otherwise); the design is written
  to ``WORKDIR/sequential.yaml`` and re-costed from that file;
* (d) the co-design run (``--codesign``: ``codesign train --co-design``), its network on
  the found hardware (and on the starting preset, for reference).

Command (the README's co-design rows)::

    python experiments/co_design_compare.py --pruned RUN_B --codesign RUN_D --workdir DIR
    python experiments/co_design_compare.py --pruned RUN_B --area-mm2 12.25 --evaluations 800 --workdir DIR

Seconds: the searches of (c) take a few seconds for mnist_cnn.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hwmodel  # noqa: E402
import models  # noqa: E402
from codesign import design, joint  # noqa: E402
from codesign._run import load_run_model  # noqa: E402
from codesign.objective import bit_knobs  # noqa: E402
from codesign.config import Config  # noqa: E402


def _report(run: Path) -> dict:
    return json.loads((run / "report.json").read_text(encoding="utf-8"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--pruned", required=True, type=Path, help="(b): a gates run on fixed hardware")
    p.add_argument("--codesign", type=Path, default=None,
                   help="(d): a --co-design run (without it: rows (a)-(c) only, and "
                        "--area-mm2 / --evaluations are needed)")
    p.add_argument("--area-mm2", type=float, default=None,
                   help="(c)'s area budget (default: the co-design run's)")
    p.add_argument("--workdir", required=True, type=Path, help="where (c)'s YAML goes")
    p.add_argument("--evaluations", type=int, default=None,
                   help="exact evaluations of (c)'s search (default: the co-design run's total)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--network-rtol", type=float, default=1e-6,
                   help="how far (relative) (b)'s checkpoint network may cost from its report "
                        "(a budget run may close a unit after its last checkpoint; default 1e-6)")
    args = p.parse_args(argv)

    rb = _report(args.pruned)
    cfg_b = Config.from_json((args.pruned / "config.json").read_text(), where="(b) config")
    if args.codesign is not None:
        rd = _report(args.codesign)
        cfg_d = Config.from_json((args.codesign / "config.json").read_text(), where="(d) config")
        co = rd["co_design"]
    elif args.area_mm2 is None or args.evaluations is None:
        raise SystemExit("without --codesign, pass --area-mm2 and --evaluations")
    else:
        rd, co, cfg_d = None, None, cfg_b
    area = args.area_mm2 or co["area_budget_mm2"]
    evaluations = args.evaluations or co["evaluations"]

    # (c): (b)'s deployed network (checkpoint, physically pruned), hardware-only search
    t0 = time.perf_counter()
    net = load_run_model(args.pruned)
    wl = models.model_workload(net.model, batch=cfg_b.hw_batch, input_shape=net.input_shape)
    space = joint.search_space(cfg_d)
    start = hwmodel.load_arch(cfg_b.hw_arch)
    # a quantized (b) is charged at its bits on the preset, as its report was
    check = design.exact_costs([wl], start, cfg_b.hw_dataflow, cfg_d.hw_objective,
                               knobs=[bit_knobs(net.model, wl, start)])[0]
    e_b = float(check.energy_per_inference_pj) * 1e-6
    if abs(e_b / rb["energy_per_inference_uj"] - 1) > args.network_rtol:
        raise SystemExit(f"(b)'s checkpoint network costs {e_b:.6g} uJ, its report says "
                         f"{rb['energy_per_inference_uj']:.6g} uJ (gates closed after the last "
                         "checkpoint?); cannot take it as (b)'s network")
    if e_b != rb["energy_per_inference_uj"]:
        print(f"note: (c) searches for (b)'s checkpoint network, {e_b:.6g} uJ on {cfg_b.hw_arch} "
              f"(report: {rb['energy_per_inference_uj']:.6g} uJ)")
    current, best, ev = joint.hardware_search(
        space, {cfg_b.model: wl}, space.start_values(), area_mm2=area,
        objective=cfg_d.hw_objective, dataflow=cfg_d.hw_dataflow, evaluations=evaluations,
        seed=args.seed)
    args.workdir.mkdir(parents=True, exist_ok=True)
    path = args.workdir / "sequential.yaml"
    hwmodel.save_arch(space.arch(best.values, name=f"{space.base.name}_sequential"), path)
    c = design.exact_costs([wl], hwmodel.load_arch(str(path)), cfg_d.hw_dataflow,
                           cfg_d.hw_objective)[0]
    e_c = float(c.energy_per_inference_pj) * 1e-6
    seconds_c = time.perf_counter() - t0

    e_a = rb["dense"]["energy_per_inference_uj"]
    a0, d0 = float(hwmodel.area_mm2(start)), space.describe(space.base_values())
    rows = [
        ("(a) dense on " + start.name, rb["dense"]["test_accuracy"], e_a, a0, d0,
         "(the dense run)"),
        ("(b) gates on " + start.name, rb["test_accuracy"], rb["energy_per_inference_uj"],
         a0, d0, f"{rb['wall_time_s']:.0f} s"),
        ("(c) (b) + hardware search", rb["test_accuracy"], e_c, best.area_mm2,
         space.describe(best.values), f"+{seconds_c:.0f} s ({ev.count} evaluations)"),
    ]
    if rd is not None:
        rows.append(("(d) co-design", rd["test_accuracy"], rd["energy_per_inference_uj"],
                     co["found"]["area_mm2"], co["found"]["design"],
                     f"{rd['wall_time_s']:.0f} s ({co['evaluations']} evaluations, "
                     f"{co['search_time_s']:.0f} s of searches)"))
    print(f"| run | test accuracy | energy (uJ) | vs (a) | vs (b) | area (mm^2) | hardware | wall |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for name, acc, e, a, d, wall in rows:
        print(f"| {name} | {100 * acc:.2f}% | {e:.4g} | {e_a / e:.2f}x | "
              f"{rb['energy_per_inference_uj'] / e:.3f}x | {a:.4g} | {d} | {wall} |")
    if rd is not None:
        e_d = rd["energy_per_inference_uj"]
        print(f"\n(d)'s network on {start.name}: {rd['hw_start']['energy_per_inference_uj']:.4g} "
              f"uJ; (d) vs (c): {e_c / e_d:.3f}x lower energy, "
              f"{100 * (rd['test_accuracy'] - rb['test_accuracy']):+.2f} points accuracy")
    return 0


if __name__ == "__main__":
    sys.exit(main())
