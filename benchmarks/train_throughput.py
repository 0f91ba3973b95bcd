"""Training throughput: our train step vs the same architecture in PyTorch eager (CPU).

For each model this measures images/s of one optimizer step at batch ``--batch``
(default 128), each side in a process of its own, the sides one after another and then
again in reverse order (so that drift in the load from other jobs hits all alike;
``--same-process`` times them interleaved in one process instead, the method of
earlier versions, which understates both sides: their thread pools slow each other
down, see :func:`isolated`):

* **ours**: the exact compiled function :func:`codesign.train.train_and_evaluate`
  runs (``codesign.train._build_fns``: split/merge + ``jax.jit``, the uint8 batch
  normalized inside the step, forward, backward, SGD with momentum 0.9, metric
  accumulation), fed as the loop feeds it: a host uint8 batch and its labels
  ``device_put`` every step, plus the epoch/step scalars. Twice, compiled with each
  convolution backend (``--conv-backends``, default ``onednn xla``: ``conv_backend``
  of the training config, ``models/_onednn.py``); ``onednn`` is left out with a note
  where the oneDNN convolution cannot be built.
* **torch**: the same architecture written in PyTorch (``nn.Module`` classes below,
  NCHW, eager mode), the same host uint8 batch converted with ``torch.from_numpy``
  and normalized, ``zero_grad / forward / cross-entropy / backward /
  SGD(momentum=0.9).step()`` and the argmax accuracy.

* **torch+malloc** (``torch-tuned``, only with one process per side): PyTorch again,
  in a process whose allocator :func:`codesign.runtime.tune_allocator` tuned as ours
  is (``codesign train`` tunes it; PyTorch users can get the same with
  ``GLIBC_TUNABLES`` or jemalloc), so the ratio against it isolates what the
  allocator setting is worth from what the step itself is worth.

The PyTorch models are checked before timing: equal parameter counts, and equal
logits (eval mode, same input) after copying our weights into them (conv kernels
HWIO -> OIHW, dense kernels transposed, the MNIST CNN's flatten order permuted;
stride-2 convs padded like XLA's SAME, i.e. (0, 1), for this check only -- the
timed models use PyTorch's usual symmetric ``padding=1``, same shapes and MACs).

Both sides use the same number of threads (XLA's CPU pool is one thread per core;
``torch.set_num_threads`` is set to the same). The warm-up (compilation, first
steps) is excluded; each timed block runs about ``--block-seconds`` of steps and
the median over all blocks of a side is reported.

GFLOP/s is ``6 x MACs per image x images/s`` (forward 2 FLOPs per MAC, backward
twice that; MACs from ``hwmodel.extract_workload`` at batch 1), compared with a
2048^3 float32 matmul measured in the same run (JAX and PyTorch; the faster one is
the "matmul" reference column).

A second table times the full ``codesign train cifar10`` preset step (random-crop +
flip augmentation on device, Nesterov SGD, weight decay, label smoothing, one-cycle
schedule) for ``--preset-models`` (default resnet20 and vgg_small): the images/s a
60-minute CIFAR-10 run can plan with.

Usage::

    python benchmarks/train_throughput.py [--models mnist_cnn resnet20 vgg_small vit_tiny]
        [--batch 128] [--repeats 5] [--block-seconds 2] [--no-torch] [--same-process]
        [--preset-models resnet20 vgg_small]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import models  # noqa: E402
from codesign import train as T  # noqa: E402
from codesign.config import Config, get_preset  # noqa: E402
from codesign.runtime import tune_allocator  # noqa: E402

DEFAULT_MODELS = ("mnist_cnn", "resnet20", "vgg_small", "vit_tiny")
MEAN, STD = 0.45, 0.25  # normalization constants (any values; the same on both sides)


# --------------------------------------------------------------------------------------
# PyTorch versions of the zoo models (same layers as models/_cnn.py, _resnet.py, _vit.py)
# --------------------------------------------------------------------------------------


def torch_models():
    """Defines and returns ``{name: builder(exact_pad) -> nn.Module}`` (imports torch lazily)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    def conv3(cin, cout, stride=1, bias=False, exact_pad=False):
        if stride == 1 or not exact_pad:
            return nn.Conv2d(cin, cout, 3, stride, padding=1, bias=bias)
        # XLA's SAME for an even input and stride 2 pads (0, 1); PyTorch pads (1, 1)
        return nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(cin, cout, 3, stride, bias=bias))

    def bn(c):
        return nn.BatchNorm2d(c, eps=1e-5, momentum=0.1)  # flax momentum 0.9

    class MnistCNN(nn.Module):
        def __init__(self, exact_pad=False):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 32, 3, padding=1)
            self.conv2 = nn.Conv2d(32, 64, 3, padding=1)
            self.linear1 = nn.Linear(7 * 7 * 64, 256)
            self.linear2 = nn.Linear(256, 10)

        def forward(self, x):
            x = F.avg_pool2d(F.relu(self.conv1(x)), 2)
            x = F.avg_pool2d(F.relu(self.conv2(x)), 2)
            x = torch.flatten(x, 1)
            return self.linear2(F.relu(self.linear1(x)))

    class ConvBNReLU(nn.Module):
        def __init__(self, cin, cout, stride=1, exact_pad=False):
            super().__init__()
            self.conv = conv3(cin, cout, stride, exact_pad=exact_pad)
            self.bn = bn(cout)

        def forward(self, x):
            return F.relu(self.bn(self.conv(x)))

    class BasicBlock(nn.Module):
        def __init__(self, cin, cout, stride, exact_pad=False):
            super().__init__()
            self.cin, self.cout, self.stride = cin, cout, stride
            self.conv1 = conv3(cin, cout, stride, exact_pad=exact_pad)
            self.bn1 = bn(cout)
            self.conv2 = conv3(cout, cout, 1)
            self.bn2 = bn(cout)

        def forward(self, x):
            y = F.relu(self.bn1(self.conv1(x)))
            y = self.bn2(self.conv2(y))
            s = x[:, :, :: self.stride, :: self.stride] if self.stride != 1 else x
            extra = self.cout - self.cin
            if extra:  # option A: zero-pad the new channels
                s = F.pad(s, (0, 0, 0, 0, extra // 2, extra - extra // 2))
            return F.relu(y + s)

    class ResNet20(nn.Module):
        def __init__(self, exact_pad=False):
            super().__init__()
            self.stem = ConvBNReLU(3, 16, exact_pad=exact_pad)
            blocks, cin = [], 16
            for s, cout in enumerate((16, 32, 64)):
                for b in range(3):
                    blocks.append(BasicBlock(cin, cout, 2 if s > 0 and b == 0 else 1, exact_pad))
                    cin = cout
            self.blocks = nn.ModuleList(blocks)
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            x = self.stem(x)
            for b in self.blocks:
                x = b(x)
            return self.head(x.mean((2, 3)))

    class VGGSmall(nn.Module):
        def __init__(self, exact_pad=False):
            super().__init__()
            widths = (32, 32, 64, 64, 128, 128)
            self.features = nn.ModuleList(
                [ConvBNReLU(cin, cout) for cin, cout in zip((3,) + widths[:-1], widths)]
            )
            self.pool_after = (1, 3, 5)
            self.dropout = nn.Dropout(0.0)
            self.head = nn.Linear(128, 10)

        def forward(self, x):
            for i, f in enumerate(self.features):
                x = f(x)
                if i in self.pool_after:
                    x = F.max_pool2d(x, 2)
            return self.head(self.dropout(x.mean((2, 3))))

    class Attention(nn.Module):
        def __init__(self, dim, heads, head_dim):
            super().__init__()
            self.h, self.e = heads, head_dim
            inner = heads * head_dim
            self.q, self.k, self.v = nn.Linear(dim, inner), nn.Linear(dim, inner), nn.Linear(dim, inner)
            self.o = nn.Linear(inner, dim)

        def forward(self, x):
            b, t, _ = x.shape
            q = self.q(x).view(b, t, self.h, self.e)
            k = self.k(x).view(b, t, self.h, self.e)
            v = self.v(x).view(b, t, self.h, self.e)
            logits = torch.einsum("bqhe,bkhe->bhqk", q, k) / (self.e ** 0.5)
            a = torch.softmax(logits, dim=-1)
            z = torch.einsum("bhqk,bkhf->bqhf", a, v)
            return self.o(z.reshape(b, t, self.h * self.e))

    class MLP(nn.Module):
        def __init__(self, dim, mlp_dim, p):
            super().__init__()
            self.fc1, self.fc2 = nn.Linear(dim, mlp_dim), nn.Linear(mlp_dim, dim)
            self.dropout = nn.Dropout(p)

        def forward(self, x):
            return self.fc2(self.dropout(F.gelu(self.fc1(x), approximate="tanh")))

    class Block(nn.Module):
        def __init__(self, dim, heads, head_dim, mlp_dim, p):
            super().__init__()
            self.ln1 = nn.LayerNorm(dim, eps=1e-6)
            self.attn = Attention(dim, heads, head_dim)
            self.drop1 = nn.Dropout(p)
            self.ln2 = nn.LayerNorm(dim, eps=1e-6)
            self.mlp = MLP(dim, mlp_dim, p)
            self.drop2 = nn.Dropout(p)

        def forward(self, x):
            x = x + self.drop1(self.attn(self.ln1(x)))
            return x + self.drop2(self.mlp(self.ln2(x)))

    class ViTTiny(nn.Module):
        def __init__(self, exact_pad=False, c=1, hw=28, patch=4, dim=64, depth=6, heads=4,
                     mlp_dim=128, p=0.1):
            super().__init__()
            self.dim = dim
            self.patch_embed = nn.Conv2d(c, dim, patch, patch)
            n = (hw // patch) ** 2 + 1
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = nn.Parameter(torch.randn(1, n, dim) * 0.02)
            self.dropout = nn.Dropout(p)
            self.blocks = nn.ModuleList([Block(dim, heads, dim // heads, mlp_dim, p) for _ in range(depth)])
            self.norm = nn.LayerNorm(dim, eps=1e-6)
            self.head = nn.Linear(dim, 10)

        def forward(self, x):
            x = self.patch_embed(x)  # [B, D, H/p, W/p]
            b = x.shape[0]
            x = x.flatten(2).transpose(1, 2)  # [B, T, D], row-major patches as ours
            x = torch.cat([self.cls_token.expand(b, 1, self.dim), x], 1) + self.pos_embed
            x = self.dropout(x)
            for blk in self.blocks:
                x = blk(x)
            return self.head(self.norm(x)[:, 0])

    return {"mnist_cnn": MnistCNN, "resnet20": ResNet20, "vgg_small": VGGSmall, "vit_tiny": ViTTiny}


_TORCH_NAME = {"scale": "weight", "kernel": "weight", "mean": "running_mean", "var": "running_var"}


def copy_weights_to_torch(jmodel: nnx.Module, tmodel, name: str) -> None:
    """Copies every array of our model into the PyTorch model (paths map one to one)."""
    import torch

    tstate = tmodel.state_dict()
    used = set()
    for path, var in nnx.to_flat_state(nnx.state(jmodel, nnx.Any(nnx.Param, nnx.BatchStat))):
        parts = [str(p) for p in path]
        tname = ".".join(parts[:-1] + [_TORCH_NAME.get(parts[-1], parts[-1])])
        if tname not in tstate:  # a conv wrapped in Sequential (exact stride-2 padding)
            alt = ".".join(parts[:-1] + ["1", _TORCH_NAME.get(parts[-1], parts[-1])])
            tname = alt if alt in tstate else tname
        if tname not in tstate:
            raise KeyError(f"{name}: our {'.'.join(parts)} has no PyTorch counterpart {tname}")
        a = np.asarray(var[...])
        if parts[-1] == "kernel" and a.ndim == 4:
            a = a.transpose(3, 2, 0, 1)  # HWIO -> OIHW
        elif parts[-1] == "kernel" and a.ndim == 2:
            if name == "mnist_cnn" and parts[0] == "linear1":  # NHWC flatten -> NCHW flatten
                a = a.reshape(7, 7, 64, -1).transpose(2, 0, 1, 3).reshape(7 * 7 * 64, -1)
            a = a.T
        if tuple(tstate[tname].shape) != a.shape:
            raise ValueError(f"{name}: {tname} shape {tuple(tstate[tname].shape)} != ours {a.shape}")
        tstate[tname] = torch.from_numpy(np.array(a, copy=True))
        used.add(tname)
    missing = [k for k in tstate if k not in used and not k.endswith("num_batches_tracked")]
    if missing:
        raise KeyError(f"{name}: PyTorch arrays without a counterpart in ours: {missing}")
    tmodel.load_state_dict(tstate)


def check_torch_model(name: str, builder) -> tuple[int, float]:
    """Parameter count equality and logits equality (eval mode); returns (params, max |diff|)."""
    import torch

    jm = models.create(name, rngs=nnx.Rngs(0))
    ours = T.count_params(jm)
    tm = builder(exact_pad=True)
    theirs = sum(p.numel() for p in tm.parameters())
    if ours != theirs:
        raise AssertionError(f"{name}: {ours:,} parameters in ours, {theirs:,} in the PyTorch version")
    copy_weights_to_torch(jm, tm, name)
    jm.eval()
    tm.eval()
    info = models.get_info(name)
    x = np.random.default_rng(1).normal(size=(4, *info.default_input_shape)).astype(np.float32)
    want = np.asarray(jm(jnp.asarray(x)))
    with torch.no_grad():
        got = tm(torch.from_numpy(x.transpose(0, 3, 1, 2).copy())).numpy()
    err = float(np.max(np.abs(want - got)))
    tol = 1e-3 * max(1.0, float(np.max(np.abs(want))))
    if not err <= tol:
        raise AssertionError(f"{name}: PyTorch logits differ from ours by {err:.3g} (> {tol:.3g})")
    return ours, err


# --------------------------------------------------------------------------------------
# Runners: one call = one training step on the next host batch
# --------------------------------------------------------------------------------------


def host_batches(shape, num_classes: int, batch: int, n: int = 4):
    rng = np.random.default_rng(0)
    return [(rng.integers(0, 256, (batch, *shape), dtype=np.uint8),
             rng.integers(0, num_classes, batch).astype(np.int32)) for _ in range(n)]


class OursRunner:
    """The compiled step of ``train_and_evaluate`` for ``config``, fed like the loop feeds it."""

    def __init__(self, config: Config, shape, num_classes: int, batches):
        with models.conv_backend(models.resolve_conv_backend(config.conv_backend)):
            self._init(config, shape, num_classes, batches)

    def _init(self, config: Config, shape, num_classes: int, batches):
        from jax.sharding import NamedSharding
        from jax.sharding import PartitionSpec as P

        self.config, self.batches = config, batches
        c = shape[-1]
        model, opt = T.create_train_state(config, input_shape=shape, num_classes=num_classes,
                                          steps_per_epoch=1000)
        self.params = T.count_params(model)
        self.macs, _ = T._count_macs(model, shape)
        gd_train, state = nnx.split((model, opt))
        model.eval()
        gd_eval = nnx.graphdef((model, opt))
        model.train()
        mesh = T._make_mesh(config)
        self.repl, self.data = NamedSharding(mesh, P()), NamedSharding(mesh, P("data"))
        self.fns = T._build_fns(config, gd_train, gd_eval, state, (MEAN,) * c, (STD,) * c, mesh,
                                tuple(shape), T.ClassificationLoss(float(config.label_smoothing)))
        self.state = T._replicate(state, self.repl)
        self.acc = T._replicate(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype),
                                             self.fns.acc_shape), self.repl)
        self.i = 0

    def __call__(self):
        x, y = self.batches[self.i % len(self.batches)]
        put = T._put_batch
        self.state, self.acc = self.fns.train(
            self.state, self.acc, put(x, self.data), put(y, self.data),
            T._replicate(np.int32(0), self.repl), T._replicate(np.int32(self.i), self.repl))
        self.i += 1
        return self.acc

    @staticmethod
    def sync(out):
        jax.block_until_ready(out)


class TorchRunner:
    """The same step in PyTorch eager: SGD(momentum 0.9), mean cross-entropy, argmax accuracy."""

    def __init__(self, builder, batches, lr: float, bf16: bool = False):
        import torch

        self.torch = torch
        self.bf16 = bf16
        torch.manual_seed(0)
        self.model = builder(exact_pad=False)
        self.model.train()
        self.opt = torch.optim.SGD(self.model.parameters(), lr=lr, momentum=0.9)
        self.batches = [(torch.from_numpy(x), torch.from_numpy(y).long()) for x, y in batches]
        self.i = 0
        self.correct = torch.zeros(())

    def __call__(self):
        torch = self.torch
        x8, y = self.batches[self.i % len(self.batches)]
        self.i += 1
        x = (x8.permute(0, 3, 1, 2).float() / 255.0 - MEAN) / STD  # NHWC uint8 -> NCHW float
        self.opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(x)
        loss = torch.nn.functional.cross_entropy(logits.float(), y)
        loss.backward()
        self.opt.step()
        self.correct += (logits.detach().argmax(-1) == y).sum()
        return loss

    @staticmethod
    def sync(out):
        float(out.detach())


def calibrate(run, sync, block_seconds: float, warmup: int = 2) -> int:
    """Warm up and return the number of steps that take about ``block_seconds``."""
    for _ in range(warmup):
        out = run()
    sync(out)
    t = time.perf_counter()
    out = run()
    sync(out)
    dt = time.perf_counter() - t
    return max(1, int(round(block_seconds / max(dt, 1e-6))))


def time_block(run, sync, steps: int) -> float:
    """Seconds per step over one block of ``steps`` steps."""
    t = time.perf_counter()
    out = None
    for _ in range(steps):
        out = run()
    sync(out)
    return (time.perf_counter() - t) / steps


def interleaved(runners: dict, repeats: int, block_seconds: float) -> dict[str, float]:
    """Median seconds per step of each runner, timed blocks interleaved across runners."""
    steps = {k: calibrate(r, r.sync, block_seconds) for k, r in runners.items()}
    per = {k: [] for k in runners}
    for _ in range(repeats):
        for k, r in runners.items():
            per[k].append(time_block(r, r.sync, steps[k]))
    return {k: statistics.median(v) for k, v in per.items()}


def bench_config(name: str, batch: int, lr: float) -> Config:
    """The training config every timing of ``name`` uses (plain SGD + momentum, no
    schedule, no checkpoints); set ``conv_backend`` on it per side."""
    info = models.get_info(name)
    return Config(model=name, dataset=info.dataset, batch_size=batch, eval_batch_size=batch,
                  num_devices=1, optimizer="sgd", learning_rate=lr, momentum=0.9,
                  schedule="constant", keep_checkpoints=0)


def isolated(name: str, sides: list[str], a) -> dict[str, float]:
    """Median seconds per step of each side (``onednn``, ``xla``, ``torch``), each timed
    in a process of its own (this script with ``--worker SIDE``), the sides run one
    after another, then again in the reverse order (so slow drift in the machine's load
    hits all alike); ``a.repeats`` blocks per process, the median over both rounds.

    Why: in one process, PyTorch's and our oneDNN's OpenMP thread pools and XLA's
    thread pool slow each other down when their work alternates (measured on resnet20:
    ours 405 img/s next to PyTorch, ~505 alone; PyTorch 534 next to ours, ~650 alone),
    so the interleaved same-process comparison understates both sides."""
    import json
    import subprocess

    per = {s: [] for s in sides}
    for order in (sides, sides[::-1]):
        for side in order:
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", side, "--models", name,
                   "--batch", str(a.batch), "--repeats", str(a.repeats),
                   "--block-seconds", str(a.block_seconds), "--lr", str(a.lr),
                   "--compute-dtype", a.compute_dtype]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            per[side] += json.loads(out.strip().splitlines()[-1])["blocks"]
    return {s: statistics.median(v) for s, v in per.items()}


def _worker(a) -> int:
    """``--worker SIDE``: time one side of one model alone; print its blocks as JSON."""
    import json

    name, side = a.models[0], a.worker
    if side != "torch":  # ours as `codesign train` runs it; torch-tuned: PyTorch likewise
        tune_allocator()
    info = models.get_info(name)
    batches = host_batches(info.default_input_shape, info.num_classes, a.batch)
    if side.startswith("torch"):
        import torch

        torch.set_num_threads(os.cpu_count())
        runner = TorchRunner(torch_models()[name], batches, a.lr,
                             bf16=a.compute_dtype == "bfloat16")
    else:
        cfg = bench_config(name, a.batch, a.lr).replace(conv_backend=side,
                                                        compute_dtype=a.compute_dtype)
        runner = OursRunner(cfg, info.default_input_shape, info.num_classes, batches)
    steps = calibrate(runner, runner.sync, a.block_seconds)
    blocks = [time_block(runner, runner.sync, steps) for _ in range(a.repeats)]
    print(json.dumps({"side": side, "blocks": blocks}))
    return 0


def matmul_gflops(repeats: int = 5, n: int = 2048) -> dict[str, float]:
    """GFLOP/s of an ``n^3`` float32 matmul in JAX (jit) and, if importable, PyTorch."""
    out = {}
    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    f = jax.jit(jnp.matmul)
    jax.block_until_ready(f(a, b))
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(f(a, b))
        ts.append(time.perf_counter() - t)
    out["jax"] = 2 * n ** 3 / statistics.median(ts) / 1e9
    try:
        import torch
    except ImportError:
        return out
    ta, tb = torch.from_numpy(np.array(a)), torch.from_numpy(np.array(b))
    torch.mm(ta, tb)
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(ta, tb)
        ts.append(time.perf_counter() - t)
    out["torch"] = 2 * n ** 3 / statistics.median(ts) / 1e9
    return out


def whole_step_seconds(name: str, batch: int, repeats: int = 3, lr: float = 0.01,
                       backends=("xla",)):
    """``{"ours-<backend>": s, ..., "torch": s}``: median seconds per train step of ``name``
    (as in the main table: each side in a process of its own, :func:`isolated`) for each
    conv backend and PyTorch, or ``None`` when there is no PyTorch version of the model."""
    import types

    if name not in torch_models():
        return None
    a = types.SimpleNamespace(batch=batch, repeats=repeats, block_seconds=2.0, lr=lr)
    t = isolated(name, list(backends) + ["torch"], a)
    return {("torch" if k == "torch" else f"ours-{k}"): v for k, v in t.items()}


def load_note() -> str:
    return f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5, help="timed blocks per side (median reported)")
    p.add_argument("--block-seconds", type=float, default=2.0, help="length of one timed block")
    p.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (both sides)")
    p.add_argument("--no-torch", action="store_true", help="time ours only")
    p.add_argument("--conv-backends", nargs="+", default=["onednn", "xla"],
                   choices=["onednn", "xla"], help="conv backends of ours to time (same run)")
    p.add_argument("--preset-models", nargs="*", default=["resnet20", "vgg_small"],
                   help="models timed with the full cifar10 preset step (empty: skip)")
    p.add_argument("--same-process", action="store_true",
                   help="time every side in this one process, interleaved (the old method: "
                        "the thread pools of the sides slow each other down); default: each "
                        "side in a process of its own")
    p.add_argument("--compute-dtype", default="float32", choices=["float32", "bfloat16"],
                   help="ours: compute_dtype of the training config; PyTorch: bfloat16 "
                        "means torch.autocast(bfloat16) around the forward pass")
    p.add_argument("--worker", choices=["onednn", "xla", "torch", "torch-tuned"],
                   help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    for n in a.models + a.preset_models:
        models.get_info(n)
    if a.worker:
        return _worker(a)
    tune_allocator()  # this process times ours in --same-process mode and the preset table

    backends = list(a.conv_backends)
    if "onednn" in backends and not models.onednn_available():
        backends.remove("onednn")
        print("# oneDNN convolution unavailable here: timing ours with XLA's convolutions only")
    if not backends:
        p.error("no conv backend left to time")
    threads = os.cpu_count()
    builders = {}
    if not a.no_torch:
        import torch

        torch.set_num_threads(threads)
        builders = torch_models()
        tv = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    else:
        tv = "torch not timed"
    xla_flags = os.environ.get("XLA_FLAGS", "")
    how = (f"{a.repeats} interleaved blocks of ~{a.block_seconds:g} s per side in one process"
           if a.same_process else
           f"each side in its own process, twice (forward and reverse order), {a.repeats} "
           f"blocks of ~{a.block_seconds:g} s each")
    print(f"# jax {jax.__version__} ({jax.devices()[0].platform} x{jax.device_count()}, "
          f"XLA_FLAGS={xla_flags!r}), {tv}; batch {a.batch}; compute dtype {a.compute_dtype}; {how}, median; "
          f"start: {load_note()}", flush=True)
    mm = matmul_gflops()
    peak = max(mm.values())
    print("# 2048^3 float32 matmul: " + ", ".join(f"{k} {v:.0f} GFLOP/s" for k, v in mm.items()),
          flush=True)

    rows = []
    for name in a.models:
        info = models.get_info(name)
        shape = info.default_input_shape
        batches = host_batches(shape, info.num_classes, a.batch)
        cfg = bench_config(name, a.batch, a.lr).replace(compute_dtype=a.compute_dtype)
        # one process per side (default): this process only needs params / MACs and the
        # PyTorch check, so it builds just the first backend's runner
        runners = {b: OursRunner(cfg.replace(conv_backend=b), shape, info.num_classes, batches)
                   for b in (backends if a.same_process else backends[:1])}
        ours = runners[backends[0]]
        if name in builders:
            params, err = check_torch_model(name, builders[name])
            check = f"params equal ({params:,}), logits max |diff| {err:.1e}"
        else:
            check = "no PyTorch version" if builders else "not timed"
        if a.same_process:
            if name in builders:
                runners["torch"] = TorchRunner(builders[name], batches, a.lr,
                                               bf16=a.compute_dtype == "bfloat16")
            t = interleaved(runners, a.repeats, a.block_seconds)
        else:
            del runners  # free the compiled step before the workers start
            t = isolated(name, backends + (["torch", "torch-tuned"] if name in builders else []),
                         a)
        rows.append((name, ours.params, ours.macs, t, check, load_note()))
        print(f"#   {name}: done ({check}; {load_note()})", flush=True)

    def gf(macs, sec):
        return 6 * macs * a.batch / sec / 1e9 if macs else float("nan")

    cols = backends + (["torch"] if builders else [])
    tuned = builders and not a.same_process
    if tuned:
        cols.append("torch-tuned")
    label = {"onednn": "ours-onednn", "xla": "ours-xla", "torch": "torch",
             "torch-tuned": "torch+malloc"}
    print()
    print(f"{'model':<11}{'params':>9}{'MMACs':>8}"
          + "".join(f"{label[c] + ' img/s':>19}" for c in cols)
          + "".join(f"{label[b] + '/torch':>19}" for b in backends if builders)
          + "".join(f"{label[b] + '/torch+malloc':>26}" for b in backends if tuned)
          + (f"{'onednn/xla':>12}" if len(backends) == 2 else "")
          + "".join(f"{label[c] + ' GFLOP/s (matmul)':>30}" for c in cols))
    for name, params, macs, t, _, _ in rows:
        ips = {c: a.batch / t[c] if c in t else float("nan") for c in cols}
        line = f"{name:<11}{params:>9,}{macs / 1e6:>8.2f}"
        line += "".join(f"{ips[c]:>19,.0f}" for c in cols)
        line += "".join(f"{ips[b] / ips['torch']:>19.2f}" for b in backends if builders)
        line += "".join(f"{ips[b] / ips['torch-tuned']:>26.2f}" for b in backends if tuned)
        if len(backends) == 2:
            line += f"{ips['onednn'] / ips['xla']:>12.2f}"
        line += "".join(f"{gf(macs, t.get(c, float('nan'))):>20.1f} ({gf(macs, t.get(c, float('nan'))) / peak:>5.1%})"
                        for c in cols)
        print(line)
    print(f"(matmul reference: {peak:.0f} GFLOP/s, the faster of "
          + " and ".join(mm) + f"; end: {load_note()})", flush=True)

    if a.preset_models:
        base = get_preset("cifar10")
        print(f"\nfull `codesign train cifar10` step (augment={base.augment}, nesterov={base.nesterov}, "
              f"weight_decay={base.weight_decay}, label_smoothing={base.label_smoothing}, "
              f"{base.schedule}), batch {base.batch_size}:")
        print(f"{'model':<11}{'conv':>8}{'img/s':>9}{'s/step':>9}{'s/epoch (390 steps)':>21}  load")
        for name in a.preset_models:
            info = models.get_info(name)
            cfg = base.replace(model=name, num_devices=1, keep_checkpoints=0,
                               compute_dtype=a.compute_dtype)
            batches = host_batches((32, 32, 3), 10, cfg.batch_size)
            rs = {b: OursRunner(cfg.replace(conv_backend=b), (32, 32, 3), 10, batches)
                  for b in backends}
            ts = interleaved(rs, a.repeats, a.block_seconds)
            for b, t in ts.items():
                print(f"{name:<11}{b:>8}{cfg.batch_size / t:>9,.0f}{t:>9.3f}{390 * t:>21.0f}  "
                      f"{load_note()}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
