"""Where a model's train step spends its time: convolutions (forward, input gradient,
weight gradient) in XLA:CPU, in our oneDNN FFI convolution and in PyTorch (oneDNN) on this
CPU, layer shape by layer shape.

``benchmarks/train_throughput.py`` shows our resnet20 / mnist_cnn train steps are
slower than PyTorch eager on CPU. This script splits the gap: for every distinct
convolution of the model (taken from :func:`hwmodel.extract_workload` at batch
``--batch``; grouped convolutions skipped) it times, in one process and interleaved
(XLA, ours-oneDNN, PyTorch, XLA, ... so that load from other jobs hits all alike):

* ``fwd``: the convolution itself,
* ``dgrad``: the gradient w.r.t. the input (a transposed convolution),
* ``wgrad``: the gradient w.r.t. the kernel (a convolution contracting the batch),

JAX as ``jax.jit`` of ``lax.conv_general_dilated`` (NHWC / HWIO, the zoo's layout)
and of its ``jax.linear_transpose`` (exactly what autodiff runs), ours-oneDNN as
``jax.jit`` of the FFI custom calls that ``models/_onednn.py``'s ``onednn_conv`` runs
in a train step (column omitted if it cannot be built here), PyTorch as
``F.conv2d`` and ``torch.ops.aten.convolution_backward`` (NCHW, its default layout;
symmetric padding, same output shape). Each time is the median over ``--repeats``
calls of the fastest of a few back-to-back runs, inputs already in memory. The table
gives each shape's times multiplied by how many layers of the model have it, and
the sums; the last lines compare the sum over all convolutions with one whole train
step (``codesign.train``'s compiled step vs PyTorch eager, from
``benchmarks/train_throughput.py``'s runners), so the share of the gap that is *not*
in the convolutions (BatchNorm, ReLU, residual additions, optimizer, layout
transposes) shows too.

Usage::

    python benchmarks/conv_breakdown.py [--model resnet20] [--batch 128] [--repeats 7]
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax import lax  # noqa: E402

import models  # noqa: E402
from hwmodel import extract_workload  # noqa: E402

NHWC = ("NHWC", "HWIO", "NHWC")


def conv_shapes(model_name: str, batch: int):
    """``{(H, W, C, M, R, S, stride, pads): count}`` of the model's dense convolutions."""
    model = models.create(model_name, rngs=nnx.Rngs(0))
    shape = models.get_info(model_name).default_input_shape
    wl = extract_workload(model, jax.ShapeDtypeStruct((batch, *shape), jnp.float32), batch=batch)
    out = collections.Counter()
    for layer in wl.layers:
        if layer.kind != "conv" or layer.G != 1:
            continue
        key = (layer.H, layer.W, layer.C, layer.M, layer.R, layer.S, tuple(layer.stride),
               tuple(tuple(p) for p in layer.padding), layer.P, layer.Q)
        out[key] += 1
    return out


def best_of(fn, sync, inner: int = 3) -> float:
    best = float("inf")
    for _ in range(inner):
        t = time.perf_counter()
        sync(fn())
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()

    import torch
    import torch.nn.functional as F

    torch.set_num_threads(os.cpu_count() or 1)
    from models import _onednn

    have_dnnl = _onednn.onednn_available()
    libs = ("jax", "dnnl", "torch") if have_dnnl else ("jax", "torch")
    shapes = conv_shapes(args.model, args.batch)
    n = args.batch
    print(f"# {args.model}, batch {n}: {sum(shapes.values())} dense convs, {len(shapes)} "
          f"distinct shapes; jax {jax.__version__} ({jax.devices()[0].platform}), torch "
          f"{torch.__version__} ({torch.get_num_threads()} threads); load average "
          f"{os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    rng = np.random.default_rng(0)
    rows = []
    tot = collections.defaultdict(float)
    for (h, w, c, m, r, s, stride, pads, p, q), count in sorted(shapes.items()):
        x = rng.standard_normal((n, h, w, c), dtype=np.float32)
        k = rng.standard_normal((r, s, c, m), dtype=np.float32)
        g = rng.standard_normal((n, p, q, m), dtype=np.float32)
        xj, kj, gj = jnp.asarray(x), jnp.asarray(k), jnp.asarray(g)
        conv = lambda a, b, stride=stride, pads=pads: lax.conv_general_dilated(  # noqa: E731
            a, b, stride, pads, dimension_numbers=NHWC)
        xs = jax.ShapeDtypeStruct(xj.shape, xj.dtype)
        ks = jax.ShapeDtypeStruct(kj.shape, kj.dtype)
        j_fwd = jax.jit(conv)
        j_dgrad = jax.jit(lambda b, gg, conv=conv, xs=xs: jax.linear_transpose(
            lambda a: conv(a, b), xs)(gg)[0])
        j_wgrad = jax.jit(lambda a, gg, conv=conv, ks=ks: jax.linear_transpose(
            lambda b: conv(a, b), ks)(gg)[0])
        attrs = _onednn._attrs(stride, pads, (1, 1), 1)
        T = _onednn._TARGETS
        d_fwd = jax.jit(lambda a, b, attrs=attrs, shape=g.shape: _onednn._ffi(T[0], a, b, shape, attrs))
        d_dgrad = jax.jit(lambda b, gg, attrs=attrs, shape=x.shape: _onednn._ffi(T[1], gg, b, shape, attrs))
        d_wgrad = jax.jit(lambda a, gg, attrs=attrs, shape=k.shape: _onednn._ffi(T[2], a, gg, shape, attrs))
        xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
        kt = torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1)))
        gt = torch.from_numpy(np.ascontiguousarray(g.transpose(0, 3, 1, 2)))
        tpad = [r // 2, s // 2]
        assert F.conv2d(xt, kt, stride=stride, padding=tpad).shape == gt.shape

        def t_bwd(mask, xt=xt, kt=kt, gt=gt, stride=stride, tpad=tpad):
            return torch.ops.aten.convolution_backward(
                gt, xt, kt, None, list(stride), tpad, [1, 1], False, [0, 0], 1, mask)

        fns = {
            ("jax", "fwd"): (lambda: j_fwd(xj, kj), jax.block_until_ready),
            ("jax", "dgrad"): (lambda: j_dgrad(kj, gj), jax.block_until_ready),
            ("jax", "wgrad"): (lambda: j_wgrad(xj, gj), jax.block_until_ready),
            ("dnnl", "fwd"): (lambda: d_fwd(xj, kj), jax.block_until_ready),
            ("dnnl", "dgrad"): (lambda: d_dgrad(kj, gj), jax.block_until_ready),
            ("dnnl", "wgrad"): (lambda: d_wgrad(xj, gj), jax.block_until_ready),
            ("torch", "fwd"): (lambda: F.conv2d(xt, kt, stride=stride, padding=tpad), None),
            ("torch", "dgrad"): (lambda: t_bwd([True, False, False]), None),
            ("torch", "wgrad"): (lambda: t_bwd([False, True, False]), None),
        }
        fns = {key: v for key, v in fns.items() if key[0] in libs}
        if have_dnnl:  # same values as XLA (a wrong result would make the timing moot)
            for a, b in ((d_fwd(xj, kj), j_fwd(xj, kj)), (d_dgrad(kj, gj), j_dgrad(kj, gj)),
                         (d_wgrad(xj, gj), j_wgrad(xj, gj))):
                a, b = np.asarray(a), np.asarray(b)
                assert np.abs(a - b).max() <= 1e-4 * np.abs(b).max(), "oneDNN != XLA"
        times = collections.defaultdict(list)
        with torch.no_grad():
            for fn, sync in fns.values():  # warm-up (compilation, allocator)
                (sync or (lambda o: o))(fn())
            for _ in range(args.repeats):
                for key, (fn, sync) in fns.items():
                    times[key].append(best_of(fn, sync or (lambda o: o)))
        med = {key: statistics.median(v) * count for key, v in times.items()}
        for key, v in med.items():
            tot[key] += v
        macs = n * p * q * m * c * r * s
        rows.append((f"{h}x{w}x{c}->{p}x{q}x{m} {r}x{s}/{stride[0]}", count, macs * count / 1e6,
                     med))
    names = {"jax": "XLA", "dnnl": "ours-oneDNN", "torch": "PyTorch"}
    print()
    print("ms per step (shape time x layers); " + ", ".join(
        f"{names[lib]}" for lib in libs) + "; ratio: XLA / PyTorch" +
        (", ours-oneDNN / PyTorch" if have_dnnl else ""))

    def cells(t):
        out = []
        for ph in ("fwd", "dgrad", "wgrad"):
            ms = "/".join(f"{t[(lib, ph)] * 1e3:.1f}" for lib in libs)
            ratios = " ".join(f"{t[(lib, ph)] / t[('torch', ph)]:.1f}x" for lib in libs[:-1])
            out.append(f"{ms + ' ' + ratios:>27}")
        return " ".join(out)

    print(f"{'conv (HxWxC->PxQxM RxS/stride)':32} {'n':>2} {'MMACs':>7} "
          + " ".join(f"{ph:>27}" for ph in ("fwd", "dgrad", "wgrad")))
    for name, count, mmacs, med in rows:
        print(f"{name:32} {count:>2} {mmacs:7.0f} {cells(med)}")
    total_macs = sum(r[2] for r in rows)
    print(f"{'all convs':32} {sum(r[1] for r in rows):>2} {total_macs:7.0f} {cells(tot)}")
    sums = {lib: sum(v for (li, _), v in tot.items() if li == lib) for lib in libs}
    print("\nconvolutions, fwd + dgrad + wgrad, ms per step of " + str(n) + ": " + ", ".join(
        f"{names[lib]} {sums[lib] * 1e3:.0f} ({sums[lib] / sums['torch']:.2f}x PyTorch, "
        f"{6 * total_macs / 1e3 / sums[lib]:.0f} GFLOP/s)" for lib in libs))
    # the whole train step, for the share outside the convolutions
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import train_throughput as TT

    backends = ("onednn", "xla") if have_dnnl else ("xla",)
    steps = TT.whole_step_seconds(args.model, n, repeats=3, backends=backends)
    if steps is not None:
        conv_s = {"ours-xla": sums["jax"], "ours-onednn": sums.get("dnnl"), "torch": sums["torch"]}
        print("whole train step, ms: " + ", ".join(
            f"{k} {v * 1e3:.0f} ({v / steps['torch']:.2f}x torch; outside the convolutions "
            f"{max(v - conv_s[k], 0) * 1e3:.0f})" for k, v in steps.items()))
    print(f"(end: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
