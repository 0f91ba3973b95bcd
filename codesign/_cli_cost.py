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

from codesign._cli_common import (
    Parser,
    UsageError,
    add_model_args,
    check_model,
    one_line,
    parse_batch,
    parse_input_shape,
    run,
)

PROG = "codesign cost"


def _parser() -> argparse.ArgumentParser:
    from hwmodel.costmodel.mapper import OBJECTIVES
    from hwmodel.mapping.dataflows import DATAFLOWS

    p = Parser(prog=PROG, description="Energy, latency and area of a model on an accelerator "
               "(analytical loop-nest model).")
    add_model_args(p, "alexnet, resnet50")
    p.add_argument("--arch", required=True,
                   help="architecture preset name (e.g. eyeriss) or a .yaml file")
    p.add_argument("--dataflow", default="rs", choices=DATAFLOWS,
                   help="dataflow family (default rs)")
    p.add_argument("--objective", default="energy", choices=OBJECTIVES,
                   help="mapper objective (default energy)")
    return p


def _hint(msg: str) -> str:
    if "model" in msg and "required" in msg:
        from models._workload import list_countable_models

        msg += f"; valid models: {', '.join(list_countable_models())}"
    if "--arch" in msg and "required" in msg:
        import hwmodel

        msg += f"; valid presets: {', '.join(hwmodel.list_presets())} or a .yaml file"
    return msg


def _body(args: argparse.Namespace) -> int:
    batch = parse_batch(args.batch)
    shape = parse_input_shape(args.input_shape)

    import hwmodel  # heavy imports only after parsing
    from models._workload import model_workload

    try:
        arch = hwmodel.load_arch(args.arch)
    except (ValueError, OSError) as e:
        raise UsageError(f"--arch: {one_line(e)}") from e
    check_model(args.model)
    try:
        wl = model_workload(args.model, batch=batch, input_shape=shape)
        c = hwmodel.cost(wl, arch, dataflow=args.dataflow, objective=args.objective)
    except ValueError as e:  # includes hwmodel.NoLegalMapping
        raise UsageError(one_line(e)) from e
    if args.json:
        d = c.to_dict()
        d["model"] = args.model
        d["arch"] = args.arch
        d["batch"] = batch
        sys.stdout.write(json.dumps(d) + "\n")
        return 0
    print(c.table())
    return 0


def main(argv: list[str]) -> int:
    """Run ``codesign cost``; returns the exit status."""
    return run(PROG, _parser(), argv, _body, _hint)
