"""Workload extraction speed and memory for the reference networks.

Run from the repository root::

    python benchmarks/extract_speed.py            # all reference networks
    python benchmarks/extract_speed.py resnet50 gpt3_175b

Each network is measured in a fresh Python process (so peak memory is its own):

* ``cold s``: first ``models.model_workload(name)`` in the process (abstract init via
  ``nnx.eval_shape`` + tracing + the jaxpr walk), after ``import jax, flax`` -- the
  figure the issue's budget applies to (resnet50 < 2 s, gpt3_175b < 5 s);
* ``warm s``: median of 3 further calls, split into ``init s`` (abstract
  ``nnx.eval_shape`` construction), and ``extract s`` (``hwmodel.extract_workload``
  on the built module: tracing + the jaxpr walk);
* ``trace s``: the baseline, measured in the same process: ``jax.make_jaxpr`` of the
  same forward pass alone (a fresh closure each time, so JAX's cache does not
  answer); ``x trace`` = extract / trace, the cost of the walk on top of tracing;
* ``peak RSS MiB``: the process's peak resident memory after the cold call, and
  ``dRSS MiB`` its growth over the RSS right after the imports;
* ``tracemalloc MiB``: peak Python-heap allocation during one warm call;
* ``params``: parameter count (``nnx.Param`` elements) and what float32 weights would
  take if materialised (``fp32 GiB``), to compare with the memory actually used.

The last lines give the ratios gpt3_175b / bert_base of parameters, peak RSS and
tracemalloc peak: memory must not grow with the parameter count.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")  # pragma: no cover


def _peak_rss_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_one(name: str) -> dict:
    """Measure one network in this (fresh) process."""
    sys.path.insert(0, str(ROOT))
    t0 = time.perf_counter()
    import jax
    from flax import nnx

    from models import reference
    from models._workload import model_workload

    t_import = time.perf_counter() - t0
    rss0 = _rss_mib()

    t0 = time.perf_counter()
    wl = model_workload(name)
    cold = time.perf_counter() - t0
    peak = _peak_rss_mib()

    warm = []
    for _ in range(3):
        t0 = time.perf_counter()
        model_workload(name)
        warm.append(time.perf_counter() - t0)

    # breakdown (warm, median of 3): abstract init; jax.make_jaxpr alone (the
    # baseline: a fresh closure each time, so JAX's trace cache does not answer);
    # hwmodel.extract_workload on the built module (trace + walk)
    import hwmodel

    ref = reference.get_reference(name)
    init, trace, extract = [], [], []
    for _ in range(3):
        t0 = time.perf_counter()
        abstract = ref.create()
        init.append(time.perf_counter() - t0)
        module = nnx.view(abstract, deterministic=True, use_running_average=True, raise_if_not_found=False)
        graphdef, state = nnx.split(module)
        x = ref.input_spec(1)

        def forward(state, x, graphdef=graphdef):
            return nnx.merge(graphdef, state)(x)

        t0 = time.perf_counter()
        jax.make_jaxpr(forward)(state, x)
        trace.append(time.perf_counter() - t0)

        def forward2(state, x, graphdef=graphdef):
            return nnx.merge(graphdef, state)(x)

        t0 = time.perf_counter()
        hwmodel.extract_workload(forward2, state, x, param_argnums=(0,))
        extract.append(time.perf_counter() - t0)

    import tracemalloc

    tracemalloc.start()
    model_workload(name)
    _, tm_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    return {
        "name": name,
        "import_s": t_import,
        "cold_s": cold,
        "warm_s": statistics.median(warm),
        "init_s": statistics.median(init),
        "trace_s": statistics.median(trace),
        "extract_s": statistics.median(extract),
        "peak_rss_mib": peak,
        "drss_mib": peak - rss0,
        "tracemalloc_mib": tm_peak / 2**20,
        "params": ref.param_count(),
        "layers": len(wl),
        "macs": wl.total_macs,
    }


def main(argv: list[str]) -> int:
    if argv[:1] == ["--one"]:
        print(json.dumps(measure_one(argv[1])))
        return 0
    sys.path.insert(0, str(ROOT))
    from models.reference import list_reference_models

    names = argv or list(list_reference_models())
    bad = [n for n in names if n not in list_reference_models()]
    if bad:
        print(f"unknown network(s) {bad}; valid: {', '.join(list_reference_models())}", file=sys.stderr)
        return 2
    env = dict(os.environ, JAX_PLATFORMS=os.environ.get("JAX_PLATFORMS", "cpu"))
    rows = []
    for n in names:
        out = subprocess.run(
            [sys.executable, __file__, "--one", n], capture_output=True, text=True, env=env, cwd=ROOT
        )
        if out.returncode != 0:
            print(out.stderr, file=sys.stderr)
            return 1
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))

    head = (
        f"{'network':<13}{'layers':>7}{'params':>17}{'fp32 GiB':>9}{'MACs':>22}"
        f"{'cold s':>8}{'warm s':>8}{'init s':>8}{'trace s':>8}{'extract s':>10}{'x trace':>8}"
        f"{'peak RSS MiB':>13}{'dRSS MiB':>9}{'tracemalloc MiB':>16}"
    )
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, imports (jax+flax+models) "
          f"{statistics.median(r['import_s'] for r in rows):.2f} s (not included)")
    print(head)
    print("-" * len(head))
    for r in rows:
        print(
            f"{r['name']:<13}{r['layers']:>7}{r['params']:>17,}{r['params'] * 4 / 2**30:>9.1f}"
            f"{r['macs']:>22,}{r['cold_s']:>8.2f}{r['warm_s']:>8.2f}{r['init_s']:>8.2f}"
            f"{r['trace_s']:>8.3f}{r['extract_s']:>10.3f}{r['extract_s'] / r['trace_s']:>8.2f}"
            f"{r['peak_rss_mib']:>13.0f}{r['drss_mib']:>9.1f}{r['tracemalloc_mib']:>16.1f}"
        )
    by = {r["name"]: r for r in rows}
    if "bert_base" in by and "gpt3_175b" in by:
        b, g = by["bert_base"], by["gpt3_175b"]
        print()
        print(
            f"gpt3_175b / bert_base: params x{g['params'] / b['params']:,.0f}, "
            f"peak RSS x{g['peak_rss_mib'] / b['peak_rss_mib']:.2f}, "
            f"tracemalloc peak x{g['tracemalloc_mib'] / b['tracemalloc_mib']:.2f}, "
            f"cold time x{g['cold_s'] / b['cold_s']:.2f}"
        )
    budgets = {"resnet50": 2.0, "gpt3_175b": 5.0}
    for n, limit in budgets.items():
        if n in by:
            verdict = "OK" if by[n]["cold_s"] < limit else "OVER BUDGET"
            print(f"{n}: cold extraction {by[n]['cold_s']:.2f} s (budget {limit:.0f} s): {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
