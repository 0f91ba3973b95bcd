"""oneDNN convolutions for JAX on CPU, through ``jax.ffi`` (the ``onednn`` conv backend).

XLA:CPU's convolution kernels are 2-8x slower than oneDNN's (the library PyTorch uses
on CPU), above all the weight gradient (``python benchmarks/conv_breakdown.py``).
:func:`onednn_conv` is ``lax.conv_general_dilated`` (NHWC input, HWIO kernel, any
stride, explicit padding, dilation, feature groups incl. depthwise) whose forward pass,
input gradient and weight gradient, when differentiated on CPU, run as three oneDNN
primitives called through XLA FFI custom calls (``models/csrc/onednn_conv.cc``).

Its *primal* -- what ``jax.make_jaxpr`` shows, and what runs when the function is not
being differentiated (evaluation, inference) -- is the plain
``lax.conv_general_dilated``, so a jaxpr-based workload extractor sees an ordinary
convolution with the same counts. The ``jax.custom_vjp`` rules (what a train step
runs) call oneDNN on CPU and XLA's own convolutions on any other platform
(``lax.platform_dependent``).

Build: on first use the C++ source is compiled with ``g++`` (``$CXX`` if set) against
the oneDNN CPU wheels ``onednn-cpu-gomp`` / ``onednn-devel-cpu-gomp`` (oneDNN 3.2, a
dependency of this package on Linux x86-64) and the JAX FFI headers
(``jax.ffi.include_dir()``), into ``$CODESIGN_ONEDNN_CACHE`` or
``$XDG_CACHE_HOME/codesign/onednn`` (``~/.cache/codesign/onednn``). The file name is a
hash of the source, the headers, the library and the compiler, so a change to any of
them builds anew; the build goes to a temporary file that is renamed into place, under a
file lock (two processes starting at once build it once). It takes ~10 s.

Backends (:func:`set_conv_backend`, the training config's ``conv_backend`` field):
``"auto"`` (default) uses oneDNN where it can be built and loaded and otherwise falls
back to ``lax.conv_general_dilated`` with a one-line notice on stderr (printed once per
process): another OS or processor, no compiler, no oneDNN wheel, a failed build.
``"onednn"`` makes that an error; ``"xla"`` never tries. The backend is read when a
function is traced (``jax.jit`` caches traces: set it before the first call).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.metadata
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

__all__ = [
    "BACKENDS",
    "OneDNNUnavailable",
    "conv_backend",
    "get_conv_backend",
    "onednn_available",
    "onednn_conv",
    "resolve_conv_backend",
    "set_conv_backend",
]

BACKENDS = ("auto", "xla", "onednn")
_NHWC = ("NHWC", "HWIO", "NHWC")
_SOURCE = Path(__file__).with_name("csrc") / "onednn_conv.cc"
_TARGETS = ("codesign_onednn_conv_fwd", "codesign_onednn_conv_bwd_data",
            "codesign_onednn_conv_bwd_weights")
_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.bfloat16))


class OneDNNUnavailable(RuntimeError):
    """The oneDNN convolution cannot be built or loaded here (the message says why)."""


# -- backend selection ---------------------------------------------------------------

_backend = "auto"
_notice_printed = False


def _check_backend(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"conv backend: unknown {name!r}; valid: {', '.join(BACKENDS)}")
    return name


def set_conv_backend(name: str) -> None:
    """Sets the process-wide convolution backend: ``"auto"``, ``"xla"`` or ``"onednn"``."""
    global _backend
    _backend = _check_backend(name)


def get_conv_backend() -> str:
    """The backend set by :func:`set_conv_backend` (``"auto"`` by default)."""
    return _backend


@contextlib.contextmanager
def conv_backend(name: str) -> Iterator[None]:
    """Context manager: the backend is ``name`` inside, the previous one after."""
    prev = _backend
    set_conv_backend(name)
    try:
        yield
    finally:
        set_conv_backend(prev)


def resolve_conv_backend(name: str | None = None) -> str:
    """``"xla"`` or ``"onednn"``: what ``name`` (default: the current backend) means here.

    ``"auto"`` is ``"onednn"`` when the library loads, else ``"xla"`` after a one-line
    notice on stderr (once per process). ``"onednn"`` raises :class:`OneDNNUnavailable`
    when it cannot load.
    """
    global _notice_printed
    name = _check_backend(_backend if name is None else name)
    if name == "xla":
        return "xla"
    try:
        _load()
        return "onednn"
    except OneDNNUnavailable as e:
        if name == "onednn":
            raise OneDNNUnavailable(f"conv backend 'onednn' requested, but {e}") from None
        if not _notice_printed:
            _notice_printed = True
            print(f"codesign: oneDNN convolution unavailable ({e}); using XLA's convolution "
                  "(conv_backend=xla)", file=sys.stderr, flush=True)
        return "xla"


def onednn_available() -> bool:
    """Whether the oneDNN convolution builds and loads on this machine (builds it if needed)."""
    try:
        _load()
        return True
    except OneDNNUnavailable:
        return False


# -- build and load ------------------------------------------------------------------

_load_lock = threading.Lock()
_loaded: tuple[bool, str] | None = None  # (ok, error message)


def _cache_dir() -> Path:
    d = os.environ.get("CODESIGN_ONEDNN_CACHE")
    if d:
        return Path(d)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "codesign" / "onednn"


def _dist_file(dist: str, suffix: str) -> Path:
    try:
        files = importlib.metadata.distribution(dist).files or []
    except importlib.metadata.PackageNotFoundError:
        raise OneDNNUnavailable(f"the Python package {dist!r} is not installed") from None
    for f in files:
        if str(f).replace("\\", "/").endswith(suffix):
            p = Path(f.locate()).resolve()
            if p.exists():
                return p
    raise OneDNNUnavailable(f"the package {dist!r} has no file {suffix!r}")


def _toolchain() -> tuple[str, Path, Path, Path]:
    """(compiler, oneDNN include dir, libdnnl.so.3, JAX FFI include dir)."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        raise OneDNNUnavailable(f"built only on Linux x86-64, this is {sys.platform} "
                                f"{platform.machine()}")
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        raise OneDNNUnavailable(f"no C++ compiler {cxx!r} on PATH")
    lib = _dist_file("onednn-cpu-gomp", "libdnnl.so.3")
    hdr = _dist_file("onednn-devel-cpu-gomp", "oneapi/dnnl/dnnl.hpp")
    return cxx, hdr.parents[2], lib, Path(jax.ffi.include_dir())


def _build(cxx: str, inc: Path, lib: Path, ffi_inc: Path) -> Path:
    h = hashlib.sha256()
    try:
        version = subprocess.run([cxx, "--version"], capture_output=True, text=True,
                                 timeout=60).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise OneDNNUnavailable(f"the compiler {cxx!r} does not run: {e}") from None
    for part in (_SOURCE.read_bytes(), version.encode(), str(lib).encode(),
                 str(lib.stat().st_size).encode(),
                 (inc / "oneapi" / "dnnl" / "dnnl.hpp").read_bytes(),
                 *(p.read_bytes() for p in sorted((ffi_inc / "xla" / "ffi" / "api").glob("*.h")))):
        h.update(hashlib.sha256(part).digest())
    out_dir = _cache_dir()
    target = out_dir / f"onednn_conv-{h.hexdigest()[:16]}.so"
    if target.exists():
        return target
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lock = open(out_dir / ".build.lock", "a+")
    except OSError as e:
        raise OneDNNUnavailable(f"cannot write the build cache {out_dir}: {e}") from None
    import fcntl

    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if target.exists():  # another process built it while we waited
            return target
        print(f"codesign: building the oneDNN convolution into {out_dir} (once, ~10 s)",
              file=sys.stderr, flush=True)
        fd, tmp = tempfile.mkstemp(prefix=".onednn_conv-", suffix=".so", dir=out_dir)
        os.close(fd)
        cmd = [cxx, "-O2", "-std=c++17", "-shared", "-fPIC", "-isystem", str(ffi_inc),
               "-isystem", str(inc), str(_SOURCE), "-o", tmp, "-L", str(lib.parent),
               f"-l:{lib.name}", "-lgomp", f"-Wl,-rpath,{lib.parent}"]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                last = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
                raise OneDNNUnavailable(f"the build failed ({' '.join(cmd)}): {last}")
            os.replace(tmp, target)
        except (OSError, subprocess.SubprocessError) as e:
            raise OneDNNUnavailable(f"the build failed: {e}") from None
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return target


def _load() -> None:
    """Builds (if needed), loads and registers the FFI targets; raises OneDNNUnavailable."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            try:
                so = _build(*_toolchain())
                try:
                    lib = ctypes.CDLL(str(so))
                except OSError as e:
                    raise OneDNNUnavailable(f"cannot load {so}: {e}") from None
                for name in _TARGETS:
                    jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(getattr(lib, name)),
                                                platform="cpu")
                _loaded = (True, "")
            except OneDNNUnavailable as e:
                _loaded = (False, str(e))
        ok, err = _loaded
    if not ok:
        raise OneDNNUnavailable(err)


# -- the convolution -----------------------------------------------------------------


def _attrs(strides, padding, dilation, groups) -> dict:
    return dict(
        strides=np.asarray(strides, np.int64),
        dilation=np.asarray(dilation, np.int64),
        pad_lo=np.asarray([lo for lo, _ in padding], np.int64),
        pad_hi=np.asarray([hi for _, hi in padding], np.int64),
        groups=np.int64(groups),
    )


def _ffi(target: str, a, b, out_shape, attrs):
    call = jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(out_shape, a.dtype),
                            vmap_method="sequential")
    return call(a, b, **attrs)


def _xla_conv(x, w, strides, padding, dilation, groups):
    return lax.conv_general_dilated(x, w, strides, padding, rhs_dilation=dilation,
                                    dimension_numbers=_NHWC, feature_group_count=groups)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5))
def onednn_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                padding: tuple[tuple[int, int], tuple[int, int]],
                dilation: tuple[int, int] = (1, 1), groups: int = 1) -> jax.Array:
    """2-D convolution whose training passes run on oneDNN on CPU (module docstring).

    Callers check :func:`onednn_supported` first and need the library loaded
    (:func:`resolve_conv_backend` returned ``"onednn"``).

    Args:
      x: ``[N, H, W, C]`` float32 or bfloat16.
      kernel: ``[R, S, C / groups, M]``, the dtype of ``x``, ``M`` divisible by ``groups``.
      strides: ``(stride_h, stride_w)``, >= 1.
      padding: ``((top, bottom), (left, right))``, each >= 0.
      dilation: kernel dilation ``(d_h, d_w)`` >= 1 (``rhs_dilation``).
      groups: ``feature_group_count``.

    Returns:
      ``[N, P, Q, M]``, equal to ``lax.conv_general_dilated(x, kernel, strides, padding,
      rhs_dilation=dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=groups)`` up to float rounding.
    """
    return _xla_conv(x, kernel, strides, padding, dilation, groups)


def _fwd(x, kernel, strides, padding, dilation, groups):
    attrs = _attrs(strides, padding, dilation, groups)
    out_shape = _out_shape(x.shape, kernel.shape, strides, padding, dilation)

    def cpu(a, b):
        return _ffi(_TARGETS[0], a, b, out_shape, attrs)

    y = lax.platform_dependent(x, kernel, cpu=cpu,
                               default=lambda a, b: _xla_conv(a, b, strides, padding, dilation, groups))
    return y, (x, kernel)


def _bwd(strides, padding, dilation, groups, res, g):
    x, kernel = res
    attrs = _attrs(strides, padding, dilation, groups)

    def cpu(x, kernel, g):
        dx = _ffi(_TARGETS[1], g, kernel, x.shape, attrs)
        dk = _ffi(_TARGETS[2], x, g, kernel.shape, attrs)
        return dx, dk

    def default(x, kernel, g):
        _, vjp = jax.vjp(lambda a, b: _xla_conv(a, b, strides, padding, dilation, groups), x, kernel)
        return vjp(g)

    return lax.platform_dependent(x, kernel, g.astype(x.dtype), cpu=cpu, default=default)


onednn_conv.defvjp(_fwd, _bwd)


def _out_shape(xs, ks, strides, padding, dilation):
    n, h, w, _ = xs
    r, s, _, m = ks
    p = (h + padding[0][0] + padding[0][1] - ((r - 1) * dilation[0] + 1)) // strides[0] + 1
    q = (w + padding[1][0] + padding[1][1] - ((s - 1) * dilation[1] + 1)) // strides[1] + 1
    return (n, p, q, m)


def onednn_supported(x_shape: Sequence[int], x_dtype, k_shape: Sequence[int], k_dtype,
                     strides: Sequence[int], padding: Sequence[tuple[int, int]],
                     dilation: Sequence[int], groups: int) -> bool:
    """Whether :func:`onednn_conv` handles this NHWC/HWIO problem (else use XLA's conv).

    Handled: float32 or bfloat16 operands of one dtype, 4-D, strides and dilation >= 1, padding
    >= 0, ``groups`` dividing C and M with ``kernel.shape[2] * groups == C``, and a
    non-empty output.
    """
    if len(x_shape) != 4 or len(k_shape) != 4:
        return False
    if jnp.dtype(x_dtype) not in _DTYPES or jnp.dtype(k_dtype) != jnp.dtype(x_dtype):
        return False
    c, m = x_shape[3], k_shape[3]
    if groups < 1 or c % groups or m % groups or k_shape[2] * groups != c:
        return False
    if any(int(v) < 1 for v in (*strides, *dilation)):
        return False
    if any(int(v) < 0 for pair in padding for v in pair):
        return False
    out = _out_shape(x_shape, k_shape, strides, padding, dilation)
    return min(*x_shape, *k_shape, *out) > 0
