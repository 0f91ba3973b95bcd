"""codesign.data file formats, corrupt-file errors and the download path.

Everything runs offline: fake files in the official formats are written to tmp dirs
(with the expected checksums monkeypatched to theirs), downloads are served by a local
``http.server`` on 127.0.0.1.  The real MNIST files are used when the project's data
folder beside the checkout (``../shared/data/mnist``, or ``$CODESIGN_TEST_MNIST``) exists
(skipped otherwise); real CIFAR-10 only under ``-m slow``.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import numpy as np
import pytest

import codesign.data as cd
from codesign.data import DataFileError, DownloadError, load_dataset
from codesign.data import _cifar, _embedded, _mnist

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"  # beside the checkout
REAL_MNIST = Path(os.environ.get("CODESIGN_TEST_MNIST", SHARED_DATA / "mnist"))
GET_CIFAR10 = SHARED_DATA / "tools" / "get-cifar10"


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


# ----------------------------------------------------------------------------- fakes

def idx_bytes(arr: np.ndarray, type_code: int = 0x08) -> bytes:
    """Slow obvious IDX writer (the format as published)."""
    dt = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    header = struct.pack(">I", (type_code << 8) | arr.ndim)
    header += b"".join(struct.pack(">I", d) for d in arr.shape)
    return header + arr.astype(dt).tobytes()


def make_fake_mnist(root: Path, monkeypatch, n_train=40, n_test=12, gz=True, sub="mnist", seed=0):
    """Write four small MNIST-format files and patch the expected specs to match."""
    rng = np.random.default_rng(seed)
    arrays = {"train": (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
                        rng.integers(0, 10, n_train).astype(np.uint8)),
              "test": (rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
                       rng.integers(0, 10, n_test).astype(np.uint8))}
    d = root / sub if sub else root
    d.mkdir(parents=True, exist_ok=True)
    specs, blobs = {}, {}
    for split, (real_img, real_lab) in _mnist.MNIST_FILES.items():
        pair = []
        for spec, arr in zip((real_img, real_lab), arrays[split]):
            raw = idx_bytes(arr)
            gzb = gzip.compress(raw, mtime=0)
            blobs[spec.name] = (raw, gzb)
            (d / (spec.name + (".gz" if gz else ""))).write_bytes(gzb if gz else raw)
            pair.append(_mnist.IdxSpec(spec.name, arr.shape, md5(raw), md5(gzb)))
        specs[split] = tuple(pair)
    monkeypatch.setattr(_mnist, "MNIST_FILES", specs)
    return d, arrays, blobs


def cifar_record_bytes(images_nhwc: np.ndarray, labels: np.ndarray) -> bytes:
    """Slow obvious CIFAR binary writer: per record, label byte then R, G, B planes."""
    out = bytearray()
    for img, lab in zip(images_nhwc, labels):
        out.append(int(lab))
        for c in range(3):
            for i in range(32):
                for j in range(32):
                    out.append(int(img[i, j, c]))
    return bytes(out)


def fake_cifar_arrays(records=4, seed=0):
    rng = np.random.default_rng(seed)
    names = [s.name for s in _cifar.CIFAR10_BIN_FILES["train"] + _cifar.CIFAR10_BIN_FILES["test"]]
    return {n: (rng.integers(0, 256, (records, 32, 32, 3), dtype=np.uint8),
                rng.integers(0, 10, records).astype(np.uint8)) for n in names}


def make_fake_cifar_bin(d: Path, monkeypatch, records=4, seed=0):
    arrays = fake_cifar_arrays(records, seed)
    d.mkdir(parents=True, exist_ok=True)
    specs = {}
    for split, real in _cifar.CIFAR10_BIN_FILES.items():
        out = []
        for s in real:
            b = cifar_record_bytes(*arrays[s.name])
            (d / s.name).write_bytes(b)
            out.append(_cifar.BatchSpec(s.name, md5(b), records))
        specs[split] = tuple(out)
    monkeypatch.setattr(_cifar, "CIFAR10_BIN_FILES", specs)
    return arrays


def py2_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A pickle laid out the way Python 2 + numpy 1 wrote the official python version
    (protocol 2, str keys as SHORT_BINSTRING, the array via numpy.core.multiarray)."""
    def s(b: bytes) -> bytes:  # SHORT_BINSTRING / BINSTRING
        return (b"U" + bytes([len(b)]) + b) if len(b) < 256 else b"T" + struct.pack("<i", len(b)) + b
    rows, cols = data.shape
    arr = (b"cnumpy.core.multiarray\n_reconstruct\n" + b"cnumpy\nndarray\n" + b"K\x00\x85" + s(b"b")
           + b"\x87R" + b"(K\x01" + b"M" + struct.pack("<H", rows) + b"M" + struct.pack("<H", cols)
           + b"\x86" + b"cnumpy\ndtype\n" + s(b"u1") + b"K\x00K\x01\x87R"
           + b"(K\x03" + s(b"|") + b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
           + b"\x89" + s(data.tobytes()) + b"tb")
    labs = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return (b"\x80\x02}(" + s(b"batch_label") + s(b"fake batch") + s(b"labels") + labs
            + s(b"data") + arr + b"u.")


def make_fake_cifar_py(d: Path, monkeypatch, records=4, seed=0, style="py3"):
    arrays = fake_cifar_arrays(records, seed)
    d.mkdir(parents=True, exist_ok=True)
    specs = {}
    for split, real in _cifar.CIFAR10_PY_FILES.items():
        out = []
        for s in real:
            x, y = arrays[s.name + ".bin"]
            flat = x.transpose(0, 3, 1, 2).reshape(records, 3072)
            if style == "py3":
                b = pickle.dumps({b"batch_label": b"fake", b"labels": [int(v) for v in y],
                                  b"data": flat, b"filenames": [b"x.png"] * records}, protocol=2)
            else:
                b = py2_pickle(flat, [int(v) for v in y])
            (d / s.name).write_bytes(b)
            out.append(_cifar.BatchSpec(s.name, md5(b), records))
        specs[split] = tuple(out)
    monkeypatch.setattr(_cifar, "CIFAR10_PY_FILES", specs)
    return arrays


# ----------------------------------------------------------------------------- IDX / MNIST

@pytest.mark.parametrize("type_code", [0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_all_types(tmp_path, type_code, gz):
    arr = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5)
    if type_code == 0x08:
        arr = arr + 7
    raw = idx_bytes(arr, type_code)
    p = tmp_path / ("f.idx" + (".gz" if gz else ""))
    p.write_bytes(gzip.compress(raw) if gz else raw)
    got = cd.read_idx(p)
    assert got.shape == (2, 3, 5)
    np.testing.assert_array_equal(got, arr)


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("sub", ["mnist", ""])
def test_mnist_fake_loads(tmp_path, monkeypatch, gz, sub):
    _, arrays, _ = make_fake_mnist(tmp_path, monkeypatch, gz=gz, sub=sub)
    splits = load_dataset("mnist", data_dir=tmp_path, download=False)
    for split in ("train", "test"):
        ds = splits[split]
        assert ds.images.dtype == np.uint8 and ds.images.shape == (len(arrays[split][0]), 28, 28, 1)
        assert ds.labels.dtype == np.int32
        np.testing.assert_array_equal(ds.images[..., 0], arrays[split][0])
        np.testing.assert_array_equal(ds.labels, arrays[split][1])
        assert ds.num_classes == 10 and ds.shape == (28, 28, 1)


def test_mnist_data_dir_from_env(tmp_path, monkeypatch):
    make_fake_mnist(tmp_path, monkeypatch)
    monkeypatch.setenv("CODESIGN_DATA", str(tmp_path))
    assert cd.default_data_dir() == tmp_path
    assert len(load_dataset("mnist", download=False)["test"]) == 12


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("CODESIGN_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert cd.default_data_dir() == tmp_path / "codesign"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cd.default_data_dir() == Path.home() / ".cache" / "codesign"


def test_mnist_missing_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="MNIST not found") as e:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert str(tmp_path / "mnist") in str(e.value) and "train-images-idx3-ubyte" in str(e.value)


def _corrupt_cases():
    hdr = struct.pack(">IIII", 0x803, 40, 28, 28)
    return {
        "magic": (lambda raw: struct.pack(">I", 0x801) + raw[4:], "magic number", "0x00000803", "0x00000801"),
        "truncated": (lambda raw: raw[:-100], "size", str(16 + 40 * 784), "truncated"),
        "trailing": (lambda raw: raw + b"\0\0", "size", str(16 + 40 * 784), "trailing bytes"),
        "dims": (lambda raw: struct.pack(">IIII", 0x803, 40, 28, 27) + raw[16:], "dimensions",
                 "(40, 28, 28)", "(40, 28, 27)"),
        "tiny": (lambda raw: raw[:2], "size", "at least 4 bytes", "2 bytes"),
        "md5": (lambda raw: hdr + bytes([raw[16] ^ 1]) + raw[17:], "md5", "", ""),
    }


@pytest.mark.parametrize("case", list(_corrupt_cases()))
@pytest.mark.parametrize("gz", [False, True])
def test_mnist_corrupt_file_errors(tmp_path, monkeypatch, case, gz):
    d, _, blobs = make_fake_mnist(tmp_path, monkeypatch, gz=gz)
    mutate, what, expected, found = _corrupt_cases()[case]
    name = "train-images-idx3-ubyte" + (".gz" if gz else "")
    bad = mutate(blobs["train-images-idx3-ubyte"][0])
    (d / name).write_bytes(gzip.compress(bad) if gz else bad)
    with pytest.raises(DataFileError) as e:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert str(d / name) in msg and what in msg and expected in msg and found in msg
    assert e.value.path == str(d / name)
    if case == "md5":
        want = _mnist.MNIST_FILES["train"][0].raw_md5
        assert e.value.expected == want and e.value.found == md5(bad)


def test_mnist_truncated_and_non_gzip(tmp_path, monkeypatch):
    d, _, blobs = make_fake_mnist(tmp_path, monkeypatch)
    p = d / "t10k-labels-idx1-ubyte.gz"
    p.write_bytes(blobs["t10k-labels-idx1-ubyte"][1][:-9])
    with pytest.raises(DataFileError, match="gzip stream") as e:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert str(p) in str(e.value)
    p.write_bytes(b"this is not gzip at all")
    with pytest.raises(DataFileError, match="gzip stream.*Not a gzipped file"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


def test_mnist_label_out_of_range(tmp_path, monkeypatch):
    d, _, _ = make_fake_mnist(tmp_path, monkeypatch, gz=False)
    raw = idx_bytes(np.full(12, 11, np.uint8))
    (d / "t10k-labels-idx1-ubyte").write_bytes(raw)
    img, lab = _mnist.MNIST_FILES["test"]
    monkeypatch.setitem(_mnist.MNIST_FILES, "test", (img, _mnist.IdxSpec(lab.name, lab.shape, md5(raw), "")))
    with pytest.raises(DataFileError, match="label values: expected digits 0..9, found maximum 11"):
        load_dataset("mnist", data_dir=tmp_path, download=False)


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"real MNIST files not found in {REAL_MNIST}")
def test_real_mnist_and_embedded_subset():
    splits = load_dataset("mnist", data_dir=REAL_MNIST, download=False)
    tr, te = splits["train"], splits["test"]
    assert (len(tr), len(te)) == (60000, 10000) and tr.shape == (28, 28, 1)
    assert np.bincount(tr.labels).tolist()[:3] == [5923, 6742, 5958]  # published class counts
    assert abs(tr.mean[0] - 0.1307) < 1e-4 and abs(tr.std[0] - 0.3081) < 1e-4
    # mnist-5k is exactly the leading images of the official splits
    small = load_dataset("mnist-5k")
    np.testing.assert_array_equal(small["train"].images, tr.images[:5000])
    np.testing.assert_array_equal(small["train"].labels, tr.labels[:5000])
    np.testing.assert_array_equal(small["test"].images, te.images[:1000])
    np.testing.assert_array_equal(small["test"].labels, te.labels[:1000])


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"real MNIST files not found in {REAL_MNIST}")
def test_make_mnist5k_reproduces_embedded_file(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        "make_mnist5k", Path(__file__).resolve().parents[1] / "tools" / "make_mnist5k.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert md5(tool.build(REAL_MNIST)) == _embedded.MNIST5K_MD5


def test_mnist5k_embedded():
    splits = load_dataset("mnist-5k")
    assert set(splits) == {"train", "test"}
    assert splits["train"].images.shape == (5000, 28, 28, 1)
    assert splits["test"].images.shape == (1000, 28, 28, 1)
    assert splits["train"].class_names == tuple("0123456789")
    counts = np.bincount(splits["train"].labels, minlength=10)
    assert counts.min() > 400  # every digit present
    assert "LeCun" in _embedded.__doc__


def test_mnist5k_checksum_is_verified(monkeypatch):
    monkeypatch.setattr(_embedded, "MNIST5K_MD5", "0" * 32)
    with pytest.raises(DataFileError, match="md5 checksum: expected 0{32}, found [0-9a-f]{32}"):
        load_dataset("mnist-5k")


# ----------------------------------------------------------------------------- CIFAR-10

@pytest.mark.parametrize("sub", ["cifar10/cifar-10-batches-bin", "cifar-10-batches-bin"])
def test_cifar_binary_fake(tmp_path, monkeypatch, sub):
    arrays = make_fake_cifar_bin(tmp_path / sub, monkeypatch)
    splits = load_dataset("cifar10", data_dir=tmp_path, download=False)
    tr, te = splits["train"], splits["test"]
    assert tr.images.shape == (20, 32, 32, 3) and te.images.shape == (4, 32, 32, 3)
    want_x = np.concatenate([arrays[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    want_y = np.concatenate([arrays[f"data_batch_{i}.bin"][1] for i in range(1, 6)])
    np.testing.assert_array_equal(tr.images, want_x)
    np.testing.assert_array_equal(tr.labels, want_y)
    np.testing.assert_array_equal(te.images, arrays["test_batch.bin"][0])
    assert tr.images.flags.c_contiguous and tr.class_names[0] == "airplane"


@pytest.mark.parametrize("style", ["py3", "py2"])
def test_cifar_python_fake(tmp_path, monkeypatch, style):
    arrays = make_fake_cifar_py(tmp_path / "cifar10" / "cifar-10-batches-py", monkeypatch, style=style)
    splits = load_dataset("cifar10", data_dir=tmp_path, download=False)
    want_x = np.concatenate([arrays[f"data_batch_{i}.bin"][0] for i in range(1, 6)])
    np.testing.assert_array_equal(splits["train"].images, want_x)
    np.testing.assert_array_equal(splits["test"].labels, arrays["test_batch.bin"][1])


def test_cifar_prefers_binary_over_python(tmp_path, monkeypatch):
    make_fake_cifar_py(tmp_path / "cifar10" / "cifar-10-batches-py", monkeypatch, seed=1)
    arrays = make_fake_cifar_bin(tmp_path / "cifar-10-batches-bin", monkeypatch, seed=2)
    te = load_dataset("cifar10", data_dir=tmp_path, download=False)["test"]
    np.testing.assert_array_equal(te.images, arrays["test_batch.bin"][0])


def test_cifar_missing_without_download(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR-10 not found") as e:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert "cifar-10-batches-bin" in str(e.value) and "cifar-10-batches-py" in str(e.value)


def test_cifar_binary_corrupt(tmp_path, monkeypatch):
    d = tmp_path / "cifar-10-batches-bin"
    make_fake_cifar_bin(d, monkeypatch)
    p = d / "data_batch_3.bin"
    good = p.read_bytes()
    p.write_bytes(good[:-5])
    with pytest.raises(DataFileError) as e:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert str(p) in str(e.value) and "size: expected 12292 bytes" in str(e.value) \
        and "12287 bytes (truncated)" in str(e.value)
    bad = bytes([good[0]]) + bytes([good[1] ^ 0xFF]) + good[2:]
    p.write_bytes(bad)
    with pytest.raises(DataFileError, match=f"md5 checksum: expected {md5(good)}, found {md5(bad)}"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    bad = bytes([10]) + good[1:]
    p.write_bytes(bad)
    specs = _cifar.CIFAR10_BIN_FILES["train"]
    monkeypatch.setitem(_cifar.CIFAR10_BIN_FILES, "train", tuple(
        _cifar.BatchSpec(s.name, md5(bad) if s.name == p.name else s.md5, s.records) for s in specs))
    with pytest.raises(DataFileError, match="label values: expected classes 0..9, found maximum 10"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


def test_cifar_python_refuses_foreign_globals(tmp_path, monkeypatch):
    d = tmp_path / "cifar-10-batches-py"
    make_fake_cifar_py(d, monkeypatch)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    evil = pickle.dumps({b"data": Evil()}, protocol=2)
    (d / "test_batch").write_bytes(evil)
    monkeypatch.setitem(_cifar.CIFAR10_PY_FILES, "test", (_cifar.BatchSpec("test_batch", md5(evil), 4),))
    with pytest.raises(DataFileError, match="refusing to load global"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    assert not (tmp_path / "pwned").exists()


def test_cifar_python_wrong_shape(tmp_path, monkeypatch):
    d = tmp_path / "cifar-10-batches-py"
    make_fake_cifar_py(d, monkeypatch)
    b = pickle.dumps({b"data": np.zeros((4, 3000), np.uint8), b"labels": [0] * 4}, protocol=2)
    (d / "test_batch").write_bytes(b)
    monkeypatch.setitem(_cifar.CIFAR10_PY_FILES, "test", (_cifar.BatchSpec("test_batch", md5(b), 4),))
    with pytest.raises(DataFileError, match=r"'data' entry: expected uint8 array of shape \(4, 3072\), "
                                            r"found uint8 \(4, 3000\)"):
        load_dataset("cifar10", data_dir=tmp_path, download=False)


@pytest.fixture(scope="session")
def real_cifar_dir(tmp_path_factory):
    env = os.environ.get("CODESIGN_TEST_CIFAR")
    if env:
        return Path(env)
    if not GET_CIFAR10.exists() or shutil.which("npm") is None:
        pytest.skip(f"no real CIFAR-10: set $CODESIGN_TEST_CIFAR or provide {GET_CIFAR10} and npm")
    d = tmp_path_factory.mktemp("cifar")
    env = dict(os.environ, PYTHON=sys.executable)
    r = subprocess.run([str(GET_CIFAR10), str(d)], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        pytest.skip(f"get-cifar10 failed: {r.stderr[-500:]}")
    return d


@pytest.mark.slow
def test_real_cifar10(real_cifar_dir):
    splits = load_dataset("cifar10", data_dir=real_cifar_dir, download=False)
    tr, te = splits["train"], splits["test"]
    assert (len(tr), len(te)) == (50000, 10000)
    assert np.bincount(tr.labels).tolist() == [5000] * 10
    assert np.bincount(te.labels).tolist() == [1000] * 10
    np.testing.assert_allclose(tr.mean, (0.4914, 0.4822, 0.4465), atol=1e-4)
    np.testing.assert_allclose(tr.std, (0.2470, 0.2435, 0.2616), atol=1e-4)


# ----------------------------------------------------------------------------- downloads

class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory; ``/short/<file>`` lies about Content-Length (truncated body)."""

    requests: list[str] = []

    def log_message(self, *args):  # quiet
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        if self.path.startswith("/short/"):
            body = Path(self.directory, self.path[len("/short/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body) + 1000))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """(serve_dir, base_url, requests): a local HTTP server on 127.0.0.1 in a thread."""
    serve = tmp_path / "srv"
    serve.mkdir()
    handler = type("H", (_Handler,), {"requests": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                            functools.partial(handler, directory=str(serve)))
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    t.start()
    try:
        yield serve, f"http://127.0.0.1:{httpd.server_address[1]}/", handler.requests
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join()


def _leftovers(d: Path) -> list[str]:
    return sorted(p.name for p in d.rglob("*") if p.name.endswith(".part"))


def test_download_mnist_from_local_server(tmp_path, monkeypatch, server):
    serve, base, requests = server
    _, arrays, _ = make_fake_mnist(serve, monkeypatch, sub="mnist")
    data = tmp_path / "data"
    splits = load_dataset("mnist", data_dir=data, mirrors=[base + "mnist/"])
    np.testing.assert_array_equal(splits["train"].images[..., 0], arrays["train"][0])
    assert sorted(p.name for p in (data / "mnist").iterdir()) == sorted(
        s.name + ".gz" for pair in _mnist.MNIST_FILES.values() for s in pair)
    assert len(requests) == 4
    load_dataset("mnist", data_dir=data, mirrors=[base + "mnist/"])  # cached: no new request
    assert len(requests) == 4


def test_download_only_missing_files_via_env(tmp_path, monkeypatch, server):
    serve, base, requests = server
    make_fake_mnist(serve, monkeypatch, sub="")
    data = tmp_path / "data"
    (data / "mnist").mkdir(parents=True)
    shutil.copy(serve / "train-images-idx3-ubyte.gz", data / "mnist")
    monkeypatch.setenv("CODESIGN_MNIST_URL", base)
    monkeypatch.setenv("CODESIGN_DATA", str(data))
    load_dataset("mnist")
    assert sorted(requests) == sorted(f"/{s.name}.gz" for pair in _mnist.MNIST_FILES.values()
                                      for s in pair if s.name != "train-images-idx3-ubyte")


def test_download_falls_back_to_next_mirror(tmp_path, monkeypatch, server):
    serve, base, requests = server
    make_fake_mnist(serve, monkeypatch, sub="good")
    load_dataset("mnist", data_dir=tmp_path / "d", mirrors=f"{base}nothing-here {base}good")
    assert sum(r.startswith("/nothing-here/") for r in requests) == 4
    assert sum(r.startswith("/good/") for r in requests) == 4


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch, server):
    serve, base, _ = server
    make_fake_mnist(serve, monkeypatch, sub="")
    (serve / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.ones(12, np.uint8))))
    data = tmp_path / "data"
    with pytest.raises(DownloadError) as e:
        load_dataset("mnist", data_dir=data, mirrors=[base])
    spec = _mnist.MNIST_FILES["test"][1]
    msg = str(e.value)
    assert f"{base}t10k-labels-idx1-ubyte.gz: md5 mismatch" in msg
    assert spec.gz_md5 in msg and spec.raw_md5 in msg
    assert e.value.attempts[0][0] == base + "t10k-labels-idx1-ubyte.gz"
    assert not (data / "mnist" / "t10k-labels-idx1-ubyte.gz").exists()
    assert _leftovers(data) == []


def test_download_all_sources_fail(tmp_path, monkeypatch, server):
    _, base, _ = server
    make_fake_mnist(tmp_path / "unused", monkeypatch)
    with pytest.raises(DownloadError) as e:
        load_dataset("mnist", data_dir=tmp_path / "d", mirrors=[base + "a/", "http://127.0.0.1:1/"])
    msg = str(e.value)
    assert f"{base}a/train-images-idx3-ubyte.gz: HTTP 404" in msg
    assert "http://127.0.0.1:1/train-images-idx3-ubyte.gz: unreachable" in msg
    assert "CODESIGN_MNIST_URL" in msg
    assert _leftovers(tmp_path / "d") == []


def test_download_truncated_transfer(tmp_path, monkeypatch, server):
    serve, base, _ = server
    make_fake_mnist(serve, monkeypatch, sub="")
    with pytest.raises(DownloadError, match="IncompleteRead|connection closed early"):
        load_dataset("mnist", data_dir=tmp_path / "d", mirrors=[base + "short/"])
    assert _leftovers(tmp_path / "d") == []


def test_bad_mirror_scheme(tmp_path):
    with pytest.raises(ValueError, match="scheme 'ftp' is not supported; valid: http, https, file"):
        cd.download_mnist(tmp_path, mirrors="ftp://example.org/mnist/")


@pytest.mark.skipif(not REAL_MNIST.is_dir(), reason=f"real MNIST files not found in {REAL_MNIST}")
def test_download_real_mnist_recompressed(tmp_path, server):
    """The real files, re-gzipped (their .gz md5 differs from the published one): accepted
    through the md5 of the decompressed content, with the real checksums (no patching)."""
    serve, base, _ = server
    for p in REAL_MNIST.glob("*.gz"):
        shutil.copy(p, serve)
    splits = load_dataset("mnist", data_dir=tmp_path, mirrors=base)
    assert len(splits["train"]) == 60000


def _tar_gz(files: dict[str, bytes], extra=None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        d = tarfile.TarInfo("cifar-10-batches-bin")
        d.type = tarfile.DIRTYPE
        tar.addfile(d)
        for name, b in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(b)
            tar.addfile(info, io.BytesIO(b))
        for info in extra or []:
            tar.addfile(info, io.BytesIO(b"x" * info.size) if info.isreg() else None)
    return buf.getvalue()


@pytest.fixture
def cifar_archive(tmp_path, monkeypatch):
    """Fake binary-version files + a patched spec; returns {member: bytes}, arrays."""
    src = tmp_path / "src"
    arrays = make_fake_cifar_bin(src, monkeypatch)
    members = {f"cifar-10-batches-bin/{p.name}": p.read_bytes() for p in sorted(src.iterdir())}
    members["cifar-10-batches-bin/readme.html"] = b"<html></html>"
    return members, arrays


def test_download_cifar10_from_local_server(tmp_path, monkeypatch, server, cifar_archive):
    serve, base, _ = server
    members, arrays = cifar_archive
    archive = _tar_gz(members)
    (serve / "cifar-10-binary.tar.gz").write_bytes(archive)
    monkeypatch.setattr(_cifar, "CIFAR10_ARCHIVE", ("cifar-10-binary.tar.gz", md5(archive)))
    monkeypatch.setenv("CODESIGN_CIFAR10_URL", base)
    data = tmp_path / "data"
    splits = load_dataset("cifar10", data_dir=data)
    np.testing.assert_array_equal(splits["test"].images, arrays["test_batch.bin"][0])
    got = sorted(p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file())
    assert got == sorted(f"cifar10/{m}" for m in members if m.endswith(".bin"))  # archive deleted


def _member(name, kind=tarfile.REGTYPE, size=3, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname = kind, (size if kind == tarfile.REGTYPE else 0), link
    return info


@pytest.mark.parametrize("bad", ["dotdot", "absolute", "symlink", "hardlink"])
def test_download_cifar10_rejects_unsafe_archive(tmp_path, monkeypatch, server, cifar_archive, bad):
    serve, base, _ = server
    members, _ = cifar_archive
    extra = {"dotdot": _member("cifar-10-batches-bin/../../evil.txt"),
             "absolute": _member(str(tmp_path / "evil.txt")),
             "symlink": _member("cifar-10-batches-bin/link", tarfile.SYMTYPE, link="/etc/passwd"),
             "hardlink": _member("cifar-10-batches-bin/hl", tarfile.LNKTYPE, link="/etc/passwd")}[bad]
    archive = _tar_gz(members, [extra])
    (serve / "cifar-10-binary.tar.gz").write_bytes(archive)
    data = tmp_path / "data"
    with pytest.raises(DownloadError, match="unsafe member path|link or special file"):
        cd.download_cifar10(data, mirrors=base)
    assert not (tmp_path / "evil.txt").exists() and not (data.parent / "evil.txt").exists()
    assert not (data / "cifar10" / "cifar-10-batches-bin" / "data_batch_1.bin").exists()
    assert _leftovers(data) == [] and not list((data / "cifar10").glob("*.tar.gz*"))


def test_download_cifar10_member_checksum_and_missing(tmp_path, server, cifar_archive):
    serve, base, _ = server
    members, _ = cifar_archive
    bad = dict(members)
    name = "cifar-10-batches-bin/data_batch_2.bin"
    bad[name] = bytes([members[name][0] ^ 1]) + members[name][1:]
    (serve / "m" ).mkdir()
    (serve / "m" / "cifar-10-binary.tar.gz").write_bytes(_tar_gz(bad))
    missing = {k: v for k, v in members.items() if not k.endswith("test_batch.bin")}
    (serve / "n").mkdir()
    (serve / "n" / "cifar-10-binary.tar.gz").write_bytes(_tar_gz(missing))
    data = tmp_path / "data"
    with pytest.raises(DownloadError) as e:
        cd.download_cifar10(data, mirrors=[base + "m/", base + "n/"])
    msg = str(e.value)
    assert f"md5 mismatch for {name}: expected {md5(members[name])}, found {md5(bad[name])}" in msg
    assert "archive md5" in msg and "archive lacks cifar-10-batches-bin/test_batch.bin" in msg
    assert _leftovers(data) == []
    assert not any((data / "cifar10" / "cifar-10-batches-bin").glob("*.bin"))


def test_cifar_incomplete_names_the_missing_batch_file(tmp_path, monkeypatch):
    d = tmp_path / "cifar10" / "cifar-10-batches-bin"
    make_fake_cifar_bin(d, monkeypatch)
    (d / "data_batch_3.bin").unlink()
    with pytest.raises(FileNotFoundError, match="CIFAR-10 incomplete") as e:
        load_dataset("cifar10", data_dir=tmp_path, download=False)
    msg = str(e.value)
    assert f"{d} lacks data_batch_3.bin." in msg and "data_batch_2.bin" not in msg
    assert "pass download=True" in msg


def test_mnist_incomplete_names_the_missing_file(tmp_path):
    d = tmp_path / "mnist"
    d.mkdir()
    (d / "train-images-idx3-ubyte.gz").write_bytes(b"")
    (d / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="MNIST incomplete") as e:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert f"{d} lacks train-labels-idx1-ubyte, t10k-images-idx3-ubyte." in str(e.value)


def test_hints_name_the_download_option_of_the_caller(tmp_path):
    """Python callers are told download=True, command-line users --download."""
    from codesign.data import option_wording

    with pytest.raises(FileNotFoundError, match=r"Pass download=True") as e:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert "--download" not in str(e.value)
    with option_wording(cli=True), pytest.raises(FileNotFoundError, match=r"Pass --download") as e:
        load_dataset("mnist", data_dir=tmp_path, download=False)
    assert "download=True" not in str(e.value)
    d = tmp_path / "mnist"
    d.mkdir()
    (d / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01")
    for name in ("train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        (d / name).write_bytes(b"")
    with option_wording(cli=True), pytest.raises(DataFileError, match="downloaded again with --download"):
        load_dataset("mnist", data_dir=tmp_path, download=False)
