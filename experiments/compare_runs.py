"""Side by side, per layer: what two pruned runs kept and what each layer costs.

Reads the ``report.json`` of gated runs (``codesign train --method gates|flops-gates``) and
prints, for each run, test accuracy, energy / MACs / DRAM bytes per inference and their
ratios against the dense model, then a per-layer table: kept fraction of output and
input channels, MACs and energy per inference of each layer in each run. This is how
the README explains why energy-aware gates beat FLOPs-aware ones: they prune where the
energy is (DRAM-bound FC weights), not where the MACs are.

Usage::

    python experiments/compare_runs.py RUN_A RUN_B [RUN_C ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if len(argv) < 1:
        print(__doc__)
        return 2
    reps = []
    for d in argv:
        p = Path(d) / "report.json"
        if not p.is_file():
            print(f"compare_runs: {d} has no report.json", file=sys.stderr)
            return 2
        r = json.loads(p.read_text(encoding="utf-8"))
        if "hw" not in r or "dense" not in r:
            print(f"compare_runs: {d} is not a gated run (no hw / dense entries)", file=sys.stderr)
            return 2
        reps.append((Path(d).name, r))
    dense = reps[0][1]["dense"]
    print(f"{'run':<28} {'method':<12} {'accuracy':>8} {'energy uJ':>10} {'x less':>7} "
          f"{'MACs':>10} {'x less':>7} {'DRAM kB':>9}")
    acc = dense.get("test_accuracy")
    print(f"{'dense':<28} {'-':<12} {'n/a' if acc is None else f'{100 * acc:.2f}%':>8} "
          f"{dense['energy_per_inference_uj']:>10.3f} {'1.0x':>7} {dense['macs_per_inference']:>10,.0f} "
          f"{'1.0x':>7} {dense['dram_bytes_per_inference'] / 1e3:>9.1f}")
    for name, r in reps:
        hw = r["hw"]
        print(f"{name:<28} {r['method']:<12} {100 * r['test_accuracy']:>7.2f}% "
              f"{hw['energy_per_inference_uj']:>10.3f} "
              f"{dense['energy_per_inference_uj'] / hw['energy_per_inference_uj']:>6.1f}x "
              f"{hw['macs_per_inference']:>10,.0f} "
              f"{dense['macs_per_inference'] / hw['macs_per_inference']:>6.1f}x "
              f"{hw['dram_bytes_per_inference'] / 1e3:>9.1f}")
    print()
    head = f"{'layer':<18} {'dense uJ':>9}"
    for name, _ in reps:
        head += f" | {name[:22]:>22}: {'out':>5} {'in':>5} {'MACs':>9} {'uJ':>8}"
    print(head)
    for l in dense["layers"]:
        row = f"{l['name']:<18} {l['energy_uj']:>9.3f}"
        for _, r in reps:
            k = r["hw"]["layer_keep"].get(l["name"], {})
            pl = {x["name"].removesuffix("-pruned"): x for x in r["hw"]["layers"]}.get(l["name"], {})
            row += (f" | {'':>22}  {k.get('keep_out', 1):>5.2f} {k.get('keep_in', 1):>5.2f} "
                    f"{pl.get('macs', 0):>9,} {pl.get('energy_uj', 0):>8.3f}")
        print(row)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
