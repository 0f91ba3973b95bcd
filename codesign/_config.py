"""Training configuration: one frozen dataclass plus named presets.

A :class:`Config` describes a whole run (data, model, optimizer, schedule, seed);
``train_and_evaluate(config, workdir)`` needs nothing else. Presets are functions
returning a ``Config``; each one's docstring gives the command that runs it and the
result it reached when we measured it (in the big_vision style).

Every field is overridable from the command line (``codesign train PRESET
--learning-rate 0.05``); the CLI is generated from the field metadata below.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "CONV_BACKENDS",
    "CO_DESIGN_OBJECTIVES",
    "HW_COMPRESSION",
    "HW_SPARSITY",
    "METHODS",
    "OPTIMIZERS",
    "PRESETS",
    "PRUNE_METHODS",
    "PRUNE_TARGET_KINDS",
    "RUNTIME_FIELDS",
    "SCHEDULES",
    "Config",
    "ConfigError",
    "config_diff",
    "get_preset",
    "list_presets",
    "validate_names",
]

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("constant", "cosine", "onecycle")
# Training methods (codesign.energy): plain, learned gates against the hardware objective,
# the same gates against MACs (the FLOPs-penalty baseline).
METHODS = ("none", "gates", "flops-gates", "magnitude", "energy-magnitude")
# Unstructured pruning methods (codesign.magnitude): global magnitude, energy-aware magnitude.
PRUNE_METHODS = ("magnitude", "energy-magnitude")
PRUNE_TARGET_KINDS = ("weights", "energy")
HW_SPARSITY = ("preset", "none", "gate", "skip")
HW_COMPRESSION = ("preset", "none", "bitmask", "rle")
# Hardware objectives (codesign.objective.HW_OBJECTIVES re-exports this tuple).
HW_OBJECTIVES = ("energy", "latency", "edp", "dram", "macs")
# The hardware objectives a co-design run can search the accelerator for (codesign.design).
CO_DESIGN_OBJECTIVES = ("energy", "latency", "edp")

# Fields that do not change the numbers a run computes (paths, logging, bookkeeping).
# A run may be resumed with different values of these; every other field must match.
# ``num_devices`` is here so a run can move to another machine; the parameters are
# then equal to an uninterrupted run only up to float reduction order.
RUNTIME_FIELDS = frozenset(
    {"data_dir", "download", "eval_batch_size", "keep_checkpoints", "progress",
     "log_every", "num_devices", "distributed", "hw_arch", "hw_dataflow", "conv_backend"}
)
# The hardware fields: runtime for plain training (only reported), part of the numbers for
# every pruning method (see :func:`config_diff`).
HARDWARE_FIELDS = frozenset({"hw_arch", "hw_dataflow"})
# ``conv_backend`` is here for the same reason: oneDNN and XLA convolutions agree only
# up to float rounding, and "auto" resolves per machine.
CONV_BACKENDS = ("auto", "xla", "onednn")
#: ``compute_dtype`` values: the dtype of activations and of the convolutions' and
#: matmuls' operands (parameters, BatchNorm statistics and the loss stay float32)
COMPUTE_DTYPES = ("float32", "bfloat16")


class ConfigError(ValueError):
    """An invalid configuration value (the message names the field and valid values)."""


def _f(default: Any, help: str, **meta: Any) -> Any:
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata={"help": help, **meta})
    return dataclasses.field(default=default, metadata={"help": help, **meta})


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines a training run.

    Units: learning rates per step; ``warmup_epochs`` in epochs (fractions allowed);
    sizes in examples. See each field's ``metadata["help"]`` (shown by
    ``codesign train --help``).
    """

    # data
    dataset: str = _f("mnist", "dataset name (codesign.data.DATASETS)", choices="datasets")
    data_dir: str | None = _f(None, "data directory (default: $CODESIGN_DATA, else ~/.cache/codesign)",
                              metavar="DIR")
    download: bool = _f(True, "download missing dataset files from the official sources")
    val_size: int = _f(0, "hold out this many training examples as a validation split (0: none); "
                          "when > 0 the per-epoch evaluation uses it and the test set is used once at the end")
    dataset_kwargs: dict = _f({}, "extra keyword arguments for load_dataset, JSON (e.g. synthetic shape)")
    augment: bool = _f(False, "CIFAR-style augmentation on device: random crop (4-px pad) + horizontal flip")
    # model
    model: str = _f("mnist_cnn", "model name (models.list_models())", choices="models")
    model_kwargs: dict = _f({}, "extra keyword arguments for models.create, JSON")
    # schedule / loop
    epochs: int = _f(10, "number of training epochs")
    batch_size: int = _f(128, "global training batch size (split over all devices)")
    eval_batch_size: int = _f(1000, "evaluation batch size (the last batch is padded and masked)")
    steps_per_epoch: int = _f(0, "cap on training steps per epoch (0: a full pass, dropping the last partial batch)")
    # optimizer
    optimizer: str = _f("sgd", "optimizer", choices=OPTIMIZERS)
    learning_rate: float = _f(0.1, "peak learning rate")
    momentum: float = _f(0.9, "SGD momentum, or AdamW beta1")
    nesterov: bool = _f(False, "Nesterov momentum (SGD only)")
    beta2: float = _f(0.999, "AdamW beta2")
    weight_decay: float = _f(0.0, "weight decay on kernels/embeddings only (never on biases or norm "
                                   "scales): L2 added to the gradient for SGD, decoupled for AdamW")
    schedule: str = _f("cosine", "learning-rate schedule: constant (after warmup), cosine (linear warmup "
                                  "from 0, cosine decay to 0), onecycle (cosine warmup from lr/div_factor, "
                                  "cosine decay to lr/(div_factor*final_div_factor))", choices=SCHEDULES)
    warmup_epochs: float = _f(0.0, "warmup length in epochs (onecycle: the rising phase; must be > 0)")
    onecycle_div_factor: float = _f(25.0, "onecycle: initial lr = learning_rate / onecycle_div_factor")
    onecycle_final_div_factor: float = _f(1e4, "onecycle: final lr = initial lr / onecycle_final_div_factor")
    label_smoothing: float = _f(0.0, "label smoothing in [0, 1)")
    grad_clip_norm: float = _f(0.0, "clip gradients to this global norm (0: off)")
    # reproducibility / runtime
    seed: int = _f(0, "random seed (parameters, dropout, data order, augmentation)")
    num_devices: int = _f(0, "data-parallel devices to use (0: all local devices)")
    distributed: bool = _f(False, "call jax.distributed.initialize() first (multi-host; see codesign.train)")
    keep_checkpoints: int = _f(3, "keep the last N per-epoch checkpoints (0: write none; --resume "
                                  "still starts from, and never deletes, the ones a run has)")
    progress: bool = _f(True, "show a progress bar per epoch (only when stderr is a terminal)")
    log_every: int = _f(20, "refresh the progress bar's loss/accuracy every N steps")
    # hardware report (does not change training)
    hw_arch: str = _f("eyeriss", "accelerator for the report's energy/latency per inference: a preset "
                      "(hwmodel.list_presets()), a YAML file, or 'none' to skip")
    hw_dataflow: str = _f("rs", "dataflow for the hardware report (hwmodel.DATAFLOWS)", choices="dataflows")
    # convolution kernels on CPU (models/_onednn.py)
    conv_backend: str = _f("auto", "convolutions: onednn (oneDNN through jax.ffi, built on first use), "
                                   "xla (lax.conv_general_dilated), or auto (onednn where it builds, "
                                   "else xla with a one-line notice)", choices=CONV_BACKENDS)
    compute_dtype: str = _f("float32", "dtype of the computation: float32, or bfloat16 (mixed "
                                       "precision: activations and conv/matmul operands in "
                                       "bfloat16; parameters, BatchNorm statistics and the loss "
                                       "in float32)", choices=COMPUTE_DTYPES)
    # energy-aware training and pruning (codesign.energy)
    method: str = _f("none", "training method: none (plain), gates (learned channel/head gates "
                     "against the hardware objective), flops-gates (the same gates against MACs), "
                     "magnitude (global magnitude weight pruning), energy-magnitude (weight "
                     "pruning ranked by magnitude per unit of hardware objective saved; "
                     "codesign.magnitude)",
                     choices=METHODS)
    energy_weight: float = _f(0.0, "penalty mode: loss = task + energy_weight * H / H_dense "
                              "(H: --hw-objective of the gated network)")
    energy_budget: float = _f(0.0, "budget mode: keep H <= energy_budget * H_dense (a fraction, e.g. "
                              "0.05 for 20x less; 0: off), by dual ascent on a Lagrange multiplier (see codesign.energy)")
    hw_objective: str = _f("energy", "hardware objective of the gates methods: energy, latency, edp, "
                           "dram (bytes) per inference, or macs", choices=HW_OBJECTIVES)
    hw_batch: int = _f(1, "batch at which the hardware cost is counted (weights amortized over it), "
                       "in the loss and in the report")
    gate_init_keep: float = _f(0.95, "initial keep probability of every learned gate, in (0, 1)")
    gate_lr: float = _f(0.01, "learning rate of the gates' own Adam optimizer")
    dual_lr: float = _f(0.002, "budget mode: dual ascent step of the Lagrange multiplier, per step")
    distill_weight: float = _f(0.0, "fine-tuning: share w of knowledge distillation from the "
                               "--init-from model (frozen teacher): loss = (1-w) CE + w T^2 "
                               "KL(teacher || student) at temperature --distill-temperature (0: off)")
    distill_temperature: float = _f(4.0, "distillation temperature T (> 0)")
    budget_ramp_epochs: float = _f(0.0, "budget mode: the target falls geometrically from the dense "
                                   "objective (at the network's bits) to energy_budget over the "
                                   "first N epochs (gradual pruning; 0: the budget applies from "
                                   "the first step)")
    gate_freeze_epochs: int = _f(1, "gates methods: for the last N epochs (at most epochs - 1) the "
                                 "gates are frozen at their inference values (budget mode: first fitted "
                                 "to the budget) and only the weights train")
    prune_target: float = _f(0.0, "magnitude methods: the final target in (0, 1); with "
                             "--prune-target-kind weights the kept fraction of the prunable "
                             "weights (conv/dense kernels), with energy the --hw-objective value "
                             "(energy by default) as a fraction of the dense model's")
    prune_target_kind: str = _f("weights", "magnitude methods: what --prune-target bounds",
                                choices=PRUNE_TARGET_KINDS)
    prune_steps: int = _f(3, "magnitude methods: pruning steps, at the start of epochs 1..N, each "
                          "to target**(i/N) (geometric); the masks stay fixed between steps and "
                          "the remaining epochs fine-tune")
    prune_energy_power: float = _f(0.5, "energy-magnitude: rank weights by |w| / e**p, e the "
                                   "--hw-objective saved per weight removed from the weight's layer "
                                   "(d objective / d density over its weight count); 0: global "
                                   "magnitude, 1: magnitude per unit saved")
    hw_sparsity: str = _f("preset", "magnitude methods: override the architecture's sparsity "
                          "(none, gate: zero weights save energy, skip: energy and cycles; "
                          "preset: keep its own; the eyeriss preset has none, on which weight "
                          "sparsity saves nothing)", choices=HW_SPARSITY)
    hw_compression: str = _f("preset", "magnitude methods: override the architecture's weight "
                             "storage format (none, bitmask, rle; preset: keep its own)",
                             choices=HW_COMPRESSION)
    init_from: str | None = _f(None, "start from the weights of this run directory's latest "
                               "checkpoint (fine-tuning; same model and model_kwargs)", metavar="RUN")
    weight_bits: int = _f(0, "quantization-aware training: every conv / dense kernel is rounded to "
                          "this many bits in the forward pass (symmetric, per output channel; "
                          "straight-through gradient; models.quantize), and the hardware cost "
                          "charges these bits; 0: float (the architecture's word width)")
    act_bits: int = _f(0, "quantization-aware training: every conv / dense input is rounded to "
                       "this many bits, per example (unsigned after a ReLU); 0: float")
    # joint network + hardware training (codesign.joint)
    co_design: bool = _f(False, "joint network + hardware training (method gates): the accelerator's "
                         "PE array, buffer and register-file sizes are searched (exact evaluations, "
                         "area <= area_mm2, dataflow hw_dataflow) for the current pruned network "
                         "before gate-training epochs and once at the end, and the gates train "
                         "against the found hardware's cost (codesign.joint); writes hardware.yaml")
    area_mm2: float = _f(0.0, "co-design: area budget of the accelerator, mm^2 (hwmodel.area_mm2 of "
                         "the hw_arch design space; eyeriss: 12.25)")
    co_design_evaluations: int = _f(64, "co-design: exact hardware evaluations per search, after "
                                    "the current design's and the starting preset's: half random "
                                    "designs, half local moves around the best so far")
    co_design_every: int = _f(1, "co-design: search the hardware before every N-th gate-training "
                              "epoch (and always once after the last gate change)")
    co_design_energy_exponent: float = _f(0.5, "co-design: a resized buffer's energy per access "
                                          "scales as size ** this, relative to hw_arch's sizes "
                                          "(hwmodel.scale_access_energy; 0: size-independent)",
                                          metavar="E")

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            _check_type(f, getattr(self, f.name))
        pos_int = ("epochs", "batch_size", "eval_batch_size", "log_every", "co_design_evaluations",
                   "co_design_every")
        for name in pos_int:
            if getattr(self, name) < 1:
                raise ConfigError(f"config field {name!r}: must be >= 1, got {getattr(self, name)}")
        for name in ("val_size", "steps_per_epoch", "num_devices", "keep_checkpoints",
                     "gate_freeze_epochs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"config field {name!r}: must be >= 0, got {getattr(self, name)}")
        if self.optimizer not in OPTIMIZERS:
            raise ConfigError(f"config field 'optimizer': unknown {self.optimizer!r}; valid: {', '.join(OPTIMIZERS)}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"config field 'schedule': unknown {self.schedule!r}; valid: {', '.join(SCHEDULES)}")
        checks = {
            "learning_rate": (self.learning_rate > 0, "must be > 0"),
            "momentum": (0 <= self.momentum < 1, "must be in [0, 1)"),
            "beta2": (0 <= self.beta2 < 1, "must be in [0, 1)"),
            "weight_decay": (self.weight_decay >= 0, "must be >= 0"),
            "label_smoothing": (0 <= self.label_smoothing < 1, "must be in [0, 1)"),
            "grad_clip_norm": (self.grad_clip_norm >= 0, "must be >= 0 (0: off)"),
            "warmup_epochs": (0 <= self.warmup_epochs <= self.epochs, f"must be in [0, epochs={self.epochs}]"),
            "onecycle_div_factor": (self.onecycle_div_factor >= 1, "must be >= 1"),
            "onecycle_final_div_factor": (self.onecycle_final_div_factor >= 1, "must be >= 1"),
        }
        if self.method not in METHODS:
            raise ConfigError(f"config field 'method': unknown {self.method!r}; valid: {', '.join(METHODS)}")
        if self.hw_objective not in HW_OBJECTIVES:
            raise ConfigError(f"config field 'hw_objective': unknown {self.hw_objective!r}; valid: "
                              f"{', '.join(HW_OBJECTIVES)}")
        checks.update({
            "energy_weight": (math.isfinite(self.energy_weight) and self.energy_weight >= 0,
                              "must be >= 0"),
            "energy_budget": (0 <= self.energy_budget < 1, "must be in [0, 1) (a fraction of the "
                              "dense model's objective; 0: off)"),
            "hw_batch": (self.hw_batch >= 1, "must be >= 1"),
            "gate_init_keep": (0 < self.gate_init_keep < 1, "must be in (0, 1)"),
            "gate_lr": (self.gate_lr > 0, "must be > 0"),
            "dual_lr": (self.dual_lr > 0, "must be > 0"),
            "distill_weight": (0 <= self.distill_weight <= 1, "must be in [0, 1]"),
            "distill_temperature": (self.distill_temperature > 0, "must be > 0"),
            "budget_ramp_epochs": (0 <= self.budget_ramp_epochs <= self.epochs,
                                   f"must be in [0, epochs={self.epochs}]"),
        })
        for name, (ok, what) in checks.items():
            if not ok:
                raise ConfigError(f"config field {name!r}: {what}, got {getattr(self, name)!r}")
        if self.method == "none" and (self.energy_weight > 0 or self.energy_budget > 0):
            raise ConfigError("energy_weight / energy_budget need a pruning method: pass "
                              "--method gates (or flops-gates)")
        if self.method in PRUNE_METHODS:
            if self.energy_weight > 0 or self.energy_budget > 0:
                raise ConfigError(f"energy_weight / energy_budget are for the gates methods, not "
                                  f"method {self.method!r} (it takes --prune-target)")
            if not 0 < self.prune_target < 1:
                raise ConfigError(f"config field 'prune_target': method {self.method!r} needs a "
                                  f"target in (0, 1), got {self.prune_target!r}")
            if not 0 <= self.prune_energy_power <= 4:
                raise ConfigError(f"config field 'prune_energy_power': must be in [0, 4], got "
                                  f"{self.prune_energy_power!r}")
            if not 1 <= self.prune_steps <= self.epochs:
                raise ConfigError(f"config field 'prune_steps': must be in [1, epochs={self.epochs}] "
                                  f"(one pruning step per epoch), got {self.prune_steps!r}")
        else:
            if self.prune_target != 0:
                raise ConfigError("config field 'prune_target': only for --method magnitude or "
                                  f"energy-magnitude, not {self.method!r}")
            if self.hw_sparsity != "preset" or self.hw_compression != "preset":
                raise ConfigError("hw_sparsity / hw_compression apply to --method magnitude or "
                                  f"energy-magnitude only, not {self.method!r}")
        for name, valid in (("prune_target_kind", PRUNE_TARGET_KINDS), ("hw_sparsity", HW_SPARSITY),
                            ("hw_compression", HW_COMPRESSION)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"config field {name!r}: unknown {getattr(self, name)!r}; valid: "
                                  f"{', '.join(valid)}")
        for name in ("weight_bits", "act_bits"):
            b = getattr(self, name)
            if not (b == 0 or 2 <= b <= 16):
                raise ConfigError(f"config field {name!r}: expected 0 (float) or a width in "
                                  f"[2, 16] bits, got {b!r}")
        self._check_co_design()
        if self.distill_weight > 0 and not self.init_from:
            raise ConfigError("config field 'distill_weight': distillation needs a teacher: pass "
                              "--init-from RUN (the run whose model teaches)")
        if self.energy_weight > 0 and self.energy_budget > 0:
            raise ConfigError("energy_weight (penalty mode) and energy_budget (budget mode) "
                              "are exclusive: pass one")
        if self.schedule == "onecycle" and not 0 < self.warmup_epochs < self.epochs:
            raise ConfigError(
                f"config field 'warmup_epochs': the onecycle schedule needs 0 < warmup_epochs < "
                f"epochs={self.epochs}, got {self.warmup_epochs!r}"
            )
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ConfigError(f"config field 'compute_dtype': unknown {self.compute_dtype!r}; "
                              f"valid: {', '.join(COMPUTE_DTYPES)}")
        if self.conv_backend not in CONV_BACKENDS:
            raise ConfigError(f"config field 'conv_backend': unknown {self.conv_backend!r}; "
                              f"valid: {', '.join(CONV_BACKENDS)}")
        if self.nesterov and self.optimizer != "sgd":
            raise ConfigError("config field 'nesterov': only valid with optimizer='sgd'")

    def _check_co_design(self) -> None:
        if not self.co_design:
            if self.area_mm2 != 0:
                raise ConfigError("config field 'area_mm2' is the co-design area budget: pass "
                                  "--co-design too (or drop --area-mm2)")
            return
        if self.method != "gates":
            why = (" (flops-gates trains against MACs, which no hardware changes)"
                   if self.method == "flops-gates" else "")
            raise ConfigError(f"co_design trains the network's gates together with the hardware: "
                              f"it needs --method gates, not {self.method!r}{why}")
        if not (self.area_mm2 > 0):
            raise ConfigError(f"config field 'area_mm2': co_design needs an area budget > 0 in "
                              f"mm^2 (e.g. 12.25, the eyeriss preset's), got {self.area_mm2!r}")
        if self.hw_objective not in CO_DESIGN_OBJECTIVES:
            raise ConfigError(f"config field 'hw_objective': co_design searches hardware for "
                              f"{', '.join(CO_DESIGN_OBJECTIVES)}, not {self.hw_objective!r}")
        e = self.co_design_energy_exponent
        if not (math.isfinite(e) and 0 <= e <= 2):
            raise ConfigError(f"config field 'co_design_energy_exponent': expected a number in "
                              f"[0, 2] (energy per access ~ size ** exponent; 0: "
                              f"size-independent), got {e!r}")

    # -- serialization -------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field (``Config.from_dict`` inverts it)."""
        return {f.name: _copy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        """The config as indented JSON (what ``workdir/config.json`` holds)."""
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, where: str = "config") -> Config:
        """Build a Config from a dict, strictly.

        Args:
          d: field name -> value; missing fields take their defaults.
          where: where ``d`` came from, for error messages (e.g. a file name).

        Raises:
          ConfigError: an unknown key (listing the valid ones) or a bad value.
        """
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where}: expected a JSON object, got {type(d).__name__}")
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ConfigError(
                f"{where}: unknown config key(s) {', '.join(map(repr, unknown))}; "
                f"valid: {', '.join(names)}"
            )
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                v = d[f.name]
                if f.type in ("float", float) and isinstance(v, int) and not isinstance(v, bool):
                    v = float(v)
                kwargs[f.name] = v
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{where}: {e}") from None

    @classmethod
    def from_json(cls, text: str, *, where: str = "config") -> Config:
        """Parse :meth:`to_json` output (see :meth:`from_dict` for errors; a duplicate key,
        at any depth, is an error too)."""
        d = loads_strict(text, where=where)
        return cls.from_dict(d, where=where)

    def replace(self, **changes: Any) -> Config:
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)


def loads_strict(text: str, *, where: str) -> Any:
    """``json.loads``, but a key repeated in one object is an error (plain JSON keeps the last).

    Raises:
      ConfigError: not valid JSON (with the line), or a duplicate key (named), at ``where``.
    """

    def unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in pairs:
            if k in out:
                raise ConfigError(f"{where}: duplicate key {k!r} (each key may appear once)")
            out[k] = v
        return out

    try:
        return json.loads(text, object_pairs_hook=unique)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: not valid JSON (line {e.lineno}: {e.msg})") from None


def _copy(v: Any) -> Any:
    return json.loads(json.dumps(v)) if isinstance(v, dict) else v


_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,),
    "int": (int,),
    "float": (float, int),
    "bool": (bool,),
    "dict": (dict,),
    "str | None": (str, type(None)),
}


def _check_type(f: dataclasses.Field, v: Any) -> None:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    ok_types = _TYPES[t]
    if isinstance(v, bool) and bool not in ok_types:
        ok = False
    else:
        ok = isinstance(v, ok_types)
    if ok and t == "float" and not math.isfinite(v):
        raise ConfigError(f"config field {f.name!r}: must be finite, got {v!r}")
    if ok and t == "dict":
        try:
            json.dumps(v)
        except TypeError as e:
            raise ConfigError(f"config field {f.name!r}: must be JSON-serializable ({e})") from None
    if not ok:
        raise ConfigError(f"config field {f.name!r}: expected {t}, got {type(v).__name__} {v!r}")


def config_diff(a: Config, b: Config, *, ignore: frozenset[str] = RUNTIME_FIELDS) -> dict[str, tuple[Any, Any]]:
    """Fields whose values differ between two configs.

    Args:
      a, b: the configs.
      ignore: field names left out of the comparison (default: the runtime fields).

    Returns:
      ``{field: (value in a, value in b)}``, empty when they agree.
    """
    da, db = a.to_dict(), b.to_dict()
    if ignore is RUNTIME_FIELDS and (a.method != "none" or b.method != "none"):
        # the pruning methods train against (or prune by) the hardware model: there the
        # architecture and dataflow change the numbers a run computes
        ignore = RUNTIME_FIELDS - HARDWARE_FIELDS
    return {k: (da[k], db[k]) for k in da if k not in ignore and da[k] != db[k]}


def validate_names(config: Config) -> None:
    """Check ``config``'s names against the registries: ``model``, ``dataset``,
    ``hw_arch``, ``hw_dataflow``, and the keys of ``model_kwargs`` / ``dataset_kwargs``.

    Raises:
      ConfigError: an unknown name or key, listing the valid ones.
    """
    import models
    from codesign import data

    import hwmodel

    if config.hw_arch != "none" and config.hw_arch not in hwmodel.list_presets() and not (
        config.hw_arch.endswith((".yaml", ".yml"))
    ):
        raise ConfigError(
            f"unknown hw_arch {config.hw_arch!r}; valid: {', '.join(hwmodel.list_presets())}, "
            "a .yaml file, or none"
        )
    if config.hw_dataflow not in hwmodel.DATAFLOWS:
        raise ConfigError(
            f"config field 'hw_dataflow': unknown {config.hw_dataflow!r}; valid: {', '.join(hwmodel.DATAFLOWS)}"
        )
    valid_models = tuple(models.list_models())
    if config.model not in valid_models:
        raise ConfigError(f"unknown model {config.model!r}; valid: {', '.join(valid_models)}")
    if config.dataset not in data.DATASETS:
        raise ConfigError(f"unknown dataset {config.dataset!r}; valid: {', '.join(data.DATASETS)}")
    fixed = {"num_classes": "the dataset's number of classes",
             "input_shape": "the dataset's image shape", "rngs": "--seed"}
    for key in config.model_kwargs:
        if key in fixed:
            raise ConfigError(f"config field 'model_kwargs': {key!r} is set from {fixed[key]}, "
                              "not a model option; remove it")
    options = models.get_info(config.model).options
    bad = sorted(set(config.model_kwargs) - set(options))
    if bad:
        raise ConfigError(f"config field 'model_kwargs': model {config.model!r} has no option(s) "
                          f"{', '.join(map(repr, bad))}; valid: {', '.join(options)}")
    options = data.dataset_options(config.dataset)
    bad = sorted(set(config.dataset_kwargs) - set(options))
    if bad:
        valid = f"valid: {', '.join(options)}" if options else f"{config.dataset!r} takes none"
        raise ConfigError(f"config field 'dataset_kwargs': dataset {config.dataset!r} has no "
                          f"option(s) {', '.join(map(repr, bad))}; {valid}")


# --------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------

PRESETS: dict[str, Callable[[], Config]] = {}


def _preset(fn: Callable[[], Config]) -> Callable[[], Config]:
    PRESETS[fn.__name__] = fn
    return fn


def list_presets() -> tuple[str, ...]:
    """Names of the presets, in definition order."""
    return tuple(PRESETS)


def get_preset(name: str) -> Config:
    """The Config of a named preset.

    Raises:
      ConfigError: unknown name (listing the valid ones).
    """
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; valid: {', '.join(PRESETS)}")
    return PRESETS[name]()


@_preset
def quickstart() -> Config:
    """mnist_cnn on the embedded 5,000-digit MNIST subset (offline); the README's first command.

    Command: ``codesign train quickstart``
    Result: 97.40% test accuracy (the 1,000 embedded test digits) after 4 epochs; 10.9 s
    of training, 29 s for the README's first command including the ``pip install``,
    on the 2-core CPU (quiet machine; longer when it is shared with other jobs).
    """
    return Config(
        dataset="mnist-5k", model="mnist_cnn", epochs=4, batch_size=64,
        optimizer="adamw", learning_rate=2e-3, weight_decay=1e-4, schedule="cosine",
        warmup_epochs=0.5, keep_checkpoints=1,
    )


@_preset
def mnist() -> Config:
    """mnist_cnn (the Flax MNIST example CNN) on full MNIST.

    Command: ``codesign train mnist --data-dir DIR``
    Result: 99.31% test accuracy (10,000 official test images) after 10 epochs;
    307.5 s run, 308 s for the whole command, on the 2-core CPU (quiet machine).
    """
    return Config(
        dataset="mnist", model="mnist_cnn", epochs=10, batch_size=128,
        optimizer="sgd", learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="cosine", warmup_epochs=0.5, label_smoothing=0.0,
    )


@_preset
def mnist_lenet5() -> Config:
    """LeNet-5 on full MNIST.

    Command: ``codesign train mnist_lenet5 --data-dir DIR``
    Result: 99.10% test accuracy after 10 epochs (99.14% at epochs 4 and 9); 70 s run,
    71 s for the whole command, on the 2-core CPU (quiet machine). (An earlier run,
    before the convolution change in ``models/_conv.py``, reached 99.26%.)
    """
    return Config(
        dataset="mnist", model="lenet5", epochs=10, batch_size=128,
        optimizer="sgd", learning_rate=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="cosine", warmup_epochs=0.5,
    )


@_preset
def vit_mnist() -> Config:
    """vit_tiny (default shape: 4x4 patches, D=64, 6 blocks, 4 heads) on full MNIST, no dropout.

    Command: ``codesign train vit_mnist --data-dir DIR``
    Result: 98.42% test accuracy after 8 epochs (98.36% after 7); 851 s run, 853 s for
    the whole command, on the 2-core CPU (quiet machine; ~98 s per epoch). With the model's default dropout 0.1 and learning
    rate 1e-3 the same schedule was at only 94.7% after 3 epochs, and a training step
    with dropout 0.1 costs ~1.5x one without on this CPU, so this preset turns
    dropout off.
    """
    return Config(
        dataset="mnist", model="vit_tiny", model_kwargs={"dropout_rate": 0.0}, epochs=8,
        batch_size=128, optimizer="adamw", learning_rate=2e-3, beta2=0.99, weight_decay=0.05,
        schedule="cosine", warmup_epochs=1.0, grad_clip_norm=1.0,
    )


@_preset
def cifar10() -> Config:
    """resnet20 on CIFAR-10 with augmentation and a one-cycle schedule (60-minute CPU budget).

    Command: ``codesign train cifar10 --data-dir DIR``
    Result: 91.23% test accuracy in 2,888 s (40 epochs of ~66 s at ~750 images/s, the
    oneDNN convolutions and the allocator setting of :mod:`codesign.runtime`) on the
    quiet 2-core AMD EPYC CPU; metrics and report in
    ``experiments/results/cifar10_resnet20_e40/``. The earlier 16-epoch version of this
    preset (88.79%) is the dense start of the ``resnet20`` sweep preset, checkpoint in
    ``experiments/results/cifar10_resnet20/``. On a slower or busier machine lower
    ``--epochs`` (keep ``--warmup-epochs`` about 0.3x epochs).
    """
    return Config(
        dataset="cifar10", model="resnet20", epochs=40, batch_size=128, augment=True,
        optimizer="sgd", learning_rate=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
        schedule="onecycle", warmup_epochs=12.0, label_smoothing=0.1,
    )


@_preset
def smoke() -> Config:
    """A seconds-long end-to-end check on synthetic data (no files needed).

    Command: ``codesign train smoke``
    Result: runs; accuracy is meaningless (random labels).
    """
    return Config(
        dataset="synthetic", model="lenet5", epochs=2, batch_size=32, eval_batch_size=64,
        optimizer="adamw", learning_rate=1e-3, schedule="constant", keep_checkpoints=1,
    )
