"""Workload extraction: turn any JAX function into a :class:`~hwmodel.Workload`.

The function is traced to a jaxpr with :func:`jax.make_jaxpr` (abstractly: no FLOPs
run, ``jax.ShapeDtypeStruct`` inputs are enough) and the jaxpr is walked once.  The
rules below are the contract; tests check each of them.

MAC layers
----------
* ``conv_general_dilated`` -> one ``kind="conv"`` :class:`LayerSpec`.  ``lhs`` is the
  input ``I``, ``rhs`` the filter ``W``.  Any ``dimension_numbers`` (NCHW, NHWC, ...),
  strides, padding (also negative), lhs (input) dilation, rhs (filter) dilation,
  ``feature_group_count`` (``G`` = groups, ``C`` = input channels per group, ``M`` =
  output channels per group: grouped and depthwise convs) and ``batch_group_count``
  (``G`` = batch groups, ``N`` = batch / groups, ``M`` = output features / groups,
  ``C`` = all input features).  1-D convolutions get ``Q = S = W = 1``; convolutions
  with more than two spatial dimensions do not fit the 2-D loop nest and are reported
  in ``Workload.unrecognized``.  ``P, Q`` are the output extents, ``H, W`` the real
  (unpadded, undilated) input extents.  Padding and the zeros inserted by lhs
  dilation are inside the loop nest, so they are counted as MACs (Timeloop
  convention: ``MACs = G*N*M*P*Q*C*R*S``).
* ``dot_general`` -> one ``kind="matmul"`` LayerSpec with ``P = Q = R = S = 1``:
  ``G`` = product of the batch dimensions, ``C`` = product of the contracting
  dimensions, ``N`` = product of the input operand's free dimensions, ``M`` = product
  of the weight operand's free dimensions (dimensions may sit anywhere: dense layers
  on ``[B, T, D]``, batched matmuls, einsums).  The weight operand is ``rhs`` unless
  ``lhs`` derives only from parameters/constants and ``rhs`` from input data, in which
  case the operands are swapped so that the static one is ``W``.  When both operands
  are data (attention), ``I`` is the operand computed by another dynamic matmul when
  exactly one is (the probabilities ``A`` in ``A V``, so ``W = V``), else ``lhs``
  (``Q`` in ``Q K^T`` as written by ``jnp.einsum``/``dot_general``; note that
  ``jnp.einsum`` may itself swap its two operands to avoid a transpose).

Taint analysis (dynamic operands)
---------------------------------
Every value is *data* if it depends on a non-parameter input of ``fn`` and *static*
otherwise (parameters: the arguments at ``param_argnums``; constants: arrays closed
over by ``fn``, literals, values computed from those only).  A matmul whose two
operands are both data (attention's ``Q K^T`` and ``A V``) gets ``dynamic=True`` and
no weights; a convolution is dynamic when its filter is data.

Non-MAC work
------------
Every other primitive is classified (tables ``_FREE``, ``_ELEMENTWISE``, ...):

* layout / data movement (reshape, transpose, broadcast, slicing, gather,
  concatenate, pad, dtype conversion, ...): 0 ops;
* element-wise arithmetic, comparisons, select, transcendental functions, random
  bits: one op per output element;
* reductions (``reduce_sum/max/min/...``, ``argmax``): one op per *input* element;
* cumulative ops: one op per output element;
* windowed reductions (pooling: ``reduce_window_*``): output elements x window size;
* ``scatter-add`` and friends: one op per update element; ``sort``: ``n*ceil(log2 k)``
  comparisons for ``n`` elements sorted in rows of ``k``; ``top_k``: one per input.

These ops are attributed to the *nearest preceding MAC layer in program order* (the
conv/matmul whose output the normalization / activation / softmax / residual add /
pooling post-processes); ops that come before the first MAC layer go to the first
one.  They end up in ``LayerSpec.nonmac_ops``.

Sub-jaxprs
----------
``jit``/``pjit``, ``closed_call``, ``custom_jvp_call``, ``custom_vjp_call``, remat
(``checkpoint``), ``composite`` are inlined.  ``scan`` is *unrolled*: its body is
analysed once and its layers are repeated ``length`` times, one LayerSpec per
iteration (so per-layer knobs and names stay per transformer block).  ``cond``
contributes the branch with the most MACs (ties: most non-MAC ops, then the first).
``while`` loops whose trip count is static (``fori_loop`` with literal bounds:
counter initialised by a literal, compared with ``lt`` against a literal or
loop-invariant literal, incremented by a literal step) are unrolled like ``scan``;
otherwise the loop is reported in ``Workload.unrecognized`` and its body *not*
counted.  Anything else not understood (collectives, ``shard_map``, linear algebra,
FFT, callbacks, unknown primitives) goes to ``Workload.unrecognized`` with its
primitive name, where it came from and why.

Layer names
-----------
A layer's name is the first of these that applies:

1. its weight operand derives from a parameter leaf whose pytree path is known (the
   arguments at ``param_argnums``, e.g. an ``nnx.State`` or nested dict): that path
   without its last component (``blocks.3.attn.q.kernel`` -> ``blocks.3.attn.q``;
   a one-component path is kept whole);
2. a dynamic layer (both operands data): the innermost ``jax.named_scope`` if it is
   a dotted path itself (``jax.named_scope("blocks.3.attn.qk")``); else the longest
   common module prefix of the layers that produced its two operands (``Q`` from
   ``blocks.3.attn.q``, ``K`` from ``blocks.3.attn.k`` -> ``blocks.3.attn``),
   followed by the innermost ``jax.named_scope`` active at the primitive
   (``blocks.3.attn.qk``), or, without one, by ``<lhs>@<rhs>`` built from the last
   components of the layers that produced the two operands (``q@k``, then ``q@k@v``
   for ``softmax(Q K^T) V``; ``matmul`` / ``conv`` if one operand has no producer);
3. the innermost ``jax.named_scope`` if it is a dotted path, else the whole scope
   stack at the primitive (``eqn.source_info.name_stack``; transformation wrappers
   such as ``vmap`` and ``jnp.einsum``'s automatic scope are left out), joined with
   ``.``;
4. ``<primitive>_<index>`` (``dot_general_7``, ``conv_general_dilated_0``), with the
   layer's position in the workload.

Inside an unrolled ``scan`` the iteration index is inserted into parameter paths
after the longest common prefix of the scanned-over (stacked) parameters, before the
leaf name (an ``nnx.State`` of stacked blocks ``blocks.attn.q.kernel`` gives
``blocks.3.attn.q``; a one-component path ``w`` gives ``w.3``); names that do not
contain the index (weights closed over by the body, named scopes, unrolled ``while``
loops) get ``.<i>`` appended.  Finally names are made
unique in program order: the second occurrence of ``x`` becomes ``x_1``, and so on.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
from jax.extend import core as jcore

from hwmodel.workload.spec import LayerSpec, Unrecognized, Workload

__all__ = ["ExtractionError", "extract_workload"]


class ExtractionError(ValueError):
    """``fn`` could not be traced with the given example arguments."""


# ---------------------------------------------------------------------------------------
# primitive tables
# ---------------------------------------------------------------------------------------

_FREE = frozenset(
    """
    reshape transpose broadcast_in_dim squeeze expand_dims slice dynamic_slice
    dynamic_update_slice gather scatter concatenate pad rev copy copy_p
    convert_element_type bitcast_convert_type stop_gradient iota device_put
    sharding_constraint layout_constraint reshard pvary optimization_barrier split
    tile stack unstack tie zeros_like empty empty2 random_wrap random_unwrap
    random_key_data random_wrap_p from_edtype to_edtype platform_index create_token
    after_all dce_sink stage name debug_callback debug_print inspect_sharding
    """.split()
)
"""Layout / data movement / bookkeeping: no arithmetic, 0 ops."""

_ELEMENTWISE = frozenset(
    """
    add sub mul div rem pow max min neg sign floor ceil round is_finite exp exp2 log
    log1p expm1 tanh logistic sin cos tan asin acos atan atan2 sinh cosh asinh acosh
    atanh sqrt rsqrt cbrt integer_pow abs erf erfc erf_inv lgamma digamma igamma
    igammac igamma_grad_a polygamma zeta bessel_i0e bessel_i1e
    regularized_incomplete_beta random_gamma_grad select_n clamp eq ne lt le gt ge
    eq_to le_to lt_to and or not xor shift_left shift_right_arithmetic
    shift_right_logical population_count clz nextafter square conj real imag complex
    add_any mulhi reduce_precision random_bits random_seed random_fold_in random_split
    threefry2x32 rng_bit_generator rng_uniform random_clone random_gamma
    """.split()
)
"""Element-wise arithmetic: one op per output element."""

_REDUCTIONS = frozenset(
    """
    reduce_sum reduce_max reduce_min reduce_prod reduce_and reduce_or reduce_xor
    argmax argmin reduce
    """.split()
)
"""Reductions: one op per input element."""

_CUMULATIVE = frozenset("cumsum cumprod cummax cummin cumlogsumexp".split())
_WINDOWED = frozenset(
    """
    reduce_window_sum reduce_window_max reduce_window_min reduce_window
    select_and_gather_add
    """.split()
)
_SCATTER_OPS = frozenset("scatter-add scatter-sub scatter-mul scatter-min scatter-max".split())
_CALLS = {
    "jit": "jaxpr",
    "pjit": "jaxpr",
    "closed_call": "call_jaxpr",
    "core_call": "call_jaxpr",
    "call": "call_jaxpr",
    "remat2": "jaxpr",
    "checkpoint": "jaxpr",
    "remat": "jaxpr",
    "custom_jvp_call": "call_jaxpr",
    "custom_vjp_call": "call_jaxpr",
    "custom_vjp_call_jaxpr": "fun_jaxpr",
    "custom_jvp_call_jaxpr": "fun_jaxpr",
    "composite": "jaxpr",
}
"""Call-like primitives whose sub-jaxpr (named parameter) is inlined 1:1."""


# ---------------------------------------------------------------------------------------
# taint / provenance
# ---------------------------------------------------------------------------------------


class _It:
    """Placeholder for the iteration index of one unrolled loop inside name templates."""

    __slots__ = ()

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"<it {id(self):x}>"


Template = tuple  # tuple[str | _It, ...]


class _Info(NamedTuple):
    """What the extractor knows about one jaxpr value.

    data: depends on a non-parameter input.
    params: for static values, pytree-path templates of the parameters it derives from.
    producers: name templates of the nearest MAC layers whose output flows into it.
    dyn: one of those nearest MAC layers is dynamic (e.g. attention probabilities).
    """

    data: bool
    params: tuple = ()
    producers: tuple = ()
    dyn: bool = False


_STATIC = _Info(False)
_DATA = _Info(True)
_CAP = 4  # provenance sets are capped (only the first entries are ever used)


def _union(seqs) -> tuple:
    out: list = []
    for seq in seqs:
        for x in seq:
            if x not in out:
                out.append(x)
                if len(out) >= _CAP:
                    return tuple(out)
    return tuple(out)


def _join(infos: Sequence[_Info]) -> _Info:
    if not infos:
        return _STATIC
    if len(infos) == 1:
        return infos[0]
    data = any(i.data for i in infos)
    params = () if data else _union(i.params for i in infos)
    producers = _union(i.producers for i in infos)
    dyn = any(i.dyn for i in infos)
    if not data and not params and not producers and not dyn:
        return _STATIC
    return _Info(data, params, producers, dyn)


def _subst(t: Template | None, it: _It, i: int) -> Template | None:
    if t is None or it not in t:
        return t
    return tuple(str(i) if c is it else c for c in t)


def _subst_info(info: _Info, it: _It, i: int) -> _Info:
    if not info.params and not info.producers:
        return info
    return info._replace(
        params=tuple(_subst(p, it, i) for p in info.params),
        producers=tuple(_subst(p, it, i) for p in info.producers),
    )


def _render(t: Template) -> str:
    return ".".join(c if isinstance(c, str) else "*" for c in t)


def _common_prefix(paths: Sequence[Template]) -> Template:
    if not paths:
        return ()
    first = paths[0]
    n = len(first)
    for p in paths[1:]:
        n = min(n, len(p))
        for k in range(n):
            if p[k] is not first[k] and p[k] != first[k]:
                n = k
                break
    return tuple(first[:n])


def _leaf(path: Template) -> str:
    c = path[-1] if path else "?"
    return c if isinstance(c, str) else "*"


def _parent(path: Template) -> Template:
    """Module path of a parameter path: drop the leaf name (``kernel``) unless it is
    the only name in the path (``w`` or ``w.<i>`` stay whole)."""
    if path and isinstance(path[-1], str) and sum(isinstance(c, str) for c in path) > 1:
        return path[:-1]
    return path


# ---------------------------------------------------------------------------------------
# events
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Layer:
    """A MAC layer found during the walk (name still a template)."""

    prim: str
    spec: dict
    name: Template | None
    weight: Template | None
    macs: int


def _layer_macs(events) -> int:
    return sum(e.macs for e in events if isinstance(e, _Layer))


def _nonmac(events) -> int:
    return sum(e for e in events if isinstance(e, int))


def _repeat(events: list, it: _It | None, indices: Sequence[int]) -> list:
    """Unroll a loop body's events once per iteration index."""
    out: list = []
    for i in indices:
        for e in events:
            if isinstance(e, int):
                if out and isinstance(out[-1], int):
                    out[-1] += e
                else:
                    out.append(e)
                continue
            name = e.name
            if name is not None:
                name = _subst(name, it, i) if (it is not None and it in name) else name + (str(i),)
            out.append(dataclasses.replace(e, name=name, weight=_subst(e.weight, it, i)))
    return out


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _bits(dtype) -> int:
    return int(jax.dtypes.itemsize_bits(dtype))


def _size(aval) -> int:
    shape = getattr(aval, "shape", ())
    return int(math.prod(shape))


def _is_literal(v) -> bool:
    return isinstance(v, jcore.Literal)


def _literal_int(v) -> int | None:
    if not _is_literal(v):
        return None
    try:
        val = np.asarray(v.val)
    except Exception:  # pragma: no cover - exotic literal
        return None
    if val.shape != () or val.dtype.kind not in "iu":
        return None
    return int(val)


def _scopes(eqn) -> tuple[str, ...]:
    stack = getattr(eqn.source_info.name_stack, "stack", ())
    out: list[str] = []
    for entry in stack:
        if type(entry).__name__ == "Scope":
            out.extend(
                part
                for part in str(entry.name).split("/")
                if part and "->" not in part  # jnp.einsum's automatic scope (its spec)
            )
    return tuple(out)


_SKIP_SRC = (os.sep + "jax" + os.sep, os.sep + "flax" + os.sep, os.sep + os.path.join("hwmodel", "workload", "extract"))


def _source(eqn) -> str:
    """``file:line (function)`` of the first frame outside jax/flax, or ''."""
    try:
        from jax._src import source_info_util as siu  # private, guarded

        for frame in siu.user_frames(eqn.source_info.traceback):
            fname = frame.file_name
            if any(s in fname for s in _SKIP_SRC):
                continue
            try:
                rel = os.path.relpath(fname)
                if rel.startswith(".."):
                    rel = os.path.basename(fname)
            except ValueError:
                rel = os.path.basename(fname)
            return f"{rel}:{frame.start_line} ({frame.function_name})"
    except Exception:  # pragma: no cover - private API changed
        return ""
    return ""


def _format_key(k) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)  # pragma: no cover


def _path_template(path) -> Template:
    keys = list(path)
    if keys and type(keys[-1]).__name__ == "GetAttrKey" and keys[-1].name == "value":
        keys = keys[:-1]  # nnx.Variable leaf
    return tuple(_format_key(k) for k in keys)


# ---------------------------------------------------------------------------------------
# non-MAC operations
# ---------------------------------------------------------------------------------------
def _nonmac_ops(eqn) -> tuple[int, str | None]:
    """Operations of a non-MAC primitive (element-wise, reductions, windows, scatters,
    sorts) and None; ``(0, reason)`` for a primitive whose work is not known."""
    prim = eqn.primitive.name
    p = eqn.params
    if prim in _FREE:
        return 0, None
    if prim in _ELEMENTWISE or prim in _CUMULATIVE:
        return sum(_size(v.aval) for v in eqn.outvars), None
    if prim in _REDUCTIONS:
        n_in = len(eqn.invars) if prim != "reduce" else len(eqn.invars) // 2
        return sum(_size(v.aval) for v in eqn.invars[: max(1, n_in)]), None
    if prim in _WINDOWED:
        window = math.prod(p.get("window_dimensions", (1,)))
        return sum(_size(v.aval) for v in eqn.outvars) * window, None
    if prim in ("select_and_scatter_add", "select_and_scatter"):
        window = math.prod(p.get("window_dimensions", (1,)))
        return _size(eqn.invars[0].aval) * window, None
    if prim in _SCATTER_OPS:
        return _size(eqn.invars[2].aval), None
    if prim == "sort":
        shape = eqn.invars[0].aval.shape
        dim = p.get("dimension", len(shape) - 1)
        k = shape[dim] if shape else 1
        return _size(eqn.invars[0].aval) * max(1, math.ceil(math.log2(max(k, 1)))), None
    if prim in ("top_k", "approx_top_k"):
        return _size(eqn.invars[0].aval), None
    reason = "unknown primitive: its work is not counted"
    if prim in ("while", "scan", "cond"):  # pragma: no cover - dispatched earlier
        reason = "control flow"
    elif prim == "shard_map":
        reason = "shard_map bodies see per-device shapes: not supported"
    elif prim in ("pure_callback", "io_callback"):
        reason = "host callback: its work is unknown"
    elif prim in ("fft",):
        reason = "FFT is not a conv/matmul loop nest: not counted"
    elif any(isinstance(v, (jcore.Jaxpr, jcore.ClosedJaxpr)) for v in p.values()):
        reason = "higher-order primitive with a sub-jaxpr the extractor does not follow"
    return 0, reason


# ---------------------------------------------------------------------------------------
# MAC layers: names, and the loop bounds of dot_general and conv_general_dilated
# ---------------------------------------------------------------------------------------
def _layer_name(w_info: _Info, i_info: _Info, scope: tuple, leaf: str):
    """(name template or None, weight-param template or None); see module doc."""
    if not w_info.data and w_info.params:
        path = w_info.params[0]
        return _parent(path), path
    # an innermost scope that is itself a dotted path ("blocks.3.attn.qk") is a name
    dotted = tuple(scope[-1].split(".")) if scope and "." in scope[-1] else None
    if w_info.data and i_info.data:
        if dotted:
            return dotted, None
        parents = [p[:-1] for p in i_info.producers + w_info.producers]
        prefix = _common_prefix(parents)
        if scope:
            if prefix:
                return prefix + (scope[-1],), None
        elif i_info.producers and w_info.producers:
            # Q from .q, K from .k -> "q@k"; then softmax(q@k) V -> "q@k@v"
            at = f"{_leaf(i_info.producers[0])}@{_leaf(w_info.producers[0])}"
            return prefix + (at,), None
        elif prefix:
            return prefix + (leaf,), None
    if dotted:
        return dotted, None
    if scope:
        return tuple(scope), None
    return None, None


def _heads(batch: int | None, batch_sizes: Sequence[int]) -> int:
    """Attention heads of a matmul with dot_general batch dims ``batch_sizes`` (the
    leading one is the data batch when it equals ``batch``, or when ``batch`` is unknown
    and there are two or more)."""
    if not batch_sizes:
        return 1
    if batch is not None and batch_sizes[0] == batch:
        return max(1, math.prod(batch_sizes[1:]))
    if len(batch_sizes) >= 2 and batch is None:
        return max(1, math.prod(batch_sizes[1:]))
    return max(1, math.prod(batch_sizes))


class _DotRoles(NamedTuple):
    """A dot_general as a matmul: which operand is W and which I, and the bounds."""

    G: int  # product of the batch dims
    N: int  # I's free dims
    M: int  # W's free dims
    C: int  # contracted dims
    i_var: Any
    w_var: Any
    i_info: _Info
    w_info: _Info
    batch_sizes: list[int]  # dot_general's batch dims (for the head count)


def _dot_roles(eqn, infos) -> _DotRoles:
    """The static operand is W; for two dynamic operands, I is the one computed by
    another dynamic matmul (A in A V), else dot_general's lhs."""
    lhs, rhs = eqn.invars
    li, ri = infos
    (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
    ls, rs = lhs.aval.shape, rhs.aval.shape
    lfree = [d for d in range(len(ls)) if d not in lc and d not in lb]
    rfree = [d for d in range(len(rs)) if d not in rc and d not in rb]
    G = math.prod(ls[d] for d in lb)
    C = math.prod(ls[d] for d in lc)
    n_l = math.prod(ls[d] for d in lfree)
    n_r = math.prod(rs[d] for d in rfree)
    swap = ((not li.data) and ri.data) or (li.data and ri.data and ri.dyn and not li.dyn)
    bsz = [ls[d] for d in lb]
    if swap:
        return _DotRoles(G, n_r, n_l, C, rhs, lhs, ri, li, bsz)
    return _DotRoles(G, n_l, n_r, C, lhs, rhs, li, ri, bsz)


def _conv_dims(eqn) -> dict | str:
    """The loop bounds (``G N M C P Q R S``), input size and window geometry of a
    ``conv_general_dilated`` as :class:`LayerSpec` fields; or why it is not counted."""
    p = eqn.params
    lhs, rhs = eqn.invars
    out = eqn.outvars[0]
    dn = p["dimension_numbers"]
    lhs_spec, rhs_spec, out_spec = dn.lhs_spec, dn.rhs_spec, dn.out_spec
    ls, rs, os_ = lhs.aval.shape, rhs.aval.shape, out.aval.shape
    nsp = len(lhs_spec) - 2
    if nsp > 2:
        return f"{nsp}-D convolution does not fit the 2-D loop nest: not counted"
    B = ls[lhs_spec[0]]
    O, I = rs[rhs_spec[0]], rs[rhs_spec[1]]
    in_sp = [ls[d] for d in lhs_spec[2:]]
    k_sp = [rs[d] for d in rhs_spec[2:]]
    out_sp = [os_[d] for d in out_spec[2:]]
    fg, bg = p["feature_group_count"], p["batch_group_count"]
    if bg > 1:
        G, N, M, C = bg, B // bg, O // bg, I
    else:
        G, N, M, C = fg, B, O // fg, I
    pad2 = lambda seq, fill: tuple(seq) + (fill,) * (2 - len(seq))  # noqa: E731
    P, Q = pad2(out_sp, 1)
    R, S = pad2(k_sp, 1)
    H, W = pad2(in_sp, 1)
    if min(G, N, M, C, P, Q, R, S, H, W) == 0:
        return "zero-size operand: 0 MACs, no layer emitted"
    return dict(
        G=G, N=N, M=M, C=C, P=P, Q=Q, R=R, S=S, H=H, W=W,
        stride=pad2(tuple(int(x) for x in p["window_strides"]), 1),
        dilation=pad2(tuple(int(x) for x in p["rhs_dilation"]), 1),
        lhs_dilation=pad2(tuple(int(x) for x in p["lhs_dilation"]), 1),
        padding=pad2(tuple((int(a), int(b)) for a, b in p["padding"]), (0, 0)),
    )


# ---------------------------------------------------------------------------------------
# the walker
# ---------------------------------------------------------------------------------------


class _Walker:
    def __init__(self, batch: int | None):
        self.batch = batch
        self.outer: list = []  # enclosing call/loop equations, for source locations

    def source(self, eqn) -> str:
        """User source of ``eqn``, else of the innermost enclosing equation that has one
        (primitives inside ``jnp`` functions' own jits have no user frame)."""
        for e in (eqn, *reversed(self.outer)):
            src = _source(e)
            if src:
                return src
        return ""

    # -- generic -----------------------------------------------------------------------
    def run(self, jaxpr, ins: Sequence[_Info], scope: tuple, unrec: list):
        """Walk ``jaxpr`` with input infos ``ins``; return (out infos, events)."""
        env: dict = {}
        for v in jaxpr.constvars:
            env[v] = _STATIC
        if len(ins) != len(jaxpr.invars):  # pragma: no cover - internal invariant
            raise AssertionError(f"{len(ins)} infos for {len(jaxpr.invars)} invars")
        for v, info in zip(jaxpr.invars, ins):
            env[v] = info
        events: list = []

        def read(v):
            return _STATIC if _is_literal(v) else env[v]

        for eqn in jaxpr.eqns:
            infos = [read(v) for v in eqn.invars]
            esc = scope + _scopes(eqn)
            prim = eqn.primitive.name
            if prim == "dot_general":
                outs = self._dot(eqn, infos, esc, events, unrec)
            elif prim == "conv_general_dilated":
                outs = self._conv(eqn, infos, esc, events, unrec)
            elif prim in _CALLS and _CALLS[prim] in eqn.params:
                outs = self.nested(self._call, eqn, infos, esc, events, unrec)
            elif prim == "scan":
                outs = self.nested(self._scan, eqn, infos, esc, events, unrec)
            elif prim == "cond":
                outs = self.nested(self._cond, eqn, infos, esc, events, unrec)
            elif prim == "while":
                outs = self.nested(self._while, eqn, infos, esc, events, unrec)
            else:
                ops = self._ops(eqn, infos, esc, unrec)
                if ops:
                    if events and isinstance(events[-1], int):
                        events[-1] += ops
                    else:
                        events.append(ops)
                j = _join(infos)
                outs = [j] * len(eqn.outvars)
            for v, o in zip(eqn.outvars, outs):
                env[v] = o
        return [read(v) for v in jaxpr.outvars], events

    def _where(self, eqn, scope, infos=()) -> str:
        parts = []
        prods = [_parent(p) for i in infos for p in i.producers]
        prefix = _common_prefix(prods)
        if prefix:
            parts.append(_render(prefix))
        if scope:
            parts.append("/".join(scope))
        src = self.source(eqn)
        head = " in ".join(parts) if parts else "<top level>"
        return f"{head} ({src})" if src else head

    def _unrec(self, unrec, eqn, scope, infos, reason):
        unrec.append(Unrecognized(eqn.primitive.name, self._where(eqn, scope, infos), reason))

    # -- non-MAC ops ---------------------------------------------------------------------
    def _ops(self, eqn, infos, scope, unrec) -> int:
        n, reason = _nonmac_ops(eqn)
        if reason is not None:
            self._unrec(unrec, eqn, scope, infos, reason)
        return n

    # -- MAC layers -----------------------------------------------------------------------
    def _emit(self, events, prim, spec, name, weight):
        macs = math.prod(spec.get(d, 1) for d in ("G", "N", "M", "C", "P", "Q", "R", "S"))
        events.append(_Layer(prim, spec, name, weight, macs))
        return name

    def _dot(self, eqn, infos, scope, events, unrec):
        li, ri = infos
        r = _dot_roles(eqn, infos)
        data = li.data or ri.data
        if min(r.G, r.C, r.N, r.M) == 0:
            self._unrec(unrec, eqn, scope, infos, "zero-size operand: 0 MACs, no layer emitted")
            return [_Info(data, () if data else _union([li.params, ri.params]), ())]
        dynamic = li.data and ri.data
        name, weight = _layer_name(r.w_info, r.i_info, scope, "matmul")
        spec = dict(
            kind="matmul",
            G=r.G,
            N=r.N,
            M=r.M,
            C=r.C,
            dynamic=dynamic,
            w_bits=_bits(r.w_var.aval.dtype),
            i_bits=_bits(r.i_var.aval.dtype),
            o_bits=_bits(eqn.outvars[0].aval.dtype),
            heads=_heads(self.batch, r.batch_sizes),
            source=self.source(eqn),
        )
        name = self._emit(events, "dot_general", spec, name, weight)
        prod = (name,) if name is not None else ()
        return [_Info(data, () if data else _union([li.params, ri.params]), prod, dynamic)]

    def _conv(self, eqn, infos, scope, events, unrec):
        lhs, rhs = eqn.invars
        li, ri = infos
        data = li.data or ri.data
        out_info = _Info(data, () if data else _union([li.params, ri.params]), ())
        dims = _conv_dims(eqn)
        if isinstance(dims, str):  # not counted: why
            self._unrec(unrec, eqn, scope, infos, dims)
            return [out_info]
        name, weight = _layer_name(ri, li, scope, "conv")
        spec = dict(
            kind="conv",
            **dims,
            dynamic=ri.data,
            w_bits=_bits(rhs.aval.dtype),
            i_bits=_bits(lhs.aval.dtype),
            o_bits=_bits(eqn.outvars[0].aval.dtype),
            source=self.source(eqn),
        )
        name = self._emit(events, "conv_general_dilated", spec, name, weight)
        return [out_info._replace(producers=(name,) if name is not None else (), dyn=ri.data)]

    # -- sub-jaxprs -------------------------------------------------------------------------
    def _closed(self, sub, ins, scope, unrec):
        if isinstance(sub, jcore.ClosedJaxpr):
            return self.run(sub.jaxpr, ins, scope, unrec)
        return self.run(sub, ins, scope, unrec)

    def _call(self, eqn, infos, scope, events, unrec):
        sub = eqn.params[_CALLS[eqn.primitive.name]]
        outs, evs = self._closed(sub, infos, scope, unrec)
        events.extend(evs)
        return outs

    def nested(self, method, eqn, infos, scope, events, unrec):
        """Run a sub-jaxpr handler with ``eqn`` on the source stack."""
        self.outer.append(eqn)
        try:
            return method(eqn, infos, scope, events, unrec)
        finally:
            self.outer.pop()

    def _body_fixpoint(self, body, consts, carry0, xs, scope, unrec, ncar):
        """Analyse a loop body until the carry's data/static taint is stable.

        Taint only ever turns static -> data, so this takes at most ``ncar + 1`` passes;
        the events and unrecognized entries of the last pass are kept.
        """
        carry = list(carry0)
        while True:
            local: list = []
            outs, evs = self._closed(body, [*consts, *carry, *xs], scope, local)
            new = [_join([c, o]) for c, o in zip(carry, outs[:ncar])]
            if all(n.data == c.data for n, c in zip(new, carry)):
                unrec.extend(local)
                return outs, evs
            carry = new

    def _scan(self, eqn, infos, scope, events, unrec):
        p = eqn.params
        L, nc, ncar = int(p["length"]), int(p["num_consts"]), int(p["num_carry"])
        consts, carry, xs = infos[:nc], infos[nc : nc + ncar], infos[nc + ncar :]
        it = _It()
        # insert the iteration index into the paths of scanned-over (stacked) params
        paths = [pp for x in xs if not x.data for pp in x.params]
        k = len(_common_prefix(paths)) if paths else 0
        xs_body = []
        for x in xs:
            if x.data or not x.params:
                xs_body.append(x)
                continue
            new = tuple(
                pp[:at] + (it,) + pp[at:]
                for pp in x.params
                for at in [min(k, len(pp) - 1) if len(pp) > 1 else len(pp)]
            )
            xs_body.append(x._replace(params=new))
        local: list = []
        outs, evs = self._body_fixpoint(p["jaxpr"], consts, carry, xs_body, scope, local, ncar)
        for u in local:
            unrec.append(dataclasses.replace(u, reason=f"{u.reason} [inside scan, x{L}]"))
        order = range(L - 1, -1, -1) if p.get("reverse", False) else range(L)
        events.extend(_repeat(evs, it, order))
        last = 0 if p.get("reverse", False) else max(L - 1, 0)
        return [_subst_info(o, it, last) for o in outs]

    def _cond(self, eqn, infos, scope, events, unrec):
        branches = eqn.params["branches"]
        ops = infos[1:]
        results = []
        for b, br in enumerate(branches):
            local: list = []
            outs, evs = self._closed(br, ops, scope, local)
            results.append((outs, evs, local))
        best = max(
            range(len(results)),
            key=lambda b: (_layer_macs(results[b][1]), _nonmac(results[b][1]), -b),
        )
        for b, (_, _, local) in enumerate(results):
            for u in local:
                note = "" if b == best else " [in a cond branch that is not counted]"
                unrec.append(dataclasses.replace(u, reason=u.reason + note))
        events.extend(results[best][1])
        n_out = len(eqn.outvars)
        return [_join([r[0][i] for r in results]) for i in range(n_out)]

    def _while(self, eqn, infos, scope, events, unrec):
        p = eqn.params
        cn, bn = int(p["cond_nconsts"]), int(p["body_nconsts"])
        cond_consts, body_consts = infos[:cn], infos[cn : cn + bn]
        carry = infos[cn + bn :]
        ncar = len(carry)
        local: list = []
        outs, evs = self._body_fixpoint(p["body_jaxpr"], body_consts, carry, [], scope, local, ncar)
        outs = [_join([c, o]) for c, o in zip(carry, outs)]  # zero trips: the init carry
        # the condition runs once more than the body; it may hold work too
        cond_local: list = []
        _, cond_evs = self._closed(p["cond_jaxpr"], [*cond_consts, *outs], scope, cond_local)
        trips = _while_trip_count(eqn)
        if trips is None:
            macs = _layer_macs(evs) + _layer_macs(cond_evs)
            self._unrec(
                unrec,
                eqn,
                scope,
                infos,
                "while loop with a trip count unknown at trace time: its body and condition "
                f"({sum(isinstance(e, _Layer) for e in evs + cond_evs)} MAC layers, {macs:,} MACs "
                f"and {_nonmac(evs) + _nonmac(cond_evs):,} other ops per iteration) are not counted",
            )
            unrec.extend(local + cond_local)
            return outs
        for u in local + cond_local:
            unrec.append(dataclasses.replace(u, reason=f"{u.reason} [inside while, x{trips}]"))
        if any(isinstance(e, _Layer) for e in cond_evs):
            self._unrec(
                unrec,
                eqn,
                scope,
                infos,
                f"while-loop condition computes {_layer_macs(cond_evs):,} MACs per test; "
                "only its non-MAC ops are counted",
            )
        events.extend(_repeat(evs, None, range(trips)))
        cond_ops = _nonmac(cond_evs) * (trips + 1)
        if cond_ops:
            events.append(cond_ops)
        return outs


def _while_trip_count(eqn) -> int | None:
    """Trip count of a ``fori_loop``-shaped ``while`` with literal bounds, else None."""
    p = eqn.params
    cj, bj = p["cond_jaxpr"].jaxpr, p["body_jaxpr"].jaxpr
    cn, bn = int(p["cond_nconsts"]), int(p["body_nconsts"])
    ops = eqn.invars
    cond_consts, init = ops[:cn], ops[cn + bn :]
    if len(cj.eqns) != 1:
        return None
    e = cj.eqns[0]
    if e.primitive.name != "lt" or e.outvars[0] is not cj.outvars[0]:
        return None
    a, b = e.invars

    def carry_index(v):
        if _is_literal(v) or v not in cj.invars:
            return None
        idx = cj.invars.index(v)
        return idx - cn if idx >= cn else None

    def value(v):
        if _is_literal(v):
            return _literal_int(v)
        if v not in cj.invars:
            return None
        idx = cj.invars.index(v)
        if idx < cn:
            return _literal_int(cond_consts[idx])
        k = idx - cn
        if bj.outvars[k] is bj.invars[bn + k]:  # loop-invariant carry
            return _literal_int(init[k])
        return None

    k = carry_index(a)
    if k is None:
        return None
    start, bound = _literal_int(init[k]), value(b)
    if start is None or bound is None:
        return None
    counter_in, counter_out = bj.invars[bn + k], bj.outvars[k]
    step = None
    for be in bj.eqns:
        if be.outvars[0] is counter_out and be.primitive.name == "add":
            x, y = be.invars
            if x is counter_in:
                step = _literal_int(y)
            elif y is counter_in:
                step = _literal_int(x)
    if step is None or step <= 0:
        return None
    return max(0, -(-(bound - start) // step))


# ---------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------


def _unwrap_nnx(fn, args, param_argnums):
    """If ``fn`` is a Flax NNX module, split it so its state becomes a named parameter.

    ``hwmodel`` never imports flax: the module is only recognised when ``flax.nnx`` is
    already loaded (which it is whenever the caller holds an ``nnx.Module``).
    """
    nnx = sys.modules.get("flax.nnx")
    if nnx is None or not isinstance(fn, nnx.Module):
        return fn, args, param_argnums, None
    graphdef, state = nnx.split(fn)

    def call(state, *a):
        return nnx.merge(graphdef, state)(*a)

    return call, (state, *args), (0, *(i + 1 for i in param_argnums)), type(fn).__name__


def _describe_args(args) -> str:
    parts = []
    for a in args:
        leaves = jax.tree_util.tree_leaves(a)
        if len(leaves) == 1 and leaves[0] is a:
            shape = getattr(a, "shape", None)
            dtype = getattr(a, "dtype", None)
            parts.append(f"{dtype}{list(shape)}" if shape is not None else repr(a))
        else:
            parts.append(f"<pytree of {len(leaves)} leaves>")
    return "(" + ", ".join(parts) + ")"


_RANDOM = frozenset({"random_bits", "threefry2x32", "rng_bit_generator", "rng_uniform"})


def _random_eqn(jaxpr):
    """The first random-number equation in ``jaxpr`` or its sub-jaxprs, or None."""
    for eqn in jaxpr.eqns:
        if eqn.primitive.name in _RANDOM:
            return eqn
        for v in eqn.params.values():
            for sub in v if isinstance(v, (list, tuple)) else (v,):
                j = getattr(sub, "jaxpr", sub)
                if hasattr(j, "eqns"):
                    found = _random_eqn(j)
                    if found is not None:
                        return found
    return None


def extract_workload(
    fn: Callable[..., Any],
    *example_args: Any,
    param_argnums: int | Sequence[int] = (),
    name: str | None = None,
    batch: int | None = None,
    allow_random: bool = False,
) -> Workload:
    """Trace ``fn`` and describe the MAC layers it computes (see the module docstring).

    Nothing is computed: ``fn`` is traced with :func:`jax.make_jaxpr`, so example
    arguments may be ``jax.ShapeDtypeStruct`` pytrees and no parameter memory is
    needed.

    Args:
      fn: any JAX-traceable callable, or a Flax NNX module (its state is then a
        named parameter argument, so layers are named by module path).
      *example_args: positional arguments (arrays, ``jax.ShapeDtypeStruct`` or
        pytrees of them) with the shapes and dtypes to trace with.
      param_argnums: indices of the arguments that are parameters (static weights,
        names from their pytree paths).  Every other argument is input data.  Arrays
        closed over by ``fn`` are parameters too (without a path).
      name: the workload's name; defaults to ``fn``'s ``__name__`` or class name.
      batch: the batch size to record; defaults to the leading dimension of the first
        input-data leaf (None if it is a scalar or there is none).
      allow_random: count random-number generation as non-MAC work instead of
        refusing it. By default a function that draws random numbers is an error: it is
        almost always a model in training mode (Dropout, stochastic gates), whose
        inference workload is what the hardware runs.

    Returns:
      A :class:`Workload`: layers in program order with unique names, non-MAC ops
      attributed to layers, and everything not understood in ``unrecognized``.

    Raises:
      ExtractionError: ``fn`` cannot be traced with these arguments (the message
        names the function and the argument shapes), or it draws random numbers and
        ``allow_random`` is False (the message says to call ``model.eval()``).
      ValueError: ``param_argnums`` out of range.
    """
    param_argnums = _check_param_argnums(param_argnums, len(example_args))
    fn, args, param_argnums, module_name = _unwrap_nnx(fn, example_args, param_argnums)
    if name is None:
        name = module_name or getattr(fn, "__name__", None) or type(fn).__name__
    jaxpr = _trace(fn, args, name, example_args)
    if not allow_random:
        _refuse_random(jaxpr, name)
    infos, first_data_leaf = _argument_infos(args, param_argnums, jaxpr, name)
    if batch is None:
        batch = _leading_dim(first_data_leaf)
    unrec: list[Unrecognized] = []
    _, events = _Walker(batch).run(jaxpr, infos, (), unrec)
    layers, ops = _attribute_nonmac(events, name, unrec)
    specs = _layer_specs(layers, ops, batch)
    return Workload(layers=tuple(specs), name=name, batch=batch, unrecognized=tuple(unrec))


def _check_param_argnums(param_argnums, n_args: int) -> tuple[int, ...]:
    """``param_argnums`` as a tuple of ints, each checked to index one of ``n_args`` arguments."""
    if isinstance(param_argnums, int):
        param_argnums = (param_argnums,)
    param_argnums = tuple(int(i) for i in param_argnums)
    for i in param_argnums:
        if not 0 <= i < n_args:
            raise ValueError(
                f"extract_workload: param_argnums entry {i} is out of range for "
                f"{n_args} example argument(s); valid: 0..{n_args - 1}"
            )
    return param_argnums


def _trace(fn, args, name: str, example_args):
    """The jaxpr of ``fn(*args)`` (nothing computed); a trace failure is an :class:`ExtractionError`
    naming the function and the shapes of the user's ``example_args``."""
    try:
        return jax.make_jaxpr(fn)(*args).jaxpr
    except Exception as e:  # noqa: BLE001 - re-raised with context
        raise ExtractionError(
            f"extract_workload: could not trace {name!r} with argument shapes "
            f"{_describe_args(example_args)}: {type(e).__name__}: {e}"
        ) from e


def _refuse_random(jaxpr, name: str) -> None:
    """Raise :class:`ExtractionError` if ``jaxpr`` draws random numbers (a training-mode model)."""
    eqn = _random_eqn(jaxpr)
    if eqn is not None:
        where = _source(eqn) or "an unknown line"
        raise ExtractionError(
            f"extract_workload({name!r}): the traced function draws random numbers "
            f"({eqn.primitive.name} at {where}): a model in training mode (Dropout, "
            "stochastic gates)? Extract the inference-mode model: call model.eval() "
            "first (or pass nnx.view(model, deterministic=True)); allow_random=True "
            "counts random-number generation as non-MAC work instead")


def _argument_infos(args, param_argnums, jaxpr, name: str) -> tuple[list[_Info], Any]:
    """One :class:`_Info` per argument leaf, in the jaxpr's input order, and the first
    input-data leaf (None if every argument is a parameter).

    Parameter leaves are named by their pytree path (prefixed ``argI`` when there are
    several parameter arguments or the path is empty); data leaves carry no name.
    """
    infos: list[_Info] = []
    first_data_leaf = None
    multi = len(param_argnums) > 1
    for i, a in enumerate(args):
        leaves = jax.tree_util.tree_flatten_with_path(a)[0]
        if i in param_argnums:
            for path, _leaf in leaves:
                t = _path_template(path)
                if multi or not t:
                    t = (f"arg{i}",) + t
                infos.append(_Info(False, (t,), ()))
        else:
            for _path, leaf in leaves:
                if first_data_leaf is None:
                    first_data_leaf = leaf
                infos.append(_DATA)
    if len(infos) != len(jaxpr.invars):  # pragma: no cover - pytree mismatch
        raise ExtractionError(
            f"extract_workload({name!r}): {len(infos)} argument leaves but the jaxpr has "
            f"{len(jaxpr.invars)} inputs"
        )
    return infos, first_data_leaf


def _leading_dim(leaf) -> int | None:
    """The batch to record by default: ``leaf``'s leading dimension (None for a scalar or
    no leaf)."""
    if leaf is None:
        return None
    shape = getattr(leaf, "shape", ())
    return int(shape[0]) if len(shape) >= 1 else None


def _attribute_nonmac(events, name: str, unrec: list) -> tuple[list[_Layer], list[int]]:
    """Split the walker's events into layers and each layer's non-MAC op count.

    Non-MAC ops go to the nearest preceding layer; a prologue (ops before the first
    layer) goes to the first layer, or, with no layer at all, into ``unrec``.
    """
    layers: list[_Layer] = []
    ops: list[int] = []
    pending = 0
    for e in events:
        if isinstance(e, int):
            if layers:
                ops[-1] += e
            else:
                pending += e
        else:
            layers.append(e)
            ops.append(0)
    if pending:
        if layers:
            ops[0] += pending
        else:
            unrec.append(
                Unrecognized(
                    "(element-wise)",
                    name,
                    f"{pending:,} non-MAC ops but no conv/matmul to attribute them to",
                )
            )
    return layers, ops


def _layer_specs(layers: Sequence[_Layer], ops: Sequence[int],
                 batch: int | None) -> list[LayerSpec]:
    """One :class:`LayerSpec` per layer, names made unique by a ``_k`` suffix in program order."""
    specs = []
    used: set[str] = set()
    for idx, (lay, nonmac) in enumerate(zip(layers, ops)):
        base = _render(lay.name) if lay.name else f"{lay.prim}_{idx}"
        nm, k = base, 0
        while nm in used:
            k += 1
            nm = f"{base}_{k}"
        used.add(nm)
        specs.append(
            LayerSpec(
                name=nm,
                nonmac_ops=int(nonmac),
                batch=batch,
                weight_param=_render(lay.weight) if lay.weight else "",
                **lay.spec,
            )
        )
    return specs
