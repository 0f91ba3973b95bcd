"""Peer check: ``hwmodel.cost`` against ZigZag on LeNet-5 and AlexNet conv layers.

Both tools see the same hardware: ZigZag runs on its own ``eyeriss_like.yaml``
(shipped inside the ``zigzag-dse`` package: 14 x 12 PEs, 0.5 pJ MAC, per-PE register
files, three SRAMs, DRAM, energies in pJ per port access); our model runs on the
:class:`hwmodel.Architecture` that :func:`hwmodel.architecture_from_zigzag` reads from
that same file (energies converted per word, see ``benchmarks/ZIGZAG.md``).  The
layers are exported with :func:`hwmodel.export_zigzag` (workload + mapping YAML), so
ZigZag evaluates exactly our loop bounds.

Printed per layer: MACs from both (must be equal), energy and latency (cycles) from
both with ratios, the energy per memory level, and network totals; then the wall time
of each tool on the same network and the speed ratio.

Run (needs a Python with both ``zigzag-dse`` and this project's deps: a virtualenv
made with ``python3 -m venv .venv-zz && .venv-zz/bin/pip install ".[zigzag,test]"``,
as in benchmarks/ZIGZAG.md)::

    .venv-zz/bin/python benchmarks/zigzag_compare.py            # both networks
    .venv-zz/bin/python benchmarks/zigzag_compare.py --nets lenet5 --json out.json

Options: ``--dataflow rs|ws|os|is``, ``--zigzag-hw original|exported`` (ZigZag on
its YAML, or on our export of the mirrored architecture: the round trip),
``--lpf-limit N`` (ZigZag's LOMA search size), ``--source auto|models|builtin``
(layer shapes from ``models.model_workload`` or the built-in tables below).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import hwmodel  # noqa: E402
from hwmodel import LayerSpec, Workload  # noqa: E402

L = LayerSpec


def builtin_workloads() -> dict[str, Workload]:
    """Conv layers of LeNet-5 and AlexNet (batch 1), written out by hand.

    LeNet-5 (LeCun et al. 1998; 28 x 28 MNIST input padded to 32 x 32): conv1 1->6
    5x5, conv2 6->16 5x5 on 14 x 14, conv3 (C5) 16->120 5x5 on 5 x 5.  AlexNet (Krizhevsky et al. 2012, the two-tower
    network of the Eyeriss paper: conv2/4/5 grouped in 2): 666 M MACs.
    """
    lenet = Workload(
        (
            L("conv1", "conv", C=1, M=6, R=5, S=5, P=28, Q=28, H=28, W=28),
            L("conv2", "conv", C=6, M=16, R=5, S=5, P=10, Q=10, H=14, W=14),
            L("conv3", "conv", C=16, M=120, R=5, S=5, P=1, Q=1, H=5, W=5),
        ),
        name="lenet5",
        batch=1,
    )
    alexnet = Workload(
        (
            L("conv1", "conv", C=3, M=96, R=11, S=11, P=55, Q=55, stride=(4, 4), H=227, W=227),
            L("conv2", "conv", G=2, C=48, M=128, R=5, S=5, P=27, Q=27, H=27, W=27),
            L("conv3", "conv", C=256, M=384, R=3, S=3, P=13, Q=13, H=13, W=13),
            L("conv4", "conv", G=2, C=192, M=192, R=3, S=3, P=13, Q=13, H=13, W=13),
            L("conv5", "conv", G=2, C=192, M=128, R=3, S=3, P=13, Q=13, H=13, W=13),
        ),
        name="alexnet",
        batch=1,
    )
    return {"lenet5": lenet, "alexnet": alexnet}


def with_bits(wl: Workload, arch) -> Workload:
    """The workload with every layer's operand widths set to the architecture's words
    (the precisions ZigZag is given: ``precision="arch"``), so both tools move the same
    bits (a traced float32 model would otherwise say 32 bits)."""
    import dataclasses  # noqa: PLC0415

    w, i, o = (int(b) for b in arch.word_bits)
    layers = tuple(dataclasses.replace(layer, w_bits=w, i_bits=i, o_bits=o) for layer in wl.layers)
    return dataclasses.replace(wl, layers=layers)


def get_workload(name: str, source: str) -> tuple[Workload, str]:
    """The conv layers of network ``name`` and where they came from."""
    if source in ("auto", "models"):
        try:
            import models  # noqa: PLC0415

            if hasattr(models, "model_workload"):
                model_workload = models.model_workload
            else:  # the re-export is not on every branch yet (API.md: models.model_workload)
                from models._workload import model_workload  # noqa: PLC0415
            wl = model_workload(name, batch=1)
            convs = tuple(layer for layer in wl.layers if layer.kind == "conv")
            if not convs:
                raise ValueError(f"models.model_workload({name!r}) has no conv layers")
            return Workload(convs, name=name, batch=1), "models.model_workload (traced)"
        except (ImportError, AttributeError, ValueError, KeyError) as e:
            if source == "models":
                raise SystemExit(f"--source models: cannot trace {name!r}: {e}")
            why = f"{type(e).__name__}: {e}"
    else:
        why = "--source builtin"
    return builtin_workloads()[name], f"built-in table ({why})"


# --------------------------------------------------------------------------------------
# ZigZag side
# --------------------------------------------------------------------------------------
def zigzag_hw_path() -> str:
    import zigzag  # noqa: PLC0415

    return os.path.join(os.path.dirname(zigzag.__file__), "inputs", "hardware", "eyeriss_like.yaml")


def zigzag_hw_for_dataflow(hw: str, dataflow: str, out: Path) -> str:
    """ZigZag's own YAML with the per-PE memories of operands the dataflow does not keep
    in the PE removed (as :func:`hwmodel.zigzag_accelerator` does for our
    architectures); returns the path of the file to give ZigZag."""
    import yaml  # noqa: PLC0415

    keep = {"W": "I2", "I": "I1", "O": "O"}
    pe_ops = {keep[o] for o in hwmodel.ZIGZAG_DATAFLOWS[dataflow].pe_keep}
    data = yaml.safe_load(Path(hw).read_text())
    mems = {}
    for name, m in data["memories"].items():
        if m["served_dimensions"] == []:
            ops = [o for o in m["operands"] if o in pe_ops]
            if not ops:
                continue
            if ops != m["operands"]:
                raise SystemExit(f"{hw}: per-PE memory {name} shared by {m['operands']}: cannot drop part")
        mems[name] = m
    data["memories"] = mems
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(out)


def run_zigzag(wl: Workload, arch, hw: str, dataflow: str, lpf_limit: int, tmp: Path, *,
               mix: bool = True, same_data_free: bool = True, spatial=None,
               pin_temporal: bool = False) -> dict:
    """Run ZigZag on the exported workload; returns per-layer rows and the wall time (s).

    The stage pipeline is ``zigzag.api.get_hardware_performance_zigzag``'s, minus the
    result-saving stages, with mixed spatial mappings (several loops on one array
    dimension, as our dataflows allow) switched on *without* the inter-layer
    data-locality stages that the API couples to that switch (each layer starts and
    ends in DRAM, as in our model).
    """
    from zigzag.mapping.temporal_mapping import TemporalMappingType  # noqa: PLC0415
    from zigzag.stages.evaluation.cost_model_evaluation import CostModelStage  # noqa: PLC0415
    from zigzag.stages.main import MainStage  # noqa: PLC0415
    from zigzag.stages.mapping.spatial_mapping_generation import (  # noqa: PLC0415
        SpatialMappingGeneratorStage,
    )
    from zigzag.stages.mapping.temporal_mapping_generator_stage import (  # noqa: PLC0415
        TemporalMappingGeneratorStage,
    )
    from zigzag.stages.parser.accelerator_parser import AcceleratorParserStage  # noqa: PLC0415
    from zigzag.stages.parser.workload_parser import WorkloadParserStage  # noqa: PLC0415
    from zigzag.stages.results.reduce_stages import MinimalEnergyStage, SumStage  # noqa: PLC0415
    from zigzag.stages.workload_iterator import WorkloadStage  # noqa: PLC0415

    files = hwmodel.export_zigzag(wl, arch, tmp / "in", dataflow=dataflow, spatial=spatial,
                                  pin_temporal=pin_temporal)
    accel = (str(files.accelerator) if hw == "exported"
             else zigzag_hw_for_dataflow(hw, dataflow, tmp / "in" / "zigzag_hw.yaml"))
    stages = [WorkloadParserStage, AcceleratorParserStage, SumStage, WorkloadStage,
              MinimalEnergyStage, SpatialMappingGeneratorStage, MinimalEnergyStage,
              TemporalMappingGeneratorStage, CostModelStage]
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            cmes = MainStage(
                list_of_callables=stages, accelerator=accel, workload=str(files.workload),
                mapping=str(files.mapping), dump_folder=str(tmp / "dump"),
                loma_lpf_limit=lpf_limit, loma_show_progress_bar=False, nb_mappings_generated=3,
                enable_mix_spatial_mapping_generation=mix,
                access_same_data_considered_as_no_access=same_data_free,
                temporal_mapping_type=TemporalMappingType("uneven"),
            ).run()
    finally:
        logging.disable(logging.NOTSET)
    wall = time.perf_counter() - t0
    rows = {}
    for cme, _ in cmes[0][1]:
        by_mem: dict[str, float] = {}
        acc_words: dict[str, dict[str, int]] = {}
        for layer_op, energies in cme.mem_energy_breakdown.items():
            mem_op = cme.layer.memory_operand_links.layer_to_mem_op(layer_op)
            levels = cme.accelerator.memory_hierarchy.get_memory_levels(mem_op)
            for lvl, e in zip(levels, energies):
                by_mem[lvl.name] = by_mem.get(lvl.name, 0.0) + float(e)
            for lvl, acc in zip(levels, cme.memory_word_access[layer_op]):
                acc_words.setdefault(lvl.name, {})[str(layer_op)] = str(acc)
        sm = cme.spatial_mapping_int.mapping_dict_origin
        first = next(iter(sm))
        spatial = " ".join(f"{d}{int(f)}" for lvl in sm[first] for d, f in lvl if f > 1)
        rows[cme.layer.name] = {
            "macs": int(cme.layer.total_mac_count),
            "energy_pj": float(cme.energy_total),
            "mac_energy_pj": float(cme.mac_energy),
            "cycles": float(cme.latency_total2),
            "ideal_cycles": float(cme.ideal_cycle),
            "compute_cycles": float(cme.ideal_temporal_cycle),
            "energy_by_memory_pj": by_mem,
            "accesses": acc_words,
            "spatial": spatial,
            "temporal": str(cme.temporal_mapping),
        }
    return {"rows": rows, "wall_s": wall}


def our_level_of(mem_name: str, arch) -> str:
    """Our level holding a ZigZag memory (the importer merges the per-PE RFs into one
    level, and consecutive single-operand SRAMs into one ``"a+b"`` level)."""
    for lvl in arch.levels:
        if mem_name == lvl.name or mem_name in lvl.name.split("+"):
            return lvl.name
    rf = [lvl.name for lvl in arch.levels if lvl.per_pe]
    if rf:
        return rf[0]
    raise KeyError(f"ZigZag memory {mem_name!r} has no level in {arch.level_names}")


# --------------------------------------------------------------------------------------
# our side (hwmodel.cost, branch `cost`)
# --------------------------------------------------------------------------------------
def _block(x):
    import jax  # noqa: PLC0415

    return jax.block_until_ready(x)


def run_ours(wl: Workload, arch, dataflow: str) -> dict | None:
    """Our cost model on the same layers: per-layer rows and timings; None if missing."""
    missing = [n for n in ("cost", "map_workload") if not hasattr(hwmodel, n)]
    if missing:
        return {"missing": missing}
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    t0 = time.perf_counter()
    mappings = hwmodel.map_workload(wl, arch, dataflow=dataflow, objective="energy")
    t_map = time.perf_counter() - t0

    def f(a):
        return hwmodel.cost(wl, a, dataflow=dataflow, mappings=mappings)

    jf = jax.jit(f)
    t0 = time.perf_counter()
    c = _block(jf(arch))
    t_compile = time.perf_counter() - t0
    n, t0 = 20, time.perf_counter()
    for _ in range(n):
        c = _block(jf(arch))
    t_eval = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    _block(hwmodel.cost(wl, arch, dataflow=dataflow, mappings=mappings))  # no jit
    t_e2e = t_map + (time.perf_counter() - t0)

    def per_layer(x):
        a = np.asarray(x, dtype=np.float64)
        if a.shape != (len(wl),):
            raise ValueError(f"expected a per-layer array of shape [{len(wl)}], got {a.shape}")
        return a

    layer = getattr(c, "layers", c)  # per-layer view of Cost (see API.md)
    macs = per_layer(layer.macs_dense)
    energy = per_layer(layer.energy_pj)
    cycles = per_layer(layer.cycles)
    breakdown = {k: per_layer(v) for k, v in dict(layer.energy_breakdown_pj).items()}
    rows = {}
    for i, spec in enumerate(wl.layers):
        rows[spec.name] = {
            "macs": int(round(macs[i])),
            "energy_pj": float(energy[i]),
            "cycles": float(cycles[i]),
            "energy_by_level_pj": {k: float(v[i]) for k, v in breakdown.items()},
            "mapping": str(mappings[i]),
            "spatial": " ".join(
                [f"{hwmodel.ZIGZAG_DIMS[d]}{f}" for d, f in zip(hwmodel.DIMS, mappings[i].spatial_y) if f > 1]
                + [f"{hwmodel.ZIGZAG_DIMS[d]}{f}" for d, f in zip(hwmodel.DIMS, mappings[i].spatial_x) if f > 1]
            ),
        }
    return {
        "rows": rows,
        "mappings": {spec.name: m for spec, m in zip(wl.layers, mappings)},
        "map_s": t_map,
        "compile_s": t_compile,
        "eval_s": t_eval,
        "cost_e2e_s": t_e2e,
    }


# --------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------
def _ratio(a: float, b: float) -> str:
    return f"{a / b:6.3f}" if b else "   n/a"


def report(name: str, source: str, wl: Workload, arch, zz: dict, ours: dict | None, hw: str) -> dict:
    print(f"\n=== {name}: {len(wl)} conv layers, {wl.total_macs:,} MACs  [{source}]")
    print(f"    ZigZag hardware: {hw}   (ZigZag wall time {zz['wall_s']:.2f} s)")
    have_ours = ours is not None and "rows" in ours
    hdr = f"{'layer':<8}{'MACs zz':>13}{'MACs ours':>13}{'eq':>4}"
    hdr += f"{'E zz (nJ)':>12}{'E ours (nJ)':>13}{'ours/zz':>8}"
    hdr += f"{'cyc zz':>11}{'cyc ours':>11}{'ours/zz':>8}  zz spatial"
    print(hdr)
    tot = {"macs_zz": 0, "macs_ours": 0, "e_zz": 0.0, "e_ours": 0.0, "c_zz": 0.0, "c_ours": 0.0}
    all_equal = True
    for spec in wl.layers:
        z = zz["rows"][spec.name]
        o = ours["rows"][spec.name] if have_ours else None
        eq = (o["macs"] == z["macs"] == spec.macs) if o else (z["macs"] == spec.macs)
        all_equal &= eq
        tot["macs_zz"] += z["macs"]
        tot["e_zz"] += z["energy_pj"]
        tot["c_zz"] += z["cycles"]
        line = f"{spec.name:<8}{z['macs']:>13,}"
        if o:
            tot["macs_ours"] += o["macs"]
            tot["e_ours"] += o["energy_pj"]
            tot["c_ours"] += o["cycles"]
            line += f"{o['macs']:>13,}{'yes' if eq else 'NO':>4}"
            line += f"{z['energy_pj'] / 1e3:>12.1f}{o['energy_pj'] / 1e3:>13.1f}{_ratio(o['energy_pj'], z['energy_pj']):>8}"
            line += f"{z['cycles']:>11.0f}{o['cycles']:>11.0f}{_ratio(o['cycles'], z['cycles']):>8}"
        else:
            line += f"{'-':>13}{'yes' if eq else 'NO':>4}{z['energy_pj'] / 1e3:>12.1f}{'-':>13}{'-':>8}"
            line += f"{z['cycles']:>11.0f}{'-':>11}{'-':>8}"
        print(line + f"  {z['spatial']}" + (f" | ours {o['spatial']}" if o else ""))
    line = f"{'total':<8}{tot['macs_zz']:>13,}"
    if have_ours:
        line += f"{tot['macs_ours']:>13,}{'yes' if all_equal else 'NO':>4}"
        line += f"{tot['e_zz'] / 1e3:>12.1f}{tot['e_ours'] / 1e3:>13.1f}{_ratio(tot['e_ours'], tot['e_zz']):>8}"
        line += f"{tot['c_zz']:>11.0f}{tot['c_ours']:>11.0f}{_ratio(tot['c_ours'], tot['c_zz']):>8}"
    else:
        line += f"{'-':>13}{'yes' if all_equal else 'NO':>4}{tot['e_zz'] / 1e3:>12.1f}"
    print(line)

    # energy per memory level (ZigZag memories folded onto our levels)
    levels = list(arch.level_names)
    wid = {n: max(12, len(n) + 2) for n in levels + ["MAC"]}
    print(f"\n  energy by level, network total (nJ):  " + "".join(f"{n:>{wid[n]}}" for n in levels + ["MAC"]))
    zl = {n: 0.0 for n in levels}
    zmac = 0.0
    for z in zz["rows"].values():
        zmac += z["mac_energy_pj"]
        for mem, e in z["energy_by_memory_pj"].items():
            zl[our_level_of(mem, arch)] += e
    print(f"  {'ZigZag':<38}" + "".join(f"{zl[n] / 1e3:>{wid[n]}.1f}" for n in levels)
          + f"{zmac / 1e3:>{wid['MAC']}.1f}")
    if have_ours:
        ol: dict[str, float] = {}
        for o in ours["rows"].values():
            for k, v in o["energy_by_level_pj"].items():
                ol[k] = ol.get(k, 0.0) + v
        print(f"  {'ours':<38}" + "".join(f"{ol.get(n, math.nan) / 1e3:>{wid[n]}.1f}" for n in levels)
              + f"{ol.get('MAC', math.nan) / 1e3:>{wid['MAC']}.1f}")
        extra = sorted(set(ol) - set(levels) - {"MAC"})
        if extra:
            print("  ours, other components (nJ): " + ", ".join(f"{k} {ol[k] / 1e3:.1f}" for k in extra))

    # timing
    print(f"\n  time on {name}: ZigZag {zz['wall_s']:.2f} s (parse + mapping search, if any + evaluation)")
    if have_ours and "pinned mapping" in name:
        eval_nojit = ours["cost_e2e_s"] - ours["map_s"]
        print(f"  same fixed mappings, evaluation only: ZigZag {zz['wall_s']:.3f} s; ours jitted "
              f"{ours['eval_s'] * 1e3:.3f} ms ({zz['wall_s'] / ours['eval_s']:.0f}x), ours without "
              f"jit {eval_nojit:.3f} s ({zz['wall_s'] / eval_nojit:.2f}x)")
    elif have_ours:
        print(f"  ours: map_workload {ours['map_s']:.3f} s, cost jit compile {ours['compile_s']:.3f} s, "
              f"cost eval {ours['eval_s'] * 1e3:.3f} ms, end-to-end (map + one eval, no jit) "
              f"{ours['cost_e2e_s']:.3f} s")
        jit_e2e = ours["map_s"] + ours["eval_s"]
        print(f"  speed ratio ZigZag / ours: {zz['wall_s'] / ours['cost_e2e_s']:.1f}x vs map + eval "
              f"(no jit); {zz['wall_s'] / jit_e2e:.0f}x vs map + jitted eval (compile excluded); "
              f"{zz['wall_s'] / ours['eval_s']:.0f}x vs jitted eval alone (mappings fixed)")
    elif ours is not None:
        print(f"  ours: not available on this branch (hwmodel lacks {ours['missing']}); "
              "ZigZag-side numbers only")
    return {"network": name, "source": source, "totals": tot, "all_macs_equal": all_equal,
            "zigzag": zz, "ours": ours}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nets", nargs="+", default=["lenet5", "alexnet"], choices=["lenet5", "alexnet"])
    ap.add_argument("--dataflow", default="rs", choices=sorted(hwmodel.ZIGZAG_DATAFLOWS))
    ap.add_argument("--zigzag-hw", default="original", choices=["original", "exported"])
    ap.add_argument("--lpf-limit", type=int, default=6)
    ap.add_argument("--no-mix", action="store_true",
                    help="ZigZag: one loop per array dimension (no mixed spatial mappings)")
    ap.add_argument("--charge-stationary-reads", action="store_true",
                    help="ZigZag: access_same_data_considered_as_no_access=False (charge an "
                    "innermost-memory read per MAC even when the word did not change)")
    ap.add_argument("--source", default="auto", choices=["auto", "models", "builtin"])
    ap.add_argument("--clock-hz", type=float, default=200e6)
    ap.add_argument("--pin-spatial", action="store_true",
                    help="also run ZigZag with our mapper's spatial unrolling fixed per layer")
    ap.add_argument("--pin-mapping", action="store_true",
                    help="also run ZigZag with our mapper's whole loop nest (spatial unrolling and "
                    "temporal loop order) fixed per layer: the same mapping in both cost models")
    ap.add_argument("--json", type=Path, default=None, help="also write all numbers here")
    args = ap.parse_args(argv)
    try:
        hw = zigzag_hw_path()
    except ImportError:
        print("zigzag-dse is not importable from this Python; install it (pip install zigzag-dse)",
              file=sys.stderr)
        return 2
    arch = hwmodel.architecture_from_zigzag(hw, word_bits=(8, 8, 16), clock_hz=args.clock_hz)
    print(f"architecture: {arch.name} mirrored from {hw}")
    for lvl in arch.levels:
        print(f"  {lvl.name:<10} {lvl.kind:<5} holds {''.join(lvl.holds):<4} per_pe={lvl.per_pe!s:<5} "
              f"cap_bits={[float(x) for x in lvl.capacity_bits]} pool={float(lvl.shared_bits)} "
              f"rd_pJ/word={[round(float(x), 4) for x in lvl.read_energy_pj]} "
              f"wr_pJ/word={[round(float(x), 4) for x in lvl.write_energy_pj]} "
              f"bw_words={float(lvl.bandwidth_words)}")
    print(f"  PEs {int(arch.pe_rows)} x {int(arch.pe_cols)}, MAC {float(arch.mac_energy_pj)} pJ, "
          f"word bits W/I/O {[int(b) for b in arch.word_bits]}, dataflow {args.dataflow}, "
          f"ZigZag lpf_limit {args.lpf_limit}, mixed spatial {not args.no_mix}, "
          f"access_same_data_considered_as_no_access {not args.charge_stationary_reads}")
    results = []
    with tempfile.TemporaryDirectory(prefix="zigzag_compare_") as tmp:
        for net in args.nets:
            wl, source = get_workload(net, args.source)
            wl = with_bits(wl, arch)
            zz = run_zigzag(wl, arch, hw if args.zigzag_hw == "original" else "exported",
                            args.dataflow, args.lpf_limit, Path(tmp) / net, mix=not args.no_mix,
                            same_data_free=not args.charge_stationary_reads)
            ours = run_ours(wl, arch, args.dataflow)
            hw_label = ("eyeriss_like.yaml" if args.zigzag_hw == "original"
                        else "exported mirror (round trip)")
            results.append(report(net, source, wl, arch, zz, ours, hw_label))
            for flag, pin_t, label in ((args.pin_spatial, False, "spatial"),
                                        (args.pin_mapping, True, "mapping")):
                if not (flag and ours is not None and "mappings" in ours):
                    continue
                zzp = run_zigzag(wl, arch, hw if args.zigzag_hw == "original" else "exported",
                                 args.dataflow, args.lpf_limit, Path(tmp) / f"{net}_pinned_{label}",
                                 mix=not args.no_mix, same_data_free=not args.charge_stationary_reads,
                                 spatial=ours["mappings"], pin_temporal=pin_t)
                what = ("spatial unrolling pinned (its temporal search only)" if not pin_t else
                        "whole loop nest pinned (spatial + temporal order; ZigZag still assigns "
                        "loops to its memories greedily)")
                print(f"\n--- ZigZag with OUR {what}:")
                results.append(report(f"{net} (pinned {label})", source, wl, arch, zzp, ours,
                                      f"{hw_label}, {label} pinned to ours"))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    bad = [r["network"] for r in results if not r["all_macs_equal"]]
    if bad:
        print(f"\nMAC counts differ on {bad}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
