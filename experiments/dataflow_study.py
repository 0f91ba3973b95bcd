"""Dataflow study: energy, latency and off-chip traffic of networks under every dataflow.

Reproduces the shape of the Eyeriss paper's dataflow comparison (Chen et al., ISCA 2016:
row stationary is the most energy-efficient dataflow for CNN convolutions, by 1.4x to
2.5x) with our cost model, and shows that fewer MACs do not always
mean less energy: data movement dominates.

Command (about a minute on a 2-core CPU)::

    python experiments/dataflow_study.py                       # alexnet, lenet5, resnet20, mobilenet_small
    python experiments/dataflow_study.py --models alexnet lenet5 --conv-only
    python experiments/dataflow_study.py --models alexnet vgg16 --arch eyeriss_45nm --batch 4

Result of the second command (eyeriss preset, batch 1, energy-optimal mappings, 15 s)::

    network   dataflow   energy uJ  vs rs  DRAM %  latency ms  util  DRAM kB
    alexnet   ws           12076.0   1.37    12.8      59.106   64%   7732.2
    alexnet   os           29392.4   3.33    43.1     216.223   13%  63374.6
    alexnet   is           28003.2   3.17    51.7     134.231   71%  72381.0
    alexnet   rs            8827.8   1.00    17.0      27.102   73%   7498.6
    alexnet   nlr         279394.7  31.65    95.5     833.640   47% 1333824.4
    lenet5    rs              29.0   1.00    82.3       0.125   17%    119.1   (ws 1.08, os 1.17, is 1.29, nlr 6.11)

RS is the cheapest dataflow on AlexNet's conv layers, WS 1.37x (the paper: 1.4x to
2.5x for the other dataflows). Unlike the paper, which re-balances the storage of an
equal-area chip for each dataflow, this study runs every dataflow on the *same*
Eyeriss hardware, whose global buffer does not hold weights and whose RF partitions are
sized for RS; OS, IS and above all NLR (no RF reuse, weights straight from DRAM) pay
for that in DRAM traffic. Use ``--arch`` with your own YAML to compare on other
hardware.

Each row: the network, the dataflow, energy per inference (uJ) and its ratio to RS,
the share of energy spent in DRAM, latency, utilization and DRAM bytes per inference.
Only conv layers are kept with ``--conv-only`` (the paper's setting).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import hwmodel
import models

DEFAULT_MODELS = ("alexnet", "lenet5", "resnet20", "mobilenet_small")


def _conv_only(wl: hwmodel.Workload) -> hwmodel.Workload:
    return dataclasses.replace(wl, layers=tuple(l for l in wl.layers if l.kind == "conv"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS),
                   help=f"zoo or reference networks (default: {' '.join(DEFAULT_MODELS)})")
    p.add_argument("--arch", default="eyeriss", help="preset or YAML file (default eyeriss)")
    p.add_argument("--dataflows", nargs="+", default=list(hwmodel.DATAFLOWS),
                   choices=hwmodel.DATAFLOWS)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--conv-only", action="store_true", help="keep only conv layers")
    args = p.parse_args(argv)

    arch = hwmodel.load_arch(args.arch)
    print(f"architecture {arch.name}, batch {args.batch}"
          f"{', conv layers only' if args.conv_only else ''}\n")
    head = (f"{'network':<16}{'dataflow':<9}{'MACs':>10}{'energy uJ':>12}{'vs rs':>7}"
            f"{'DRAM %':>8}{'latency ms':>12}{'util':>7}{'DRAM kB':>10}{'map s':>7}")
    print(head)
    print("-" * len(head))
    for name in args.models:
        wl = models.model_workload(name, batch=args.batch)
        if args.conv_only:
            wl = _conv_only(wl)
        rows = {}
        for df in args.dataflows:
            t = time.perf_counter()
            try:
                c = hwmodel.cost(wl, arch, dataflow=df)
            except hwmodel.NoLegalMapping as e:
                print(f"{name:<16}{df:<9}  no legal mapping: {e}")
                continue
            rows[df] = (c, time.perf_counter() - t)
        ref = float(rows["rs"][0].energy_pj) if "rs" in rows else None
        for df, (c, secs) in rows.items():
            e = float(c.energy_pj)
            dram = float(c.energy_breakdown_pj[arch.levels[0].name]) / e
            ratio = f"{e / ref:7.2f}" if ref else f"{'n/a':>7}"
            print(f"{name:<16}{df:<9}{wl.total_macs / 1e6:>9.1f}M{e * 1e-6 / args.batch:>12.1f}"
                  f"{ratio}{100 * dram:>8.1f}{float(c.latency_s) * 1e3:>12.3f}"
                  f"{100 * float(c.utilization):>6.0f}%{float(c.dram_bytes) / 1e3 / args.batch:>10.1f}"
                  f"{secs:>7.1f}")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
