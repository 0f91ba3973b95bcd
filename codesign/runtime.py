"""Process settings that make CPU training fast: :func:`tune_allocator`.

XLA:CPU allocates the temporary buffers of a compiled step (every activation kept for
the backward pass: ~300 MB for a ``resnet20`` step of 128 CIFAR-10 images) in one block
per execution, from one of its worker threads.  glibc's ``malloc`` serves a block that
large from a thread's own arena with a fresh ``mmap`` and returns it with ``munmap`` when
the step ends, so every step faults in (and the kernel zeroes) all of it again: measured
here, 73,700 page faults and 0.11 s of system time per ``resnet20`` step (0.22 s wall
time on 2 cores).  :func:`tune_allocator` makes every thread allocate from the main heap
and keeps freed memory there, so the next step reuses the same pages: 3,700 faults and
0.01 s of system time per step, 1.26x more images/s (``benchmarks/train_throughput.py``
in the README).

Training calls it by itself: :func:`codesign.train.train_and_evaluate` (so ``codesign
train`` and ``codesign sweep``) calls :func:`maybe_tune_allocator` with the number of
images the run will train on, before its first JAX computation; a program that has
already run JAX computations is left alone (threads that have allocated keep their
arenas).  Only long runs are tuned (:data:`TUNE_MIN_IMAGES`): the setting slows
XLA's compilation, which runs on several threads that now share one arena (the
quickstart's two train-step compilations: 0.9 + 3.9 s untuned, 1.4 + 6.0 s tuned;
``codesign design resnet50 --area-mm2 12.25``: 52.5 s untuned, 63.0 s tuned), and a
step of ``mnist_cnn`` at batch 128 gains 68 us per image, so the setting pays for
itself after ~45,000 images.  Set ``CODESIGN_TUNE_MALLOC=0`` to leave the allocator
alone.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

__all__ = ["TUNE_MIN_IMAGES", "maybe_tune_allocator", "tune_allocator"]

#: training images (epochs x steps per epoch x batch) from which a run is tuned
TUNE_MIN_IMAGES = 100_000

# mallopt parameters (glibc <malloc.h>)
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8

_done: bool | None = None


def _jax_backend_started() -> bool:
    xb = sys.modules.get("jax._src.xla_bridge")
    return bool(getattr(xb, "_backends", None))


def tune_allocator() -> bool:
    """Make glibc's ``malloc`` keep and reuse the large blocks XLA:CPU frees each step.

    Sets ``M_ARENA_MAX=1`` (all threads share the main heap, whose freed blocks are
    reused; a thread's own arena hands blocks over 64 MB to ``mmap`` whatever the
    settings), ``M_MMAP_MAX=0`` (no ``mmap`` for large blocks) and the largest
    ``M_TRIM_THRESHOLD`` (freed memory is not handed back to the kernel).  The cost:
    the process keeps its peak heap size until it exits.

    Idempotent; a no-op (returning False) where the C library is not glibc, when
    ``CODESIGN_TUNE_MALLOC=0``, or when a setting is refused.  Call it before the first
    JAX computation: it still applies afterwards, but only to threads that have not
    allocated yet (a :class:`RuntimeWarning` says so).

    Returns:
      Whether the settings are in effect.
    """
    global _done
    if _done is not None:
        return _done
    _done = False
    if os.environ.get("CODESIGN_TUNE_MALLOC", "1").strip() in ("0", "false", "no", "off"):
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # glibc only (musl has no mallopt arenas)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    ok = all(mallopt(p, v) == 1 for p, v in ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0),
                                              (_M_TRIM_THRESHOLD, 2 ** 31 - 1)))
    if ok and _jax_backend_started():
        import warnings

        warnings.warn("codesign.runtime.tune_allocator() called after JAX started: threads "
                      "that have already allocated keep their own malloc arenas, so the "
                      "gain may be partial; call it before the first JAX computation",
                      RuntimeWarning, stacklevel=2)
    _done = ok
    return ok


def maybe_tune_allocator(images: int) -> bool:
    """:func:`tune_allocator` for a run that trains on ``images`` images, when it is at
    least :data:`TUNE_MIN_IMAGES` and no JAX computation has run yet in this process
    (otherwise nothing: no warning).  Returns whether the settings are in effect."""
    if _done is not None:
        return _done
    if images < TUNE_MIN_IMAGES or _jax_backend_started():
        return False
    return tune_allocator()
