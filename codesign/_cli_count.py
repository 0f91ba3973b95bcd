"""``codesign count MODEL [--batch N] [--input-shape H,W,C | T] [--json] [--summary]``.

Prints a model-spec table like a paper's: one row per MAC layer (name, kind, loop
shape, weights, MACs, input/output activations, non-MAC ops) and per category
(CONV, FC/matmul with a static weight, ATTN: matmul with two dynamic operands) the
number of layers, weights, MACs and activations, plus anything the extractor did not
recognise.  Nothing is trained or materialised: parameters are abstract.

``--json`` prints exactly one JSON object on stdout: ``model, batch, input_shape,
total_macs, total_weights, total_nonmac_ops, num_layers``, per category
``conv_/fc_/attention_`` + ``layers, macs, weights, input_activations,
output_activations``, ``layers`` (one object per layer: ``name, kind, category, macs,
weights, input_activations, output_activations, nonmac_ops, dynamic``, the loop bounds
``G N M P Q C R S``, ``stride, dilation, ...``) and ``unrecognized``.

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

PROG = "codesign count"


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr, exit 2 (raised, handled in main)
        raise _UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog=PROG,
        description="Count a model's layers: weights, MACs, activations (nothing is trained).",
    )
    p.add_argument("model", help="zoo model or reference network (e.g. resnet50, gpt3_175b)")
    p.add_argument("--batch", default="1", help="batch size N (default 1)")
    p.add_argument(
        "--input-shape",
        default=None,
        help="per-example input: H,W,C for image models, T (tokens) for transformers",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument(
        "--summary", action="store_true", help="table: only the per-category summary"
    )
    return p


def _parse_ints(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(t) for t in text.split(","))
    except ValueError:
        vals = ()
    if not vals or any(v < 1 for v in vals):
        raise _UsageError(
            f"{what} {text!r} must be comma-separated positive ints "
            "(H,W,C for image models, T for token models)"
        )
    return vals


def main(argv: list[str]) -> int:
    """Run ``codesign count``; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except _UsageError as e:
        msg = str(e)
        if "model" in msg:  # missing positional: say which models exist
            from models._workload import list_countable_models

            msg += f"; valid models: {', '.join(list_countable_models())}"
        print(f"{PROG}: {msg}", file=sys.stderr)
        return 2

    try:
        batch = int(args.batch)
    except ValueError:
        batch = 0
    if batch < 1:
        print(f"{PROG}: --batch {args.batch!r} must be a positive int", file=sys.stderr)
        return 2
    try:
        shape = None if args.input_shape is None else _parse_ints(args.input_shape, "--input-shape")
    except _UsageError as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2

    from models._workload import (  # heavy imports: only after parsing
        default_input_shape,
        list_countable_models,
        model_workload,
    )

    if args.model not in list_countable_models():
        print(
            f"{PROG}: unknown model {args.model!r}; valid: {', '.join(list_countable_models())}",
            file=sys.stderr,
        )
        return 2
    try:
        wl = model_workload(args.model, batch=batch, input_shape=shape)
    except ValueError as e:
        print(f"{PROG}: {' '.join(str(e).split())}", file=sys.stderr)
        return 2

    if shape is None:
        shape = default_input_shape(args.model)
    if args.json:
        d = wl.to_dict()
        d["input_shape"] = list(shape)
        text = json.dumps(d) + "\n"
    else:
        text = f"input shape {','.join(map(str, shape))}\n{wl.table(per_layer=not args.summary)}\n"
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into `head`: not an error
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
