"""Sweeps: a grid of pruning methods x settings from one dense run, and its Pareto front.

A sweep spec (a JSON file, or a named preset in :data:`SWEEP_PRESETS`)::

    {
      "name": "mnist_cnn",
      "dense": {"preset": "mnist", "overrides": {}},      # the dense run to train, or
      # "dense": {"run": "path/to/finished/run"},         # an existing dense run
      "base": {"epochs": 3, "learning_rate": 0.01},       # applied to every point
      "points": [                                          # explicit points, and/or
        {"method": "gates", "energy_weight": 0.5}
      ],
      "grid": {"method": ["gates", "flops-gates"],       # a grid (cartesian product)
               "energy_weight": [0.2, 0.5, 1.0]}
    }

Every point fine-tunes from the dense run (``init_from``) with the dense run's config,
then ``base``, then the point's fields. The sweep directory holds ``sweep.json`` (the
resolved points), ``dense/`` (when trained here), one independent run directory per
point (``points/NNN-<method>-<setting>/``: a cluster scheduler can run points in
parallel with ``--point K``), ``pareto.csv`` (method, setting, test accuracy, energy,
latency, EDP, MACs, DRAM bytes, weights, per point plus the dense row) and
``pareto.png`` (energy per inference vs test accuracy, one series per method, each
method's Pareto front drawn, dense marked). A sweep is resumable point by point: a
finished point (its ``report.json`` exists) is never redone, an interrupted one resumes
from its last checkpoint. Re-plotting (``--plot-only``) needs no training.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import itertools
import json
from pathlib import Path
from typing import Any

from codesign._config import Config, ConfigError, get_preset
from codesign._report import atomic_write_bytes, atomic_write_text, nondominated

__all__ = ["SWEEP_PRESETS", "SweepPoint", "load_spec", "plot_pareto", "run_sweep", "sweep_rows",
           "summary_table"]

CSV_COLUMNS = ("point", "method", "setting", "test_accuracy", "energy_per_inference_uj",
               "latency_per_inference_ms", "edp_uj_ms", "macs_per_inference",
               "dram_bytes_per_inference", "weights", "workdir")

_FINE_TUNE_MNIST = {"epochs": 30, "learning_rate": 0.02, "warmup_epochs": 0.0, "gate_lr": 0.01,
                    "budget_ramp_epochs": 6.0, "gate_freeze_epochs": 20, "distill_weight": 0.5}

SWEEP_PRESETS: dict[str, dict[str, Any]] = {
    # The README's first command: dense and energy-aware on the embedded MNIST subset.
    "quickstart": {
        "name": "quickstart",
        "dense": {"preset": "quickstart"},
        "base": {"epochs": 4, "learning_rate": 1e-3, "warmup_epochs": 0.0, "gate_lr": 0.1,
                 "schedule": "cosine"},
        "points": [{"method": "gates", "energy_weight": 2.0}],
    },
    # The MNIST fronts from the committed dense runs (mnist_cnn 99.31%, lenet5 99.10%):
    # energy-aware gates at energy budgets against FLOPs gates at MAC budgets (run from
    # the repo root). The recipe of the README's results: the budget reached gradually
    # over 6 epochs, the gates frozen for the last 20 (weights only), distillation from
    # the dense model.
    "mnist_cnn": {
        "name": "mnist_cnn",
        "dense": {"run": "experiments/results/mnist_dense"},
        "base": _FINE_TUNE_MNIST,
        "points": [{"method": "gates", "energy_budget": b} for b in (0.02, 0.033, 0.1)]
        + [{"method": "flops-gates", "energy_budget": b} for b in (0.033, 0.1, 0.3)],
    },
    "lenet5": {
        "name": "lenet5",
        "dense": {"run": "experiments/results/lenet5_dense"},
        "base": _FINE_TUNE_MNIST,
        "points": [{"method": "gates", "energy_budget": b} for b in (0.2, 0.3, 0.45)]
        + [{"method": "flops-gates", "energy_budget": b} for b in (0.2, 0.35, 0.5)],
    },
    # CIFAR-10 resnet20 from the committed dense run (cifar10 preset): half-epoch
    # "epochs" (195 steps); 32 of them = 16 passes over the data: ramp over the first 8,
    # gates frozen for the last 19 (the R30 recipe's proportions). The gates need a 5x
    # larger gate learning rate and a 10x faster multiplier than on MNIST to close in
    # time (at 0.01 and 0.002 the multiplier stayed < 0.5 and the gates at 96% after a
    # 585-step ramp). Shorter recipes ended lower: MAC budget 0.5 reached 88.27% with 24
    # half-epochs (12 passes) and 86.63% with 8 (4 passes), against 88.83% with 32.
    "resnet20": {
        "name": "resnet20",
        "dense": {"run": "experiments/results/cifar10_resnet20"},
        "base": {"epochs": 32, "steps_per_epoch": 195, "learning_rate": 0.02,
                 "schedule": "cosine", "warmup_epochs": 0.0, "gate_lr": 0.05, "dual_lr": 0.02,
                 "budget_ramp_epochs": 8.0, "gate_freeze_epochs": 19, "distill_weight": 0.5},
        "points": [{"method": "flops-gates", "energy_budget": 0.5},
                   {"method": "gates", "energy_budget": 0.55}],
    },
    "vit_mnist": {
        "name": "vit_mnist",
        "dense": {"run": "experiments/results/vit_dense"},
        "base": {"epochs": 3, "learning_rate": 5e-4, "warmup_epochs": 0.0, "gate_lr": 0.01},
        "points": [{"method": "gates", "energy_budget": b} for b in (0.3, 0.5, 0.7)],
    },
}

_SPEC_KEYS = {"name", "dense", "base", "points", "grid"}


@dataclasses.dataclass(frozen=True)
class SweepPoint:
    """One point: its index, directory name and the config fields it sets."""

    index: int
    name: str
    fields: dict

    @property
    def method(self) -> str:
        return self.fields.get("method", "none")

    @property
    def setting(self) -> str:
        bits = "".join(f",{tag}{self.fields[k]}" for k, tag in (("weight_bits", "w"),
                                                                ("act_bits", "a"))
                       if self.fields.get(k))
        if self.fields.get("energy_budget"):
            return f"budget={self.fields['energy_budget']:g}{bits}"
        if "energy_weight" in self.fields:
            return f"lambda={self.fields['energy_weight']:g}{bits}"
        return ",".join(f"{k}={v}" for k, v in self.fields.items() if k != "method") or "-"


def load_spec(spec: str | dict) -> dict[str, Any]:
    """A sweep spec from a preset name, a JSON file path or a dict, checked.

    Raises:
      ConfigError: unknown preset / missing file / bad JSON (with the line) / unknown key
        / bad point field, as one line naming what and where.
    """
    where = "sweep spec"
    if isinstance(spec, dict):
        d = dict(spec)
        where = d.pop("_where", where)
    elif spec in SWEEP_PRESETS:
        d = json.loads(json.dumps(SWEEP_PRESETS[spec]))
        where = f"sweep preset {spec!r}"
    else:
        p = Path(spec)
        if not p.is_file():
            raise ConfigError(f"sweep: {spec!r} is neither a sweep preset ({', '.join(SWEEP_PRESETS)}) "
                              "nor a JSON file")
        where = str(p)
        try:
            d = json.loads(p.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates(where))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{where}: invalid JSON at line {e.lineno}: {e.msg}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{where}: the spec must be a JSON object")
    bad = sorted(set(d) - _SPEC_KEYS)
    if bad:
        raise ConfigError(f"{where}: unknown key(s) {bad}; valid: {sorted(_SPEC_KEYS)}")
    dense = d.get("dense")
    if not isinstance(dense, dict) or (("run" in dense) == ("preset" in dense)):
        raise ConfigError(f"{where}: 'dense' must be {{\"run\": DIR}} or {{\"preset\": NAME, "
                          "\"overrides\": {...}}}")
    if "points" not in d and "grid" not in d:
        raise ConfigError(f"{where}: give 'points' (a list of field dicts) and/or 'grid'")
    d.setdefault("name", Path(str(spec)).stem if not isinstance(spec, dict) else "sweep")
    d.setdefault("base", {})
    d["_where"] = where
    return d


def _no_duplicates(where):
    def hook(pairs):
        keys = [k for k, _ in pairs]
        dup = sorted({k for k in keys if keys.count(k) > 1})
        if dup:
            raise ConfigError(f"{where}: duplicate key(s) {dup}")
        return dict(pairs)
    return hook


def expand_points(spec: dict[str, Any]) -> list[SweepPoint]:
    """The spec's points (explicit ones first, then the grid), each checked as a Config."""
    raw = [dict(p) for p in spec.get("points", [])]
    grid = spec.get("grid") or {}
    if grid:
        keys = list(grid)
        for k in keys:
            if not isinstance(grid[k], list) or not grid[k]:
                raise ConfigError(f"{spec['_where']}: grid field {k!r} must be a non-empty list")
        for combo in itertools.product(*(grid[k] for k in keys)):
            raw.append(dict(zip(keys, combo)))
    pts = []
    for i, fields in enumerate(raw):
        try:
            # every point fine-tunes from the dense run (init_from is set when it runs)
            Config(**{"init_from": "<dense run>", **spec["base"], **fields})
        except TypeError as e:
            raise ConfigError(f"{spec['_where']}: point {i}: {e}") from None
        except ConfigError as e:
            raise ConfigError(f"{spec['_where']}: point {i}: {e}") from None
        p = SweepPoint(i, "", fields)
        slug = f"{i:03d}-{p.method}-{p.setting}".replace("=", "").replace(",", "_").replace("/", "_")
        pts.append(dataclasses.replace(p, name=slug))
    return pts


def _dense_config(spec: dict[str, Any], data_dir: str | None) -> Config:
    d = spec["dense"]
    cfg = get_preset(d["preset"]).replace(**d.get("overrides", {}))
    return cfg.replace(data_dir=data_dir) if data_dir else cfg


def _point_config(dense_cfg: Config, dense_dir: Path, spec, point: SweepPoint) -> Config:
    return dense_cfg.replace(**{**spec["base"], **point.fields, "init_from": str(dense_dir.absolute())})


def _train(cfg: Config, workdir: Path) -> dict[str, Any]:
    from codesign.train import resumable, train_and_evaluate

    rep = workdir / "report.json"
    if rep.is_file():
        return json.loads(rep.read_text(encoding="utf-8"))
    resume = resumable(workdir)  # a point killed before its first checkpoint starts over
    overwrite = (workdir / "config.json").is_file() and not resume
    return train_and_evaluate(cfg, workdir, resume=resume, overwrite=overwrite, print_table=False)


def run_sweep(spec: str | dict, workdir: str | Path, *, point: int | None = None,
              data_dir: str | None = None, progress: bool = True) -> list[dict[str, Any]]:
    """Runs (or resumes) a sweep; returns its rows (see :func:`sweep_rows`).

    Args:
      spec: a preset name, JSON path or dict (:func:`load_spec`).
      workdir: the sweep directory.
      point: run only this point (and the dense run if it is missing); None: all.
      data_dir: dataset directory for every run.
      progress: show a progress bar over the points.

    Raises:
      ConfigError: a bad spec, a point index out of range, a ``sweep.json`` in
        ``workdir`` made from another spec.
    """
    from tqdm import tqdm

    spec = load_spec(spec)
    points = expand_points(spec)
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    resolved = {"name": spec["name"], "dense": spec["dense"], "base": spec["base"],
                "points": [{"name": p.name, **p.fields} for p in points]}
    sj = workdir / "sweep.json"
    if sj.is_file():
        old = json.loads(sj.read_text(encoding="utf-8"))
        if old != resolved:
            raise ConfigError(f"sweep: {workdir} holds another sweep ({old.get('name')!r}, "
                              f"{len(old.get('points', []))} points); choose another --workdir")
    else:
        atomic_write_text(sj, json.dumps(resolved, indent=2) + "\n")
    if point is not None and not 0 <= point < len(points):
        raise ConfigError(f"sweep: --point {point} out of range; this sweep has points "
                          f"0..{len(points) - 1}")
    if "run" in spec["dense"]:
        dense_dir = Path(spec["dense"]["run"])
        if not (dense_dir / "report.json").is_file():
            raise ConfigError(f"sweep: dense run {dense_dir} has no report.json (not a finished run)")
        dense_cfg = Config.from_json((dense_dir / "config.json").read_text(encoding="utf-8"),
                                     where=str(dense_dir / "config.json"))
        if data_dir:
            dense_cfg = dense_cfg.replace(data_dir=data_dir)
    else:
        dense_dir = workdir / "dense"
        dense_cfg = _dense_config(spec, data_dir)
        print(f"sweep {spec['name']}: dense run ({dense_cfg.model} on {dense_cfg.dataset}) in "
              f"{dense_dir}", flush=True)
        _train(dense_cfg, dense_dir)
    todo = [p for p in points if point is None or p.index == point]
    # No monitor thread: a thread that allocates before the first run's allocator setting
    # (codesign.runtime) owns a malloc arena that XLA's threads would later share, and
    # the setting would not take (measured: 117,000 page faults/s, 266 img/s instead of
    # ~400 on a resnet20 point).
    tqdm.monitor_interval = 0
    bar = tqdm(todo, desc=f"sweep {spec['name']}", unit="point", disable=not progress)
    for p in bar:
        bar.set_postfix_str(p.name)
        _train(_point_config(dense_cfg, dense_dir, spec, p), workdir / "points" / p.name)
    bar.close()
    rows = sweep_rows(workdir)
    write_results(workdir, rows)
    return rows


def sweep_rows(workdir: str | Path) -> list[dict[str, Any]]:
    """The finished points of a sweep directory as rows (dense first), from the run files."""
    workdir = Path(workdir)
    sj = workdir / "sweep.json"
    if not sj.is_file():
        raise ConfigError(f"sweep: {workdir} has no sweep.json (not a sweep directory)")
    resolved = json.loads(sj.read_text(encoding="utf-8"))
    rows = []
    dense_rep = None
    for p in resolved["points"]:
        rep_path = workdir / "points" / p["name"] / "report.json"
        if not rep_path.is_file():
            continue
        rep = json.loads(rep_path.read_text(encoding="utf-8"))
        hw = rep.get("hw", {})
        dense_rep = dense_rep or rep.get("dense")
        fields = {k: v for k, v in p.items() if k != "name"}
        sp = SweepPoint(0, p["name"], fields)
        rows.append({
            "point": p["name"], "method": sp.method, "setting": sp.setting,
            "test_accuracy": rep["test_accuracy"],
            "energy_per_inference_uj": hw.get("energy_per_inference_uj", rep.get("energy_per_inference_uj")),
            "latency_per_inference_ms": hw.get("latency_per_inference_ms"),
            "edp_uj_ms": hw.get("edp_uj_ms"),
            "macs_per_inference": hw.get("macs_per_inference"),
            "dram_bytes_per_inference": hw.get("dram_bytes_per_inference"),
            "weights": sum(l.get("weights", 0) for l in hw.get("layers", [])) or None,
            "workdir": str(rep_path.parent),
        })
    if dense_rep is not None:
        rows.insert(0, {
            "point": "dense", "method": "dense", "setting": "-",
            "test_accuracy": dense_rep.get("test_accuracy"),
            "energy_per_inference_uj": dense_rep["energy_per_inference_uj"],
            "latency_per_inference_ms": dense_rep["latency_per_inference_ms"],
            "edp_uj_ms": dense_rep["edp_uj_ms"],
            "macs_per_inference": dense_rep["macs_per_inference"],
            "dram_bytes_per_inference": dense_rep["dram_bytes_per_inference"],
            "weights": sum(l.get("weights", 0) for l in dense_rep.get("layers", [])) or None,
            "workdir": "",
        })
    return rows


def write_results(workdir: str | Path, rows: list[dict[str, Any]]) -> None:
    """``pareto.csv`` and ``pareto.png`` in ``workdir`` (atomically)."""
    workdir = Path(workdir)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k) for k in CSV_COLUMNS})
    atomic_write_text(workdir / "pareto.csv", buf.getvalue())
    plot_pareto(rows, workdir / "pareto.png")


def plot_pareto(rows: list[dict[str, Any]], path: str | Path) -> None:
    """Energy per inference (log x) vs test accuracy, one series per method, fronts drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    by = {}
    for r in rows:
        if r.get("test_accuracy") is None or r.get("energy_per_inference_uj") is None:
            continue
        by.setdefault(r["method"], []).append((r["energy_per_inference_uj"], 100 * r["test_accuracy"]))
    for method, pts in by.items():
        if method == "dense":
            ax.scatter(*zip(*pts), marker="*", s=160, c="k", label="dense", zorder=3)
            continue
        sc = ax.scatter(*zip(*pts), s=24, alpha=0.6)
        f = nondominated(pts, key=lambda p: (p[0], -p[1]))  # low energy, high accuracy
        ax.plot(*zip(*f), "-o", color=sc.get_facecolor()[0], ms=4, label=f"{method} (front)")
    ax.set_xscale("log")
    ax.set_xlabel("energy per inference (uJ, log scale)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", dpi=120)
    finally:
        plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())


def summary_table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of the rows, with energy and MAC ratios against dense."""
    dense = next((r for r in rows if r["method"] == "dense"), None)
    head = ["point", "method", "setting", "accuracy", "energy/inf", "x less", "MACs/inf", "x less",
            "DRAM/inf"]
    cells = [head]
    for r in rows:
        e, m = r["energy_per_inference_uj"], r["macs_per_inference"]
        acc = r.get("test_accuracy")
        cells.append([
            r["point"], r["method"], r["setting"],
            "n/a" if acc is None else f"{100 * acc:.2f}%",
            f"{e:.4g} uJ", f"{dense['energy_per_inference_uj'] / e:.1f}x" if dense else "",
            f"{m / 1e3:,.0f}k", f"{dense['macs_per_inference'] / m:.1f}x" if dense else "",
            f"{r['dram_bytes_per_inference'] / 1e3:,.1f} kB"])
    widths = [max(len(c[i]) for c in cells) for i in range(len(head))]
    lines = ["  ".join(v.ljust(w) if i < 3 else v.rjust(w) for i, (v, w) in enumerate(zip(c, widths)))
             for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
