"""A small MobileNet (v1-style depthwise-separable CNN) for CIFAR-10."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from models._base import ZooModel, linear
from models._cnn import ConvBNReLU
from models._depthwise import IMPLS
from models._gates import number_gates

__all__ = ["MobileNetSmall", "SeparableBlock"]


class SeparableBlock(nnx.Module):
    """Depthwise-separable conv (Howard et al. 2017): ``dw`` then ``pw``.

    ``dw``: 3x3 depthwise conv (``feature_group_count = C``, stride 1 or 2), BN,
    ReLU; ``pw``: 1x1 conv C -> C', BN, ReLU. Each unit is a :class:`ConvBNReLU`
    (``dw.conv``, ``dw.bn``, ``dw.gate``; ``pw.conv`` ...).
    """

    def __init__(self, cin, cout, stride, *, path, next_layer, depthwise_impl, dtype,
                 param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.dw = ConvBNReLU(
            cin, cin, 3, stride, depthwise=True, depthwise_impl=depthwise_impl,
            path=f"{path}.dw", consumers=(f"{path}.pw.conv",), **kw,
        )
        self.pw = ConvBNReLU(cin, cout, 1, 1, path=f"{path}.pw", consumers=(next_layer,), **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.pw(self.dw(x))


DEFAULT_BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))


class MobileNetSmall(ZooModel):
    """A MobileNet-v1-style network sized for 32x32 CIFAR-10 images.

    Layers (default input 32x32x3, ``stem_width=32``, ``blocks`` =
    ``((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2))`` as
    (output channels, stride))::

      stem       3x3 conv 3 -> 32, BN, ReLU                       32x32x32
      blocks.0   dw 3x3 s1 (32),  pw 32 -> 64                      32x32x64
      blocks.1   dw 3x3 s2 (64),  pw 64 -> 128                     16x16x128
      blocks.2   dw 3x3 s1 (128), pw 128 -> 128                    16x16x128
      blocks.3   dw 3x3 s2 (128), pw 128 -> 256                    8x8x256
      blocks.4   dw 3x3 s1 (256), pw 256 -> 256                    8x8x256
      blocks.5   dw 3x3 s2 (256), pw 256 -> 512                    4x4x512
      global average pool -> dropout (``dropout_rate``) -> head: linear 512 -> num_classes

    This is MobileNet v1's layer pattern (Howard et al. 2017) with its first
    7 separable blocks reduced to 6, the stem at stride 1 (CIFAR's 32x32 input is
    7x smaller than ImageNet's), and widths at half of v1's. Convs have no bias
    (each is followed by BatchNorm).

    Size (default input 32x32x3, 10 classes): 274,250 parameters (of which
    4,480 BatchNorm scale/shift), 18,662,400 MACs at batch 1 (stem 884,736;
    depthwise 294,912 + 147,456 + 294,912 + 73,728 + 147,456 + 36,864;
    pointwise 2,097,152 + 2,097,152 + 4,194,304 + 2,097,152 + 4,194,304 + 2,097,152;
    head 5,120).

    Gates (channel): ``stem.gate`` and ``blocks.i.dw.gate``, ``blocks.i.pw.gate``
    after every ReLU.

    Args:
      stem_width: output channels of the stem conv.
      blocks: (output channels, stride) of each separable block.
      dropout_rate: dropout before the head (0 disables it).
      depthwise_impl: ``"auto"`` (default), ``"onednn"``, ``"taps"`` or ``"xla"``, see
        :class:`models._depthwise.DepthwiseConv`: all trace as a grouped conv and give
        the same numbers; ``"auto"`` trains on oneDNN's depthwise kernels where the
        conv backend is oneDNN, else on ``"taps"`` (several times faster than
        ``"xla"`` on XLA's CPU backend).
    """

    def __init__(
        self,
        *,
        input_shape=(32, 32, 3),
        num_classes: int = 10,
        rngs: nnx.Rngs,
        stem_width: int = 32,
        blocks: Sequence[tuple[int, int]] = DEFAULT_BLOCKS,
        dropout_rate: float = 0.0,
        depthwise_impl: str = "auto",
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    ):
        kw = self._setup(input_shape, num_classes, dtype, param_dtype, rngs)
        blocks = tuple((int(c), int(s)) for c, s in blocks)
        if not blocks or any(c < 1 or s not in (1, 2) for c, s in blocks):
            raise ValueError(
                "MobileNetSmall: blocks must be (channels >= 1, stride 1 or 2) pairs, "
                f"got {blocks!r}"
            )
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(
                f"MobileNetSmall: dropout_rate must be in [0, 1), got {dropout_rate!r}"
            )
        if depthwise_impl not in IMPLS:
            raise ValueError(
                f"MobileNetSmall: depthwise_impl must be one of {IMPLS}, got {depthwise_impl!r}"
            )
        _, _, c = self.input_shape
        self.stem = ConvBNReLU(
            c, stem_width, 3, 1, path="stem", consumers=("blocks.0.dw.conv",), **kw
        )
        units = []
        cin = stem_width
        for i, (cout, stride) in enumerate(blocks):
            nxt = f"blocks.{i + 1}.dw.conv" if i + 1 < len(blocks) else "head"
            units.append(
                SeparableBlock(cin, cout, stride, path=f"blocks.{i}", next_layer=nxt,
                               depthwise_impl=depthwise_impl, **kw)
            )
            cin = cout
        self.blocks = nnx.List(units)
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.head = linear(cin, num_classes, **kw)
        number_gates(self)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self._stem_blocks_head(x, self.dropout)
