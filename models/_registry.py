"""The model registry: names -> builders and metadata."""

from __future__ import annotations

import dataclasses
import inspect

from flax import nnx

from models._base import lookup
from models._cnn import LeNet5, MnistCNN, VGGSmall
from models._mobilenet import MobileNetSmall
from models._resnet import ResNet20
from models._vit import ViTTiny

__all__ = ["ModelInfo", "create", "get_info", "list_models"]


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """What the registry knows about a zoo model.

    Attributes:
      name: registry name (``create(name, ...)``).
      description: one line.
      default_input_shape: ``(H, W, C)`` the model is built for by default.
      num_classes: default number of classes.
      dataset: the dataset the defaults are for (a ``codesign.data`` name).
      datasets: every dataset the model is meant for (``dataset`` first).
      model_class: the ``nnx.Module`` class ``create`` builds (its docstring gives
        the layers and the size: parameters and MACs at batch 1).
    """

    name: str
    description: str
    default_input_shape: tuple[int, int, int]
    num_classes: int
    dataset: str
    datasets: tuple[str, ...]
    model_class: type = dataclasses.field(repr=False)

    @property
    def options(self) -> tuple[str, ...]:
        """Names of the keyword overrides ``create`` accepts for this model."""
        return _options(self.model_class)


_MNIST = (28, 28, 1)
_CIFAR = (32, 32, 3)

_REGISTRY: dict[str, ModelInfo] = {
    info.name: info
    for info in (
        ModelInfo("lenet5", "LeNet-5 adapted to 28x28 (ReLU, average pooling)",
                  _MNIST, 10, "mnist", ("mnist", "mnist-5k"), LeNet5),
        ModelInfo("mnist_cnn", "the 2-conv CNN of the Flax MNIST example",
                  _MNIST, 10, "mnist", ("mnist", "mnist-5k"), MnistCNN),
        ModelInfo("vgg_small", "VGG-style CNN with BatchNorm, 6 convs (32-64-128)",
                  _CIFAR, 10, "cifar10", ("cifar10",), VGGSmall),
        ModelInfo("resnet20", "ResNet-20 (He et al. 2016), option-A shortcuts",
                  _CIFAR, 10, "cifar10", ("cifar10",), ResNet20),
        ModelInfo("mobilenet_small", "MobileNet-v1-style depthwise-separable CNN",
                  _CIFAR, 10, "cifar10", ("cifar10",), MobileNetSmall),
        ModelInfo("vit_tiny", "tiny ViT (6 blocks, D=64, 4 heads, 4x4 patches)",
                  _MNIST, 10, "mnist", ("mnist", "mnist-5k", "cifar10"), ViTTiny),
    )
}

_FIXED = ("self", "input_shape", "num_classes", "rngs")


def _options(cls) -> tuple[str, ...]:
    return tuple(p for p in inspect.signature(cls.__init__).parameters if p not in _FIXED)


def list_models() -> tuple[str, ...]:
    """Names of the trainable zoo models, in registry order."""
    return tuple(_REGISTRY)


def get_info(name: str) -> ModelInfo:
    """Metadata of a zoo model.

    Raises:
      ValueError: unknown name (the message lists the valid names).
    """
    return lookup(_REGISTRY, name, "model")


def create(
    name: str,
    *,
    rngs: nnx.Rngs,
    num_classes: int | None = None,
    input_shape: tuple[int, int, int] | None = None,
    **overrides,
) -> nnx.Module:
    """Builds a zoo model with fresh parameters.

    Args:
      name: one of :func:`list_models`.
      rngs: the randomness: the ``params`` stream (or ``default``) initializes the
        weights; Dropout layers fork the ``dropout`` stream (or ``default``) at
        construction and draw from their fork at every training-mode call.
      num_classes: number of logits (default: the model's, see :func:`get_info`).
      input_shape: ``(H, W, C)`` of the NHWC input (default: the model's).
      **overrides: model options (``dtype``, ``param_dtype`` and the model-specific
        ones listed by ``get_info(name).options``).

    Returns:
      The model (an ``nnx.Module`` in training mode), called as ``model(x)`` with
      ``x [B, H, W, C]`` and returning float32 logits ``[B, num_classes]``.

    Raises:
      ValueError: unknown model name or option, or an invalid value.
      TypeError: ``rngs`` is not an ``nnx.Rngs``.
    """
    info = get_info(name)
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(f"create({name!r}): rngs must be an nnx.Rngs, got {type(rngs).__name__}")
    bad = sorted(set(overrides) - set(info.options))
    if bad:
        raise ValueError(
            f"model {name!r} has no option(s) {', '.join(map(repr, bad))}; "
            f"valid: {', '.join(info.options)}"
        )
    return info.model_class(
        input_shape=tuple(input_shape) if input_shape is not None else info.default_input_shape,
        num_classes=num_classes if num_classes is not None else info.num_classes,
        rngs=rngs,
        **overrides,
    )

