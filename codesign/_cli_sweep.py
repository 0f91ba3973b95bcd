"""``codesign sweep``: a grid of pruning methods x settings from one dense run.

Usage::

    codesign sweep SPEC [--workdir DIR] [--point K] [--plot-only] [--data-dir DIR]

SPEC is a sweep preset (``codesign.sweep.SWEEP_PRESETS``: quickstart, mnist_cnn, lenet5,
vit_mnist) or a JSON spec file (format: :mod:`codesign.sweep`). The default workdir is
``runs/sweep-<name>``: running the same command again resumes the sweep (finished
points are kept). Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

PROG = "codesign sweep"


def _parser() -> argparse.ArgumentParser:
    from codesign.sweep import SWEEP_PRESETS

    p = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("spec", help=f"a sweep preset ({', '.join(SWEEP_PRESETS)}) or a JSON spec file")
    p.add_argument("--workdir", help="the sweep directory (default: runs/sweep-<name>)")
    p.add_argument("--point", type=int, help="run only point K (0-based; the dense run first if "
                   "missing): one job per point on a cluster")
    p.add_argument("--plot-only", action="store_true",
                   help="rewrite pareto.csv / pareto.png from the finished points (no training)")
    p.add_argument("--data-dir", help="dataset directory for every run")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str]) -> int:
    from codesign._config import ConfigError
    from codesign.sweep import load_spec, run_sweep, summary_table, sweep_rows, write_results

    p = _parser()
    try:
        args = p.parse_args(argv)
    except SystemExit as e:
        return int(e.code or 0)
    try:
        spec = load_spec(args.spec)
        workdir = args.workdir or f"runs/sweep-{spec['name']}"
        if args.plot_only:
            rows = sweep_rows(workdir)
            write_results(workdir, rows)
        else:
            rows = run_sweep(spec, workdir, point=args.point, data_dir=args.data_dir,
                             progress=not args.no_progress and sys.stderr.isatty())
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"{PROG}: {e}", file=sys.stderr)
        return 2
    print(summary_table(rows))
    print(f"\n{workdir}/pareto.csv, {workdir}/pareto.png")
    return 0
