"""Data directory lookup and verified downloads (temp file + atomic rename).

Every download streams into a temporary file next to its destination, hashing as it
goes; the caller's ``check`` then decides whether the bytes are acceptable (md5 of the
archive, md5 of its content, safe extraction).  A rejected or interrupted download
leaves nothing behind.  Several sources (a primary and mirrors) are tried in order;
when every one fails, :class:`~codesign.data.DownloadError` lists each URL with the
reason it failed.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from ._errors import DownloadError, download_option

__all__ = ["default_data_dir", "resolve_data_dir", "resolve_mirrors", "download_verified",
           "find_or_download", "md5_of"]

log = logging.getLogger("codesign.data")

#: Seconds to wait for a server before giving up on that source.
TIMEOUT_S = 60.0
_CHUNK = 1 << 20
_USER_AGENT = "codesign-data/0.1 (python urllib)"


def default_data_dir() -> Path:
    """The data directory used when none is given.

    ``$CODESIGN_DATA`` if set, else ``$XDG_CACHE_HOME/codesign`` (when that variable
    holds an absolute path), else ``~/.cache/codesign``.

    Returns:
        The directory (it may not exist yet).
    """
    env = os.environ.get("CODESIGN_DATA", "").strip()
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    base = Path(xdg).expanduser() if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "codesign"


def resolve_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir`` as a :class:`~pathlib.Path`, or :func:`default_data_dir` when None.

    Raises:
        NotADirectoryError: the path exists and is not a directory.
    """
    root = default_data_dir() if data_dir is None else Path(data_dir).expanduser()
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"data directory {root} exists but is not a directory")
    return root


def resolve_mirrors(mirrors: str | Sequence[str] | None, env_var: str,
                    defaults: Sequence[str]) -> list[str]:
    """The base URLs to try, in order.

    Args:
        mirrors: explicit base URL(s) (a string may hold several separated by spaces);
            they take precedence over the environment and the defaults.
        env_var: environment variable consulted when ``mirrors`` is None (same syntax).
        defaults: official sources used when neither is given.

    Returns:
        Base URLs, each ending in ``/``.

    Raises:
        ValueError: a URL whose scheme is not http, https or file.
    """
    if mirrors is None:
        env = os.environ.get(env_var, "").strip()
        mirrors = env if env else list(defaults)
    urls = mirrors.split() if isinstance(mirrors, str) else list(mirrors)
    if not urls:
        raise ValueError(f"no download source given (mirrors={mirrors!r}, ${env_var})")
    out = []
    for url in urls:
        scheme = urllib.parse.urlsplit(url).scheme
        if scheme not in ("http", "https", "file"):
            raise ValueError(
                f"download source {url!r} (from the mirrors argument or ${env_var}): "
                f"scheme {scheme!r} is not supported; valid: http, https, file")
        out.append(url if url.endswith("/") else url + "/")
    return out


def md5_of(data: bytes | bytearray | memoryview) -> str:
    """Hex md5 digest of ``data``."""
    return hashlib.md5(data).hexdigest()


def _describe(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return f"unreachable ({exc.reason})"
    return f"{type(exc).__name__}: {exc}"


def _stream(url: str, fileobj, desc: str) -> str:
    """Copy ``url`` into ``fileobj`` with a progress bar; return the md5 of the bytes."""
    from tqdm import tqdm

    req = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
    digest = hashlib.md5()
    received = 0
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        # disable=None: the bar shows on a terminal and stays quiet in logs/CI.
        with tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=desc, disable=None, leave=False) as bar:
            while chunk := resp.read(_CHUNK):
                fileobj.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise OSError(f"connection closed early: expected {total} bytes "
                      f"(Content-Length), received {received}")
    fileobj.flush()
    os.fsync(fileobj.fileno())
    return digest.hexdigest()


def download_verified(filename: str, bases: Sequence[str], directory: Path,
                      check: Callable[[Path, str], str | None], *, hint: str = "") -> Path:
    """Download ``filename`` from the first source whose bytes pass ``check``.

    Args:
        filename: file name appended to each base URL.
        bases: base URLs (ending in ``/``), tried in order.
        directory: where the temporary file is created (same file system as the
            final destination, so the caller's ``os.replace`` is atomic).
        check: ``check(temp_path, md5_hex) -> None`` to accept, or a reason string to
            reject (the temp file is then deleted and the next source tried).
        hint: appended to the error when every source fails.

    Returns:
        Path of the accepted temporary file; the caller renames or deletes it.

    Raises:
        DownloadError: every source failed; lists each URL and why.
    """
    directory.mkdir(parents=True, exist_ok=True)
    attempts: list[tuple[str, str]] = []
    for base in bases:
        url = base + filename
        fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{filename}.", suffix=".part")
        tmp = Path(tmp_name)
        keep = False
        try:
            log.info("downloading %s", url)
            try:
                with os.fdopen(fd, "wb") as f:
                    md5 = _stream(url, f, filename)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                attempts.append((url, _describe(exc)))
                continue
            problem = check(tmp, md5)
            if problem is None:
                keep = True
                return tmp
            attempts.append((url, problem))
        finally:
            if not keep:
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
    raise DownloadError(filename, attempts, hint)


def find_or_download(dataset: str, candidates: Sequence[tuple[Path, Sequence[str], str]], *,
                     download: bool, fetch: Callable[[], tuple[Path, str]],
                     present: Callable[[Path, str], bool] = lambda d, name: (d / name).is_file(),
                     note: str = "") -> tuple[Path, str]:
    """The first complete candidate directory of a file dataset, else a download.

    Args:
        dataset: the dataset's name, for messages (``"MNIST"``, ``"CIFAR-10"``).
        candidates: ``(directory, file names, tag)`` in order of preference.
        download: call ``fetch`` when no candidate is complete.
        fetch: downloads the files; returns ``(directory, tag)`` like a candidate.
        present: whether file ``name`` is in directory ``d``.
        note: said after the file names in the not-found message (``" (plain or .gz)"``).

    Returns:
        ``(directory, tag)`` of the complete candidate (or of the download).

    Raises:
        FileNotFoundError: nothing complete and ``download`` is False; the message
            names the files missing from every directory that holds some of them.
    """
    for d, names, tag in candidates:
        if all(present(d, n) for n in names):
            return d, tag
    if download:
        return fetch()
    partial = []
    for d, names, _ in candidates:
        missing = [n for n in names if not present(d, n)]
        if len(missing) < len(names):
            partial.append(f"{d} lacks {', '.join(missing)}")
    if partial:
        raise FileNotFoundError(
            f"{dataset} incomplete: {'; '.join(partial)}. Put the missing file(s) there, or "
            f"pass {download_option()} to download the dataset.")
    where: dict[tuple[str, ...], list[str]] = {}
    for d, names, _ in candidates:
        where.setdefault(tuple(names), []).append(str(d))
    looked = "; ".join(f"{', '.join(names)}{note} in {' and '.join(dirs)}"
                       for names, dirs in where.items())
    raise FileNotFoundError(
        f"{dataset} not found: looked for {looked}. Pass {download_option()}, or put the "
        "files there.")
