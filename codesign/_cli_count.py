"""``codesign count MODEL|--run WORKDIR [--batch N] [--input-shape H,W,C | T] [--json] [--summary]``.

``--run WORKDIR`` counts a trained run's model (a gated run: the pruned network) or a
saved pruned model; see :mod:`codesign._run`.

Prints a model-spec table like a paper's: one row per MAC layer (name, kind, loop
shape, weights, MACs, input/output activations, non-MAC ops) and per category
(CONV, FC/matmul with a static weight, ATTN: matmul with two dynamic operands) the
number of layers, weights, MACs and activations, plus anything the extractor did not
recognise.  Nothing is trained or materialised: parameters are abstract.

``--json`` prints exactly one JSON object on stdout: ``model, batch, input_shape,
total_params, total_macs, total_weights, total_nonmac_ops, num_layers``, per category
``conv_/fc_/attention_`` + ``layers, macs, weights, input_activations,
output_activations``, ``layers`` (one object per layer: ``name, kind, category, macs,
weights, input_activations, output_activations, nonmac_ops, dynamic``, the loop bounds
``G N M P Q C R S``, ``stride, dilation, ...``) and ``unrecognized``.
``total_params`` counts every parameter (embeddings, biases, norms included: the
published model sizes' accounting, :func:`models.model_param_count`);
``total_weights`` only the static operands of convolutions and matmuls.

Exit status: 0 on success; 2 for a bad command line (unknown model, malformed or
unfitting ``--input-shape``, batch < 1): one line on stderr saying what was wrong
and what is valid.

Examples::

    python -m codesign count resnet50
    python -m codesign count gpt3_175b --summary
    python -m codesign count bert_base --input-shape 128 --json
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

PROG = "codesign count"


def _parser() -> argparse.ArgumentParser:
    p = Parser(
        prog=PROG,
        description="Count a model's layers: weights, MACs, activations (nothing is trained).",
    )
    add_model_args(p, "resnet50, gpt3_175b")
    p.add_argument(
        "--summary", action="store_true", help="table: only the per-category summary"
    )
    return p


def _hint(msg: str) -> str:
    if "model" in msg:  # missing positional: say which models exist
        from models._workload import list_countable_models

        msg += f"; valid models: {', '.join(list_countable_models())}"
    return msg


def _body(args: argparse.Namespace) -> int:
    batch = parse_batch(args.batch)
    shape = parse_input_shape(args.input_shape)

    from models import count_params
    from models._workload import default_input_shape, model_param_count, model_workload

    run_model = load_run(args)
    if run_model is None:
        check_model(args.model)
    try:
        if run_model is None:
            wl = model_workload(args.model, batch=batch, input_shape=shape)
            params = model_param_count(args.model, input_shape=shape)
        else:
            shape = run_model.input_shape
            wl = model_workload(run_model.model, batch=batch, input_shape=shape,
                                name=run_model.name)
            params = count_params(run_model.model)
    except ValueError as e:
        raise UsageError(one_line(e)) from e

    if shape is None:
        shape = default_input_shape(args.model)
    header = "" if run_model is None else run_model.what + "\n"
    if args.json:
        d = wl.to_dict()
        d["input_shape"] = list(shape)
        d["total_params"] = params
        if run_model is not None:
            d["run"] = args.run
            d["loaded"] = run_model.what
        text = json.dumps(d) + "\n"
    else:
        text = (f"{header}input shape {','.join(map(str, shape))}; {params:,} parameters in all "
                f"(embeddings, biases, norms included)\n{wl.table(per_layer=not args.summary)}\n")
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def main(argv: list[str]) -> int:
    """Run ``codesign count``; returns the exit status."""
    return run(PROG, _parser(), argv, _body, _hint)
