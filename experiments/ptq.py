"""Post-training quantization of a finished run: test accuracy and energy at other widths.

Loads a run's model (``codesign train`` work directory; a gated run is pruned first, as
``codesign cost --run`` does), rounds every conv / dense kernel and input to each width
given (:func:`models.quantize`, no fine-tuning: the baseline that quantization-aware
training, ``--weight-bits`` / ``--act-bits``, has to beat), and prints, per width, the
test accuracy on the run's dataset and the energy per inference charged at that width
(re-mapped on the run's ``hw_arch`` / ``hw_dataflow`` at ``hw_batch``), with its
reduction against the float network of the same run.

A run trained quantized (``--weight-bits`` / ``--act-bits``) is not rounded again: without
``--bits`` the script prints its one row, the model as deployed (pruned if gated, at its
trained widths), which is how the README checks a quantization-aware run's figures.
A kept result directory without checkpoints (``experiments/results/...``: the run's
``config.json``) is evaluated from its ``pruned/`` model (:func:`codesign.prune.save_pruned`)
when it has one.

Usage::

    python experiments/ptq.py RUN [--bits 8,6,4] [--data-dir DIR]

Example (the CIFAR-10 dense run, data in DIR): ``python experiments/ptq.py
experiments/results/cifar10_resnet20 --data-dir DIR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def _widths(text: str) -> list[int]:
    try:
        bits = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bits: expected comma-separated ints, e.g. 8,6,4; "
                                         f"got {text!r}") from None
    if not bits:
        raise argparse.ArgumentTypeError("--bits: give at least one width")
    return bits


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", help="a codesign train work directory (config.json + checkpoints), "
                                "or a kept result (config.json + pruned/)")
    ap.add_argument("--bits", type=_widths, default=None,
                    help="weight = input widths to try (default 8,6,4; none for a run "
                         "trained quantized)")
    ap.add_argument("--data-dir", default=None,
                    help="dataset directory (default: the run's data_dir, else the default)")
    args = ap.parse_args(argv)

    import jax.numpy as jnp

    import models
    from codesign._run import RunError, load_run_model
    from codesign.config import Config
    from codesign.data import load_dataset, normalize
    from codesign.objective import HardwareObjective
    from codesign.train import eval_step

    run = Path(args.run)
    try:
        config = Config.from_json((run / "config.json").read_text(encoding="utf-8"),
                                  where=str(run / "config.json"))
    except (OSError, ValueError) as e:
        print(f"ptq: {run}: not a codesign train run ({' '.join(str(e).split())})",
              file=sys.stderr)
        return 2
    trained = (f"{config.weight_bits or 32}/{config.act_bits or 32}"
               if config.weight_bits or config.act_bits else None)
    if trained and args.bits:
        print(f"ptq: {run} was trained quantized ({trained} bits): --bits rounds a float "
              "run; leave it out to evaluate this run as deployed", file=sys.stderr)
        return 2
    widths = [] if trained else (args.bits or [8, 6, 4])
    splits = load_dataset(config.dataset, data_dir=args.data_dir or config.data_dir,
                          download=False, **config.dataset_kwargs)
    train, test = splits["train"], splits["test"]
    mean, std = tuple(train.mean), tuple(train.std)

    def accuracy(model) -> float:
        correct = count = 0.0
        for i in range(0, len(test), config.eval_batch_size):
            x = normalize(jnp.asarray(test.images[i:i + config.eval_batch_size]), mean, std)
            r = eval_step(model, x, jnp.asarray(test.labels[i:i + config.eval_batch_size],
                                                jnp.int32))
            correct += float(r["correct"])
            count += float(r["count"])
        return correct / count

    def energy_uj(model, shape) -> float:
        obj = HardwareObjective(model, shape, arch=config.hw_arch, dataflow=config.hw_dataflow,
                                batch=config.hw_batch)
        return float(obj.exact_cost(model).energy_per_inference_pj) * 1e-6

    from codesign.prune import is_pruned_dir
    source = (run / "pruned" if not (run / "checkpoints").is_dir() and is_pruned_dir(run / "pruned")
              else run)
    rows = []
    for bits in [0, *widths]:
        try:
            net = load_run_model(source)
        except RunError as e:
            print(f"ptq: {e}", file=sys.stderr)
            return 2
        if bits:
            try:
                models.quantize(net.model, weight_bits=bits, act_bits=bits)
            except ValueError as e:
                print(f"ptq: --bits {bits}: {' '.join(str(e).split())}", file=sys.stderr)
                return 2
        rows.append({"bits": bits or (f"{trained} trained" if trained else "float"),
                     "test_accuracy": accuracy(net.model),
                     "energy_per_inference_uj": energy_uj(net.model, net.input_shape)})
    base = rows[0]
    print(f"{net.what}; {config.hw_arch} {config.hw_dataflow} batch {config.hw_batch}")
    vs = "vs row 1" if trained else "vs float"
    print(f"{'bits (W = I)':>12} {'accuracy':>9} {vs:>9} {'energy uJ':>10} {'x less':>7}")
    for r in rows:
        r["energy_reduction"] = base["energy_per_inference_uj"] / r["energy_per_inference_uj"]
        print(f"{r['bits']!s:>12} {100 * r['test_accuracy']:8.2f}% "
              f"{100 * (r['test_accuracy'] - base['test_accuracy']):+8.2f} "
              f"{r['energy_per_inference_uj']:10.2f} {r['energy_reduction']:6.2f}x")
    print(json.dumps(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
