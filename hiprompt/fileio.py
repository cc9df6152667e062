"""Crash-safe file writing shared by every long job: atomic replace and append-only logs."""

import fcntl
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees either the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def file_sha256(path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def new_folder_beside(path) -> Path:
    """A new empty hidden folder next to `path` (same file system), to fill and then move
    into place with `replace_folder`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.new-"))


def replace_folder(new, path) -> None:
    """Put the folder `new` (from `new_folder_beside(path)`, its files written and synced) in
    the place of `path`: the old folder is renamed aside, `new` renamed in, the old one
    deleted. A reader sees the whole old folder or the whole new one (or, for the instant
    between the two renames, none); never a mix of the two."""
    new, path = Path(new), Path(path)
    old = None
    if path.exists():
        old = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.old-"))
        os.replace(path, old / path.name)
    try:
        os.replace(new, path)
    except BaseException:
        if old is not None:
            os.replace(old / path.name, path)
        raise
    if old is not None:
        shutil.rmtree(old)


def atomic_torch_save(obj, path) -> None:
    """`torch.save` through a temporary file and a rename."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class JsonlLog:
    """An append-only JSON Lines file: one record a line, flushed and synced per record.

    Reading skips a torn last line (a process killed mid-write), so a log is never corrupt
    for the next run; `append` first terminates such a line so records never merge.
    """

    def __init__(self, path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def read(self) -> list:
        if not self.path.exists():
            return []
        records = []
        with open(self.path, "r", encoding="utf-8") as handle:
            for line in handle:
                if not line.endswith("\n"):
                    break  # torn final record
                line = line.strip()
                if not line:
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    continue  # a torn record followed by a later append
        return records

    def append(self, record: dict) -> None:
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with open(self.path, "a+b") as handle:
            handle.seek(0, os.SEEK_END)
            if handle.tell() > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":
                    handle.write(b"\n")
            handle.write(line.encode("utf-8"))
            handle.flush()
            os.fsync(handle.fileno())


class FolderBusyError(RuntimeError):
    """Another process holds the folder's lock."""


class FolderLock:
    """An exclusive lock on a folder for one process's writes (`<folder>/.lock`, flock):
    a second process that asks for it stops at once with a FolderBusyError naming the
    holder (pid and command line, written into the lock file). The kernel releases the lock
    when the holder exits, however it exits, so a stale lock file is harmless.

        with FolderLock(output_dir, "training"):
            ...
    """

    def __init__(self, folder, purpose: str):
        self.folder, self.purpose, self._handle = Path(folder), purpose, None

    def __enter__(self) -> "FolderLock":
        self.folder.mkdir(parents=True, exist_ok=True)
        handle = open(self.folder / ".lock", "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise FolderBusyError(f"{self.folder} is in use by {holder}; wait for it to finish, "
                                  f"or write this {self.purpose} elsewhere") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} ({self.purpose}: {' '.join(sys.argv)[:200]})\n")
        handle.flush()
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()  # releases the lock; the file stays, empty of meaning
            self._handle = None
