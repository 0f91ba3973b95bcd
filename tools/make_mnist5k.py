#!/usr/bin/env python3
"""Build the embedded ``mnist-5k`` file from the official MNIST files.

Takes the first ``--n-train`` training images (default 5,000) and the first
``--n-test`` test images (default 1,000) of MNIST (LeCun, Cortes, Burges), verified
against the published md5 sums, and writes them as a compressed ``.npz`` with the
arrays ``train_images`` uint8 [N, 28, 28], ``train_labels`` uint8 [N], ``test_images``,
``test_labels`` and a ``provenance`` string.  The output is written to a temp file and
renamed; its md5 is printed and must be copied into ``MNIST5K_MD5`` in
``codesign/data/_embedded.py`` (the loader checks it).

usage (from the repository root):
    python tools/make_mnist5k.py --mnist-dir DIR [--out codesign/data/embedded/mnist5k.npz]

DIR holds the four official files (plain or .gz), directly or in DIR/mnist/.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codesign.data._mnist import MNIST_FILES, load_mnist_arrays  # noqa: E402

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "codesign" / "data" / "embedded" / "mnist5k.npz"


def build(mnist_dir: str | os.PathLike, n_train: int = 5000, n_test: int = 1000) -> bytes:
    """The bytes of the ``.npz`` file (deterministic: fixed member order and timestamps).

    Args:
        mnist_dir: directory holding the official MNIST files (or a ``mnist/`` subdir).
        n_train: leading training images to keep.
        n_test: leading test images to keep.

    Returns:
        The file contents.
    """
    arrays = load_mnist_arrays(mnist_dir, download=False)
    (xtr, ytr), (xte, yte) = arrays["train"], arrays["test"]
    if not (0 < n_train <= len(xtr) and 0 < n_test <= len(xte)):
        raise SystemExit(f"n_train must be in 1..{len(xtr)} and n_test in 1..{len(xte)}")
    sources = ", ".join(f"{s.name} (md5 {s.raw_md5})" for p in MNIST_FILES.values() for s in p)
    members = {
        "train_images": xtr[:n_train, :, :, 0],
        "train_labels": ytr[:n_train].astype(np.uint8),
        "test_images": xte[:n_test, :, :, 0],
        "test_labels": yte[:n_test].astype(np.uint8),
        "provenance": np.array(
            f"MNIST (Y. LeCun, C. Cortes, C. J. C. Burges, http://yann.lecun.com/exdb/mnist/): "
            f"the first {n_train} training and the first {n_test} test images, in the "
            f"official order, taken from {sources}; built by tools/make_mnist5k.py."),
    }
    buf = io.BytesIO()
    # Written member by member (not np.savez_compressed) so that timestamps and the
    # compression level are fixed and the file is byte-for-byte reproducible.
    with zipfile.ZipFile(buf, "w") as zf:
        for key, arr in members.items():
            info = zipfile.ZipInfo(key + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arr), allow_pickle=False)
            zf.writestr(info, member.getvalue(), compresslevel=9)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mnist-dir", required=True, help="directory with the official MNIST files")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="output .npz (default: %(default)s)")
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=1000)
    args = ap.parse_args(argv)
    data = build(args.mnist_dir, args.n_train, args.n_test)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    print(f"wrote {out}: {len(data)} bytes, md5 {hashlib.md5(data).hexdigest()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
