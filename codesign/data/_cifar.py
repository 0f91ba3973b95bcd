"""CIFAR-10 from the official binary or python version, with verified download.

Layout (the first complete directory wins, binary before python):

- ``<data_dir>/cifar10/cifar-10-batches-bin/`` or ``<data_dir>/cifar-10-batches-bin/``
  holding ``data_batch_1.bin`` ... ``data_batch_5.bin`` and ``test_batch.bin``
  (each 10,000 records of 1 label byte + 3,072 pixel bytes, channel-major R, G, B);
- ``<data_dir>/cifar10/cifar-10-batches-py/`` or ``<data_dir>/cifar-10-batches-py/``
  holding ``data_batch_1`` ... ``data_batch_5`` and ``test_batch`` (pickled dicts).

A download fetches the official ``cifar-10-binary.tar.gz`` into ``<data_dir>/cifar10/``
and extracts only the six batch files, each md5-checked, to
``<data_dir>/cifar10/cifar-10-batches-bin/``; the archive is deleted afterwards.
Every file's size and md5 are checked when it is loaded.  The python version is
unpickled (after its md5 matched) with an unpickler that only admits numpy arrays.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import logging
import os
import pickle
import posixpath
import tarfile
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._download import (download_verified, find_or_download, md5_of, resolve_data_dir,
                        resolve_mirrors)
from ._errors import DataFileError, download_option

__all__ = ["CIFAR10_CLASSES", "CIFAR10_MIRRORS", "download_cifar10", "load_cifar10_arrays"]

log = logging.getLogger("codesign.data")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer",
                   "dog", "frog", "horse", "ship", "truck")

#: Default download source (the dataset authors' page).  Override with the ``mirrors``
#: argument or ``$CODESIGN_CIFAR10_URL`` (one or more base URLs separated by spaces);
#: ``cifar-10-binary.tar.gz`` is appended to each.
CIFAR10_MIRRORS = ("https://www.cs.toronto.edu/~kriz/",)
CIFAR10_URL_ENV = "CODESIGN_CIFAR10_URL"

BIN_DIR = "cifar-10-batches-bin"
PY_DIR = "cifar-10-batches-py"
_RECORD = 1 + 32 * 32 * 3


@dataclass(frozen=True)
class BatchSpec:
    """One official CIFAR-10 batch file.

    Attributes:
        name: file name inside its directory.
        md5: md5 of the file.
        records: images in the file.
    """

    name: str
    md5: str
    records: int = 10000


# Binary version: checked against the official files.  Python version: the md5s
# published with the dataset (as used by torchvision).
CIFAR10_BIN_FILES: dict[str, tuple[BatchSpec, ...]] = {
    "train": (
        BatchSpec("data_batch_1.bin", "5dd7e06a14cb22eb9f671a540d1b7c25"),
        BatchSpec("data_batch_2.bin", "5ea93a67294ea407fff1d09f752e9692"),
        BatchSpec("data_batch_3.bin", "942cd6a4bcdd0dd3c604fbe906cb4421"),
        BatchSpec("data_batch_4.bin", "ae636b3ba5c66a11e91e8cb52e771fcb"),
        BatchSpec("data_batch_5.bin", "53f37980c15c3d472c316c40844f3f0d"),
    ),
    "test": (BatchSpec("test_batch.bin", "803d5f7f4d78ea53de84dbe85f74fb6d"),),
}
CIFAR10_PY_FILES: dict[str, tuple[BatchSpec, ...]] = {
    "train": (
        BatchSpec("data_batch_1", "c99cafc152244af753f735de768cd75f"),
        BatchSpec("data_batch_2", "d4bba439e000b95fd0a9bffe97cbabec"),
        BatchSpec("data_batch_3", "54ebc095f3ab1f0389bbae665268c751"),
        BatchSpec("data_batch_4", "634d18415352ddfa80567beed471001a"),
        BatchSpec("data_batch_5", "482c414d41f54cd18b22e5b47cb7c3cb"),
    ),
    "test": (BatchSpec("test_batch", "40351d587109b95175f43aff81a1287e"),),
}
#: The official binary archive and its published md5.
CIFAR10_ARCHIVE = ("cifar-10-binary.tar.gz", "c32a1d4ab5d03f1284b67883e8d87530")

def _hint() -> str:
    return (f"Delete it (the binary version is downloaded again with {download_option()}) or "
            "replace it with the official file")


def _check_size_md5(path: Path, data: bytes, spec: BatchSpec, expected_size: int | None) -> None:
    if expected_size is not None and len(data) != expected_size:
        kind = "truncated" if len(data) < expected_size else "trailing bytes"
        raise DataFileError(path, "size",
                            f"{expected_size} bytes ({spec.records} records of "
                            f"{_RECORD} bytes: 1 label + 3072 pixels)",
                            f"{len(data)} bytes ({kind})", _hint())
    got = md5_of(data)
    if got != spec.md5:
        raise DataFileError(path, "md5 checksum", spec.md5, got, _hint())


def _check_labels(path: Path, labels: np.ndarray) -> None:
    if labels.size and int(labels.max()) > 9:
        raise DataFileError(path, "label values", "classes 0..9",
                            f"maximum {int(labels.max())}", _hint())


def _read_bin(path: Path, spec: BatchSpec) -> tuple[np.ndarray, np.ndarray]:
    """One binary batch: images uint8 [n, 32, 32, 3] (a strided view), labels uint8 [n]."""
    data = path.read_bytes()
    _check_size_md5(path, data, spec, spec.records * _RECORD)
    rec = np.frombuffer(data, np.uint8).reshape(spec.records, _RECORD)
    labels = rec[:, 0]
    _check_labels(path, labels)
    return rec[:, 1:].reshape(spec.records, 3, 32, 32).transpose(0, 2, 3, 1), labels


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles dicts/lists/bytes and numpy arrays; refuses any other global."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name} "
                                         "(only numpy arrays are allowed)")
        # Python 2 / numpy 1 pickles name numpy.core, numpy 2 names numpy._core.
        if module.startswith(("numpy.core", "numpy._core")):
            tail = module.split(".", 2)[2]
            for base in ("numpy._core", "numpy.core"):
                with contextlib.suppress(ImportError):
                    return getattr(importlib.import_module(f"{base}.{tail}"), name)
        return super().find_class(module, name)


def _read_py(path: Path, spec: BatchSpec) -> tuple[np.ndarray, np.ndarray]:
    """One python-version batch: images uint8 [n, 32, 32, 3], labels uint8 [n]."""
    data = path.read_bytes()
    _check_size_md5(path, data, spec, None)
    try:
        d = _NumpyOnlyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # any unpickling failure is a bad file
        raise DataFileError(path, "pickle", "a pickled dict with b'data' and b'labels'",
                            f"{type(exc).__name__}: {exc}", _hint()) from exc
    if not isinstance(d, dict):
        raise DataFileError(path, "pickle", "a dict", type(d).__name__, _hint())
    get = lambda k: d[k.encode()] if k.encode() in d else d.get(k)  # noqa: E731
    x, y = get("data"), get("labels")
    want = (spec.records, 3072)
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.shape != want:
        found = (f"{x.dtype} {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__)
        raise DataFileError(path, "'data' entry", f"uint8 array of shape {want}", found, _hint())
    try:
        labels = np.asarray(y, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise DataFileError(path, "'labels' entry", f"{spec.records} integers",
                            f"{type(y).__name__}", _hint()) from exc
    if labels.shape != (spec.records,) or (labels.size and labels.min() < 0):
        raise DataFileError(path, "'labels' entry", f"{spec.records} integers in 0..9",
                            f"shape {labels.shape}, min {labels.min() if labels.size else None}",
                            _hint())
    _check_labels(path, labels)
    return x.reshape(spec.records, 3, 32, 32).transpose(0, 2, 3, 1), labels.astype(np.uint8)


def _unsafe_member(name: str) -> bool:
    return (name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":")
            or ".." in name.replace("\\", "/").split("/"))


def _extract_check(dest: Path):
    """``check`` for :func:`download_verified`: safely extract the six binary batches.

    Only regular files and directories may appear in the archive, no member path may
    be absolute or contain ``..``; the six batch files are streamed (never by their
    archive path) into temp files in ``dest``, md5-checked, then renamed into place.
    """

    def check(tmp: Path, archive_md5: str) -> str | None:
        archive_note = ("" if archive_md5 == CIFAR10_ARCHIVE[1] else
                        f" (archive md5 {archive_md5}, official {CIFAR10_ARCHIVE[1]})")
        wanted = {f"{BIN_DIR}/{s.name}": s for specs in CIFAR10_BIN_FILES.values()
                  for s in specs}
        staged: dict[str, Path] = {}
        ok = False
        try:
            dest.mkdir(parents=True, exist_ok=True)
            with tarfile.open(tmp, "r|gz") as tar:
                for m in tar:
                    if _unsafe_member(m.name):
                        return f"unsafe member path {m.name!r} in the archive; refusing it"
                    if not (m.isreg() or m.isdir()):
                        return (f"archive member {m.name!r} is a link or special file; "
                                "only regular files are accepted")
                    spec = wanted.get(posixpath.normpath(m.name))
                    if spec is None or not m.isreg() or spec.name in staged:
                        continue
                    size = spec.records * _RECORD
                    if m.size != size:
                        return (f"archive member {m.name}: expected {size} bytes, "
                                f"found {m.size}{archive_note}")
                    fd, part = tempfile.mkstemp(dir=dest, prefix=f".{spec.name}.", suffix=".part")
                    staged[spec.name] = Path(part)
                    digest = hashlib.md5()
                    src = tar.extractfile(m)
                    with os.fdopen(fd, "wb") as out:
                        while chunk := src.read(1 << 20):
                            digest.update(chunk)
                            out.write(chunk)
                    if digest.hexdigest() != spec.md5:
                        return (f"md5 mismatch for {m.name}: expected {spec.md5}, "
                                f"found {digest.hexdigest()}{archive_note}")
            missing = sorted(set(s.name for s in wanted.values()) - set(staged))
            if missing:
                return f"archive lacks {', '.join(f'{BIN_DIR}/{n}' for n in missing)}{archive_note}"
            for name, part in staged.items():
                os.replace(part, dest / name)
            ok = True
            if archive_note:
                log.info("CIFAR-10 archive%s; every batch file matched its md5", archive_note)
            return None
        except (tarfile.TarError, EOFError, zlib.error) as exc:
            return f"not a valid tar.gz archive ({type(exc).__name__}: {exc}){archive_note}"
        finally:
            if not ok:
                for part in staged.values():
                    with contextlib.suppress(FileNotFoundError):
                        part.unlink()

    return check


def download_cifar10(data_dir: str | os.PathLike | None = None, *,
                     mirrors: str | list[str] | None = None) -> Path:
    """Download the official binary version into ``<data_dir>/cifar10/cifar-10-batches-bin``.

    The archive is streamed to a temp file, its six batch files are extracted safely and
    each is md5-checked before being renamed into place; the archive is then deleted.

    Args:
        data_dir: data directory (default: :func:`~codesign.data.default_data_dir`).
        mirrors: base URL(s) to try in order (default: ``$CODESIGN_CIFAR10_URL``, else
            :data:`CIFAR10_MIRRORS`).

    Returns:
        The ``cifar-10-batches-bin`` directory.

    Raises:
        DownloadError: no source gave a valid archive.
    """
    root = resolve_data_dir(data_dir) / "cifar10"
    dest = root / BIN_DIR
    bases = resolve_mirrors(mirrors, CIFAR10_URL_ENV, CIFAR10_MIRRORS)
    tmp = download_verified(
        CIFAR10_ARCHIVE[0], bases, root, _extract_check(dest),
        hint=(f"Put the official binary version (six .bin files) in {dest} by hand, or "
              f"point ${CIFAR10_URL_ENV} (or mirrors=) at a server that has "
              f"{CIFAR10_ARCHIVE[0]}."))
    tmp.unlink()
    return dest


def load_cifar10_arrays(data_dir: str | os.PathLike | None = None, *, download: bool = True,
                        mirrors: str | list[str] | None = None
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and verify CIFAR-10 (binary version preferred, else python version).

    Args:
        data_dir: data directory (default: :func:`~codesign.data.default_data_dir`).
        download: fetch the binary version when neither version is found.
        mirrors: download sources (see :func:`download_cifar10`).

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``; images uint8
        ``[N, 32, 32, 3]`` (NHWC, RGB), labels int32 ``[N]``.

    Raises:
        FileNotFoundError: no complete version found and ``download`` is False.
        DataFileError: a file is corrupt, truncated or not the official one.
        DownloadError: the download failed.
    """
    root = resolve_data_dir(data_dir)
    names = {kind: [s.name for specs in files.values() for s in specs]
             for kind, files in (("bin", CIFAR10_BIN_FILES), ("py", CIFAR10_PY_FILES))}
    d, kind = find_or_download(
        "CIFAR-10", [(root / "cifar10" / BIN_DIR, names["bin"], "bin"),
                     (root / BIN_DIR, names["bin"], "bin"),
                     (root / "cifar10" / PY_DIR, names["py"], "py"),
                     (root / PY_DIR, names["py"], "py")],
        download=download, fetch=lambda: (download_cifar10(root, mirrors=mirrors), "bin"))
    files, reader = (CIFAR10_BIN_FILES, _read_bin) if kind == "bin" else (CIFAR10_PY_FILES, _read_py)
    out = {}
    for split, specs in files.items():
        images = np.empty((sum(s.records for s in specs), 32, 32, 3), np.uint8)
        labels = np.empty(len(images), np.int32)
        start = 0
        for s in specs:  # one copy per batch, into a C-contiguous NHWC array
            x, y = reader(d / s.name, s)
            images[start:start + len(x)] = x
            labels[start:start + len(x)] = y
            start += len(x)
        out[split] = (images, labels)
    return out
