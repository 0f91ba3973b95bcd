"""Plain CNNs: LeNet-5, the Flax MNIST CNN, and a small VGG for CIFAR-10."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from models._base import ZooModel, batch_norm, conv, he_normal, linear, pool2
from models._depthwise import DepthwiseConv
from models._gates import number_gates, place_gate

__all__ = ["LeNet5", "MnistCNN", "VGGSmall"]


class LeNet5(ZooModel):
    """LeNet-5 (LeCun et al. 1998), adapted to 28x28 MNIST.

    Layers (default input 28x28x1)::

      conv1  5x5, 1 -> 6, padding 2 (28x28 -> 28x28), ReLU, avg-pool 2  -> 14x14x6
      conv2  5x5, 6 -> 16, valid      (14x14 -> 10x10), ReLU, avg-pool 2 -> 5x5x16
      conv3  5x5, 16 -> 120, valid    (5x5 -> 1x1), ReLU  (LeNet's C5)   -> 120
      fc1    120 -> 84, ReLU                                             (F6)
      fc2    84 -> num_classes                                           (output)

    Adaptation from the paper (which takes 32x32 inputs): conv1 pads its 28x28
    input by 2 pixels on each side, which is the paper's 32x32 framing of a 28x28
    digit, so every later shape is the paper's. The modern simplifications: ReLU
    instead of the scaled tanh, plain 2x2 average pooling instead of the trainable
    subsampling layers, full C3 connectivity instead of the sparse connection
    table, and a dense output layer instead of the RBF units.

    Size (default input 28x28x1, 10 classes): 61,706 parameters,
    416,520 MACs at batch 1 (conv1 117,600; conv2 240,000; conv3 48,000;
    fc1 10,080; fc2 840).

    Gates (channel): ``conv1_gate`` (6), ``conv2_gate`` (16), ``conv3_gate`` (120),
    ``fc1_gate`` (84), each after the layer's ReLU.
    """

    def __init__(
        self,
        *,
        input_shape=(28, 28, 1),
        num_classes: int = 10,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    ):
        kw = self._setup(input_shape, num_classes, dtype, param_dtype, rngs)
        h, w, c = self.input_shape
        # spatial sizes: conv1 keeps HxW; pool; conv2 valid (-4); pool; conv3 valid (-4)
        h3, w3 = (h // 2 - 4) // 2 - 4, (w // 2 - 4) // 2 - 4
        if h3 < 1 or w3 < 1:
            raise ValueError(
                f"LeNet5: input {self.input_shape} is too small; H and W must be >= 28"
            )
        self.conv1 = conv(c, 6, 5, padding=((2, 2), (2, 2)), **kw)
        self.conv1_gate = place_gate(6, "conv1", ("conv2",))
        self.conv2 = conv(6, 16, 5, padding="VALID", **kw)
        self.conv2_gate = place_gate(16, "conv2", ("conv3",))
        self.conv3 = conv(16, 120, 5, padding="VALID", **kw)
        self.conv3_gate = place_gate(120, "conv3", ("fc1",))
        self.fc1 = linear(120 * h3 * w3, 84, **kw)
        self.fc1_gate = place_gate(84, "fc1", ("fc2",))
        self.fc2 = linear(84, num_classes, **kw)
        number_gates(self)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self._check_input(x)
        x = pool2(self.conv1_gate(nnx.relu(self.conv1(x))), "avg")
        x = pool2(self.conv2_gate(nnx.relu(self.conv2(x))), "avg")
        x = self.conv3_gate(nnx.relu(self.conv3(x)))
        x = x.reshape(x.shape[0], -1)
        x = self.fc1_gate(nnx.relu(self.fc1(x)))
        return self.fc2(x).astype(jnp.float32)


class MnistCNN(ZooModel):
    """The small CNN of the Flax MNIST example (``examples/mnist``, NNX tutorial).

    Exactly the example's layers (a variant in Flax's tracing benchmarks adds BatchNorm
    and Dropout(0.025); that variant is not this model).

    Layers (default input 28x28x1; convs use SAME padding)::

      conv1  3x3, 1 -> 32,  ReLU, avg-pool 2   -> 14x14x32
      conv2  3x3, 32 -> 64, ReLU, avg-pool 2   -> 7x7x64
      flatten 3136 -> linear1 256, ReLU -> linear2 num_classes

    Size (default input 28x28x1, 10 classes): 824,458 parameters,
    4,643,840 MACs at batch 1 (conv1 225,792; conv2 3,612,672; linear1 802,816;
    linear2 2,560).

    Gates (channel): ``conv1_gate`` (32), ``conv2_gate`` (64), ``linear1_gate`` (256),
    each after the layer's ReLU.
    """

    def __init__(
        self,
        *,
        input_shape=(28, 28, 1),
        num_classes: int = 10,
        rngs: nnx.Rngs,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    ):
        kw = self._setup(input_shape, num_classes, dtype, param_dtype, rngs)
        h, w, c = self.input_shape
        if h < 4 or w < 4:
            raise ValueError(f"MnistCNN: input {self.input_shape} is too small; H, W >= 4")
        self.conv1 = conv(c, 32, 3, **kw)
        self.conv1_gate = place_gate(32, "conv1", ("conv2",))
        self.conv2 = conv(32, 64, 3, **kw)
        self.conv2_gate = place_gate(64, "conv2", ("linear1",))
        self.linear1 = linear((h // 4) * (w // 4) * 64, 256, **kw)
        self.linear1_gate = place_gate(256, "linear1", ("linear2",))
        self.linear2 = linear(256, num_classes, **kw)
        number_gates(self)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self._check_input(x)
        x = pool2(self.conv1_gate(nnx.relu(self.conv1(x))), "avg")
        x = pool2(self.conv2_gate(nnx.relu(self.conv2(x))), "avg")
        x = x.reshape(x.shape[0], -1)
        x = self.linear1_gate(nnx.relu(self.linear1(x)))
        return self.linear2(x).astype(jnp.float32)


class ConvBNReLU(nnx.Module):
    """``conv (no bias) -> BatchNorm -> ReLU -> gate`` (attributes ``conv``, ``bn``, ``gate``).

    Args:
      cin, cout, k, stride: conv geometry (SAME padding; ``groups`` for grouped convs).
      depthwise: use a :class:`DepthwiseConv` (requires ``cin == cout``; same
        parameter layout as an ``nnx.Conv`` with ``groups = cin``); ``depthwise_impl``
        is its ``impl``.
      path: this unit's module path inside the zoo model (for the gate's site
        metadata); ``consumers``: paths of the layers reading its output channels.
      gated: False leaves out the gate (``gate`` is None): the output is gated
        elsewhere (resnet20's stream gates).
    """

    def __init__(
        self, cin, cout, k=3, stride=1, *, groups=1, depthwise=False, depthwise_impl="auto",
        path, consumers, dtype, param_dtype, rngs, gated=True,
    ):
        if depthwise:
            if cin != cout:
                raise ValueError(f"{path}: a depthwise conv needs cin == cout, got {cin}, {cout}")
            self.conv = DepthwiseConv(
                cin, k, stride, kernel_init=he_normal, dtype=dtype, param_dtype=param_dtype,
                rngs=rngs, impl=depthwise_impl,
            )
        else:
            self.conv = conv(
                cin, cout, k, stride, groups=groups, use_bias=False,
                dtype=dtype, param_dtype=param_dtype, rngs=rngs,
            )
        self.bn = batch_norm(cout, dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.gate = place_gate(cout, f"{path}.conv", consumers) if gated else None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.bn(self.conv(x)))
        return y if self.gate is None else self.gate(y)


class VGGSmall(ZooModel):
    """A small VGG-style CNN with BatchNorm for CIFAR-10.

    Layers (default input 32x32x3, ``stages=((32, 32), (64, 64), (128, 128))``)::

      features.0  3x3 conv 3 -> 32,    BN, ReLU             32x32
      features.1  3x3 conv 32 -> 32,   BN, ReLU, max-pool 2 -> 16x16
      features.2  3x3 conv 32 -> 64,   BN, ReLU
      features.3  3x3 conv 64 -> 64,   BN, ReLU, max-pool 2 -> 8x8
      features.4  3x3 conv 64 -> 128,  BN, ReLU
      features.5  3x3 conv 128 -> 128, BN, ReLU, max-pool 2 -> 4x4
      global average pool -> dropout (``dropout_rate``) -> head: linear 128 -> num_classes

    Convs have no bias (BatchNorm's shift replaces it). Each stage doubles the width
    and halves the resolution, as in VGG (Simonyan & Zisserman 2015), with 2 convs
    per stage instead of 2-4 and widths 1/2 to 1/4 of VGG's first three stages, so a
    training step is about as cheap as ResNet-20's.

    Size (default input 32x32x3, 10 classes, default stages): 288,746 parameters
    (of which 896 BatchNorm scale/shift), 38,634,752 MACs at batch 1
    (features: 884,736 + 9,437,184 + 4,718,592 + 9,437,184 + 4,718,592 + 9,437,184;
    head 1,280 -- (H*W) * Cout * 9 * Cin per conv).

    Gates (channel): ``features.i.gate`` after every conv's ReLU (before pooling).

    Args:
      stages: conv widths per stage; a 2x2 max-pool follows every stage.
      dropout_rate: dropout before the head (0 disables it).
    """

    def __init__(
        self,
        *,
        input_shape=(32, 32, 3),
        num_classes: int = 10,
        rngs: nnx.Rngs,
        stages: Sequence[Sequence[int]] = ((32, 32), (64, 64), (128, 128)),
        dropout_rate: float = 0.0,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    ):
        kw = self._setup(input_shape, num_classes, dtype, param_dtype, rngs)
        stages = tuple(tuple(int(w) for w in s) for s in stages)
        if not stages or any(not s or min(s) < 1 for s in stages):
            raise ValueError(f"VGGSmall: stages must be non-empty lists of widths, got {stages!r}")
        h, w, c = self.input_shape
        if h % (2 ** len(stages)) or w % (2 ** len(stages)):
            raise ValueError(
                f"VGGSmall: H and W of input {self.input_shape} must be divisible by "
                f"2**len(stages) = {2 ** len(stages)}"
            )
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"VGGSmall: dropout_rate must be in [0, 1), got {dropout_rate!r}")
        widths = [w_ for s in stages for w_ in s]
        self.pool_after = tuple(
            i for i in range(len(widths)) if i + 1 in _stage_ends(stages)
        )
        units = []
        cin = c
        for i, cout in enumerate(widths):
            nxt = f"features.{i + 1}.conv" if i + 1 < len(widths) else "head"
            units.append(
                ConvBNReLU(cin, cout, 3, path=f"features.{i}", consumers=(nxt,), **kw)
            )
            cin = cout
        self.features = nnx.List(units)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.head = linear(cin, num_classes, **kw)
        number_gates(self)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self._check_input(x)
        for i, unit in enumerate(self.features):
            x = unit(x)
            if i in self.pool_after:
                x = pool2(x, "max")
        x = jnp.mean(x, axis=(1, 2))
        x = self.dropout(x)
        return self.head(x).astype(jnp.float32)


def _stage_ends(stages) -> tuple[int, ...]:
    """Cumulative conv counts at the end of each stage: ((a, b), (c,)) -> (2, 3)."""
    out, n = [], 0
    for s in stages:
        n += len(s)
        out.append(n)
    return tuple(out)
