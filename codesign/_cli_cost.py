"""``codesign cost MODEL --arch NAME|FILE.yaml [--dataflow rs] [--batch N]
[--objective energy|edp] [--input-shape H,W,C | T] [--json]``.

Maps every layer of a model (zoo model or reference network) onto an accelerator with
the chosen dataflow (:func:`hwmodel.map_workload`) and prints the cost per layer and in
total (:func:`hwmodel.cost`, ``Cost.table()``: the DESIGN.md section 4 report card):
MACs, energy and its breakdown per memory level / MAC / non-MAC, cycles, latency,
utilization, off-chip bytes and which roofline bound limits each layer.

``--json`` prints exactly one JSON object on stdout: ``model, arch, dataflow, batch,
objective, macs, energy_pj, latency_s, cycles, power_w, dram_bytes, onchip_bytes,
area_mm2, utilization, ..., layers`` (each layer: ``name, macs, energy_pj, cycles,
latency_s, utilization, dram_bytes, energy_breakdown_pj`` by level, ``bound``, ...).

Exit status: 0 on success; 2 for bad input (unknown model / preset / dataflow /
objective, unreadable or invalid architecture file, batch < 1, a layer with no legal
mapping): one line on stderr saying what was wrong and what is valid.

Examples::

    python -m codesign cost alexnet --arch eyeriss
    python -m codesign cost resnet50 --arch eyeriss --dataflow ws --json
    python -m codesign cost lenet5 --arch my_accel.yaml --objective edp --batch 8
"""

from __future__ import annotations

import argparse
import json
import sys

PROG = "codesign cost"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr, exit 2 (raised, handled in main)
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    from hwmodel._mapper import OBJECTIVES
    from hwmodel._mapping import DATAFLOWS

    p = _Parser(prog=PROG, description="Energy, latency and area of a model on an accelerator "
                "(analytical loop-nest model).")
    p.add_argument("model", help="zoo model or reference network (e.g. alexnet, resnet50)")
    p.add_argument("--arch", required=True,
                   help="architecture preset name (e.g. eyeriss) or a .yaml file")
    p.add_argument("--dataflow", default="rs", choices=DATAFLOWS,
                   help="dataflow family (default rs)")
    p.add_argument("--batch", default="1", help="batch size N (default 1)")
    p.add_argument("--objective", default="energy", choices=OBJECTIVES,
                   help="mapper objective (default energy)")
    p.add_argument("--input-shape", default=None,
                   help="per-example input: H,W,C for image models, T for transformers")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    return p


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def main(argv: list[str]) -> int:
    """Run ``codesign cost``; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except _UsageError as e:
        msg = str(e)
        if "model" in msg and "required" in msg:
            from models._workload import list_countable_models

            msg += f"; valid models: {', '.join(list_countable_models())}"
        if "--arch" in msg and "required" in msg:
            import hwmodel

            msg += f"; valid presets: {', '.join(hwmodel.list_presets())} or a .yaml file"
        print(f"{PROG}: {msg}", file=sys.stderr)
        return 2
    try:
        batch = int(args.batch)
    except ValueError:
        batch = 0
    if batch < 1:
        print(f"{PROG}: --batch {args.batch!r} must be a positive int", file=sys.stderr)
        return 2
    shape = None
    if args.input_shape is not None:
        try:
            shape = tuple(int(t) for t in args.input_shape.split(","))
        except ValueError:
            shape = ()
        if not shape or any(v < 1 for v in shape):
            print(f"{PROG}: --input-shape {args.input_shape!r} must be comma-separated positive "
                  "ints (H,W,C for image models, T for token models)", file=sys.stderr)
            return 2

    import hwmodel  # heavy imports only after parsing
    from models._workload import list_countable_models, model_workload

    try:
        arch = hwmodel.load_arch(args.arch)
    except (ValueError, OSError) as e:
        print(f"{PROG}: --arch: {_one_line(e)}", file=sys.stderr)
        return 2
    if args.model not in list_countable_models():
        print(f"{PROG}: unknown model {args.model!r}; valid: "
              f"{', '.join(list_countable_models())}", file=sys.stderr)
        return 2
    try:
        wl = model_workload(args.model, batch=batch, input_shape=shape)
    except ValueError as e:
        print(f"{PROG}: {_one_line(e)}", file=sys.stderr)
        return 2
    try:
        c = hwmodel.cost(wl, arch, dataflow=args.dataflow, objective=args.objective)
    except hwmodel.NoLegalMapping as e:
        print(f"{PROG}: {_one_line(e)}", file=sys.stderr)
        return 2
    if args.json:
        d = c.to_dict()
        d["model"] = args.model
        d["arch"] = args.arch
        d["batch"] = batch
        sys.stdout.write(json.dumps(d) + "\n")
        return 0
    print(c.table())
    return 0
