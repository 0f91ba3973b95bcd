"""End-to-end wall time of ``codesign cost`` against ZigZag, measured in the same run.

Every row is a fresh Python process timed from start to exit (interpreter start,
imports, tracing the model, mapping, evaluation, printing): what a user waits for.

* ``codesign cost NET --arch eyeriss``: every layer of NET (FC layers included), the
  mapper (RS, energy) and the one-shot evaluation (numpy), the report printed.
* the same command with the JAX evaluator (``hwmodel.cost(..., backend="jax")``: one
  ``jit`` compile, then the run): the evaluation every one-shot call paid before the
  numpy path; the baseline of the numpy change.
* ZigZag 3.9.1 on NET's conv layers (LeNet-5: 3, AlexNet: 5) on its own
  ``eyeriss_like.yaml``, RS, energy-optimal LOMA search with ``lpf_limit`` 6: the
  pipeline of ``benchmarks/zigzag_compare.py`` (``run_zigzag``), process start to exit.
  ZigZag does less than our command (conv layers only) and still takes longer.

Our rows run ``--repeat`` times interleaved (median printed); ZigZag ``--zigzag-repeat``
times (default once: AlexNet takes minutes).  The ZigZag rows need ``zigzag-dse``:
either in this Python (the ``zigzag`` extra, ``pip install ".[zigzag]"``) or in a
separate virtualenv named with ``--zigzag-venv DIR`` (made with ``python3 -m venv DIR
&& DIR/bin/pip install zigzag-dse six``, same Python version): the ZigZag child then
runs on this Python with that virtualenv's packages appended to its ``sys.path``
(this Python's own packages, e.g. numpy, take precedence).  Without either, or with
``--no-zigzag``, only our rows are printed.  Run::

    python benchmarks/cost_cli_speed.py                      # lenet5 and alexnet
    python benchmarks/cost_cli_speed.py --nets lenet5 --repeat 5
    python benchmarks/cost_cli_speed.py --zigzag-venv ~/zz-venv --nets lenet5 alexnet
"""

from __future__ import annotations

import argparse
import importlib.util
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _child_jax(net: str) -> int:
    """``codesign cost NET --arch eyeriss`` with the JAX evaluator."""
    import functools  # noqa: PLC0415

    import hwmodel  # noqa: PLC0415
    from codesign.cli import main  # noqa: PLC0415

    hwmodel.cost = functools.partial(hwmodel.cost, backend="jax")
    return main(["cost", net, "--arch", "eyeriss"])


def _child_zigzag(net: str, site: str | None) -> int:
    """ZigZag on NET's conv layers, as ``benchmarks/zigzag_compare.py`` runs it
    (``site``: a ZigZag virtualenv's site-packages, appended to ``sys.path``)."""
    import tempfile  # noqa: PLC0415

    if site:
        sys.path.append(site)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import zigzag_compare as zc  # noqa: PLC0415

    import hwmodel  # noqa: PLC0415

    hw = zc.zigzag_hw_path()
    arch = hwmodel.architecture_from_zigzag(hw, word_bits=(8, 8, 16), clock_hz=200e6)
    wl, _ = zc.get_workload(net, "auto")
    wl = zc.with_bits(wl, arch)
    with tempfile.TemporaryDirectory(prefix="cost_cli_speed_") as tmp:
        res = zc.run_zigzag(wl, arch, hw, "rs", 6, Path(tmp) / net)
    print(f"zigzag layers {len(res['rows'])}, energy "
          f"{sum(r['energy_pj'] for r in res['rows'].values()):.6g} pJ, "
          f"in-process {res['wall_s']:.2f} s")
    return 0


def _timed(argv: list[str]) -> tuple[float, float, str]:
    """Run ``argv``; its wall time and its CPU time (user + system, all threads), s.

    Children run one at a time, so the growth of this process's children rusage is
    the child's own.  CPU time is the figure to trust on a shared machine (it does
    not count the time other processes hold the cores); wall time is what a user waits
    on a quiet one.
    """
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()[-2000:]}")
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    return dt, cpu, p.stdout


def zigzag_site(venv: str) -> str:
    """The site-packages directory of virtualenv ``venv`` holding ``zigzag``.

    Raises:
      SystemExit: ``venv`` is not a virtualenv of this Python version with
        ``zigzag-dse`` installed (the message says what was found).
    """
    py = Path(venv) / "bin" / "python"
    if not py.exists():
        raise SystemExit(f"--zigzag-venv {venv}: no {py}; valid: a virtualenv made with "
                         "'python3 -m venv DIR && DIR/bin/pip install zigzag-dse six'")
    q = subprocess.run([str(py), "-c", "import sys, sysconfig; "
                        "print(sysconfig.get_path('purelib')); print(sys.version_info[:2])"],
                       capture_output=True, text=True)
    if q.returncode != 0:
        raise SystemExit(f"--zigzag-venv {venv}: {py} does not run: {q.stderr.strip()[-300:]}")
    site, version = q.stdout.split("\n")[:2]
    if version != str(sys.version_info[:2]):
        raise SystemExit(f"--zigzag-venv {venv}: Python {version}, this one is "
                         f"{sys.version_info[:2]}; valid: a virtualenv of the same Python version")
    if not (Path(site) / "zigzag").is_dir():
        raise SystemExit(f"--zigzag-venv {venv}: no zigzag package in {site}; valid: "
                         f"'{venv}/bin/pip install zigzag-dse six'")
    return site


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=["lenet5", "alexnet"],
                    choices=["lenet5", "alexnet"])
    ap.add_argument("--repeat", type=int, default=3, help="runs of each of our rows (median)")
    ap.add_argument("--zigzag-repeat", type=int, default=1)
    ap.add_argument("--no-zigzag", action="store_true")
    ap.add_argument("--zigzag-venv", metavar="DIR",
                    help="a virtualenv with zigzag-dse (and six) for the ZigZag rows, when "
                         "this Python does not have it")
    ap.add_argument("--child", choices=["jax", "zigzag"], help=argparse.SUPPRESS)
    ap.add_argument("--net", help=argparse.SUPPRESS)
    ap.add_argument("--site", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child == "jax":
        return _child_jax(args.net)
    if args.child == "zigzag":
        return _child_zigzag(args.net, args.site)

    py = sys.executable
    site = zigzag_site(args.zigzag_venv) if args.zigzag_venv and not args.no_zigzag else None
    have_zz = (site is not None or importlib.util.find_spec("zigzag") is not None) \
        and not args.no_zigzag
    if not have_zz and not args.no_zigzag:
        print("zigzag-dse is not importable from this Python: ZigZag rows skipped "
              "(pip install '.[zigzag]', or --zigzag-venv DIR)")
    zz_site = ["--site", site] if site else []
    me = str(Path(__file__).resolve())
    print(f"{'network':<8} {'what':<58} {'wall s':>8} {'CPU s':>8} {'runs':>5}")
    med = statistics.median
    for net in args.nets:
        ours, jax_ = [], []
        for _ in range(args.repeat):
            ours.append(_timed([py, "-m", "codesign", "cost", net, "--arch", "eyeriss"])[:2])
            jax_.append(_timed([py, me, "--child", "jax", "--net", net])[:2])
        rows = [(f"codesign cost {net} --arch eyeriss (numpy evaluation)", ours),
                ("  the same command, JAX evaluator (jit compile + run)", jax_)]
        zz, text = [], ""
        if have_zz:
            for _ in range(args.zigzag_repeat):
                wall, cpu, text = _timed([py, me, "--child", "zigzag", "--net", net, *zz_site])
                zz.append((wall, cpu))
            rows.append((f"ZigZag, {net} conv layers (process start to exit)", zz))
        for what, ts in rows:
            print(f"{net:<8} {what:<58} {med(t[0] for t in ts):8.2f} "
                  f"{med(t[1] for t in ts):8.2f} {len(ts):5d}")

        def ratio(label, a, b):
            print(f"{net:<8} {'  ratio: ' + label:<58} {med(t[0] for t in a) / med(t[0] for t in b):7.1f}x"
                  f" {med(t[1] for t in a) / med(t[1] for t in b):7.1f}x")

        ratio("JAX evaluator / numpy", jax_, ours)
        if zz:
            ratio("ZigZag / codesign cost", zz, ours)
            print(f"{net:<8}   ({text.strip()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
