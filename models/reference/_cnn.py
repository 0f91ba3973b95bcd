"""Published ImageNet CNNs as Flax NNX modules, for counting (never trained here).

All take ``x`` float32 ``[B, H, W, C]`` (NHWC) and return logits ``[B, 1000]``.
BatchNorm is built in inference mode (running statistics), Dropout is omitted (it
is the identity at inference).  Convolutions and dense layers are laid out so that
the extractor names layers by module path (``conv1``, ``stage2.block0.conv2``,
``inception4a.b3x3``, ...).

The architectures follow the original papers; where the papers leave a detail
open, the choice is stated in the class docstring, because each one changes the
counts.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["AlexNet", "GoogLeNet", "MobileNetV1", "ResNet50", "VGG16"]


def _max_pool(x, window: int, stride: int, padding="VALID"):
    return nnx.max_pool(x, (window, window), strides=(stride, stride), padding=padding)


def _lrn(x, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
    """Local response normalization across channels (Krizhevsky et al. 2012, Sec. 3.3)."""
    sq = jnp.square(x)
    half = size // 2
    s = jax.lax.reduce_window(
        sq, 0.0, jax.lax.add, (1, 1, 1, size), (1, 1, 1, 1), ((0, 0), (0, 0), (0, 0), (half, half))
    )
    return x / jnp.power(k + (alpha / size) * s, beta)


class AlexNet(nnx.Module):
    """AlexNet, the original two-GPU version (Krizhevsky et al., NIPS 2012), 227x227.

    conv1 11x11/4 96 -> LRN -> pool; conv2 5x5 256 in 2 groups -> LRN -> pool;
    conv3 3x3 384; conv4 3x3 384 in 2 groups; conv5 3x3 256 in 2 groups -> pool;
    fc6 9216->4096, fc7 4096->4096, fc8 4096->1000.  Convolutions and dense layers
    have biases (not counted as weights by the extractor).
    """

    def __init__(self, *, rngs: nnx.Rngs, num_classes: int = 1000, in_channels: int = 3):
        conv = lambda i, o, k, s=1, p="VALID", g=1: nnx.Conv(  # noqa: E731
            i, o, (k, k), s, padding=p, feature_group_count=g, rngs=rngs
        )
        self.conv1 = conv(in_channels, 96, 11, 4)
        self.conv2 = conv(96, 256, 5, p=((2, 2), (2, 2)), g=2)
        self.conv3 = conv(256, 384, 3, p=((1, 1), (1, 1)))
        self.conv4 = conv(384, 384, 3, p=((1, 1), (1, 1)), g=2)
        self.conv5 = conv(384, 256, 3, p=((1, 1), (1, 1)), g=2)
        self.fc6 = nnx.Linear(6 * 6 * 256, 4096, rngs=rngs)
        self.fc7 = nnx.Linear(4096, 4096, rngs=rngs)
        self.fc8 = nnx.Linear(4096, num_classes, rngs=rngs)

    def __call__(self, x):
        x = _max_pool(_lrn(jax.nn.relu(self.conv1(x))), 3, 2)
        x = _max_pool(_lrn(jax.nn.relu(self.conv2(x))), 3, 2)
        x = jax.nn.relu(self.conv3(x))
        x = jax.nn.relu(self.conv4(x))
        x = _max_pool(jax.nn.relu(self.conv5(x)), 3, 2)
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(self.fc6(x))
        x = jax.nn.relu(self.fc7(x))
        return self.fc8(x)


class VGG16(nnx.Module):
    """VGG-16, configuration D (Simonyan & Zisserman, ICLR 2015), 224x224.

    Thirteen 3x3 convolutions (pad 1) in five stages of 64, 128, 256, 512, 512
    channels with 2x2/2 max pooling; fc6 25088->4096 (a dense layer here; the paper
    also evaluates it as a 7x7 convolution, same MACs and weights), fc7, fc8.
    """

    CFG = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))

    def __init__(self, *, rngs: nnx.Rngs, num_classes: int = 1000, in_channels: int = 3):
        c = in_channels
        for s, stage in enumerate(self.CFG, start=1):
            for i, o in enumerate(stage, start=1):
                conv = nnx.Conv(c, o, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
                setattr(self, f"conv{s}_{i}", conv)  # the paper's conv<stage>_<index>
                c = o
        self.fc6 = nnx.Linear(7 * 7 * 512, 4096, rngs=rngs)
        self.fc7 = nnx.Linear(4096, 4096, rngs=rngs)
        self.fc8 = nnx.Linear(4096, num_classes, rngs=rngs)

    def __call__(self, x):
        for s, stage in enumerate(self.CFG, start=1):
            for i in range(1, len(stage) + 1):
                x = jax.nn.relu(getattr(self, f"conv{s}_{i}")(x))
            x = _max_pool(x, 2, 2)
        x = x.reshape(x.shape[0], -1)
        x = jax.nn.relu(self.fc6(x))
        x = jax.nn.relu(self.fc7(x))
        return self.fc8(x)


class Inception(nnx.Module):
    """One Inception module: 1x1 | 1x1->3x3 | 1x1->5x5 | 3x3 maxpool->1x1, concatenated."""

    def __init__(self, c_in, n1, r3, n3, r5, n5, pp, *, rngs: nnx.Rngs):
        def conv(i, o, k):
            p = k // 2
            return nnx.Conv(i, o, (k, k), padding=((p, p), (p, p)), rngs=rngs)

        self.b1x1 = conv(c_in, n1, 1)
        self.b3x3_reduce = conv(c_in, r3, 1)
        self.b3x3 = conv(r3, n3, 3)
        self.b5x5_reduce = conv(c_in, r5, 1)
        self.b5x5 = conv(r5, n5, 5)
        self.pool_proj = conv(c_in, pp, 1)

    def __call__(self, x):
        r = jax.nn.relu
        a = r(self.b1x1(x))
        b = r(self.b3x3(r(self.b3x3_reduce(x))))
        c = r(self.b5x5(r(self.b5x5_reduce(x))))
        d = r(self.pool_proj(_max_pool(x, 3, 1, ((1, 1), (1, 1)))))
        return jnp.concatenate([a, b, c, d], axis=-1)


class GoogLeNet(nnx.Module):
    """GoogLeNet / Inception v1 (Szegedy et al., CVPR 2015, Table 1), 224x224.

    Stem: conv1 7x7/2 64 -> maxpool 3x3/2 -> LRN -> conv2 1x1 64 (``conv2_reduce``)
    -> conv2 3x3 192 -> LRN -> maxpool 3x3/2; nine Inception modules (3a, 3b, pool,
    4a-4e, pool, 5a, 5b) with the channel counts of Table 1; 7x7 average pool; one
    FC layer 1024->1000.  The two auxiliary classifiers are training-only and are
    left out (as in Table 1's totals).  Max pools pad like Caffe's ceil mode so the
    feature maps are 112, 56, 28, 14, 7 as in Table 1.
    """

    MODULES = (
        ("inception3a", (192, 64, 96, 128, 16, 32, 32)),
        ("inception3b", (256, 128, 128, 192, 32, 96, 64)),
        ("pool",),
        ("inception4a", (480, 192, 96, 208, 16, 48, 64)),
        ("inception4b", (512, 160, 112, 224, 24, 64, 64)),
        ("inception4c", (512, 128, 128, 256, 24, 64, 64)),
        ("inception4d", (512, 112, 144, 288, 32, 64, 64)),
        ("inception4e", (528, 256, 160, 320, 32, 128, 128)),
        ("pool",),
        ("inception5a", (832, 256, 160, 320, 32, 128, 128)),
        ("inception5b", (832, 384, 192, 384, 48, 128, 128)),
    )

    def __init__(self, *, rngs: nnx.Rngs, num_classes: int = 1000, in_channels: int = 3):
        self.conv1 = nnx.Conv(in_channels, 64, (7, 7), 2, padding=((3, 3), (3, 3)), rngs=rngs)
        self.conv2_reduce = nnx.Conv(64, 64, (1, 1), padding="VALID", rngs=rngs)
        self.conv2 = nnx.Conv(64, 192, (3, 3), padding=((1, 1), (1, 1)), rngs=rngs)
        for entry in self.MODULES:
            if entry[0] != "pool":
                setattr(self, entry[0], Inception(*entry[1], rngs=rngs))
        self.fc = nnx.Linear(1024, num_classes, rngs=rngs)

    def __call__(self, x):
        ceil_pad = ((0, 1), (0, 1))  # 3x3/2 on an even size, Caffe ceil mode
        x = _max_pool(jax.nn.relu(self.conv1(x)), 3, 2, ceil_pad)
        x = _lrn(x)
        x = jax.nn.relu(self.conv2(jax.nn.relu(self.conv2_reduce(x))))
        x = _max_pool(_lrn(x), 3, 2, ceil_pad)
        for entry in self.MODULES:
            if entry[0] == "pool":
                x = _max_pool(x, 3, 2, ceil_pad)
            else:
                x = getattr(self, entry[0])(x)
        x = jnp.mean(x, axis=(1, 2))
        return self.fc(x)


class Bottleneck(nnx.Module):
    """ResNet v1 bottleneck: 1x1 (stride here, as in the original Caffe model) -> 3x3
    -> 1x1 x4, each followed by BatchNorm; projection shortcut when the shape changes."""

    def __init__(self, c_in: int, width: int, stride: int, *, rngs: nnx.Rngs):
        c_out = 4 * width
        bn = lambda c: nnx.BatchNorm(c, use_running_average=True, rngs=rngs)  # noqa: E731
        self.conv1 = nnx.Conv(c_in, width, (1, 1), stride, padding="VALID", use_bias=False, rngs=rngs)
        self.bn1 = bn(width)
        self.conv2 = nnx.Conv(width, width, (3, 3), padding=((1, 1), (1, 1)), use_bias=False, rngs=rngs)
        self.bn2 = bn(width)
        self.conv3 = nnx.Conv(width, c_out, (1, 1), padding="VALID", use_bias=False, rngs=rngs)
        self.bn3 = bn(c_out)
        if stride != 1 or c_in != c_out:
            self.shortcut = nnx.Conv(c_in, c_out, (1, 1), stride, padding="VALID", use_bias=False, rngs=rngs)
            self.bn_shortcut = bn(c_out)
        else:
            self.shortcut = None
            self.bn_shortcut = None

    def __call__(self, x):
        y = jax.nn.relu(self.bn1(self.conv1(x)))
        y = jax.nn.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        s = x if self.shortcut is None else self.bn_shortcut(self.shortcut(x))
        return jax.nn.relu(y + s)


class ResNet50(nnx.Module):
    """ResNet-50 v1 (He et al., CVPR 2016, Table 1), 224x224.

    conv1 7x7/2 64 -> BN -> 3x3/2 maxpool; stages of 3, 4, 6, 3 bottlenecks of
    widths 64, 128, 256, 512 (outputs x4); the first block of stages 2-4 downsamples
    with stride 2 in its *first 1x1* convolution (the original model; "v1.5", e.g.
    torchvision, strides the 3x3 instead and costs ~4.1 GMACs); projection shortcuts
    (1x1 convs) in the first block of every stage; global average pool; FC
    2048->1000.  Convolutions have no bias (BatchNorm follows).
    """

    STAGES = ((3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2))

    def __init__(self, *, rngs: nnx.Rngs, num_classes: int = 1000, in_channels: int = 3):
        self.conv1 = nnx.Conv(in_channels, 64, (7, 7), 2, padding=((3, 3), (3, 3)), use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(64, use_running_average=True, rngs=rngs)
        c = 64
        stages = []
        for n, width, stride in self.STAGES:
            blocks = []
            for i in range(n):
                blocks.append(Bottleneck(c, width, stride if i == 0 else 1, rngs=rngs))
                c = 4 * width
            stages.append(nnx.List(blocks))
        self.stages = nnx.List(stages)
        self.fc = nnx.Linear(2048, num_classes, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        x = _max_pool(x, 3, 2, ((1, 1), (1, 1)))
        for stage in self.stages:
            for block in stage:
                x = block(x)
        x = jnp.mean(x, axis=(1, 2))
        return self.fc(x)


class DepthwiseSeparable(nnx.Module):
    """3x3 depthwise conv (one filter per channel) -> BN -> ReLU -> 1x1 conv -> BN -> ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, rngs: nnx.Rngs):
        bn = lambda c: nnx.BatchNorm(c, use_running_average=True, rngs=rngs)  # noqa: E731
        self.dw = nnx.Conv(
            c_in, c_in, (3, 3), stride, padding="SAME", feature_group_count=c_in, use_bias=False, rngs=rngs
        )
        self.dw_bn = bn(c_in)
        self.pw = nnx.Conv(c_in, c_out, (1, 1), padding="VALID", use_bias=False, rngs=rngs)
        self.pw_bn = bn(c_out)

    def __call__(self, x):
        x = jax.nn.relu(self.dw_bn(self.dw(x)))
        return jax.nn.relu(self.pw_bn(self.pw(x)))


class MobileNetV1(nnx.Module):
    """MobileNet v1, width 1.0, 224x224 (Howard et al., arXiv:1704.04861, Table 1).

    conv 3x3/2 32, then 13 depthwise-separable blocks (3x3 depthwise conv with
    ``feature_group_count = channels`` -> BN -> ReLU -> 1x1 pointwise conv -> BN ->
    ReLU), global average pool, FC 1024->1000.  Table 1 lists the last depthwise
    conv with stride 2 on a 7x7 input, which would not give the stated 7x7 output:
    it is stride 1 here (as in every released implementation).  "SAME" padding.
    """

    # (pointwise output channels, depthwise stride)
    BLOCKS = (
        (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
        (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1),
    )  # fmt: skip

    def __init__(self, *, rngs: nnx.Rngs, num_classes: int = 1000, in_channels: int = 3):
        self.conv1 = nnx.Conv(in_channels, 32, (3, 3), 2, padding="SAME", use_bias=False, rngs=rngs)
        self.bn1 = nnx.BatchNorm(32, use_running_average=True, rngs=rngs)
        c = 32
        blocks = []
        for out, stride in self.BLOCKS:
            blocks.append(DepthwiseSeparable(c, out, stride, rngs=rngs))
            c = out
        self.blocks = nnx.List(blocks)
        self.fc = nnx.Linear(1024, num_classes, rngs=rngs)

    def __call__(self, x):
        x = jax.nn.relu(self.bn1(self.conv1(x)))
        for block in self.blocks:
            x = block(x)
        x = jnp.mean(x, axis=(1, 2))
        return self.fc(x)
