"""Pieces shared by the ``codesign count`` and ``codesign cost`` subcommands.

Bad input is one line on stderr (``PROG: what was wrong; what is valid``) and exit
status 2: argument-parsing errors and the checks in a subcommand's body both raise
:class:`UsageError`, which :func:`run` prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

SHAPE_HELP = "per-example input: H,W,C for image models, T for transformers"


class UsageError(Exception):
    """A bad command line or input: printed as one line, exit status 2."""


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors raise :class:`UsageError` (no usage dump)."""

    def error(self, message):
        raise UsageError(message)


def one_line(e: BaseException | str) -> str:
    """The message of ``e`` with all whitespace runs collapsed to single spaces."""
    return " ".join(str(e).split())


def add_model_args(p: argparse.ArgumentParser, example: str) -> None:
    """The positional ``model`` and the ``--batch`` / ``--input-shape`` / ``--json`` options."""
    p.add_argument("model", nargs="?", help=f"zoo model or reference network (e.g. {example})")
    p.add_argument("--run", default=None, metavar="WORKDIR",
                   help="instead of MODEL: a training run directory (config.json + checkpoints; "
                        "a gated run is pruned first) or a saved pruned model (pruned.json)")
    p.add_argument("--batch", default="1", help="batch size N (default 1)")
    p.add_argument("--input-shape", default=None, help=SHAPE_HELP)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")


def load_run(args: argparse.Namespace):
    """The :class:`codesign._run.RunModel` of ``--run``, or None when a MODEL name is given.

    Raises :class:`UsageError` for neither or both of MODEL and ``--run``, ``--input-shape``
    with ``--run`` (the run fixes the shape), or a directory that is not a usable run.
    """
    if args.run is not None and args.model is not None:
        raise UsageError(f"give a MODEL name or --run WORKDIR, not both (got {args.model!r} and "
                         f"--run {args.run!r})")
    if args.run is None:
        if args.model is None:
            from models._workload import list_countable_models

            raise UsageError("the following arguments are required: model; valid models: "
                             f"{', '.join(list_countable_models())} (or --run WORKDIR)")
        return None
    if args.input_shape is not None:
        raise UsageError("--input-shape does not apply to --run (the run's dataset fixes it)")
    from codesign._run import RunError, load_run_model

    try:
        return load_run_model(args.run)
    except RunError as e:
        raise UsageError(one_line(e)) from e


def parse_batch(text: str) -> int:
    """``--batch`` as a positive int, else :class:`UsageError`."""
    try:
        batch = int(text)
    except ValueError:
        batch = 0
    if batch < 1:
        raise UsageError(f"--batch {text!r} must be a positive int")
    return batch


def parse_input_shape(text: str | None) -> tuple[int, ...] | None:
    """``--input-shape`` (``None`` when not given) as positive ints, else :class:`UsageError`."""
    if text is None:
        return None
    try:
        vals = tuple(int(t) for t in text.split(","))
    except ValueError:
        vals = ()
    if not vals or any(v < 1 for v in vals):
        raise UsageError(
            f"--input-shape {text!r} must be comma-separated positive ints "
            "(H,W,C for image models, T for token models)"
        )
    return vals


def check_model(name: str) -> None:
    """:class:`UsageError` listing the valid names when ``name`` is not a countable model."""
    from models._workload import list_countable_models

    if name not in list_countable_models():
        raise UsageError(f"unknown model {name!r}; valid: {', '.join(list_countable_models())}")


def run(prog: str, parser: argparse.ArgumentParser, argv: list[str],
        body: Callable[[argparse.Namespace], int],
        hint: Callable[[str], str] = lambda msg: msg) -> int:
    """Parse ``argv`` and run ``body(args)``; returns the exit status.

    ``--help`` returns 0; a :class:`UsageError` from parsing (its message passed
    through ``hint``, which may append the valid choices) or from ``body`` is printed
    as ``prog: message`` on stderr and returns 2.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help
        return int(e.code or 0)
    except UsageError as e:
        print(f"{prog}: {hint(str(e))}", file=sys.stderr)
        return 2
    try:
        return body(args)
    except UsageError as e:
        print(f"{prog}: {one_line(e)}", file=sys.stderr)
        return 2
