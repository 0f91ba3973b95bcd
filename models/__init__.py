"""models: the trainable Flax NNX model zoo (and, in ``models.reference``, counted-only
reference networks).

Registry
--------
``list_models()`` names the zoo (lenet5, mnist_cnn, vgg_small, resnet20,
mobilenet_small, vit_tiny); ``get_info(name)`` returns a :class:`ModelInfo` (default
input shape, classes, dataset, the model class whose docstring gives its layers,
parameter count and MACs at batch 1, and the accepted ``options``);
``create(name, rngs=nnx.Rngs(seed), num_classes=None, input_shape=None, **options)``
builds one. Every model takes NHWC input ``[B, H, W, C]`` and returns float32 logits
``[B, num_classes]``; ``dtype`` (computation) and ``param_dtype`` (storage) options are
accepted by all of them. Models are built in training mode; ``model.eval()`` switches
BatchNorm to its running statistics and turns Dropout off, ``model.train()`` back.
``count_params(model)`` counts the ``nnx.Param`` scalars; ``model_param_count(name)``
counts them for any zoo or reference model by name, on abstract shapes (nothing
allocated; what ``codesign count --json`` reports as ``total_params``).

=================  =========  ============  ===========  ======================================
name               input      parameters    MACs (B=1)   what
=================  =========  ============  ===========  ======================================
lenet5             28x28x1        61,706       416,520   LeNet-5, conv1 padded by 2
mnist_cnn          28x28x1       824,458     4,643,840   Flax MNIST example CNN
vgg_small          32x32x3       288,746    38,634,752   6 convs 32-32-64-64-128-128, BN
resnet20           32x32x3       269,722    40,551,040   He et al. 2016, option-A shortcuts
mobilenet_small    32x32x3       274,250    18,662,400   MobileNet-v1 style, 6 separable blocks
vit_tiny           28x28x1       205,962    11,801,216   ViT, 4x4 patches, D=64, 6 blocks, 4 heads
vit_tiny           32x32x3       208,970    16,221,568   (input_shape=(32, 32, 3))
=================  =========  ============  ===========  ======================================

(MACs: conv and matmul multiply-accumulates of one forward pass, including the
attention's ``Q K^T`` and ``A V``; each model's docstring breaks them down by layer, and
the tests check both columns against the model itself.)

Depthwise convolutions (``mobilenet_small``) trace as one grouped
``conv_general_dilated`` but train through a ``jax.custom_vjp`` that runs them as
shifted multiply-adds, which XLA's CPU backend executes several times faster (see
``models/_depthwise.py``).

Convolution backend (CPU training speed)
----------------------------------------
The zoo's convolutions (``models._conv.conv_general_dilated``, used by every
``nnx.Conv`` of the zoo and usable by any NNX model) run their training passes on
oneDNN through ``jax.ffi`` on CPU when the backend resolves to ``"onednn"``:
``set_conv_backend("auto" | "xla" | "onednn")`` / ``with conv_backend(name):`` choose
it (read when a function is traced), ``resolve_conv_backend()`` says what ``auto``
means here, ``onednn_conv(x, kernel, strides, padding, dilation, groups)`` is the
convolution itself. ``auto`` builds the C++ handlers on first use and falls back to
XLA's convolution with a one-line notice where it cannot (see ``models/_onednn.py``).

Pruning gates (the hook for channel / head pruning)
---------------------------------------------------
Every prunable site of every zoo model applies a :class:`Gate` module to the activation
it may prune:

* a *channel* site after every hidden conv / dense layer (after its BatchNorm and
  activation: ``conv -> BN -> ReLU -> gate``), gating the last axis ``C`` of
  ``[..., C]``;
* a *head* site in every attention module, gating axis -2 (heads) of the per-head
  attention output ``Z = A V`` ``[B, T, H, F]`` before the output projection.

The default gate is the identity: it returns its input object unchanged, so it adds no
parameter, no operation and no jaxpr equation (zero cost). ``gate_sites(model)`` lists
the sites in forward order as :class:`GateSite` records: the gate's module ``path``
(``blocks.3.attn.head_gate``), ``size``, ``kind`` (``"channel"`` | ``"head"``), ``layer``
-- the module path of the layer whose output it gates (``features.2.conv``; for heads,
the attention module ``blocks.3.attn``) -- and ``consumers``, the layers whose input
channels are exactly the gated units (empty where the gated tensor is added into a
residual stream) -- and ``producers``, further layers whose outputs are the gated units
(a residual stream's writers: ``resnet20(stream_gates=True)``'s ``streams.s``; usually
empty). Paths are the dotted nnx module paths of the parameters
(``("blocks", 3, "attn", "q", "kernel")`` -> layer ``blocks.3.attn.q``), which is what a
jaxpr-based extractor recovers from parameter paths; the attention's two dynamic matmuls
are traced under ``jax.named_scope`` names ``<attn path>.qk`` and ``<attn path>.av``.

``set_gates(model, factory)`` replaces the gates in place: ``factory(site)`` returns a
new :class:`Gate` of the same size and kind (or None to keep a site), e.g.
``set_gates(model, lambda s: ScaleGate(s.size, s.kind))``. A gate implements
``__call__(x)`` (use ``Gate.apply(x, values)`` for the broadcasting; ``draw()`` gives
the values of one forward pass, for a model that applies one gate at several places) and
``keep()``
(per-unit keep values in [0, 1], whose mean ``keep_fraction()`` the hardware cost model
reads as the layer's kept fraction of output channels / heads). Learnable gate values
should be :class:`GateParam` variables (an ``nnx.Param`` subclass, so they can be
filtered apart from the weights); a stochastic gate should have a ``deterministic``
attribute so that ``model.train()`` / ``model.eval()`` reach it. :class:`ScaleGate` is
a ready multiplicative gate with one ``GateParam`` per unit.
"""

from models._base import ZooModel, count_params
from models._gates import (
    GATE_KINDS,
    Gate,
    GateParam,
    GateSite,
    HardConcreteGate,
    ScaleGate,
    add_gates,
    gate_sites,
    gates_bypassed,
    set_gates,
)
from models._onednn import (
    OneDNNUnavailable,
    conv_backend,
    get_conv_backend,
    onednn_available,
    onednn_conv,
    resolve_conv_backend,
    set_conv_backend,
)
from models._quant import MAX_BITS, MIN_BITS, quant_bypassed, quantize, quantized_layers
from models._registry import ModelInfo, create, get_info, list_models
from models._workload import list_countable_models, model_param_count, model_workload

__all__ = [
    "GATE_KINDS",
    "Gate",
    "GateParam",
    "GateSite",
    "HardConcreteGate",
    "MAX_BITS",
    "MIN_BITS",
    "ModelInfo",
    "OneDNNUnavailable",
    "ScaleGate",
    "add_gates",
    "gates_bypassed",
    "ZooModel",
    "conv_backend",
    "count_params",
    "create",
    "gate_sites",
    "get_conv_backend",
    "get_info",
    "list_countable_models",
    "list_models",
    "model_param_count",
    "model_workload",
    "onednn_available",
    "onednn_conv",
    "quant_bypassed",
    "quantize",
    "quantized_layers",
    "resolve_conv_backend",
    "set_conv_backend",
    "set_gates",
]
