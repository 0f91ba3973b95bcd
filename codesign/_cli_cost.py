"""``codesign cost MODEL|--run WORKDIR --arch NAME|FILE.yaml [--dataflow rs] [--batch N]
[--objective energy|edp] [--input-shape H,W,C | T] [--json]``.

``--run WORKDIR`` costs a trained run's model (``config.json`` + checkpoints; a run
that trained gates is physically pruned first, so this is the exact re-mapped cost of
the network that would be deployed) or a saved pruned model (``pruned.json``); see
:mod:`codesign._run`.

Maps every layer of a model (zoo model or reference network) onto an accelerator with
the chosen dataflow (:func:`hwmodel.map_workload`) and prints the cost per layer and in
total (:func:`hwmodel.cost`, ``Cost.table()``: the report card of docs/report_card.md):
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
    python -m codesign cost --run runs/mnist --arch eyeriss
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
    load_run,
    one_line,
    parse_batch,
    parse_input_shape,
    run,
)

PROG = "codesign cost"


def _parser() -> argparse.ArgumentParser:
    import hwmodel

    p = Parser(prog=PROG, description="Energy, latency and area of a model on an accelerator "
               "(analytical loop-nest model).")
    add_model_args(p, "alexnet, resnet50")
    p.add_argument("--arch", required=True,
                   help="architecture preset name (e.g. eyeriss) or a .yaml file")
    p.add_argument("--dataflow", default="rs", choices=hwmodel.DATAFLOWS,
                   help="dataflow family (default rs)")
    p.add_argument("--objective", default="energy", choices=hwmodel.OBJECTIVES,
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

    from codesign.objective import bit_knobs

    try:
        arch = hwmodel.load_arch(args.arch)
    except (ValueError, OSError) as e:
        raise UsageError(f"--arch: {one_line(e)}") from e
    run_model = load_run(args)
    if run_model is None:
        check_model(args.model)
    try:
        if run_model is None:
            wl = model_workload(args.model, batch=batch, input_shape=shape)
        else:
            wl = model_workload(run_model.model, batch=batch, input_shape=run_model.input_shape,
                                name=run_model.name)
        # a quantization-aware run's layers are charged at their bits
        knobs = None if run_model is None else bit_knobs(run_model.model, wl, arch)
        c = hwmodel.cost(wl, arch, dataflow=args.dataflow, objective=args.objective, knobs=knobs)
    except ValueError as e:  # includes hwmodel.NoLegalMapping
        raise UsageError(one_line(e)) from e
    if args.json:
        d = c.to_dict()
        d["model"] = args.model if run_model is None else run_model.name
        if run_model is not None:
            d["run"] = args.run
            d["loaded"] = run_model.what
        d["arch"] = args.arch
        d["batch"] = batch
        sys.stdout.write(json.dumps(d) + "\n")
        return 0
    if run_model is not None:
        print(run_model.what)
    print(c.table())
    return 0


def main(argv: list[str]) -> int:
    """Run ``codesign cost``; returns the exit status."""
    return run(PROG, _parser(), argv, _body, _hint)
