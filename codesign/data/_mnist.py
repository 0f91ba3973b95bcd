"""MNIST from the four official IDX files (plain or gzipped), with verified download.

Layout: ``<data_dir>/mnist/<name>`` or ``<data_dir>/<name>``, where ``<name>`` is one of
``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each optionally with a ``.gz`` suffix (the plain file wins
when both exist).  Downloads go to ``<data_dir>/mnist/<name>.gz``.

Every file is checked when loaded: gzip stream, IDX magic number, dimensions, exact
size, md5 of the (decompressed) content, and label range.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._download import (download_verified, find_or_download, md5_of, resolve_data_dir,
                        resolve_mirrors)
from ._errors import DataFileError, download_option

__all__ = ["read_idx", "load_mnist_arrays", "download_mnist", "MNIST_MIRRORS"]

log = logging.getLogger("codesign.data")

#: Default download sources, tried in order.  The ossci-datasets S3 bucket is the
#: mirror torchvision uses; it comes first because the original site (LeCun, Cortes,
#: Burges) has been intermittently unavailable.  Override with the ``mirrors``
#: argument or ``$CODESIGN_MNIST_URL`` (one or more base URLs separated by spaces).
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
MNIST_URL_ENV = "CODESIGN_MNIST_URL"

# IDX element types: code -> (numpy big-endian dtype, name)
_IDX_TYPES = {
    0x08: (np.dtype(">u1"), "unsigned byte"),
    0x09: (np.dtype(">i1"), "signed byte"),
    0x0B: (np.dtype(">i2"), "short"),
    0x0C: (np.dtype(">i4"), "int"),
    0x0D: (np.dtype(">f4"), "float"),
    0x0E: (np.dtype(">f8"), "double"),
}


@dataclass(frozen=True)
class IdxSpec:
    """What one official MNIST file must contain.

    Attributes:
        name: file name without ``.gz``.
        shape: array shape (``(N, 28, 28)`` images or ``(N,)`` labels).
        raw_md5: md5 of the uncompressed IDX file.
        gz_md5: md5 of the published ``.gz`` file.
    """

    name: str
    shape: tuple[int, ...]
    raw_md5: str
    gz_md5: str

    @property
    def magic(self) -> int:
        """IDX magic number: unsigned-byte elements, ``len(shape)`` dimensions."""
        return 0x0800 | len(self.shape)

    @property
    def raw_size(self) -> int:
        """Size of the uncompressed file in bytes (header + data)."""
        return 4 + 4 * len(self.shape) + int(np.prod(self.shape))


# The published checksums.  raw_md5 were checked against the official files
# (decompressed); gz_md5 are the md5 of the files as served by the official site.
MNIST_FILES: dict[str, tuple[IdxSpec, IdxSpec]] = {
    "train": (
        IdxSpec("train-images-idx3-ubyte", (60000, 28, 28),
                "6bbc9ace898e44ae57da46a324031adb", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        IdxSpec("train-labels-idx1-ubyte", (60000,),
                "a25bea736e30d166cdddb491f175f624", "d53e105ee54ea40749a09fcbcd1e9432"),
    ),
    "test": (
        IdxSpec("t10k-images-idx3-ubyte", (10000, 28, 28),
                "2646ac647ad5339dbf082846283269ea", "9fb629c4189551a2d022fa330f9573f3"),
        IdxSpec("t10k-labels-idx1-ubyte", (10000,),
                "27ae3e4e09519cfbb04c329615203637", "ec29112dd5afa0611ce80d1b7f02629c"),
    ),
}

def _hint() -> str:
    return (f"Delete it (it is downloaded again with {download_option()}) or replace it with "
            "the official file")


def _read_file(path: Path, limit: int | None = None) -> bytes:
    """Contents of ``path``, decompressed when it ends in ``.gz``.

    Args:
        limit: read at most this many (decompressed) bytes.

    Raises:
        DataFileError: not a valid or a truncated gzip stream.
    """
    if path.suffix != ".gz":
        with open(path, "rb") as f:
            return f.read(-1 if limit is None else limit)
    with open(path, "rb") as raw:
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as f:
                return f.read(-1 if limit is None else limit)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataFileError(path, "gzip stream", "a complete gzip stream",
                                f"{type(exc).__name__}: {exc}", _hint()) from exc


def _parse_idx(data: bytes, path: Path, spec: IdxSpec | None = None) -> np.ndarray:
    """Parse IDX bytes; when ``spec`` is given check magic, dimensions, size and md5."""
    size_what = "decompressed size" if path.suffix == ".gz" else "size"
    if len(data) < 4:
        raise DataFileError(path, size_what, "at least 4 bytes (IDX header)",
                            f"{len(data)} bytes", _hint())
    (magic,) = struct.unpack(">I", data[:4])
    type_code, ndim = (magic >> 8) & 0xFF, magic & 0xFF
    if spec is not None and magic != spec.magic:
        raise DataFileError(path, "magic number",
                            f"0x{spec.magic:08X} ({spec.magic}: IDX, unsigned byte, "
                            f"{len(spec.shape)} dimension(s))",
                            f"0x{magic:08X} ({magic})", _hint())
    if magic >> 16 != 0 or type_code not in _IDX_TYPES or ndim == 0:
        raise DataFileError(path, "magic number",
                            "0x0000TTNN (TT: an IDX type 08/09/0B/0C/0D/0E, NN >= 1 dims)",
                            f"0x{magic:08X}", _hint())
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFileError(path, size_what, f"at least {header} bytes (IDX header)",
                            f"{len(data)} bytes (truncated)", _hint())
    dims = struct.unpack(f">{ndim}I", data[4:header])
    if spec is not None and dims != spec.shape:
        raise DataFileError(path, "dimensions", f"{spec.shape}", f"{dims}", _hint())
    dtype, _ = _IDX_TYPES[type_code]
    expected = header + int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        kind = "truncated" if len(data) < expected else "trailing bytes"
        raise DataFileError(path, size_what,
                            f"{expected} bytes ({header} header + {dims} of {dtype.itemsize} byte(s))",
                            f"{len(data)} bytes ({kind})", _hint())
    if spec is not None:
        got = md5_of(data)
        if got != spec.raw_md5:
            raise DataFileError(path, "md5 checksum" + (" of the decompressed content"
                                                        if path.suffix == ".gz" else ""),
                                spec.raw_md5, got, _hint())
    arr = np.frombuffer(data, dtype=dtype, count=(expected - header) // dtype.itemsize, offset=header)
    return arr.reshape(dims).astype(dtype.newbyteorder("="), copy=False)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read any IDX file (plain or ``.gz``), checking its header and size.

    Args:
        path: the file.

    Returns:
        Array with the file's dimensions and element type (native byte order).

    Raises:
        DataFileError: bad gzip stream, magic number or size.
    """
    path = Path(path)
    return _parse_idx(_read_file(path), path)


def _pick(d: Path, name: str) -> Path:
    plain = d / name
    return plain if plain.is_file() else d / (name + ".gz")


def _check_download(spec: IdxSpec):
    """Accept the archive md5, or -- for mirrors that re-compress -- the content md5."""

    def check(tmp: Path, md5: str) -> str | None:
        if md5 == spec.gz_md5:
            return None
        try:
            with gzip.open(tmp, "rb") as f:
                content = f.read(spec.raw_size + 1)
            content_md5 = md5_of(content)
        except (gzip.BadGzipFile, EOFError, zlib.error, OSError) as exc:
            content_md5 = f"none (not a valid gzip stream: {exc})"
        if content_md5 == spec.raw_md5:
            log.info("%s: archive md5 %s differs from the official one but the content "
                     "matches (re-compressed mirror)", spec.name, md5)
            return None
        return (f"md5 mismatch: expected {spec.gz_md5} (file) or {spec.raw_md5} "
                f"(decompressed content), found {md5} (file), {content_md5} (content)")

    return check


def download_mnist(data_dir: str | os.PathLike | None = None, *,
                   mirrors: str | list[str] | None = None) -> Path:
    """Download the MNIST files that are missing into ``<data_dir>/mnist/``.

    Each file is md5-checked (the published ``.gz`` md5, or the md5 of its
    decompressed content for mirrors that re-compress) before it is renamed into place.

    Args:
        data_dir: data directory (default: :func:`~codesign.data.default_data_dir`).
        mirrors: base URL(s) to try in order (default: ``$CODESIGN_MNIST_URL``, else
            :data:`MNIST_MIRRORS`).

    Returns:
        The directory holding the four files.

    Raises:
        DownloadError: a file could not be obtained from any source.
    """
    dest = resolve_data_dir(data_dir) / "mnist"
    bases = resolve_mirrors(mirrors, MNIST_URL_ENV, MNIST_MIRRORS)
    for pair in MNIST_FILES.values():
        for spec in pair:
            if (dest / spec.name).is_file() or (dest / (spec.name + ".gz")).is_file():
                continue
            tmp = download_verified(
                spec.name + ".gz", bases, dest, _check_download(spec),
                hint=(f"Put the official file at {dest / (spec.name + '.gz')} by hand, or "
                      f"point ${MNIST_URL_ENV} (or mirrors=) at a server that has it."))
            os.replace(tmp, dest / (spec.name + ".gz"))
    return dest


def load_mnist_arrays(data_dir: str | os.PathLike | None = None, *, download: bool = True,
                      mirrors: str | list[str] | None = None
                      ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Read and verify the official MNIST files.

    Args:
        data_dir: data directory (default: :func:`~codesign.data.default_data_dir`).
        download: fetch missing files (see :func:`download_mnist`).
        mirrors: download sources (see :func:`download_mnist`).

    Returns:
        ``{"train": (images, labels), "test": (images, labels)}``; images uint8
        ``[N, 28, 28, 1]``, labels int32 ``[N]``.

    Raises:
        FileNotFoundError: files missing and ``download`` is False.
        DataFileError: a file is corrupt, truncated or not the official one.
        DownloadError: the download failed.
    """
    root = resolve_data_dir(data_dir)
    names = [spec.name for pair in MNIST_FILES.values() for spec in pair]
    d, _ = find_or_download(
        "MNIST", [(root / "mnist", names, ""), (root, names, "")], download=download,
        fetch=lambda: (download_mnist(root, mirrors=mirrors), ""),
        present=lambda d, n: (d / n).is_file() or (d / (n + ".gz")).is_file(),
        note=" (plain or .gz)")
    out = {}
    for split, (img_spec, lab_spec) in MNIST_FILES.items():
        img_path, lab_path = _pick(d, img_spec.name), _pick(d, lab_spec.name)
        images = _parse_idx(_read_file(img_path), img_path, img_spec)
        labels = _parse_idx(_read_file(lab_path), lab_path, lab_spec)
        if labels.size and labels.max() > 9:
            raise DataFileError(lab_path, "label values", "digits 0..9",
                                f"maximum {int(labels.max())}", _hint())
        out[split] = (images[..., None], labels.astype(np.int32))
    return out
