"""``model_workload``: the :class:`hwmodel.Workload` of a zoo model, a reference network
or any Flax NNX module, without materialising its parameters.

The module is built (or taken) abstractly, switched to inference mode with
``nnx.view(deterministic=True, use_running_average=True)`` (BatchNorm uses running
statistics, Dropout is off: no random-number work is counted), split into a graph
definition and its state, and traced with the state as a *named parameter argument*
of :func:`hwmodel.extract_workload`, so layers are named by module path
(``blocks.3.attn.q``, ``stages.1.block0.conv2``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

import hwmodel
from models import reference
from models._gates import gates_bypassed
from models._quant import quant_bypassed

__all__ = ["default_input_shape", "list_countable_models", "model_param_count", "model_workload"]


def _zoo():
    """The trainable zoo's registry functions, or None when it is not available."""
    try:
        import models as pkg
    except ImportError:  # pragma: no cover - we are inside models
        return None
    if all(hasattr(pkg, f) for f in ("list_models", "get_info", "create")):
        return pkg
    return None


def list_countable_models() -> tuple[str, ...]:
    """Names ``model_workload`` accepts: the trainable zoo (when present), then the
    reference networks."""
    zoo = _zoo()
    names = tuple(zoo.list_models()) if zoo is not None else ()
    return names + tuple(n for n in reference.list_reference_models() if n not in names)


def default_input_shape(name: str) -> tuple[int, ...]:
    """The per-example input shape ``model_workload(name)`` uses by default.

    Raises:
      ValueError: unknown model name (lists the valid ones).
    """
    zoo = _zoo()
    if zoo is not None and name in zoo.list_models():
        return tuple(zoo.get_info(name).default_input_shape)
    if name in reference.REFERENCE_MODELS:
        return reference.REFERENCE_MODELS[name].default_input_shape
    raise ValueError(f"unknown model {name!r}; valid: {', '.join(list_countable_models())}")


def _eval_view(module: nnx.Module) -> nnx.Module:
    return nnx.view(module, deterministic=True, use_running_average=True, raise_if_not_found=False)


def _check_shape(name: str, input_shape) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not shape or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in shape):
        raise ValueError(f"model {name!r}: input shape must be positive ints, got {input_shape!r}")
    return shape


def _abstract_zoo_model(zoo, name: str, shape: tuple[int, ...], given: bool) -> nnx.Module:
    """Zoo model ``name`` with abstract parameters, built for ``shape`` when ``given``."""
    kwargs = {"input_shape": shape} if given else {}
    try:
        return nnx.eval_shape(lambda: zoo.create(name, rngs=nnx.Rngs(0), **kwargs))
    except Exception as e:  # noqa: BLE001 - re-raised with the model and shape
        raise ValueError(
            f"model {name!r} cannot be built for input shape "
            f"{','.join(map(str, shape))}: {type(e).__name__}: {e}"
        ) from e


def model_param_count(name: str, *, input_shape: Sequence[int] | None = None) -> int:
    """Every parameter of a zoo or reference model: the elements of all its ``nnx.Param``
    leaves (kernels, biases, norm scales and offsets, embedding tables, position tables).

    Counted on the abstract parameter state (``nnx.eval_shape``): nothing is allocated,
    so ``gpt3_175b`` costs no memory. This is what published model sizes count (BERT-base
    110 M, GPT-3 175 B), unlike a workload's ``total_weights`` (the static operands of
    convolutions and matmuls only).

    Args:
      name: a zoo or reference model name (:func:`list_countable_models`).
      input_shape: per-example input shape (default: the model's own); it matters for
        zoo models whose first dense layer follows a flatten.

    Raises:
      ValueError: unknown name (lists the valid ones) or an input shape the model
        cannot be built for.
    """
    from models._base import count_params

    zoo = _zoo()
    if zoo is not None and name in zoo.list_models():
        default = zoo.get_info(name).default_input_shape
        shape = _check_shape(name, default if input_shape is None else input_shape)
        return count_params(_abstract_zoo_model(zoo, name, shape, input_shape is not None))
    if name in reference.REFERENCE_MODELS:
        ref = reference.get_reference(name)
        return ref.param_count(ref.check_input_shape(input_shape))
    raise ValueError(f"unknown model {name!r}; valid: {', '.join(list_countable_models())}")


def model_workload(
    name_or_module: str | nnx.Module,
    *,
    batch: int = 1,
    input_shape: Sequence[int] | None = None,
    input_dtype=jnp.float32,
    name: str | None = None,
) -> hwmodel.Workload:
    """Extract the workload of a model by name, or of an NNX module.

    Args:
      name_or_module: a zoo model name (``models.list_models()``), a reference
        network name (``models.reference.list_reference_models()``), or an
        ``nnx.Module`` (real or abstract parameters; it is not modified).
      batch: batch size N (>= 1).
      input_shape: per-example input shape: ``(H, W, C)`` for image models, ``(T,)``
        for the reference transformers; defaults to the model's own.  Required for a
        module.
      input_dtype: dtype of the input for a module (zoo models take float32 images,
        reference transformers int32 tokens regardless).
      name: workload name; defaults to the model name / module class name.

    Returns:
      The :class:`hwmodel.Workload`.

    Raises:
      ValueError: unknown model name (lists the valid ones), bad batch or input
        shape, or a model that cannot be traced at that shape (names model and shape).
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    if isinstance(name_or_module, str):
        model_name = name_or_module
        zoo = _zoo()
        if zoo is not None and model_name in zoo.list_models():
            info = zoo.get_info(model_name)
            shape = _check_shape(
                model_name, info.default_input_shape if input_shape is None else input_shape
            )
            module = _abstract_zoo_model(zoo, model_name, shape, input_shape is not None)
            x = jax.ShapeDtypeStruct((batch, *shape), jnp.float32)
        elif model_name in reference.REFERENCE_MODELS:
            ref = reference.get_reference(model_name)
            shape = ref.check_input_shape(input_shape)
            module = ref.create(shape)
            x = ref.input_spec(batch, shape)
        else:
            raise ValueError(
                f"unknown model {model_name!r}; valid: {', '.join(list_countable_models())}"
            )
    elif isinstance(name_or_module, nnx.Module):
        module = name_or_module
        model_name = type(module).__name__
        if input_shape is None:
            raise ValueError(
                f"model_workload({model_name}): input_shape is required for a module "
                "(the per-example shape, e.g. (32, 32, 3))"
            )
        shape = _check_shape(model_name, input_shape)
        x = jax.ShapeDtypeStruct((batch, *shape), input_dtype)
    else:
        raise TypeError(
            f"model_workload: expected a model name or an nnx.Module, got {type(name_or_module).__name__}"
        )
    try:  # hwmodel.extract_workload splits an NNX module: its state becomes the parameters
        # a gate is free on the hardware (its keep is a cost knob) and rounding is not
        # arithmetic an integer datapath does (the bits are cost knobs)
        with gates_bypassed(), quant_bypassed():
            return hwmodel.extract_workload(_eval_view(module), x, name=name or model_name, batch=batch)
    except hwmodel.ExtractionError as e:
        cause = e.__cause__
        detail = f"{type(cause).__name__}: {cause}" if cause is not None else str(e)
        detail = detail.strip().splitlines()[0] if detail.strip() else detail
        raise ValueError(
            f"model {model_name!r} does not accept input shape {','.join(map(str, shape))} "
            f"(batch {batch}): {detail}"
        ) from e
