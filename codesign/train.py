"""Training and evaluation: ``train_and_evaluate(config, workdir)`` and its pieces.

The structure follows the Flax NNX examples: a testable
:func:`train_and_evaluate` under a thin CLI (``codesign train``), with
:func:`train_step` / :func:`eval_step` jitted and the optimizer an
``nnx.Optimizer(model, tx, wrt=nnx.Param)``.

Structure
---------
:func:`train_and_evaluate` is five steps, each a public function::

    run = setup(config, workdir, resume=..., overwrite=..., loss_fn=...)  # -> TrainRun
    state, progress = restore(run)              # latest checkpoint, or the fresh state
    for epoch in range(progress.start_epoch, config.epochs):
        state, extra = begin_epoch(run, state, epoch)   # the method's step (e.g. pruning)
        state, train_means, seconds = train_epoch(run, state, epoch)
        eval_means = evaluate(run, state, run.eval_ds)
        ...                                     # metrics.jsonl row, checkpoint
    return report(run, state, progress)          # final test eval, report.json

* :func:`setup` checks the workdir, writes ``config.json``, loads the data, builds
  the model, optimizer, mesh and hardware figures, and compiles the steps; it returns
  a :class:`TrainRun` holding all of it.
* :func:`restore` returns the (replicated) state to start from and a
  :class:`Progress` (epochs done, metrics history, time spent in earlier sessions).
* :func:`begin_epoch` runs the method's host-side step before an epoch (a pruning
  step of :mod:`codesign.magnitude`; nothing for other methods); :func:`train_epoch`
  runs one epoch of jitted steps; :func:`evaluate` one split.
* :func:`report` does the final test evaluation and writes ``report.json``.

Loss functions and metrics
--------------------------
The step minimizes a :data:`LossFn`::

    loss_fn(model, images, labels) -> (total, metrics)

``total`` is the scalar that is differentiated; ``metrics`` is a dict of named values
to log: a ``[B]`` array is a per-example quantity (its epoch value is the mean over
all examples), a scalar a per-batch one (its epoch value is the mean over steps).
The default, :class:`ClassificationLoss`, returns the mean (label-smoothed)
cross-entropy and ``{"loss": per-example cross-entropy, "accuracy": per-example
0/1}``. A loss made of several terms (task loss, a hardware term, a regularizer)
returns their weighted sum as ``total`` and each term by name in ``metrics``. The
loop sums every metric on device into a dict pytree ``{name: (sum, count)}``
(:func:`metric_sums`; no host transfer per step), and each epoch's
``metrics.jsonl`` row has ``train_<name>`` for every entry, in the loss function's
order, then ``<val|test>_loss`` / ``<val|test>_accuracy``. Pass a hashable loss
function (e.g. a frozen dataclass) to ``train_and_evaluate(..., loss_fn=...)`` or
``train_step(..., loss_fn=...)``. A term multiplied by 0 gives the same run only up
to float rounding (the extra computation can change XLA's fusion): leave a disabled
term out of the function when bitwise equality with plain training matters.

``train_step`` and ``eval_step`` are the readable ``nnx.jit`` versions (use them in
your own loops and notebooks). The loop inside :func:`train_and_evaluate` runs the
*same* step body through the split/merge pattern with ``jax.jit`` on the pure state
(``nnx.split`` once, ``nnx.merge`` inside the jitted function), with data
normalization and augmentation fused into the step. That removes the per-call
graph traversal of ``nnx.jit`` (about 1.2 ms per call in graph mode, 0.4 ms in
tree mode, measured on this project's 2-core CPU; see the train branch report),
which matters for small models whose step takes a few milliseconds.

Data parallelism
----------------
The loop builds a 1-D ``jax.sharding.Mesh`` over ``config.num_devices`` devices
(default: all of them) with axis ``"data"``. Every batch is sharded along that axis,
the model/optimizer state is replicated, and XLA inserts the gradient all-reduce
(and, for BatchNorm, the cross-device batch statistics, so BN behaves exactly as on
one device). The global batch size must divide evenly by the number of devices.
On one CPU you can try it with ``XLA_FLAGS=--xla_force_host_platform_device_count=2``.

Multi-host
----------
Start one process per host with the same config and ``--distributed``
(``Config.distributed=True``)::

    # on every host (SLURM, Open MPI, Kubernetes and Cloud TPU are detected by JAX):
    codesign train cifar10 --distributed --workdir /shared/runs/c10
    # elsewhere, say where the coordinator (process 0) listens, how many processes
    # there are and which one this is (process 0 shown; run the same on each host):
    JAX_COORDINATOR_ADDRESS=host0:1234 JAX_NUM_PROCESSES=2 JAX_PROCESS_ID=0 \\
        codesign train cifar10 --distributed --workdir /shared/runs/c10

``jax.distributed.initialize()`` is then called before anything else (with
``num_processes`` / ``process_id`` from ``JAX_NUM_PROCESSES`` / ``JAX_PROCESS_ID``
when set; JAX itself reads ``JAX_COORDINATOR_ADDRESS``); the mesh
spans every device of every process, each process reads the same (seed, epoch)
batch order and feeds its own slice of each global batch
(``jax.make_array_from_process_local_data``), and only process 0 writes
``config.json`` / ``metrics.jsonl`` / ``report.json`` (Orbax coordinates the
checkpoint writes). The workdir must be on a filesystem all hosts share.
``tests/test_sharding.py`` runs this path with two CPU processes on one machine
(gloo collectives) and checks it against one process with two devices; real
multi-host clusters are untested here.

Reproducibility
---------------
Parameters, dropout and augmentation randomness come from ``config.seed``; the
data order is a function of (seed, epoch) and the augmentation key of
(seed, epoch, step). A checkpoint holds everything else (parameters, BatchNorm
statistics, the models' RNG stream counters, optimizer state, epoch), so a
killed run continued with ``resume=True`` ends with bitwise the same parameters
as an uninterrupted run on the same device count.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from codesign import energy, magnitude
from codesign._checkpoint import Checkpointer
from codesign._config import Config, ConfigError, config_diff, validate_names
from codesign._report import atomic_write_json, atomic_write_text, results_table
from codesign.runtime import maybe_tune_allocator
from models import count_params

__all__ = [
    "ClassificationLoss",
    "LossFn",
    "MetricSums",
    "NonFiniteLossError",
    "Progress",
    "TrainRun",
    "WorkdirConflictError",
    "apply_step",
    "begin_epoch",
    "classification_metrics",
    "count_params",
    "create_train_state",
    "cross_entropy_loss",
    "decay_mask",
    "eval_step",
    "eval_sums",
    "evaluate",
    "hardware_report",
    "make_optimizer",
    "make_schedule",
    "metric_means",
    "metric_sums",
    "report",
    "restore",
    "resumable",
    "setup",
    "train_and_evaluate",
    "train_epoch",
    "train_step",
]

CHECKPOINT_DIR = "checkpoints"
RUN_FILES = ("config.json", "metrics.jsonl", "report.json")


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN/Inf loss or parameter; the run stopped."""


class WorkdirConflictError(RuntimeError):
    """The workdir holds a run that the requested one may not silently reuse."""


# --------------------------------------------------------------------------------------
# Optimizer, schedules, loss
# --------------------------------------------------------------------------------------


def make_schedule(config: Config, steps_per_epoch: int) -> optax.Schedule:
    """The learning-rate schedule (per optimizer step) named by ``config.schedule``.

    * ``constant``: linear warmup from 0 over ``warmup_epochs``, then ``learning_rate``.
    * ``cosine``: linear warmup from 0 to ``learning_rate``, cosine decay to 0 at the
      last step.
    * ``onecycle``: cosine rise from ``learning_rate / onecycle_div_factor`` to
      ``learning_rate`` over ``warmup_epochs``, cosine fall to
      ``learning_rate / (onecycle_div_factor * onecycle_final_div_factor)``
      (``optax.cosine_onecycle_schedule``).

    Args:
      config: the run config.
      steps_per_epoch: optimizer steps per epoch (>= 1).

    Returns:
      ``schedule(step) -> learning rate``.
    """
    total = max(1, config.epochs * steps_per_epoch)
    # warmup steps, kept below the total so a decay phase exists (tiny runs)
    warmup = min(int(round(config.warmup_epochs * steps_per_epoch)), total - 1)
    lr = config.learning_rate
    if total == 1:  # a single step: no room for warmup or decay
        return optax.constant_schedule(lr)
    if config.schedule == "constant":
        if warmup == 0:
            return optax.constant_schedule(lr)
        return optax.join_schedules(
            [optax.linear_schedule(0.0, lr, warmup), optax.constant_schedule(lr)], [warmup]
        )
    if config.schedule == "cosine":
        if warmup == 0:
            return optax.cosine_decay_schedule(lr, total)
        return optax.warmup_cosine_decay_schedule(0.0, lr, warmup, total, end_value=0.0)
    if config.schedule == "onecycle":
        return optax.cosine_onecycle_schedule(
            total, lr, pct_start=max(warmup, 1) / total,
            div_factor=config.onecycle_div_factor,
            final_div_factor=config.onecycle_final_div_factor,
        )
    raise ConfigError(f"unknown schedule {config.schedule!r}")


def decay_mask(params: Any) -> Any:
    """Which parameters get weight decay: those with ``ndim >= 2`` (kernels, embeddings).

    Biases, BatchNorm/LayerNorm scales and offsets (all 1-D) are not decayed.

    Args:
      params: a pytree of parameter arrays.

    Returns:
      The same structure with a bool per leaf.
    """
    return jax.tree.map(lambda p: jnp.ndim(p) >= 2, params)


def make_optimizer(config: Config, steps_per_epoch: int) -> optax.GradientTransformation:
    """The Optax transformation for ``config``.

    SGD: ``clip -> add_decayed_weights(weight_decay, mask) -> sgd(schedule, momentum,
    nesterov)`` -- classic coupled L2 (``g + wd * w``, then momentum), as in the
    usual ResNet/CIFAR recipes. AdamW: ``clip -> adamw(schedule, b1=momentum,
    b2=beta2, weight_decay, mask)`` -- decoupled decay, scaled by the schedule. In
    both, :func:`decay_mask` keeps biases and norm scales undecayed.

    Args:
      config: the run config.
      steps_per_epoch: optimizer steps per epoch (for the schedule).
    """
    sched = make_schedule(config, steps_per_epoch)
    parts = []
    if config.grad_clip_norm > 0:
        parts.append(optax.clip_by_global_norm(config.grad_clip_norm))
    if config.optimizer == "sgd":
        if config.weight_decay > 0:
            parts.append(optax.add_decayed_weights(config.weight_decay, mask=decay_mask))
        parts.append(optax.sgd(sched, momentum=config.momentum or None, nesterov=config.nesterov))
    elif config.optimizer == "adamw":
        parts.append(
            optax.adamw(sched, b1=config.momentum, b2=config.beta2,
                        weight_decay=config.weight_decay, mask=decay_mask)
        )
    else:
        raise ConfigError(f"unknown optimizer {config.optimizer!r}")
    return optax.chain(*parts) if len(parts) > 1 else parts[0]


def cross_entropy_loss(logits: jax.Array, labels: jax.Array, label_smoothing: float = 0.0) -> jax.Array:
    """Per-example softmax cross-entropy with optional label smoothing.

    With smoothing ``a`` and ``K`` classes the target is ``(1 - a) * onehot + a / K``.

    Args:
      logits: float ``[B, K]``.
      labels: int ``[B]`` class indices.
      label_smoothing: ``a`` in ``[0, 1)``.

    Returns:
      float32 ``[B]`` losses (nats).
    """
    logits = logits.astype(jnp.float32)
    if label_smoothing == 0.0:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    targets = optax.smooth_labels(jax.nn.one_hot(labels, logits.shape[-1]), label_smoothing)
    return optax.softmax_cross_entropy(logits, targets)


# --------------------------------------------------------------------------------------
# Losses and metrics (named; the train step takes any LossFn)
# --------------------------------------------------------------------------------------

#: ``loss_fn(model, images, labels) -> (total, metrics)``: ``total`` is the scalar the
#: optimizer minimizes; ``metrics`` maps names to what is logged: a ``[B]`` array is
#: per example (its epoch value is the mean over all examples), a scalar is per batch
#: (its epoch value is the mean over steps). See the module docstring.
LossFn = Callable[[nnx.Module, jax.Array, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]

#: ``{name: (sum, count)}`` of float32 scalars: metrics summed on device.
MetricSums = dict[str, tuple[jax.Array, jax.Array]]


def classification_metrics(logits: jax.Array, labels: jax.Array,
                           label_smoothing: float = 0.0) -> dict[str, jax.Array]:
    """Per-example ``{"loss": cross-entropy [B], "accuracy": 1.0 where correct [B]}``."""
    return {
        "loss": cross_entropy_loss(logits, labels, label_smoothing),
        "accuracy": (jnp.argmax(logits, -1) == labels).astype(jnp.float32),
    }


@dataclasses.dataclass(frozen=True)
class ClassificationLoss:
    """The default :data:`LossFn`: mean (smoothed) cross-entropy; logs ``loss``, ``accuracy``.

    A frozen dataclass, so equal settings hash equal (a static argument of ``jit``).

    Attributes:
      label_smoothing: see :func:`cross_entropy_loss`.
    """

    label_smoothing: float = 0.0

    def __call__(self, model: nnx.Module, images: jax.Array,
                 labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        metrics = classification_metrics(model(images), labels, self.label_smoothing)
        return metrics["loss"].mean(), metrics


@dataclasses.dataclass(frozen=True, eq=False)
class DistillationLoss:
    """Knowledge distillation from a frozen teacher (Hinton, Vinyals, Dean 2015): a
    :data:`LossFn` ``(1 - weight) * CE + weight * T^2 * KL(p_teacher^T || p_student^T)``
    where ``p^T`` is the softmax at temperature ``T``. Logs ``loss`` (the cross-entropy
    alone, comparable with plain runs), ``accuracy`` and ``distill`` (the KL term, per
    example). Hashed by identity (a static argument of ``jit``).

    Attributes:
      teacher: pure ``images [B, H, W, C] -> logits [B, K]`` (e.g. :func:`frozen_teacher`);
        its output is not differentiated.
      weight: the distillation share in [0, 1].
      temperature: ``T`` (> 0).
      label_smoothing: of the cross-entropy term.
    """

    teacher: Callable[[jax.Array], jax.Array]
    weight: float = 0.5
    temperature: float = 4.0
    label_smoothing: float = 0.0

    def __call__(self, model: nnx.Module, images: jax.Array,
                 labels: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        logits = model(images)
        metrics = classification_metrics(logits, labels, self.label_smoothing)
        t = self.temperature
        target = jax.nn.log_softmax(jax.lax.stop_gradient(self.teacher(images)) / t)
        kl = jnp.sum(jnp.exp(target) * (target - jax.nn.log_softmax(logits / t)), -1) * t * t
        metrics["distill"] = kl
        total = (1.0 - self.weight) * metrics["loss"].mean() + self.weight * kl.mean()
        return total, metrics


def frozen_teacher(config: Config, *, input_shape: tuple[int, int, int], num_classes: int,
                   student: nnx.Module | None = None) -> Callable[[jax.Array], jax.Array]:
    """The teacher of a distillation run: ``config.model`` with the weights of
    ``config.init_from`` (latest checkpoint), in inference mode, as a pure function of the
    images (its arrays are constants of the compiled step; no gates, nothing trained).

    ``student``: the run's freshly built model (:func:`create_train_state`, not trained
    yet), which already holds the ``init_from`` weights: they are copied from it instead
    of reading the checkpoint a second time. Without it the checkpoint is read.
    """
    teacher = _build_model(config, input_shape, num_classes, quantized=False)  # the float run
    if student is None:
        energy.load_weights(teacher, config.init_from)
    else:
        energy.copy_weights(teacher, student)
    teacher.eval()
    graphdef, state = nnx.split(teacher)
    return lambda images: nnx.merge(graphdef, state)(images)


def task_loss(config: Config, *, input_shape: tuple[int, int, int], num_classes: int,
              student: nnx.Module | None = None) -> LossFn:
    """The run's task loss: :class:`ClassificationLoss`, or :class:`DistillationLoss` from
    the ``init_from`` model when ``distill_weight > 0`` (``student``: see
    :func:`frozen_teacher`)."""
    if config.distill_weight <= 0:
        return ClassificationLoss(float(config.label_smoothing))
    teacher = frozen_teacher(config, input_shape=input_shape, num_classes=num_classes,
                             student=student)
    return DistillationLoss(teacher, weight=float(config.distill_weight),
                            temperature=float(config.distill_temperature),
                            label_smoothing=float(config.label_smoothing))


def metric_sums(metrics: dict[str, jax.Array], mask: jax.Array | None = None) -> MetricSums:
    """Reduce named metrics to ``{name: (sum, count)}`` (float32), to be added across batches.

    Args:
      metrics: ``{name: value}``; a ``[B]`` value is per example (summed over the
        rows where ``mask``; count: those rows), a scalar is per batch (count 1).
      mask: optional bool ``[B]``; False rows (padding) are left out.

    Returns:
      ``{name: (sum, count)}``; the mean of a metric is ``sum / count``.
    """
    out = {}
    for name, v in metrics.items():
        v = jnp.asarray(v, jnp.float32)
        if v.ndim == 0:
            out[name] = (v, jnp.float32(1))
        elif v.ndim != 1:
            raise ValueError(f"metric {name!r}: expected a scalar or a per-example [B] array, "
                             f"got shape {v.shape}")
        elif mask is None:
            out[name] = (jnp.sum(v), jnp.float32(v.shape[0]))
        else:
            maskf = mask.astype(jnp.float32)
            out[name] = (jnp.sum(v * maskf), jnp.sum(maskf))
    return out


def metric_means(sums: MetricSums, names: tuple[str, ...] | None = None) -> dict[str, float]:
    """``{name: sum / count}`` as Python floats (host), in the order of ``names`` if given."""
    names = tuple(sums) if names is None else names
    out = {}
    for name in names:
        s, c = sums[name]
        out[name] = float(s) / float(c)
    return out


# --------------------------------------------------------------------------------------
# Steps (shared body; nnx.jit versions are public, the loop uses split/merge + jax.jit)
# --------------------------------------------------------------------------------------


def apply_step(model: nnx.Module, optimizer: nnx.Optimizer, loss_fn: LossFn, images: jax.Array,
               labels: jax.Array, after_update: Callable | None = None) -> MetricSums:
    """One optimizer step on ``loss_fn``'s total, in place; returns its metrics' :func:`metric_sums`.

    Args:
      model: the NNX model (training mode).
      optimizer: ``nnx.Optimizer(model, tx, wrt=nnx.Param)``.
      loss_fn: a :data:`LossFn`.
      images: float32 ``[B, H, W, C]`` (normalized/augmented).
      labels: int32 ``[B]``.
      after_update: optional ``after_update(model, optimizer)`` run after the update
        (e.g. re-applying pruning masks: :meth:`codesign.magnitude.PruningHooks.after_update`).
    """
    (_, metrics), grads = nnx.value_and_grad(
        lambda m: loss_fn(m, images, labels), has_aux=True)(model)
    optimizer.update(model, grads)
    if after_update is not None:
        after_update(model, optimizer)
    return metric_sums(metrics)


def eval_sums(model: nnx.Module, images: jax.Array, labels: jax.Array,
              mask: jax.Array) -> MetricSums:
    """:func:`classification_metrics` (no smoothing) summed over the rows where ``mask``."""
    return metric_sums(classification_metrics(model(images), labels), mask)


@nnx.jit(static_argnames=("label_smoothing", "loss_fn"))
def train_step(model: nnx.Module, optimizer: nnx.Optimizer, images: jax.Array,
               labels: jax.Array, *, label_smoothing: float = 0.0,
               loss_fn: LossFn | None = None) -> dict[str, jax.Array]:
    """One jitted optimizer step (updates ``model`` and ``optimizer`` in place).

    Put the model in training mode first (``model.train()``) so BatchNorm uses batch
    statistics (and updates its running averages) and Dropout is active.

    Args:
      model: an NNX model mapping float ``[B, H, W, C]`` to logits ``[B, K]``.
      optimizer: ``nnx.Optimizer(model, tx, wrt=nnx.Param)``.
      images: float32 ``[B, H, W, C]`` (already normalized/augmented).
      labels: int32 ``[B]``.
      label_smoothing: see :func:`cross_entropy_loss` (used when ``loss_fn`` is None).
      loss_fn: a hashable :data:`LossFn` (default ``ClassificationLoss(label_smoothing)``).

    Returns:
      The batch means of the loss function's metrics; by default ``{"loss": mean
      training loss (with smoothing), "accuracy": fraction correct}``.
    """
    loss_fn = ClassificationLoss(label_smoothing) if loss_fn is None else loss_fn
    sums = apply_step(model, optimizer, loss_fn, images, labels)
    return {name: s / c for name, (s, c) in sums.items()}


@nnx.jit
def eval_step(model: nnx.Module, images: jax.Array, labels: jax.Array,
              mask: jax.Array | None = None) -> dict[str, jax.Array]:
    """Jitted evaluation sums over one batch (no smoothing; nothing is updated).

    Put the model in eval mode first (``model.eval()``: BatchNorm running
    averages, Dropout off).

    Args:
      model: the NNX model.
      images: float32 ``[B, H, W, C]``.
      labels: int32 ``[B]``.
      mask: optional bool ``[B]``; rows where it is False (padding) are ignored.

    Returns:
      ``{"loss_sum", "correct", "count"}`` (float32 scalars) -- divide by ``count``.
    """
    if mask is None:
        mask = jnp.ones(labels.shape, bool)
    s = eval_sums(model, images, labels, mask)
    return {"loss_sum": s["loss"][0], "correct": s["accuracy"][0], "count": s["loss"][1]}


# --------------------------------------------------------------------------------------
# State creation
# --------------------------------------------------------------------------------------


def create_train_state(config: Config, *, input_shape: tuple[int, int, int], num_classes: int,
                       steps_per_epoch: int) -> tuple[nnx.Module, nnx.Optimizer]:
    """Build the model (in training mode) and its optimizer for ``config``.

    Args:
      config: the run config (``model``, ``model_kwargs``, ``seed``, optimizer fields).
      input_shape: (H, W, C) of one image.
      num_classes: number of classes K.
      steps_per_epoch: optimizer steps per epoch (for the schedule).

    Returns:
      ``(model, optimizer)`` with ``optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)``.

    Raises:
      ConfigError: the model cannot be built with ``config.model_kwargs``.
    """
    model = _build_model(config, input_shape, num_classes)
    energy.prepare_model(model, config)  # init_from weights, learned gates (before the optimizer)
    magnitude.prepare_model(model, config, input_shape)  # pruning masks (magnitude methods)
    model.train()
    tx = energy.with_gate_optimizer(config, make_optimizer(config, steps_per_epoch))
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    return model, optimizer


def _build_model(config: Config, input_shape: tuple[int, ...], num_classes: int, *,
                 quantized: bool = True) -> nnx.Module:
    """``config.model`` with fresh parameters (``config.seed``) for ``input_shape`` (H, W, C)
    and ``num_classes``, before any method touches it (no ``init_from`` weights, no gates),
    quantization-aware when ``config.weight_bits`` / ``act_bits`` ask for it (and
    ``quantized``).

    Raises:
      ConfigError: the model cannot be built with ``config.model_kwargs``, or cannot be
        quantized.
    """
    import models

    try:
        dtype = ({} if config.compute_dtype == "float32"
                 else {"dtype": jnp.dtype(config.compute_dtype)})
        model = models.create(
            config.model, rngs=nnx.Rngs(config.seed), num_classes=num_classes,
            input_shape=tuple(input_shape), **dtype, **config.model_kwargs,
        )
    except (TypeError, ValueError) as e:
        if not config.model_kwargs:
            raise
        raise ConfigError(
            f"config field 'model_kwargs' {json.dumps(config.model_kwargs)}: {config.model} "
            f"cannot be built with them ({type(e).__name__}: {' '.join(str(e).split())})"
        ) from None
    if quantized and (config.weight_bits or config.act_bits):
        try:
            models.quantize(model, weight_bits=config.weight_bits, act_bits=config.act_bits)
        except ValueError as e:
            raise ConfigError(f"config fields 'weight_bits' / 'act_bits': {config.model}: "
                              f"{' '.join(str(e).split())}") from None
    return model


MACS_NOTE = "hwmodel.extract_workload (batch 1, dense)"


def _count_macs(model: nnx.Module, input_shape: tuple[int, ...]) -> tuple[int, str]:
    """MACs per image (batch 1) from ``hwmodel.extract_workload``, and where they came from."""
    return int(_workload(model, input_shape).total_macs), MACS_NOTE


def _workload(model: nnx.Module, input_shape: tuple[int, ...]):
    """The model's workload at batch 1 (an eval-mode view is traced; no FLOPs run)."""
    import models

    return models.model_workload(model, batch=1, input_shape=input_shape)


def hardware_report(model: nnx.Module, input_shape: tuple[int, ...], arch: str,
                    dataflow: str = "rs") -> dict[str, Any]:
    """Energy, latency and traffic of one inference (batch 1) on an accelerator.

    The dense model is mapped with ``hwmodel.map_workload`` (objective: energy) and
    costed with ``hwmodel.cost``: simulated figures from the analytical loop-nest
    model, not measurements. A quantized model (:func:`models.quantize`) is charged at
    its weight / input bits, its layers mapped with those widths.

    Args:
      model: the (trained) model; traced in eval mode, no FLOPs run.
      input_shape: one image's shape ``(H, W, C)``.
      arch: a preset name (``hwmodel.list_presets()``) or a YAML file.
      dataflow: one of ``hwmodel.DATAFLOWS``.

    Returns:
      A dict: ``hw_arch``, ``hw_dataflow``, ``energy_per_inference_uj`` (uJ),
      ``latency_per_inference_ms`` (ms), ``power_mw`` (mW),
      ``dram_bytes_per_inference`` (bytes), ``hw_utilization`` (0-1),
      ``hw_area_mm2`` (mm^2).
    """
    return _hardware_figures(_workload(model, input_shape), arch, dataflow, model, input_shape)


def _hardware_figures(workload, arch: str, dataflow: str, model: nnx.Module,
                      input_shape: tuple[int, ...]) -> dict[str, Any]:
    """:func:`hardware_report` of ``model``'s already extracted batch-1 workload. A
    quantized model (:func:`models.quantize`) is charged at its bits, as
    :class:`codesign.objective.HardwareObjective` charges it (and ``codesign cost
    --run``): its layers re-mapped with their widths."""
    import hwmodel
    import models

    hw = hwmodel.load_arch(arch)
    if models.quantized_layers(model):
        from codesign.objective import HardwareObjective
        c = HardwareObjective(model, input_shape, arch=hw, dataflow=dataflow).exact_cost(model)
    else:
        c = hwmodel.cost(workload, hw, dataflow=dataflow)
    return {
        "hw_arch": hw.name,
        "hw_dataflow": dataflow,
        "energy_per_inference_uj": float(c.energy_pj) * 1e-6,
        "latency_per_inference_ms": float(c.latency_s) * 1e3,
        "power_mw": float(c.power_w) * 1e3,
        "dram_bytes_per_inference": float(c.dram_bytes),
        "hw_utilization": float(c.utilization),
        "hw_area_mm2": float(c.area_mm2),
    }


# --------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------


def _log(msg: str) -> None:
    if jax.process_index() == 0:
        print(msg, flush=True)


def _checkpoint_epochs(directory: Path) -> list[int]:
    """Epochs with a complete checkpoint in ``directory`` (Orbax renames a finished step's
    temporary directory to the bare step number), without opening a checkpoint manager."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit())


def resumable(workdir: str | Path) -> bool:
    """Whether ``workdir`` holds a run that ``resume=True`` can continue: a ``config.json``
    and at least one complete checkpoint (an empty ``checkpoints/`` directory, left by a
    run killed in its first epoch, is not enough)."""
    workdir = Path(workdir)
    return (workdir / "config.json").is_file() and bool(_checkpoint_epochs(workdir / CHECKPOINT_DIR))


def _prepare_workdir(config: Config, workdir: Path, *, resume: bool, overwrite: bool) -> str:
    """What the run will do with ``workdir``; reads only (no side effects).

    Returns:
      ``"new"`` (nothing of a run there), ``"overwrite"`` (discard what is there),
      ``"restart"`` (this config's run stopped before finishing an epoch: nothing to
      lose, start it again) or ``"continue"`` (resume from the latest checkpoint).

    Raises:
      WorkdirConflictError: the workdir holds files the run may not silently
        replace, a run with another config, or (``resume``) nothing to resume from.
    """
    present = [n for n in (*RUN_FILES, CHECKPOINT_DIR) if (workdir / n).exists()]
    if overwrite:
        return "overwrite" if present else "new"
    cfg_path = workdir / "config.json"
    if not cfg_path.exists():
        if resume:
            where = "does not exist" if not workdir.exists() else "holds no run (no config.json)"
            raise WorkdirConflictError(
                f"nothing to resume: workdir {workdir} {where}; check --workdir, or drop "
                "--resume to start a new run there"
            )
        if present:
            raise WorkdirConflictError(
                f"workdir {workdir} holds {', '.join(present)} but no config.json (not a run "
                "of codesign train?); they would be overwritten: choose another --workdir, "
                "or pass --overwrite to replace them"
            )
        return "new"
    old = Config.from_json(cfg_path.read_text(encoding="utf-8"), where=str(cfg_path))
    diff = config_diff(old, config)
    if diff:
        what = "; ".join(f"{k}: {a!r} there, {b!r} now" for k, (a, b) in diff.items())
        hint = ("--resume continues only a run with the same config; " if resume else "")
        raise WorkdirConflictError(
            f"workdir {workdir} holds a run with a different config ({what}); "
            f"{hint}pass --overwrite to replace it, or choose another --workdir"
        )
    epochs = _checkpoint_epochs(workdir / CHECKPOINT_DIR)
    metrics = workdir / "metrics.jsonl"
    has_results = ((metrics.exists() and metrics.stat().st_size > 0)
                   or (workdir / "report.json").exists())
    if resume:
        if epochs:
            return "continue"
        if has_results:
            raise WorkdirConflictError(
                f"nothing to resume from: workdir {workdir} has results but no checkpoint in "
                f"{CHECKPOINT_DIR}/ (it ran with keep_checkpoints=0); pass --overwrite to "
                "train it again from scratch"
            )
        raise WorkdirConflictError(
            f"nothing to resume from: the run in {workdir} stopped before its first epoch "
            "ended (no checkpoint); run the same command without --resume to start it again"
        )
    if not epochs and not has_results:
        return "restart"
    raise WorkdirConflictError(
        f"workdir {workdir} already holds a run with this config; pass --resume to "
        "continue it or --overwrite to start over"
    )


class _WorkdirLock:
    """An exclusive ``flock`` on the workdir while a run uses it (process 0 only).

    Two runs in one workdir at once would mix their files and crash Orbax; the
    second one gets a :class:`WorkdirConflictError` instead. The operating system
    drops the lock when the process ends, however it ends. On a filesystem without
    ``flock`` (or a platform without ``fcntl``) there is no lock.
    """

    def __init__(self, workdir: Path) -> None:
        self._fd: int | None = None
        try:
            import fcntl
        except ImportError:  # not POSIX
            return
        fd = os.open(workdir, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise WorkdirConflictError(
                f"workdir {workdir} is in use by another run right now; wait for it to "
                "finish, or choose another --workdir"
            ) from None
        except OSError:  # no flock on this filesystem
            os.close(fd)
            return
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _claim_workdir(config: Config, workdir: Path, *, resume: bool,
                   overwrite: bool) -> tuple[_WorkdirLock | None, bool]:
    """Create and lock ``workdir``, check it again under the lock, clear it on
    ``overwrite`` and write ``config.json``. Returns ``(lock, continuing)``.

    Only process 0 checks and writes; the others continue when ``resume`` is set
    (process 0 raises otherwise).
    """
    if jax.process_index() != 0:
        return None, resume
    workdir.mkdir(parents=True, exist_ok=True)
    lock = _WorkdirLock(workdir)
    try:
        mode = _prepare_workdir(config, workdir, resume=resume, overwrite=overwrite)
        if mode == "overwrite":
            shutil.rmtree(workdir / CHECKPOINT_DIR, ignore_errors=True)
            for name in RUN_FILES:
                (workdir / name).unlink(missing_ok=True)
        elif mode == "restart":
            _log(f"workdir {workdir} holds this run, stopped before its first epoch ended: "
                 "starting it again")
        atomic_write_text(workdir / "config.json", config.to_json())
    except BaseException:
        lock.release()
        raise
    return lock, mode == "continue"


def _init_distributed() -> None:
    """``jax.distributed.initialize()``, with process count/id from the environment if set."""
    kw = {}
    for var, arg in (("JAX_NUM_PROCESSES", "num_processes"), ("JAX_PROCESS_ID", "process_id")):
        if os.environ.get(var):
            try:
                kw[arg] = int(os.environ[var])
            except ValueError:
                raise ConfigError(f"environment variable {var}={os.environ[var]!r} is not an integer") from None
    jax.distributed.initialize(**kw)


def _make_mesh(config: Config) -> Mesh:
    devices = jax.devices()
    n = config.num_devices or len(devices)
    if n > len(devices):
        raise ConfigError(
            f"config field 'num_devices': {n} requested, {len(devices)} available "
            f"({devices[0].platform}); valid: 0 (all) or 1..{len(devices)}"
        )
    for name in ("batch_size", "eval_batch_size"):
        if getattr(config, name) % n:
            raise ConfigError(
                f"config field {name!r}: {getattr(config, name)} is not divisible by the "
                f"{n} data-parallel devices"
            )
    return Mesh(np.array(devices[:n]), ("data",))


def _replicate(tree: Any, sharding: NamedSharding) -> Any:
    """Place host/device values (identical on every process) replicated over the mesh."""
    if jax.process_count() == 1:
        return jax.device_put(tree, sharding)

    def put(x):
        if jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key):
            impl = jax.random.key_impl(x)
            data = jax.make_array_from_process_local_data(sharding, np.asarray(jax.random.key_data(x)))
            return jax.random.wrap_key_data(data, impl=impl)
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(sharding, x, x.shape)

    return jax.tree.map(put, tree)


def _put_batch(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """Place one global batch (identical on every process) sharded along axis 0."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    n, i = jax.process_count(), jax.process_index()
    per = x.shape[0] // n
    return jax.make_array_from_process_local_data(sharding, x[i * per:(i + 1) * per], x.shape)


@dataclasses.dataclass
class _Fns:
    """The compiled pieces of a run and the names of what they log."""

    train: Callable       # (state, acc, images u8, labels, epoch, step) -> (state, acc)
    evaluate: Callable    # (state, images u8, labels, mask) -> MetricSums
    all_finite: Callable  # state -> bool scalar
    train_names: tuple[str, ...]  # the loss function's metric names, in its order
    eval_names: tuple[str, ...]
    acc_shape: Any        # the train accumulator's ShapeDtypeStruct tree


def _named_sums(metrics_fn: Callable, *specs) -> tuple[tuple[str, ...], Any]:
    """Trace ``metrics_fn(*specs) -> {name: value}`` abstractly: (names in order, sums' shapes).

    The order matters only for logs (a dict pytree leaves ``jit`` with sorted keys).
    """
    names: list[str] = []

    def f(*args):
        m = metrics_fn(*args)
        names.extend(m)
        return metric_sums(m)

    shapes = jax.eval_shape(f, *specs)
    return tuple(names), shapes


def _build_fns(config: Config, graphdef_train, graphdef_eval, state, mean, std, mesh: Mesh,
               image_shape: tuple[int, ...], loss_fn: LossFn,
               after_update: Callable | None = None) -> _Fns:
    """Compile the split/merge train/eval functions (AOT, so epochs time only steps)."""
    from codesign.data import augment_cifar, normalize

    repl = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    base_key = jax.random.key(config.seed)
    mean, std = tuple(mean), tuple(std)

    def train_fn(state, acc, images, labels, epoch, step):
        x = images.astype(jnp.float32)
        if config.augment:  # on the 0..255 scale, so the crop's padding is black
            key = jax.random.fold_in(jax.random.fold_in(base_key, epoch), step)
            x = augment_cifar(key, x)
        x = normalize(x, mean, std)
        model, opt = nnx.merge(graphdef_train, state)
        sums = apply_step(model, opt, loss_fn, x, labels, after_update)
        return nnx.state((model, opt)), jax.tree.map(jnp.add, acc, sums)

    def eval_fn(state, images, labels, mask):
        model, _ = nnx.merge(graphdef_eval, state)
        return eval_sums(model, normalize(images, mean, std), labels, mask)

    def all_finite(state):
        leaves = [x for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)]
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))

    b, eb = config.batch_size, config.eval_batch_size
    u8 = lambda n: jax.ShapeDtypeStruct((n, *image_shape), jnp.uint8, sharding=data)  # noqa: E731
    i32 = lambda n: jax.ShapeDtypeStruct((n,), jnp.int32, sharding=data)  # noqa: E731
    st = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=repl), state)
    f32 = lambda n: jax.ShapeDtypeStruct((n, *image_shape), jnp.float32, sharding=data)  # noqa: E731
    train_names, sums_shape = _named_sums(
        lambda s, x, y: loss_fn(nnx.merge(graphdef_train, s)[0], x, y)[1], st, f32(b), i32(b))
    eval_names, _ = _named_sums(
        lambda s, x, y: classification_metrics(nnx.merge(graphdef_eval, s)[0](x), y), st, f32(eb), i32(eb))
    acc = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=repl), sums_shape)
    scalar = jax.ShapeDtypeStruct((), jnp.int32, sharding=repl)
    train_c = jax.jit(
        train_fn, in_shardings=(repl, repl, data, data, repl, repl),
        out_shardings=(repl, repl), donate_argnums=(0, 1),
    ).lower(st, acc, u8(b), i32(b), scalar, scalar).compile()
    eval_c = jax.jit(
        eval_fn, in_shardings=(repl, data, data, data), out_shardings=repl,
    ).lower(st, u8(eb), i32(eb), jax.ShapeDtypeStruct((eb,), jnp.bool_, sharding=data)).compile()
    finite_c = jax.jit(all_finite, in_shardings=(repl,), out_shardings=repl).lower(st).compile()
    return _Fns(train_c, eval_c, finite_c, train_names, eval_names, sums_shape)


def _epoch_batches(ds, config: Config, epoch: int, steps: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    from codesign.data import iterate_batches

    it = iterate_batches(ds, config.batch_size, seed=config.seed, epoch=epoch, shuffle=True,
                         drop_remainder=True)
    return itertools.islice(it, steps)


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    # Off when stderr is not a terminal (logs get the one-line epoch summaries instead).
    show = enabled and jax.process_index() == 0 and sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit="step", disable=not show,
                leave=True, dynamic_ncols=True, file=sys.stderr)


def _fmt_metrics(means: dict[str, float]) -> str:
    """``loss 0.1234 acc 97.50% energy 0.5000``: accuracies in percent, the rest 4 decimals."""
    return " ".join(f"acc {100 * v:.2f}%" if k == "accuracy" else f"{k} {v:.4f}"
                    for k, v in means.items())


@dataclasses.dataclass
class TrainRun:
    """What :func:`setup` builds for one run; :func:`restore`, :func:`train_epoch`,
    :func:`evaluate` and :func:`report` read it.

    Attributes:
      config, workdir: the run and its directory.
      continuing: True when ``workdir`` holds this run and ``resume`` was asked.
      splits: ``load_dataset``'s splits (``train``, ``test``, maybe ``val``).
      eval_name: ``"val"`` or ``"test"``: the split evaluated after every epoch.
      steps_per_epoch: optimizer steps per epoch.
      image_shape: one image ``(H, W, C)``.
      mesh: the 1-D ``"data"`` mesh.
      model, optimizer: the Python objects (the loop trains their split ``state``;
        :func:`report` writes the final state back into them).
      state: the initial ``nnx.state((model, optimizer))`` (host, unreplicated).
      schedule: the learning-rate schedule (for the ``lr`` column).
      loss_fn: the :data:`LossFn` being minimized.
      fns: the compiled train / eval / finiteness functions.
      ckpt: the checkpointer, or None when ``keep_checkpoints == 0``.
      n_params, macs, macs_note, hw_figures: the report's model figures.
      compile_s: seconds spent compiling.
      t_start: ``time.perf_counter()`` when the run (this session) started.
      conv_backend: the convolution backend the steps were compiled with (``"onednn"``
        or ``"xla"``; see ``config.conv_backend``).
      objective: the :class:`codesign.objective.HardwareObjective` of a gates method
        (None otherwise).
      hooks: the method's hooks (:func:`codesign.magnitude.method_hooks`; None for
        other methods): optional ``after_update(model, optimizer)`` (traced into the
        train step after the optimizer update), ``before_epoch(model, optimizer,
        epoch) -> dict | None`` (host side, :func:`begin_epoch`) and ``report(model,
        report dict) -> report.md text``.
      lock: the exclusive lock on ``workdir`` (process 0), released by :meth:`close`.
      compile_fns: ``compile_fns(loss_fn, after_update) -> fns`` (what built ``fns``;
        :meth:`adopt_objective` recompiles with it).
    """

    config: Config
    workdir: Path
    continuing: bool
    splits: dict[str, Any]
    eval_name: str
    steps_per_epoch: int
    image_shape: tuple[int, ...]
    mesh: Mesh
    model: nnx.Module
    optimizer: nnx.Optimizer
    state: Any
    schedule: optax.Schedule
    loss_fn: LossFn
    fns: _Fns
    ckpt: Checkpointer | None
    n_params: int
    macs: int
    macs_note: str
    hw_figures: dict[str, Any]
    compile_s: float
    t_start: float
    conv_backend: str = "xla"
    objective: Any = None
    hooks: Any = None
    lock: _WorkdirLock | None = None
    compile_fns: Callable | None = None

    def adopt_objective(self) -> bool:
        """Train against the hooks' current hardware objective (a co-design run's new
        design, :mod:`codesign.joint`): rebuild the loss with it and recompile the steps.
        Returns whether anything changed."""
        if not getattr(self.config, "co_design", False):
            return False  # other methods' hooks hold objectives too (magnitude ranking)
        obj = getattr(self.hooks, "objective", None)
        if obj is None or obj is self.objective:
            return False
        import models

        self.objective = obj
        self.loss_fn = dataclasses.replace(self.loss_fn, objective=obj)
        t0 = time.perf_counter()
        with models.conv_backend(self.conv_backend):
            self.fns = self.compile_fns(self.loss_fn, getattr(self.hooks, "after_update", None))
        seconds = time.perf_counter() - t0
        self.compile_s += seconds
        _log(f"train step recompiled for the new hardware in {seconds:.1f} s")
        return True

    def close(self) -> None:
        """Finish pending checkpoint writes and release the workdir (idempotent)."""
        if self.ckpt is not None:
            self.ckpt.close()
            self.ckpt = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run files (process 0)."""
        return jax.process_index() == 0

    @property
    def train_ds(self):
        return self.splits["train"]

    @property
    def eval_ds(self):
        return self.splits[self.eval_name]

    @property
    def test_ds(self):
        return self.splits["test"]

    def write_metrics(self, history: list[dict[str, Any]]) -> None:
        """Rewrite ``metrics.jsonl`` (one JSON line per epoch) from ``history`` (process 0)."""
        if self.is_main:
            atomic_write_text(self.workdir / "metrics.jsonl",
                              "".join(json.dumps(h) + "\n" for h in history))

    def non_finite(self, what: str) -> NonFiniteLossError:
        """The error that stops the run, saying which checkpoint is kept."""
        if self.ckpt is None:
            kept = "checkpointing is off (keep_checkpoints=0), so no checkpoint was kept"
        else:
            self.ckpt.wait()
            e = self.ckpt.latest_epoch()
            kept = (f"the last good checkpoint (epoch {e}) is kept in {self.ckpt.directory}"
                    if e is not None else "no checkpoint had been written yet")
        return NonFiniteLossError(
            f"non-finite {what}: stopping the run; {kept}. Lower the learning rate, "
            "set --grad-clip-norm, or check the data."
        )


@dataclasses.dataclass
class Progress:
    """Where a run stands: restored from a checkpoint's record, advanced each epoch.

    Attributes:
      start_epoch: epochs completed before this session.
      history: one metrics row per completed epoch (the lines of ``metrics.jsonl``).
      prior_elapsed_s: wall seconds of the earlier sessions.
      train_time_s: seconds in training steps, all sessions so far.
      resumed_from: the checkpoint epoch this session started from, or None.
    """

    start_epoch: int = 0
    history: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    prior_elapsed_s: float = 0.0
    train_time_s: float = 0.0
    resumed_from: int | None = None


def _with_conv_backend(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Runs ``fn(config, ...)`` with ``config.conv_backend`` resolved and set (the steps are
    traced and compiled inside), then restores the previous backend."""

    @functools.wraps(fn)
    def wrapper(config: Config, *args: Any, **kwargs: Any) -> Any:
        import models

        try:
            conv = models.resolve_conv_backend(config.conv_backend)
        except models.OneDNNUnavailable as e:
            raise ConfigError(f"config field 'conv_backend': {e}") from None
        with models.conv_backend(conv):
            return fn(config, *args, **kwargs)

    return wrapper


@_with_conv_backend
def setup(config: Config, workdir: str | Path, *, resume: bool = False, overwrite: bool = False,
          loss_fn: LossFn | None = None, t_start: float | None = None) -> TrainRun:
    """Load the data, build the model, the optimizer, the mesh and the hardware figures,
    then claim the workdir (write ``config.json``) and compile the steps.

    Everything that bad input can make fail (names, data files, ``model_kwargs``,
    ``dataset_kwargs``, ``hw_arch``, batch size, device count) is checked before the
    workdir is created or changed, so a failed start leaves nothing that blocks its
    retry. The workdir is checked once early (to fail fast) and again under an
    exclusive lock when it is claimed (see :class:`WorkdirConflictError`).

    Args:
      config, workdir, resume, overwrite: as in :func:`train_and_evaluate`.
      loss_fn: the :data:`LossFn` to minimize (default:
        ``ClassificationLoss(config.label_smoothing)``).
      t_start: when the run started (``time.perf_counter()``; default: now).
    """
    t_start = time.perf_counter() if t_start is None else t_start
    _check_start(config, resume=resume, overwrite=overwrite)
    import models

    workdir = Path(workdir)
    # a single-process run is process 0 without asking JAX, whose first call starts its
    # threads: the allocator setting below must come before that
    if not config.distributed or jax.process_index() == 0:
        _prepare_workdir(config, workdir, resume=resume, overwrite=overwrite)  # fail fast
    data = _load_data(config)
    train_ds, image_shape = data.splits["train"], data.image_shape
    maybe_tune_allocator(config.epochs * data.steps_per_epoch * config.batch_size)

    # Model, optimizer, mesh, hardware figures
    mesh = _make_mesh(config)
    model, optimizer = create_train_state(config, input_shape=image_shape,
                                          num_classes=train_ds.num_classes,
                                          steps_per_epoch=data.steps_per_epoch)
    n_params = count_params(model)
    workload = _workload(model, image_shape)  # traced once: MACs and hardware figures
    hw_figures = ({} if config.hw_arch == "none"
                  else _hardware_figures(workload, config.hw_arch, config.hw_dataflow, model,
                                         image_shape))
    schedule = make_schedule(config, data.steps_per_epoch)
    graphdef_train, graphdef_eval, state = _train_eval_split(model, optimizer)
    objective, co_design, loss_fn = _energy_aware_parts(
        config, model, image_shape, train_ds.num_classes, data.steps_per_epoch, loss_fn)
    # Method hooks (codesign.magnitude: masks re-applied after every step, pruning steps;
    # codesign.joint: hardware searches, which replace the objective)
    hooks = (co_design or magnitude.method_hooks(model, config, image_shape)
             or energy.method_hooks(objective, config))

    # The workdir (locked until TrainRun.close) and the compiled steps
    lock, continuing = _claim_workdir(config, workdir, resume=resume, overwrite=overwrite)
    try:
        ckpt = (Checkpointer(workdir / CHECKPOINT_DIR, keep=config.keep_checkpoints)
                if config.keep_checkpoints else None)
        if loss_fn is None:
            loss_fn = task_loss(config, input_shape=image_shape, num_classes=train_ds.num_classes,
                                student=model)
        t_compile = time.perf_counter()
        compile_fns = functools.partial(_build_fns, config, graphdef_train, graphdef_eval, state,
                                        train_ds.mean, train_ds.std, mesh, image_shape)
        fns = compile_fns(loss_fn, getattr(hooks, "after_update", None))
        compile_s = time.perf_counter() - t_compile
    except BaseException:
        if lock is not None:
            lock.release()
        raise
    _log_start(config, data, n_params, mesh, compile_s)
    return TrainRun(
        config=config, workdir=workdir, continuing=continuing, splits=data.splits,
        eval_name=data.eval_name, steps_per_epoch=data.steps_per_epoch, image_shape=image_shape,
        mesh=mesh, model=model, optimizer=optimizer, state=state, schedule=schedule,
        loss_fn=loss_fn, fns=fns, ckpt=ckpt, n_params=n_params, macs=int(workload.total_macs),
        macs_note=MACS_NOTE, hw_figures=hw_figures, compile_s=compile_s, t_start=t_start,
        conv_backend=models.get_conv_backend(),
        objective=objective, hooks=hooks, lock=lock, compile_fns=compile_fns,
    )


def _check_start(config: Config, *, resume: bool, overwrite: bool) -> None:
    """Refuse contradictory flags and bad names; join the distributed job if asked."""
    if resume and overwrite:
        raise ConfigError("resume and overwrite are mutually exclusive")
    if config.distributed and not jax.distributed.is_initialized():
        _init_distributed()
    validate_names(config)


@dataclasses.dataclass(frozen=True)
class _Data:
    """A run's loaded data: ``splits`` (``load_dataset``'s), the split evaluated after
    every epoch (``eval_name``), optimizer steps per epoch and one image's shape."""

    splits: dict
    eval_name: str
    steps_per_epoch: int
    image_shape: tuple[int, ...]


def _load_data(config: Config) -> _Data:
    """Load the run's dataset and size its epochs (``steps_per_epoch`` capped by the
    config's; a batch larger than the training set is a :class:`ConfigError`)."""
    from codesign.data import load_dataset

    splits = load_dataset(config.dataset, data_dir=config.data_dir, download=config.download,
                          val_size=config.val_size, seed=config.seed, **config.dataset_kwargs)
    train_ds = splits["train"]
    steps_per_epoch = len(train_ds) // config.batch_size
    if config.steps_per_epoch:
        steps_per_epoch = min(steps_per_epoch, config.steps_per_epoch)
    if steps_per_epoch < 1:
        raise ConfigError(
            f"config field 'batch_size': {config.batch_size} is larger than the "
            f"{len(train_ds)} training examples of {config.dataset!r}"
        )
    return _Data(splits=splits, eval_name="val" if config.val_size > 0 else "test",
                 steps_per_epoch=steps_per_epoch, image_shape=tuple(train_ds.images.shape[1:]))


def _train_eval_split(model: nnx.Module, optimizer: nnx.Optimizer) -> tuple[Any, Any, Any]:
    """``(graphdef_train, graphdef_eval, state)`` of ``(model, optimizer)``: the graph in
    training and in inference mode, and their shared state; the model is left in training mode."""
    model.train()
    graphdef_train, state = nnx.split((model, optimizer))
    model.eval()
    graphdef_eval = nnx.graphdef((model, optimizer))
    model.train()
    return graphdef_train, graphdef_eval, state


def _energy_aware_parts(config: Config, model: nnx.Module, image_shape, num_classes: int,
                        steps_per_epoch: int, loss_fn: LossFn | None):
    """``(objective, co_design, loss_fn)`` of the energy-aware methods (:mod:`codesign.energy`):
    the hardware objective, the co-design hooks (``co_design`` runs) and, unless the
    caller gave one, the :class:`~codesign.energy.EnergyAwareLoss`; ``(None, None,
    loss_fn)`` for other methods."""
    if config.method not in energy.GATE_METHODS:
        return None, None, loss_fn
    objective = energy.build_objective(model, config, image_shape)
    co_design = None
    if config.co_design:
        if loss_fn is not None:
            raise ConfigError("co_design rebuilds the energy-aware loss for every new "
                              "hardware design: train_and_evaluate(..., loss_fn=...) cannot "
                              "be combined with it")
        from codesign import joint

        # the starting hardware's objective is the fixed reference; training starts on
        # the starting design (projected into the area budget when it does not fit)
        co_design = joint.CoDesignHooks(model, config, image_shape, objective)
        objective = co_design.objective
    if loss_fn is None:
        loss_fn = energy.EnergyAwareLoss(
            objective, task=task_loss(config, input_shape=image_shape, num_classes=num_classes,
                                      student=model),
            weight=float(config.energy_weight), budget=float(config.energy_budget),
            dual_lr=float(config.dual_lr),
            ramp_steps=int(round(config.budget_ramp_epochs * steps_per_epoch)),
            # a quantized network's dense cost is below the float reference: ramp from it
            ramp_start=energy.open_relative(objective) if objective.layer_bits else 1.0)
    return objective, co_design, loss_fn


def _log_start(config: Config, data: _Data, n_params: int, mesh: Mesh, compile_s: float) -> None:
    """The one-line summary of a started run."""
    _log(
        f"{config.model} ({n_params:,} params) on {config.dataset} "
        f"({len(data.splits['train'])} train, {len(data.splits[data.eval_name])} "
        f"{data.eval_name}); {data.steps_per_epoch} steps/epoch x {config.epochs} epochs, "
        f"batch {config.batch_size} on {mesh.size} {jax.devices()[0].platform} device(s); "
        f"compiled in {compile_s:.1f} s"
    )


def restore(run: TrainRun) -> tuple[Any, Progress]:
    """The state to train from (replicated over the mesh) and the run's :class:`Progress`.

    A continued run starts from its latest checkpoint (its metrics history is
    restored and ``metrics.jsonl`` rewritten from it), also when ``keep_checkpoints``
    is now 0; otherwise from ``run.state``.
    """
    state, progress = run.state, Progress()
    if run.continuing:
        # keep_checkpoints=0 writes no new checkpoints but still resumes from (and never
        # deletes) the ones the run has.
        reader = run.ckpt or Checkpointer(run.workdir / CHECKPOINT_DIR, keep=1)
        last = reader.latest_epoch()
        if last is None:
            raise WorkdirConflictError(f"nothing to resume from: no checkpoint in "
                                       f"{run.workdir / CHECKPOINT_DIR}")
        state, meta = reader.restore(last, state)
        if reader is not run.ckpt:
            reader.close()
        progress = Progress(
            start_epoch=int(meta["epoch"]), history=list(meta["history"]),
            prior_elapsed_s=float(meta["elapsed_s"]),
            train_time_s=float(meta["train_time_s"]), resumed_from=int(meta["epoch"]),
        )
        _log(f"resuming {run.workdir} from the checkpoint of epoch "
             f"{progress.start_epoch}/{run.config.epochs}")
    run.write_metrics(progress.history)
    return _replicate(state, NamedSharding(run.mesh, P())), progress


def begin_epoch(run: TrainRun, state: Any, epoch: int) -> tuple[Any, dict[str, Any]]:
    """The method's host-side step before epoch ``epoch`` (0-based; e.g. a pruning step).

    Returns ``(state, extra)``: the state to train from (unchanged when the method has
    nothing to do) and what to add to the epoch's ``metrics.jsonl`` row.
    """
    hook = getattr(run.hooks, "before_epoch", None)
    if hook is None:
        return state, {}
    nnx.update((run.model, run.optimizer), jax.device_get(state))
    extra = hook(run.model, run.optimizer, epoch)
    run.adopt_objective()  # a co-design run's new hardware: recompile the step
    if extra is None:
        return state, {}
    return _replicate(nnx.state((run.model, run.optimizer)), NamedSharding(run.mesh, P())), extra


def train_epoch(run: TrainRun, state: Any, epoch: int) -> tuple[Any, dict[str, float], float]:
    """One epoch of training steps (0-based ``epoch``).

    Returns:
      ``(state, means, seconds)``: the new state, the epoch mean of each of the loss
      function's metrics (``{name: float}``, its order), and the seconds in steps.

    Raises:
      NonFiniteLossError: a logged metric became NaN/Inf (checked every
        ``log_every`` steps).
    """
    config, fns = run.config, run.fns
    repl = NamedSharding(run.mesh, P())
    data_sh = NamedSharding(run.mesh, P("data"))
    acc = _replicate(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), fns.acc_shape), repl)
    steps = run.steps_per_epoch
    bar = _progress(steps, f"epoch {epoch + 1}/{config.epochs}", config.progress)
    t0 = time.perf_counter()
    for step, (x, y) in enumerate(_epoch_batches(run.train_ds, config, epoch, steps)):
        state, acc = fns.train(state, acc, _put_batch(x, data_sh), _put_batch(y, data_sh),
                               _replicate(np.int32(epoch), repl), _replicate(np.int32(step), repl))
        if (step + 1) % config.log_every == 0 or step + 1 == steps:
            sums = jax.device_get(acc)
            for name in fns.train_names:
                if not math.isfinite(sums[name][0]):
                    bar.close()
                    raise run.non_finite(f"training {name} ({sums[name][0]}) in epoch {epoch + 1}, "
                                         f"step {step + 1}")
            bar.set_postfix({k: f"{v:.4f}" for k, v in metric_means(sums, fns.train_names).items()},
                            refresh=False)
        bar.update(1)
    jax.block_until_ready(acc)
    seconds = time.perf_counter() - t0
    bar.close()
    return state, metric_means(jax.device_get(acc), fns.train_names), seconds


def evaluate(run: TrainRun, state: Any, ds) -> dict[str, float]:
    """The mean of each eval metric (``loss``, ``accuracy``) over a whole split
    (the last batch padded and masked)."""
    data = NamedSharding(run.mesh, P("data"))
    batch_size = run.config.eval_batch_size
    total = None
    for start in range(0, len(ds), batch_size):
        x = ds.images[start:start + batch_size]
        y = ds.labels[start:start + batch_size]
        m = np.ones(len(y), bool)
        if len(y) < batch_size:
            pad = batch_size - len(y)
            x = np.concatenate([x, np.zeros((pad, *x.shape[1:]), x.dtype)])
            y = np.concatenate([y, np.zeros(pad, y.dtype)])
            m = np.concatenate([m, np.zeros(pad, bool)])
        s = run.fns.evaluate(state, _put_batch(x, data), _put_batch(y.astype(np.int32), data),
                             _put_batch(m, data))
        total = s if total is None else jax.tree.map(jnp.add, total, s)
    return metric_means(jax.device_get(total), run.fns.eval_names)


def _save_epoch(run: TrainRun, state: Any, progress: Progress, epoch: int) -> None:
    """Write ``metrics.jsonl`` and the checkpoint after epoch ``epoch`` (1-based)."""
    run.write_metrics(progress.history)
    if run.ckpt is not None:
        elapsed = progress.prior_elapsed_s + time.perf_counter() - run.t_start
        run.ckpt.save(epoch, state, {"epoch": epoch, "history": progress.history,
                                     "elapsed_s": elapsed, "train_time_s": progress.train_time_s})


def _fit_final(run: TrainRun, state: Any) -> tuple[Any, int]:
    """Budget mode: close the weakest gates until the inference-mode network fits the
    budget (:func:`codesign.energy.fit_to_budget` without reopening). Returns the new
    state and how many units were closed (0: ``state`` unchanged)."""
    config = run.config
    if run.objective is None or config.energy_budget <= 0:
        return state, 0
    nnx.update((run.model, run.optimizer), jax.device_get(state))
    run.model.eval()
    closed, _ = energy.fit_to_budget(run.model, run.objective, config.energy_budget, reopen=False)
    run.model.train()
    if closed:
        state = _replicate(nnx.state((run.model, run.optimizer)), NamedSharding(run.mesh, P()))
    return state, closed


def report(run: TrainRun, state: Any, progress: Progress, *, print_table: bool = True) -> dict[str, Any]:
    """Finish the run: the final test evaluation, ``report.json``, the results table.

    Also writes the trained ``state`` back into ``run.model`` / ``run.optimizer``.
    Returns the report dict (see :func:`train_and_evaluate`).
    """
    config, history = run.config, progress.history
    if run.ckpt is not None:
        run.ckpt.wait()
    # Hand the trained state back to the Python model (e.g. for callers inspecting it).
    nnx.update((run.model, run.optimizer), jax.device_get(state))
    # budget mode: the last epoch fitted the network before its checkpoint (a no-op here
    # then); a run resumed from an older checkpoint is fitted now
    state, closed_now = _fit_final(run, state)
    closed = closed_now + (int(history[-1].get("budget_closed_units", 0)) if history else 0)
    finish = getattr(run.hooks, "finish", None)
    if finish is not None:
        # co-design: after the last gate change, the final hardware search
        finish(run.model, run.workdir if run.is_main else None)
        run.objective = run.hooks.objective
    # Final test evaluation (reuse the last epoch's when the per-epoch eval was the test set).
    if run.eval_name == "test" and history and "test_accuracy" in history[-1] and not closed_now:
        test = {"loss": history[-1]["test_loss"], "accuracy": history[-1]["test_accuracy"]}
    else:
        test = evaluate(run, state, run.test_ds)

    train_time = progress.train_time_s
    images = sum(h["images_per_s"] * h["epoch_time_s"] for h in history)
    out = {
        "model": config.model,
        "dataset": config.dataset,
        "test_accuracy": test["accuracy"],
        "test_loss": test["loss"],
        "params": run.n_params,
        "macs": run.macs,
        "macs_note": run.macs_note,
        "batch_size": config.batch_size,
        "epochs": config.epochs,
        "wall_time_s": progress.prior_elapsed_s + time.perf_counter() - run.t_start,
        "train_time_s": train_time,
        "compile_time_s": run.compile_s,
        "images_per_s": images / train_time if train_time > 0 else None,
        **run.hw_figures,
        "num_devices": run.mesh.size,
        "platform": jax.devices()[0].platform,
        "conv_backend": run.conv_backend,
        "resumed_from_epoch": progress.resumed_from,
    }
    if run.objective is not None:
        run.model.eval()
        hw = energy.hardware_summary(run.model, run.objective)
        run.model.train()
        out.update({k: hw[k] for k in ("energy_per_inference_uj", "latency_per_inference_ms",
                                       "dram_bytes_per_inference")})
        out["macs_kept"] = hw["macs_per_inference"]
        out["method"] = config.method
        out["hw"] = hw
        if config.energy_budget > 0:
            out["energy_budget"] = config.energy_budget
            out["budget_closed_units"] = closed
        out["dense"] = energy.dense_report(run.objective, config)
    markdown = None
    if getattr(run.hooks, "report", None) is not None:
        markdown = run.hooks.report(run.model, out)  # adds the method's figures to out
    elif run.objective is not None:
        markdown = energy.report_markdown(out)
    if run.is_main:
        atomic_write_json(run.workdir / "report.json", out)
        if markdown is not None:
            atomic_write_text(run.workdir / "report.md", markdown)
        if print_table:
            print("\n" + results_table([out]), flush=True)
    return out


def train_and_evaluate(config: Config, workdir: str | Path, *, resume: bool = False,
                       overwrite: bool = False, print_table: bool = True,
                       loss_fn: LossFn | None = None) -> dict[str, Any]:
    """Train ``config.model`` on ``config.dataset`` and evaluate it; write the run to ``workdir``.

    Writes (atomically) ``workdir/config.json`` (the config), ``workdir/metrics.jsonl``
    (one JSON line per epoch: ``epoch``, ``train_<name>`` for every metric of the loss
    function (by default ``train_loss``, ``train_accuracy``),
    ``val_loss``/``val_accuracy`` when ``val_size > 0``, ``test_loss``/``test_accuracy``
    otherwise, ``lr`` (at the epoch's last step), ``epoch_time_s`` (training steps
    only), ``eval_time_s``, ``images_per_s``), ``workdir/report.json`` (see Returns)
    and Orbax checkpoints in ``workdir/checkpoints/<epoch>`` (the last
    ``keep_checkpoints``).

    Args:
      config: the run.
      workdir: the run directory (created if missing).
      resume: continue the run in ``workdir`` from its latest checkpoint (the config
        must match except :data:`codesign.config.RUNTIME_FIELDS`).
      overwrite: discard a run already in ``workdir``.
      print_table: print the results table at the end.
      loss_fn: the :data:`LossFn` to minimize (default:
        ``ClassificationLoss(config.label_smoothing)``).

    Returns:
      The report dict: ``model``, ``dataset``, ``test_accuracy``, ``test_loss``,
      ``params``, ``macs`` (per image, batch 1; None if unavailable, with
      ``macs_note``), ``batch_size``, ``epochs``, ``wall_time_s`` (seconds, all
      sessions of this run, including start-up, compilation and evaluation),
      ``train_time_s`` (seconds in training steps), ``compile_time_s``,
      ``images_per_s`` (training images per second of ``train_time_s``),
      ``num_devices``, ``platform``, ``conv_backend`` (what ``config.conv_backend``
      resolved to: ``"onednn"`` or ``"xla"``), ``resumed_from_epoch``.

    Raises:
      WorkdirConflictError: ``workdir`` holds another run (see ``resume``/``overwrite``).
      NonFiniteLossError: the loss or a parameter became NaN/Inf (the last good
        checkpoint is kept).
      ConfigError: an invalid or inconsistent config.
    """
    run = setup(config, workdir, resume=resume, overwrite=overwrite, loss_fn=loss_fn,
                t_start=time.perf_counter())
    try:
        state, progress = restore(run)
        eval_name = run.eval_name
        for epoch in range(progress.start_epoch, config.epochs):
            state, extra = begin_epoch(run, state, epoch)
            state, train, epoch_time = train_epoch(run, state, epoch)
            progress.train_time_s += epoch_time
            if epoch + 1 == config.epochs:
                # budget mode: fit the final network before its checkpoint is written, so
                # the checkpoint (codesign cost --run, prune) is the network reported
                state, closed = _fit_final(run, state)
                if closed:
                    extra = {**extra, "budget_closed_units": closed}
            t1 = time.perf_counter()
            ev = evaluate(run, state, run.eval_ds)
            eval_time = time.perf_counter() - t1
            if not math.isfinite(ev["loss"]) or not bool(run.fns.all_finite(state)):
                raise run.non_finite(f"parameters or {eval_name} loss ({ev['loss']}) after "
                                     f"epoch {epoch + 1}")
            row = {
                "epoch": epoch + 1,
                **{f"train_{k}": v for k, v in train.items()},
                **{f"{eval_name}_{k}": v for k, v in ev.items()},
                **extra,
                "lr": float(run.schedule((epoch + 1) * run.steps_per_epoch - 1)),
                "epoch_time_s": epoch_time,
                "eval_time_s": eval_time,
                "images_per_s": run.steps_per_epoch * config.batch_size / epoch_time,
            }
            progress.history.append(row)
            _log(f"epoch {epoch + 1}/{config.epochs}: train {_fmt_metrics(train)} | {eval_name} "
                 f"{_fmt_metrics(ev)} | lr {row['lr']:.3g} | {epoch_time:.1f} s, "
                 f"{row['images_per_s']:,.0f} img/s")
            _save_epoch(run, state, progress, epoch + 1)
        return report(run, state, progress, print_table=print_table)
    finally:
        run.close()
