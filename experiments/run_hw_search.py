"""A finished run's network, hardware-only searches of several sizes: is it the search
budget or the network that sets the energy a co-design run ends at?

Loads RUN's deployed network (its checkpoint, physically pruned:
``codesign._run.load_run_model``), prints its energy per inference on the run's
``--hw-arch`` preset and on the run's ``hardware.yaml`` (co-design runs), then runs
:func:`codesign.joint.hardware_search` (the co-design run's engine and the sequential
baseline's of ``co_design_compare.py``) from the preset for each ``--evaluations`` N and
prints the best energy found. Seconds: a few for ``mnist_cnn``.

Command (the README's co-design paragraph)::

    python experiments/run_hw_search.py RUN [RUN ...] --evaluations 64 200 800
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
from codesign.config import Config  # noqa: E402
from codesign.objective import bit_knobs  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", type=Path, metavar="RUN")
    p.add_argument("--evaluations", nargs="+", type=int, default=[64, 200, 800])
    p.add_argument("--area-mm2", type=float, default=None,
                   help="area budget (default: the run's --area-mm2, else its preset's area)")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args(argv)
    for run in a.runs:
        cfg = Config.from_json((run / "config.json").read_text())
        net = load_run_model(run)
        wl = models.model_workload(net.model, batch=cfg.hw_batch, input_shape=net.input_shape)
        space = joint.search_space(cfg)
        start = hwmodel.load_arch(cfg.hw_arch)
        area = a.area_mm2 or cfg.area_mm2 or float(hwmodel.area_mm2(start))

        def uj(arch):
            c = design.exact_costs([wl], arch, cfg.hw_dataflow, "energy",
                                   knobs=[bit_knobs(net.model, wl, arch)])[0]
            return float(c.energy_per_inference_pj) * 1e-6

        line = f"{run}: {cfg.model}, {cfg.hw_arch} {uj(start):.4g} uJ"
        hw = run / joint.HARDWARE_FILE
        if hw.exists():
            line += f", its {joint.HARDWARE_FILE} {uj(hwmodel.load_arch(str(hw))):.4g} uJ"
        print(line, flush=True)
        for n in a.evaluations:
            t = time.perf_counter()
            _, best, ev = joint.hardware_search(
                space, {cfg.model: wl}, space.start_values(), area_mm2=area,
                objective="energy", dataflow=cfg.hw_dataflow, evaluations=n, seed=a.seed)
            print(f"  {n:>5} evaluations: best {best.energy_pj[0] * 1e-6:.4g} uJ "
                  f"({space.describe(best.values)}, {best.area_mm2:.4g} mm^2 of {area:g}; "
                  f"{ev.count} exact evaluations in {time.perf_counter() - t:.1f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
