"""The ``codesign`` command line: ``codesign {train,count,cost,sweep,design} ...``.

Each subcommand lives in its own module (``codesign._cli_<name>``) exposing
``main(argv: list[str]) -> int``; this dispatcher imports only the one asked for,
so ``codesign count`` never pays for importing the training stack.
"""

from __future__ import annotations

import importlib
import sys

SUBCOMMANDS = {
    "train": ("codesign._cli_train", "train a model (presets: quickstart, mnist, cifar10, ...)"),
    "count": ("codesign._cli_count", "count a model's layers: weights, MACs, activations"),
    "cost": ("codesign._cli_cost", "energy, latency and area of a model on an accelerator"),
    "sweep": ("codesign._cli_sweep", "energy-aware pruning sweep from one dense run: Pareto front"),
    "design": ("codesign._cli_design", "search the accelerator for models under an area budget"),
}


def _usage() -> str:
    lines = ["usage: codesign {" + ",".join(SUBCOMMANDS) + "} [--help] ...", "", "subcommands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in SUBCOMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(
            f"codesign: unknown subcommand {name!r}; valid: {', '.join(SUBCOMMANDS)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])
    return int(module.main(rest) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
