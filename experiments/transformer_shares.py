"""Where a transformer's energy goes, before and after pruning: one table from a sweep.

For the dense run and every finished point of a ``codesign sweep`` of a transformer
(e.g. the ``vit_mnist`` preset: ``vit_tiny`` with gates per attention head and per MLP
hidden unit), prints test accuracy, energy per inference, and the share of that energy
spent in

* the attention block: the Q, K, V and output projections plus the attention matmuls
  (layers named ``*.attn.*``), and within it the attention matmuls alone (QK^T and AV,
  category ``attention``);
* the MLP (``*.mlp.*``);
* the rest (patch embedding, classifier head);

and the heads and MLP units kept (from the run's ``kept_units``).  Command::

    python experiments/transformer_shares.py SWEEP_DIR

Reads ``report.json`` files only (no training, no cost-model call): the per-layer
energies are the exact (re-mapped) figures the runs reported.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ATTENTION_MATMULS = (".qk", ".av")


def shares(layers: list[dict]) -> dict[str, float]:
    """Energy shares of a report's ``layers`` list (name, energy_uj)."""
    total = sum(l["energy_uj"] for l in layers)
    attn = sum(l["energy_uj"] for l in layers if ".attn." in l["name"])
    core = sum(l["energy_uj"] for l in layers
               if ".attn." in l["name"] and l["name"].removesuffix("-pruned").endswith(ATTENTION_MATMULS))
    mlp = sum(l["energy_uj"] for l in layers if ".mlp." in l["name"])
    return {"attention block": attn / total, "QK/AV": core / total, "MLP": mlp / total,
            "rest": (total - attn - mlp) / total}


def kept(units: dict) -> tuple[str, str]:
    """``(heads kept/total, MLP units kept/total)`` summed over blocks."""
    def tot(pred):
        k = [v for p, v in units.items() if pred(p)]
        return f"{sum(a for a, _ in k)}/{sum(b for _, b in k)}" if k else "-"
    return tot(lambda p: "attn" in p or "head" in p), tot(lambda p: "mlp" in p)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("sweep", type=Path, help="a codesign sweep directory")
    args = p.parse_args(argv)
    rows = []
    points = sorted((args.sweep / "points").glob("*/report.json"))
    if not points:
        raise SystemExit(f"{args.sweep}: no finished point (points/*/report.json)")
    first = json.loads(points[0].read_text())
    d = first["dense"]
    rows.append(("dense", d["test_accuracy"], d["energy_per_inference_uj"], shares(d["layers"]),
                 ("all", "all")))
    for rp in points:
        r = json.loads(rp.read_text())
        rows.append((rp.parent.name, r["test_accuracy"], r["energy_per_inference_uj"],
                     shares(r["hw"]["layers"]), kept(r["hw"]["kept_units"])))
    e0 = rows[0][2]
    print("| run | test accuracy | energy (uJ) | vs dense | attention block | of which QK/AV | MLP | "
          "rest | heads kept | MLP units kept |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, acc, e, sh, (h, m) in rows:
        print(f"| {name} | {100 * acc:.2f}% | {e:.4g} | {e0 / e:.2f}x | {100 * sh['attention block']:.1f}% | "
              f"{100 * sh['QK/AV']:.1f}% | {100 * sh['MLP']:.1f}% | {100 * sh['rest']:.1f}% | {h} | {m} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
