"""Atomic file and folder writes: a crash never leaves a half-written file under its final name."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator

import torch
from safetensors.torch import load_file, save_file

from motiontune.errors import InputError


def _umask() -> int:
    """The process umask, read without changing it where the OS tells it (Linux), else set and restored."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _tmp_in(folder: str, suffix: str) -> str:
    """A fresh temporary file in ``folder`` with the mode a plain ``open`` would give (mkstemp's is 0600)."""
    fd, path = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder or ".")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
    finally:
        os.close(fd)
    return path


def atomic_write_bytes(path: str, data: bytes) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = _tmp_in(folder, os.path.basename(path))
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def read_text(path: str) -> str:
    """The UTF-8 text of ``path``; InputError (one line naming the file) if it is not UTF-8 or unreadable."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})") from None


def content_hash(path: str) -> str:
    """sha256 (hex) of a file's bytes, or of a folder's files (relative names and bytes, in sorted order)."""
    h = hashlib.sha256()
    files = [path] if os.path.isfile(path) else sorted(os.path.join(r, f) for r, _, names in os.walk(path) for f in names)
    for name in files:
        if name != path:
            h.update(os.path.relpath(name, path).encode("utf-8", "surrogateescape") + b"\0")
        with open(name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def check_can_write_in(folder: str, target: str) -> None:
    """InputError unless a file can be created in the existing ``folder`` (for ``target``, named in the
    message). Tried by creating and removing an empty file: permissions, read-only and immutable
    folders and pseudo file systems such as /sys all show up, for root too."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".tmp-probe-", dir=folder)
    except OSError as exc:
        raise InputError(f"{target}: cannot write in {folder} ({exc.strerror})") from None
    os.close(fd)
    os.remove(probe)


def save_tensors(tensors: dict[str, torch.Tensor], path: str, metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors, atomically."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = _tmp_in(folder, ".safetensors")
    try:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def load_tensors(path: str) -> dict[str, torch.Tensor]:
    if not os.path.isfile(path):
        raise InputError(f"{path}: file not found")
    try:
        return load_file(path)
    except Exception as exc:  # safetensors raises its own error types
        raise InputError(f"{path}: not a readable safetensors file ({type(exc).__name__})") from exc


@contextlib.contextmanager
def atomic_directory(path: str) -> Iterator[str]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` in one rename.

    An existing ``path`` is moved aside first and deleted only after the new folder is in
    place, so at every moment either the old or the new complete folder exists.
    """
    path = os.path.abspath(path)
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".tmp-{os.path.basename(path)}-", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's is 0700; the folder gets what os.makedirs would give it
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=f".old-{os.path.basename(path)}-", dir=parent)
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old:
        shutil.rmtree(old, ignore_errors=True)
