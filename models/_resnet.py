"""ResNet-20 for CIFAR-10 (He et al., "Deep Residual Learning", CVPR 2016, sec. 4.2)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from models._base import ZooModel, batch_norm, conv, linear, take_channels
from models._cnn import ConvBNReLU
from models._gates import _BYPASS, number_gates, place_gate

__all__ = ["BasicBlock", "ResNet20", "StreamScale"]

SHORTCUTS = ("A", "B")


def _scale(x: jax.Array, z: jax.Array) -> jax.Array:
    """``x [..., C]`` times per-channel ``z [C]`` (explicit full-rank broadcast)."""
    return x * jnp.reshape(z.astype(x.dtype), (1,) * (x.ndim - 1) + (-1,))


class BasicBlock(nnx.Module):
    """Two 3x3 convs with a shortcut: ``relu(gate2(bn2(conv2(gate1(relu(bn1(conv1 x)))))) + s(x))``.

    Shortcut ``s``: identity when the shape is kept; when it changes (stride 2 and
    more channels), option A subsamples by the stride and zero-pads the new channels
    (no parameters), option B uses a 1x1 conv + BatchNorm projection (``proj``,
    ``proj_bn``, ``proj_gate``).

    Gates: ``gate1`` (output of conv1; consumer conv2), ``gate2`` (output of conv2,
    before the residual addition, so no consumer), and ``proj_gate`` for option B.

    With ``stream=True`` (``ResNet20(stream_gates=True)``) there is no ``gate2`` or
    ``proj_gate``: the stage's stream gate scales conv2's output (and the projection,
    or the subsampled shortcut where the stage begins) by the values ``z`` the model
    passes in, so a closed stream channel is zero throughout the stage. A pruned
    stream block whose stage begins here gathers its option-A shortcut: kept channel
    ``j`` of the new stream reads kept channel ``short_index[j]`` of the previous one,
    times ``short_scale[j]`` (the stream gate's folded value, 0 where the old stream
    has no such channel).
    """

    def __init__(self, cin, cout, stride, *, shortcut, path, dtype, param_dtype, rngs,
                 stream=False):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.cin, self.cout, self.stride = cin, cout, stride
        self.stream = bool(stream)
        self.conv1 = conv(cin, cout, 3, stride, use_bias=False, **kw)
        self.bn1 = batch_norm(cout, **kw)
        self.gate1 = place_gate(cout, f"{path}.conv1", (f"{path}.conv2",))
        self.conv2 = conv(cout, cout, 3, 1, use_bias=False, **kw)
        self.bn2 = batch_norm(cout, **kw)
        if not self.stream:
            self.gate2 = place_gate(cout, f"{path}.conv2", ())
        self.project = shortcut == "B" and (stride != 1 or cin != cout)
        if self.project:
            self.proj = conv(cin, cout, 1, stride, use_bias=False, **kw)
            self.proj_bn = batch_norm(cout, **kw)
            if not self.stream:
                self.proj_gate = place_gate(cout, f"{path}.proj", ())
        # set by codesign.prune on a pruned stream block where a stage begins (option A),
        # together with ``short_scale`` (a StreamScale [k])
        self.short_index: tuple[int, ...] | None = None

    def __call__(self, x: jax.Array, z: jax.Array | None = None) -> jax.Array:
        """``x``: the stream entering the block; ``z``: the stage's stream-gate values
        (stream blocks only; None for none)."""
        y = self.gate1(nnx.relu(self.bn1(self.conv1(x))))
        y = self.bn2(self.conv2(y))
        if not self.stream:
            y = self.gate2(y)
        elif z is not None:
            y = _scale(y, z)
        if self.project:
            s = self.proj_bn(self.proj(x))
            if not self.stream:
                s = self.proj_gate(s)
            elif z is not None:
                s = _scale(s, z)
        else:
            s = x[:, :: self.stride, :: self.stride, :] if self.stride != 1 else x
            if self.short_index is not None:  # a pruned stream where a stage begins
                s = take_channels(s, self.short_index)
                if not _BYPASS.get():  # a folded gate value: free on the hardware
                    s = _scale(s, self.short_scale[...])
            else:
                extra = self.cout - self.cin
                if extra:
                    s = jnp.pad(s, ((0, 0), (0, 0), (0, 0), (extra // 2, extra - extra // 2)))
                if self.stream and z is not None and (self.stride != 1 or extra):
                    s = _scale(s, z)
        return nnx.relu(y + s)


class StreamScale(nnx.Variable):
    """Per-channel scale of a pruned stream block's gathered shortcut (not a ``Param``:
    folded gate values, not trained)."""


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
    with option B. These leave the residual stream at full width: a channel closed at
    ``gate2`` is not computed by that conv2, but the stream still carries it.

    With ``stream_gates=True`` the residual stream itself is gated: one gate per stage,
    ``streams.s`` (``s`` = 0, 1, 2), on the stage's stream channels, and no ``stem.gate``,
    ``gate2`` or ``proj_gate``. One sample per forward pass multiplies the stem's output
    (stage 0), every conv2 output of the stage and, where the stage begins, the
    shortcut (or projection), so a closed channel is zero everywhere in the stage and
    pruning removes it from every layer that writes it (the site's ``layer`` and
    ``producers``: the stem or the stage's conv2s and projection) and every layer that
    reads it (``consumers``: the conv1s, the next stage's first conv1 and projection,
    or the head). ``blocks.i.gate1`` stay. The parameters are the same as without, so
    a dense checkpoint loads into either.

    Args:
      shortcut: ``"A"`` (default) or ``"B"``.
      widths: channels of the three stages (default (16, 32, 64)).
      blocks_per_stage: n (default 3; 6n+2 layers).
      stream_gates: gate the residual stream per stage (above; default False).
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
        stream_gates: bool = False,
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
        if not isinstance(stream_gates, bool):
            raise ValueError(f"ResNet20: stream_gates must be true or false, got {stream_gates!r}")
        self.shortcut = shortcut
        self.stream_gated = stream_gates
        _, _, c = self.input_shape
        self.stem = ConvBNReLU(c, widths[0], 3, path="stem", consumers=("blocks.0.conv1",),
                               gated=not stream_gates, **kw)
        blocks, streams = [], []
        cin = widths[0]
        for s, cout in enumerate(widths):
            if stream_gates:  # created before the stage's blocks: sites in forward order
                streams.append(self._stream_gate(s, widths, blocks_per_stage))
            for b in range(blocks_per_stage):
                stride = 2 if (s > 0 and b == 0) else 1
                i = len(blocks)
                blocks.append(BasicBlock(cin, cout, stride, shortcut=shortcut, path=f"blocks.{i}",
                                         stream=stream_gates, **kw))
                cin = cout
        self.blocks = nnx.List(blocks)
        if stream_gates:
            self.streams = nnx.List(streams)
        self.head = linear(cin, num_classes, **kw)
        number_gates(self)

    def _stream_gate(self, s: int, widths, n: int):
        """The identity gate of stage ``s``'s stream, with its site metadata."""
        first = s * n
        conv2 = [f"blocks.{first + b}.conv2" for b in range(n)]
        layer, producers = ("stem.conv", conv2) if s == 0 else (conv2[0], conv2[1:])
        if s > 0 and self.shortcut == "B":
            producers.append(f"blocks.{first}.proj")
        consumers = [f"blocks.{first + b}.conv1" for b in range(n) if s == 0 or b > 0]
        if s + 1 < len(widths):
            consumers.append(f"blocks.{first + n}.conv1")
            if self.shortcut == "B":
                consumers.append(f"blocks.{first + n}.proj")
        else:
            consumers.append("head")
        return place_gate(widths[s], layer, tuple(consumers), producers=tuple(producers))

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.stream_gated:
            return self._stem_blocks_head(x)
        x = self.stem(self._check_input(x))
        n = len(self.blocks) // len(self.streams)
        for s, gate in enumerate(self.streams):
            z = gate.draw()  # one sample per forward pass, applied at every write
            if s == 0 and z is not None:
                x = gate.apply(x, z)
            for b in range(n):
                x = self.blocks[s * n + b](x, z)
        x = jnp.mean(x, axis=(1, 2))
        return self.head(x).astype(jnp.float32)
