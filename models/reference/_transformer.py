"""Published transformers (BERT, LLaMA, GPT-3) as Flax NNX modules, for counting.

One configurable :class:`Transformer` covers the three families; :data:`CONFIGS`
holds the published hyper-parameters.  The ``n_layers`` blocks are created stacked
(``nnx.vmap`` over the layer axis) and run with ``jax.lax.scan``, so tracing costs
one block whatever the depth and the extractor unrolls the scan into one set of
layers per block (``blocks.0.attn.q`` ... ``blocks.95.mlp.fc2``).

Input: token ids int32 ``[B, T]``; output: ``[B, T, vocab]`` logits for decoders,
``[B, d_model]`` pooled ``[CLS]`` features for BERT.  Every query attends to every
key at once (``P = M = T``), causal decoders mask with a triangular mask (the masked
half is still multiplied: the count is for a dense implementation).

Attention per block (names of docs/vocabulary.md): ``q, k, v`` projections ``D -> H*E``,
``qk = Q K^T`` and ``av = A V`` per head (dynamic operands, under
``jax.named_scope("qk")`` / ``("av")`` so they are named ``blocks.<i>.attn.qk`` and
``blocks.<i>.attn.av``), output projection ``o``; then the MLP (``fc1``/``fc2``, or
``gate``/``up``/``down`` for SwiGLU).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

import jax
import jax.numpy as jnp
from flax import nnx

__all__ = ["CONFIGS", "Transformer", "TransformerConfig"]


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Hyper-parameters of a published transformer.

    Attributes:
      vocab: vocabulary size (rows of the token embedding).
      d_model: embedding width D.
      n_layers: number of blocks.
      n_heads: attention heads H (head width E = d_model / n_heads).
      d_ff: MLP hidden width.
      max_len: longest sequence (learned position table rows / default tokens).
      encoder: True for a bidirectional encoder with a pooler (BERT), False for a
        causal decoder with an LM head.
      norm: ``"layernorm"`` (scale + bias) or ``"rmsnorm"`` (scale only).
      pre_norm: normalise before each sub-block (GPT-3, LLaMA) or after the
        residual add (BERT).
      mlp: ``"gelu"`` (fc1 -> GELU -> fc2) or ``"swiglu"`` (LLaMA).
      bias: dense layers have biases.
      rope: rotary position embedding (LLaMA) instead of a learned position table.
      type_vocab: token-type (segment) embedding rows (BERT: 2), 0 for none.
      tied_head: the LM head reuses the token embedding matrix (GPT-3).
    """

    vocab: int
    d_model: int
    n_layers: int
    n_heads: int
    d_ff: int
    max_len: int
    encoder: bool = False
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    pre_norm: bool = True
    mlp: Literal["gelu", "swiglu"] = "gelu"
    bias: bool = True
    rope: bool = False
    type_vocab: int = 0
    tied_head: bool = False

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads


CONFIGS: dict[str, TransformerConfig] = {
    # Devlin et al. 2018, Sec. 3: L=12, H=768, A=12 (110M); L=24, H=1024, A=16 (340M);
    # d_ff = 4H, WordPiece vocabulary 30,522, 512 positions, 2 segment types.
    "bert_base": TransformerConfig(
        vocab=30522, d_model=768, n_layers=12, n_heads=12, d_ff=3072, max_len=512,
        encoder=True, pre_norm=False, type_vocab=2,
    ),
    "bert_large": TransformerConfig(
        vocab=30522, d_model=1024, n_layers=24, n_heads=16, d_ff=4096, max_len=512,
        encoder=True, pre_norm=False, type_vocab=2,
    ),
    # Touvron et al. 2023, Table 2: 6.7B, dim 4096, 32 heads, 32 layers; SwiGLU with
    # hidden 2/3*4d rounded up to a multiple of 256 = 11008; RMSNorm; RoPE; 32k
    # SentencePiece vocabulary; context 2048; untied output layer; no biases.
    "llama_7b": TransformerConfig(
        vocab=32000, d_model=4096, n_layers=32, n_heads=32, d_ff=11008, max_len=2048,
        norm="rmsnorm", mlp="swiglu", bias=False, rope=True,
    ),
    # Brown et al. 2020, Table 2.1: 175.0B, n_layers 96, d_model 12288, n_heads 96,
    # d_head 128, context 2048; GPT-2 architecture (pre-LN, GELU, learned positions,
    # d_ff = 4 d_model, BPE vocabulary 50,257, LM head tied to the embedding).
    "gpt3_175b": TransformerConfig(
        vocab=50257, d_model=12288, n_layers=96, n_heads=96, d_ff=49152, max_len=2048,
        tied_head=True,
    ),
}  # fmt: skip


def _norm(cfg: TransformerConfig, rngs: nnx.Rngs):
    if cfg.norm == "rmsnorm":
        return nnx.RMSNorm(cfg.d_model, epsilon=1e-6, rngs=rngs)
    return nnx.LayerNorm(cfg.d_model, epsilon=1e-12 if cfg.encoder else 1e-5, rngs=rngs)


def _rope(x):
    """Rotary position embedding on ``x [B, T, H, E]`` (Su et al. 2021), base 10000."""
    _, T, _, E = x.shape
    pos = jax.lax.broadcasted_iota(jnp.float32, (T, E // 2), 0)
    i = jax.lax.broadcasted_iota(jnp.float32, (T, E // 2), 1)
    theta = pos * jnp.exp(i * (-2.0 * math.log(10000.0) / E))
    cos, sin = jnp.cos(theta)[None, :, None, :], jnp.sin(theta)[None, :, None, :]
    x1, x2 = x[..., : E // 2], x[..., E // 2 :]
    return jnp.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)


class Attention(nnx.Module):
    """Multi-head self-attention: q, k, v, o projections and two dynamic matmuls."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, b = cfg.d_model, cfg.bias
        self.q = nnx.Linear(d, d, use_bias=b, rngs=rngs)
        self.k = nnx.Linear(d, d, use_bias=b, rngs=rngs)
        self.v = nnx.Linear(d, d, use_bias=b, rngs=rngs)
        self.o = nnx.Linear(d, d, use_bias=b, rngs=rngs)

    def __call__(self, x):
        cfg = self.cfg
        B, T, D = x.shape
        H, E = cfg.n_heads, cfg.head_dim
        q = self.q(x).reshape(B, T, H, E)
        k = self.k(x).reshape(B, T, H, E)
        v = self.v(x).reshape(B, T, H, E)
        if cfg.rope:
            q, k = _rope(q), _rope(k)
        with jax.named_scope("qk"):
            s = jnp.einsum("bqhe,bkhe->bhqk", q, k) * (1.0 / math.sqrt(E))
        if not cfg.encoder:
            row = jax.lax.broadcasted_iota(jnp.int32, (T, T), 0)
            col = jax.lax.broadcasted_iota(jnp.int32, (T, T), 1)
            s = jnp.where(col <= row, s, jnp.finfo(s.dtype).min)
        a = jax.nn.softmax(s, axis=-1)
        with jax.named_scope("av"):
            z = jnp.einsum("bhqk,bkhe->bqhe", a, v)
        return self.o(z.reshape(B, T, D))


class MLP(nnx.Module):
    """fc1 -> GELU -> fc2, or SwiGLU: down(silu(gate(x)) * up(x))."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        d, f, b = cfg.d_model, cfg.d_ff, cfg.bias
        if cfg.mlp == "swiglu":
            self.gate = nnx.Linear(d, f, use_bias=b, rngs=rngs)
            self.up = nnx.Linear(d, f, use_bias=b, rngs=rngs)
            self.down = nnx.Linear(f, d, use_bias=b, rngs=rngs)
        else:
            self.fc1 = nnx.Linear(d, f, use_bias=b, rngs=rngs)
            self.fc2 = nnx.Linear(f, d, use_bias=b, rngs=rngs)

    def __call__(self, x):
        if self.cfg.mlp == "swiglu":
            return self.down(jax.nn.silu(self.gate(x)) * self.up(x))
        return self.fc2(jax.nn.gelu(self.fc1(x), approximate=False))


class Block(nnx.Module):
    """One transformer block: attention and MLP sub-blocks with residuals and norms."""

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.attn = Attention(cfg, rngs=rngs)
        self.ln1 = _norm(cfg, rngs)
        self.mlp = MLP(cfg, rngs=rngs)
        self.ln2 = _norm(cfg, rngs)

    def __call__(self, x):
        if self.cfg.pre_norm:
            x = x + self.attn(self.ln1(x))
            return x + self.mlp(self.ln2(x))
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


class Transformer(nnx.Module):
    """A BERT-style encoder or GPT/LLaMA-style decoder (see :class:`TransformerConfig`).

    Args:
      cfg: the hyper-parameters.
      rngs: parameter initialisation randomness (use under ``nnx.eval_shape``: the
        reference networks are counted, never materialised).
    """

    def __init__(self, cfg: TransformerConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        self.embed = nnx.Embed(cfg.vocab, cfg.d_model, rngs=rngs)
        self.pos_embed = None if cfg.rope else nnx.Embed(cfg.max_len, cfg.d_model, rngs=rngs)
        self.type_embed = nnx.Embed(cfg.type_vocab, cfg.d_model, rngs=rngs) if cfg.type_vocab else None
        self.embed_ln = _norm(cfg, rngs) if cfg.encoder else None

        @nnx.split_rngs(splits=cfg.n_layers)
        @nnx.vmap(in_axes=(0,), out_axes=0)
        def make_blocks(r):
            return Block(cfg, rngs=r)

        self.blocks = make_blocks(rngs)  # parameters stacked on a leading layer axis
        if cfg.encoder:
            self.pooler = nnx.Linear(cfg.d_model, cfg.d_model, rngs=rngs)
            self.final_ln = None
            self.lm_head = None
        else:
            self.pooler = None
            self.final_ln = _norm(cfg, rngs)
            self.lm_head = (
                None if cfg.tied_head else nnx.Linear(cfg.d_model, cfg.vocab, use_bias=False, rngs=rngs)
            )

    def __call__(self, tokens):
        cfg = self.cfg
        if tokens.ndim != 2:
            raise ValueError(f"expected token ids [batch, tokens], got shape {tokens.shape}")
        B, T = tokens.shape
        if T > cfg.max_len:
            raise ValueError(f"{T} tokens exceed the model's context of {cfg.max_len}")
        x = self.embed(tokens)
        if self.pos_embed is not None:
            x = x + self.pos_embed.embedding[...][:T][None]
        if self.type_embed is not None:  # all tokens in segment 0
            x = x + self.type_embed.embedding[...][0][None, None]
        if self.embed_ln is not None:
            x = self.embed_ln(x)
        graphdef, stacked = nnx.split(self.blocks)

        def step(h, state):
            return nnx.merge(graphdef, state)(h), None

        x, _ = jax.lax.scan(step, x, stacked)
        if cfg.encoder:
            return jnp.tanh(self.pooler(x[:, 0]))
        x = self.final_ln(x)
        if self.lm_head is None:
            return self.embed.attend(x)
        return self.lm_head(x)
