"""A tiny Vision Transformer (Dosovitskiy et al. 2021) for MNIST and CIFAR-10."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from models._base import ZooModel, lecun_normal, linear, normal_init
from models._gates import number_gates, place_gate

__all__ = ["MLPBlock", "MultiHeadSelfAttention", "TransformerBlock", "ViTTiny"]

POOLS = ("cls", "mean")


class MultiHeadSelfAttention(nnx.Module):
    """Multi-head self-attention written out step by step (names of docs/vocabulary.md).

    For tokens ``I [B, T, D]``, per head h (``H`` heads, ``E = F = head_dim``)::

      Q = I WQ,  K = I WK,  V = I WV          # q, k, v: dense layers D -> H*E
      A = softmax(Q K^T / sqrt(E))            # [B, H, T, T]  (dynamic matmul "qk")
      Z = A V                                 # [B, T, H, F]  (dynamic matmul "av")
      out = concat_h(head_gate(Z)) WZ         # o: dense layer H*F -> D

    ``Q K^T`` and ``A V`` are ``jnp.einsum`` calls (one ``dot_general`` each in a
    jaxpr) traced under ``jax.named_scope`` names ``<path>.qk``, ``<path>.softmax``
    and ``<path>.av`` so an extractor can name them. The softmax is computed in
    float32 whatever the computation dtype.

    Gate: ``head_gate`` (kind ``"head"``, size H) scales each head's ``Z`` before the
    output projection; its consumer is ``o``.
    """

    def __init__(self, dim, num_heads, head_dim, *, path, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.num_heads, self.head_dim, self.path = num_heads, head_dim, path
        inner = num_heads * head_dim
        self.q = linear(dim, inner, **kw)
        self.k = linear(dim, inner, **kw)
        self.v = linear(dim, inner, **kw)
        self.head_gate = place_gate(num_heads, path, (f"{path}.o",), kind="head")
        self.o = linear(inner, dim, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, _ = x.shape
        h, e = self.num_heads, self.head_dim
        q = self.q(x).reshape(b, t, h, e)
        k = self.k(x).reshape(b, t, h, e)
        v = self.v(x).reshape(b, t, h, e)
        with jax.named_scope(f"{self.path}.qk"):
            logits = jnp.einsum("bqhe,bkhe->bhqk", q, k) / jnp.sqrt(jnp.asarray(e, q.dtype))
        with jax.named_scope(f"{self.path}.softmax"):
            a = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        with jax.named_scope(f"{self.path}.av"):
            z = jnp.einsum("bhqk,bkhf->bqhf", a, v)
        z = self.head_gate(z)
        return self.o(z.reshape(b, t, h * e))


class MLPBlock(nnx.Module):
    """``fc1 (D -> mlp_dim) -> GELU -> gate -> dropout -> fc2 (mlp_dim -> D)``.

    Gate: ``gate`` (channel, size mlp_dim) on fc1's output; consumer fc2.
    """

    def __init__(self, dim, mlp_dim, dropout_rate, *, path, dtype, param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.fc1 = linear(dim, mlp_dim, **kw)
        self.gate = place_gate(mlp_dim, f"{path}.fc1", (f"{path}.fc2",))
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.fc2 = linear(mlp_dim, dim, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.fc2(self.dropout(self.gate(nnx.gelu(self.fc1(x)))))


class TransformerBlock(nnx.Module):
    """Pre-LN encoder block: ``x + drop(attn(ln1(x)))``, then ``x + drop(mlp(ln2(x)))``."""

    def __init__(self, dim, num_heads, head_dim, mlp_dim, dropout_rate, *, path, dtype,
                 param_dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=param_dtype, rngs=rngs)
        self.ln1 = nnx.LayerNorm(dim, epsilon=1e-6, **kw)
        self.attn = MultiHeadSelfAttention(dim, num_heads, head_dim, path=f"{path}.attn", **kw)
        self.drop1 = nnx.Dropout(dropout_rate, rngs=rngs)
        self.ln2 = nnx.LayerNorm(dim, epsilon=1e-6, **kw)
        self.mlp = MLPBlock(dim, mlp_dim, dropout_rate, path=f"{path}.mlp", **kw)
        self.drop2 = nnx.Dropout(dropout_rate, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.drop1(self.attn(self.ln1(x)))
        return x + self.drop2(self.mlp(self.ln2(x)))


class ViTTiny(ZooModel):
    """A tiny ViT: patch embedding, transformer encoder, class-token or mean pooling.

    Layers (defaults: input 28x28x1, ``patch_size=4``, ``dim=64``, ``depth=6``,
    ``num_heads=4``, ``head_dim=dim/num_heads=16``, ``mlp_dim=128``, ``pool="cls"``)::

      patch_embed  conv p x p, stride p, C -> D      (28/4)^2 = 49 patches
      [cls token] + learned position embedding        T = 49 + 1 = 50 tokens
      dropout, then blocks.0 .. blocks.5: TransformerBlock (pre-LN; attention with
        explicit q, k, v, Q K^T, softmax, A V, o; MLP D -> mlp_dim -> D with GELU)
      norm (LayerNorm) -> class token (or mean over tokens) -> head: linear D -> classes

    Dropout (``dropout_rate``, default 0.1) is applied to the embeddings, after the
    attention output projection and in the MLP (after GELU and after each
    residual branch), as in the ViT paper; there is no attention-probability dropout.

    Sizes (10 classes, default hyper-parameters):

    * Default input 28x28x1 (MNIST, T = 50): 205,962 parameters,
      11,801,216 MACs at batch 1 (patch_embed 50,176; per block: q, k, v
      204,800 each, qk 160,000, av 160,000, o 204,800, fc1 409,600, fc2 409,600;
      head 640).
    * Input 32x32x3 (CIFAR-10, T = 65): 208,970 parameters, 16,221,568 MACs at
      batch 1 (patch_embed 196,608; per block: q, k, v 266,240 each, qk 270,400,
      av 270,400, o 266,240, fc1 532,480, fc2 532,480; head 640).

    Gates: ``blocks.i.attn.head_gate`` (kind ``"head"``, one per head, consumer
    ``blocks.i.attn.o``) and ``blocks.i.mlp.gate`` (channel, fc1's outputs). The
    patch embedding and the projections into the residual stream (``o``, ``fc2``)
    are not gated.

    Args:
      patch_size: side of the square patches; must divide H and W.
      dim: embedding width D.
      depth: number of transformer blocks.
      num_heads: attention heads H.
      head_dim: per-head width E = F (default dim // num_heads).
      mlp_dim: hidden width of the MLP blocks.
      dropout_rate: see above (0 disables dropout).
      pool: ``"cls"`` (class token) or ``"mean"`` (mean over patch tokens, no class token).
    """

    def __init__(
        self,
        *,
        input_shape=(28, 28, 1),
        num_classes: int = 10,
        rngs: nnx.Rngs,
        patch_size: int = 4,
        dim: int = 64,
        depth: int = 6,
        num_heads: int = 4,
        head_dim: int | None = None,
        mlp_dim: int = 128,
        dropout_rate: float = 0.1,
        pool: str = "cls",
        dtype=jnp.float32,
        param_dtype=jnp.float32,
    ):
        kw = self._setup(input_shape, num_classes, dtype, param_dtype, rngs)
        h, w, c = self.input_shape
        for name, v in (("patch_size", patch_size), ("dim", dim), ("depth", depth),
                        ("num_heads", num_heads), ("mlp_dim", mlp_dim)):
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ViTTiny: {name} must be a positive int, got {v!r}")
        if h % patch_size or w % patch_size:
            raise ValueError(
                f"ViTTiny: patch_size {patch_size} must divide the input's H and W "
                f"{self.input_shape[:2]}"
            )
        if head_dim is None:
            if dim % num_heads:
                raise ValueError(
                    f"ViTTiny: dim {dim} is not divisible by num_heads {num_heads}; "
                    f"pass head_dim explicitly"
                )
            head_dim = dim // num_heads
        if pool not in POOLS:
            raise ValueError(f"ViTTiny: pool must be one of {POOLS}, got {pool!r}")
        if not 0.0 <= dropout_rate < 1.0:
            raise ValueError(f"ViTTiny: dropout_rate must be in [0, 1), got {dropout_rate!r}")
        self.patch_size, self.dim, self.pool = patch_size, dim, pool
        num_patches = (h // patch_size) * (w // patch_size)
        num_tokens = num_patches + (1 if pool == "cls" else 0)
        self.patch_embed = nnx.Conv(
            c, dim, (patch_size, patch_size), (patch_size, patch_size), padding="VALID",
            kernel_init=lecun_normal, **kw,
        )
        if pool == "cls":
            self.cls_token = nnx.Param(jnp.zeros((1, 1, dim), self.param_dtype))
        self.pos_embed = nnx.Param(
            normal_init(lambda fi, fo: 0.02)(rngs.params(), (1, num_tokens, dim), self.param_dtype)
        )
        self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
        self.blocks = nnx.List(
            [
                TransformerBlock(dim, num_heads, head_dim, mlp_dim, dropout_rate,
                                 path=f"blocks.{i}", **kw)
                for i in range(depth)
            ]
        )
        self.norm = nnx.LayerNorm(dim, epsilon=1e-6, **kw)
        self.head = linear(dim, num_classes, **kw)
        number_gates(self)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self._check_input(x)
        x = self.patch_embed(x)  # [B, H/p, W/p, D]
        b = x.shape[0]
        x = x.reshape(b, -1, self.dim)
        if self.pool == "cls":
            cls = jnp.broadcast_to(self.cls_token[...].astype(x.dtype), (b, 1, self.dim))
            x = jnp.concatenate([cls, x], axis=1)
        x = x + self.pos_embed[...].astype(x.dtype)
        x = self.dropout(x)
        for block in self.blocks:
            x = block(x)
        x = self.norm(x)
        x = x[:, 0] if self.pool == "cls" else jnp.mean(x, axis=1)
        return self.head(x).astype(jnp.float32)
