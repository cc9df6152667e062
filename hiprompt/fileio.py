"""Crash-safe file writing shared by every long job: atomic replace and append-only logs.

A write that fails (a read-only file system, a full disk, no permission) raises `WriteError`,
an OSError that names the file, the reason and what was kept: the writers go through a
temporary file and a rename, so the old file, if any, is intact. Files and folders written
this way get the mode a plain open() or mkdir() would give them (0666 / 0777 less the umask;
an existing file keeps its own), not the 0600 / 0700 of a temporary file.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
from pathlib import Path

_REASONS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EFBIG: "file too large",
}
_ADVICE = {
    errno.EROFS: "write to a folder on a writable file system",
    errno.ENOSPC: "free some space, or write elsewhere, and run again",
    errno.EDQUOT: "free some space, or write elsewhere, and run again",
    errno.EACCES: "write to a folder you may write to",
    errno.EPERM: "write to a folder you may write to",
}
KEPT_FILE = "the old file, if there was one, is intact"


class WriteError(OSError):
    """A file or folder could not be written. `errno` and `filename` are those of the failure;
    str() is one line: the file, the reason, what was kept and what to do.

        cannot write out/p.csv.run.json: read-only file system; nothing already written was
        lost (the old file, if there was one, is intact); write to a folder on a writable file system
    """

    def __init__(self, path, error: OSError, kept: str = KEPT_FILE):
        code = getattr(error, "errno", None)
        reason = _REASONS.get(code) or getattr(error, "strerror", None) or str(error)
        super().__init__(code, reason, str(path))
        advice = _ADVICE.get(code)
        self.message = (f"cannot write {path}: {reason}; nothing already written was lost ({kept})"
                        + (f"; {advice}" if advice else ""))

    def __str__(self) -> str:
        return self.message

    def __reduce__(self):
        return _rebuild_write_error, (self.message, self.errno, self.strerror, self.filename)


def _rebuild_write_error(message, code, reason, filename):
    error = WriteError(filename, OSError(code, reason))
    error.message = message
    return error


@contextlib.contextmanager
def writing(path, kept: str = KEPT_FILE):
    """Turn an OSError raised inside into a `WriteError` naming `path` (for writers outside
    this module, as the tagger's append-only predictions)."""
    try:
        yield
    except WriteError:
        raise
    except OSError as error:
        raise WriteError(path, error, kept) from error


def current_umask() -> int:
    """The process's umask, read without changing it where Linux tells it (/proc/self/status)."""
    try:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _mode_for(path, default: int) -> int:
    """The mode `path` keeps if it exists (as open(path, 'w') would), else `default` less the umask."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return default & ~current_umask()


def fsync_folder(folder) -> None:
    """Make a rename in `folder` durable (where the file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path, data: bytes) -> None:
    """Write `data` to `path` so that a reader sees either the old file or the whole new one,
    and the new one once this returns (the file and the rename in its folder are synced)."""
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, _mode_for(path, 0o666))
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    fsync_folder(path.parent)


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
    into place with `replace_folder` (which gives it the mode of a folder made by mkdir)."""
    path = Path(path)
    with writing(path, "nothing was written yet"):
        path.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.new-"))


def replace_folder(new, path) -> None:
    """Put the folder `new` (from `new_folder_beside(path)`, its files written and synced) in
    the place of `path`: the old folder is renamed aside, `new` renamed in, the old one
    deleted. A reader sees the whole old folder or the whole new one (or, for the instant
    between the two renames, none); never a mix of the two. `new` takes the old folder's
    mode, or that of mkdir (0777 less the umask) when there was none."""
    new, path = Path(new), Path(path)
    old = None
    with writing(path, "the old folder, if there was one, is intact"):
        os.chmod(new, _mode_for(path, 0o777))
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

    KEPT = "the records already in it are intact; a torn last one is skipped when read"

    def __init__(self, path):
        self.path = Path(path)
        with writing(self.path, self.KEPT):
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
        with writing(self.path, self.KEPT), open(self.path, "a+b") as handle:
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


class ExclusiveLock:
    """An exclusive lock (flock) on `lock_path` for one process's writes: a second process that
    asks for it stops at once with `busy` (the error type) naming the holder (pid and command
    line, written into the lock file). The kernel releases the lock when the holder exits,
    however it exits, so a stale lock file is harmless. Made by `FolderLock` and `FileLock`."""

    def __init__(self, lock_path: Path, busy, busy_message: str, purpose: str, name=None):
        self.lock_path, self.busy, self.busy_message, self.purpose = lock_path, busy, busy_message, purpose
        self.name = name or lock_path  # how a failed write names it
        self._handle = None

    def __enter__(self) -> "ExclusiveLock":
        with writing(self.name, "nothing was written yet"):
            self.lock_path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.lock_path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise self.busy(self.busy_message.format(holder=holder)) from None
        try:
            with writing(self.name, "nothing was written yet"):
                handle.seek(0)
                handle.truncate()
                handle.write(f"pid {os.getpid()} ({self.purpose}: {' '.join(sys.argv)[:200]})\n")
                handle.flush()
        except BaseException:
            handle.close()
            raise
        self._handle = handle
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.close()  # releases the lock; the file stays, empty of meaning
            self._handle = None


class FileBusyError(FolderBusyError):
    """Another process holds the lock of the file (`FileLock`)."""


def FolderLock(folder, purpose: str) -> ExclusiveLock:  # noqa: N802  (used as a context manager class)
    """The lock of a folder's writes, `<folder>/.lock`:

        with FolderLock(output_dir, "training"):
            ...
    """
    folder = Path(folder)
    return ExclusiveLock(folder / ".lock", FolderBusyError, f"{folder} is in use by {{holder}}; wait for it to "
                         f"finish, or write this {purpose} elsewhere", purpose)


def FileLock(path, purpose: str) -> ExclusiveLock:  # noqa: N802
    """The lock of one file's writes, `.<name>.lock` beside it (the file itself is not made);
    a second writer gets a FileBusyError (a FolderBusyError)."""
    path = Path(path)
    lock_path = path.parent / f".{path.name}.lock"
    return ExclusiveLock(lock_path, FileBusyError, f"{path} is being written by {{holder}}; wait for it to "
                         f"finish, or write this {purpose} to another file", purpose,
                         name=f"{path} (its lock file {lock_path.name})")
