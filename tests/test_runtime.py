"""codesign.runtime.tune_allocator: large blocks freed by a worker thread are reused."""

import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# Allocate and free a 64 MB block 5 times from a worker thread (as XLA:CPU does with a
# step's temporaries) and print the page faults of the last 4 rounds.
_PROBE = textwrap.dedent("""
    import ctypes, resource, threading
    from codesign.runtime import tune_allocator
    print(tune_allocator())
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.free.argtypes = (ctypes.c_void_p,)
    size = 64 * 2 ** 20

    def once():  # plain malloc, written all over (numpy would ask for huge pages)
        p = libc.malloc(size)
        ctypes.memset(p, 1, size)
        libc.free(p)

    def faults():
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def run():
        once()
        f0 = faults()
        for _ in range(4):
            once()
        print(faults() - f0)

    t = threading.Thread(target=run)
    t.start(); t.join()
""")


def _probe(**env):
    out = subprocess.run([sys.executable, "-c", _PROBE], check=True, capture_output=True,
                         text=True, env={**os.environ, **env}).stdout.split()
    return out[0] == "True", int(out[1])


def test_tuned_allocator_reuses_large_blocks():
    on, faults_tuned = _probe()
    off, faults_plain = _probe(CODESIGN_TUNE_MALLOC="0")
    assert on and not off
    pages = 4 * 64 * 2 ** 20 // 4096  # 4 rounds of 64 MB in 4 KB pages
    # untuned, glibc maps and unmaps the block every round: a fault per 4 KB page, or
    # per 2 MB page where transparent huge pages are always on
    assert faults_plain > pages // 512
    assert faults_tuned < pages // 20  # tuned: the same pages every round
    assert faults_plain > 10 * max(faults_tuned, 1)


def test_late_call_warns_and_is_idempotent():
    code = textwrap.dedent("""
        import warnings
        import jax.numpy as jnp
        jnp.ones(3).block_until_ready()
        from codesign.runtime import tune_allocator
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            print(tune_allocator(), tune_allocator(), len(w), "partial" in str(w[0].message))
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    assert out == ["True", "True", "1", "True"]


def test_maybe_tune_only_long_runs_before_jax_starts():
    code = textwrap.dedent("""
        from codesign import runtime
        short = runtime.maybe_tune_allocator(runtime.TUNE_MIN_IMAGES - 1)
        import jax.numpy as jnp
        jnp.ones(3).block_until_ready()
        late = runtime.maybe_tune_allocator(runtime.TUNE_MIN_IMAGES)  # JAX started: no
        print(short, late, runtime._done)
    """)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    assert out == ["False", "False", "None"]
    code = "from codesign import runtime; print(runtime.maybe_tune_allocator(10 ** 6))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout.split()
    assert out == ["True"]


def test_train_passes_the_runs_image_count(tmp_path, monkeypatch):
    from codesign import train as T
    from codesign.config import Config

    seen = []
    monkeypatch.setattr(T, "maybe_tune_allocator", lambda n: seen.append(n) or False)
    cfg = Config(dataset="synthetic", dataset_kwargs={"n_train": 100, "n_test": 32},
                 model="lenet5", epochs=2, batch_size=16, eval_batch_size=32,
                 schedule="constant", progress=False, keep_checkpoints=0)
    T.train_and_evaluate(cfg, tmp_path / "run", print_table=False)
    assert seen == [2 * (100 // 16) * 16]
