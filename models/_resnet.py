"""ResNet-20 for CIFAR-10 (He et al., "Deep Residual Learning", CVPR 2016, sec. 4.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from models._base import ZooModel, batch_norm, conv, linear
from models._cnn import ConvBNReLU
from models._gates import number_gates, place_gate

__all__ = ["BasicBlock", "ResNet20"]

SHORTCUTS = ("A", "B")


class BasicBlock(nnx.Module):
    """Two 3x3 convs with a shortcut: ``relu(gate2(bn2(conv2(gate1(relu(bn1(conv1 x)))))) + s(x))``.

    Shortcut ``s``: identity when the shape is kept; when it changes (stride 2 and
    more channels), option A subsamples by the stride and zero-pads the new channels
    (no parameters), option B uses a 1x1 conv + BatchNorm projection (``proj``,
    ``proj_bn``, ``proj_gate``).

    Gates: ``gate1`` (output of conv1; consumer conv2), ``gate2`` (output of conv2,
    before the residual addition, so no consumer), and ``proj_gate`` for option B.
    """

    def __init__(self, cin, cout, stride, *, shortcut, path, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.cin, self.cout, self.stride = cin, cout, stride
        self.conv1 = conv(cin, cout, 3, stride, use_bias=False, **kw)
        self.bn1 = batch_norm(cout, **kw)
        self.gate1 = place_gate(cout, f"{path}.conv1", (f"{path}.conv2",))
        self.conv2 = conv(cout, cout, 3, 1, use_bias=False, **kw)
        self.bn2 = batch_norm(cout, **kw)
        self.gate2 = place_gate(cout, f"{path}.conv2", ())
        self.project = shortcut == "B" and (stride != 1 or cin != cout)
        if self.project:
            self.proj = conv(cin, cout, 1, stride, use_bias=False, **kw)
            self.proj_bn = batch_norm(cout, **kw)
            self.proj_gate = place_gate(cout, f"{path}.proj", ())

    def __call__(self, x: jax.Array) -> jax.Array:
        y = self.gate1(nnx.relu(self.bn1(self.conv1(x))))
        y = self.gate2(self.bn2(self.conv2(y)))
        if self.project:
            s = self.proj_gate(self.proj_bn(self.proj(x)))
        else:
            s = x[:, :: self.stride, :: self.stride, :] if self.stride != 1 else x
            extra = self.cout - self.cin
            if extra:
                s = jnp.pad(s, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
        return nnx.relu(y + s)


class ResNet20(ZooModel):
    """ResNet-20 for CIFAR-10 (He et al. 2016, sec. 4.2: 6n+2 layers with n = 3).

    Layers (default input 32x32x3)::

      stem       3x3 conv 3 -> 16, BN, ReLU                         32x32x16
      blocks.0-2 BasicBlock 16 -> 16                                32x32x16
      blocks.3-5 BasicBlock 32 (blocks.3 has stride 2)              16x16x32
      blocks.6-8 BasicBlock 64 (blocks.6 has stride 2)              8x8x64
      global average pool -> head: linear 64 -> num_classes

    Convs have no bias (BatchNorm follows each). The default shortcut is option A
    of the paper (identity; where the shape changes, subsample by 2 and zero-pad
    the extra channels; parameter-free), as the paper uses for its CIFAR-10 nets;
    ``shortcut="B"`` uses 1x1-conv + BN projections there instead.

    Size (default input 32x32x3, 10 classes, option A): 269,722 parameters
    (of which 1,376 BatchNorm scale/shift), 40,551,040 MACs at batch 1
    (stem 442,368; blocks.0-2 4,718,592 each; blocks.3 3,538,944;
    blocks.4-5 4,718,592 each; blocks.6 3,538,944; blocks.7-8 4,718,592 each;
    head 640). Option B (``shortcut="B"``): 272,474 parameters and 40,813,184 MACs (the two
    1x1 projections add 16*32 + 32*64 weights, 192 BatchNorm parameters and
    131,072 MACs each).

    Gates (channel): ``stem.gate``; per block ``blocks.i.gate1`` (conv1, consumer
    conv2) and ``blocks.i.gate2`` (conv2, before the addition); ``blocks.i.proj_gate``
    with option B.

    Args:
      shortcut: ``"A"`` (default) or ``"B"``.
      widths: channels of the three stages (default (16, 32, 64)).
      blocks_per_stage: n (default 3; 6n+2 layers).
    """

    def __init__(
        self,
        *,
        input_shape=(32, 32, 3),
        num_classes: int = 10,
        rngs: nnx.Rngs,
        shortcut: str = "A",
        widths=(16, 32, 64),
        blocks_per_stage: int = 3,
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    ):
        kw = self._setup(input_shape, num_classes, dtype, param_dtype, rngs)
        if shortcut not in SHORTCUTS:
            raise ValueError(f"ResNet20: shortcut must be one of {SHORTCUTS}, got {shortcut!r}")
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"ResNet20: widths must be positive ints, got {widths!r}")
        if not isinstance(blocks_per_stage, int) or blocks_per_stage < 1:
            raise ValueError(
                f"ResNet20: blocks_per_stage must be a positive int, got {blocks_per_stage!r}"
            )
        self.shortcut = shortcut
        _, _, c = self.input_shape
        self.stem = ConvBNReLU(c, widths[0], 3, path="stem", consumers=("blocks.0.conv1",), **kw)
        blocks = []
        cin = widths[0]
        for s, cout in enumerate(widths):
            for b in range(blocks_per_stage):
                stride = 2 if (s > 0 and b == 0) else 1
                i = len(blocks)
                blocks.append(
                    BasicBlock(cin, cout, stride, shortcut=shortcut, path=f"blocks.{i}", **kw)
                )
                cin = cout
        self.blocks = nnx.List(blocks)
        self.head = linear(cin, num_classes, **kw)
        number_gates(self)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._stem_blocks_head(x)
