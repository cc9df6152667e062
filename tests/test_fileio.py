"""hiprompt/fileio.py: a failed write names the file and the reason and loses nothing already
written (issue 25, items 6 and 8); files and folders written through a temporary file get the
mode a plain open() or mkdir() would have given them (item 14); `FileLock` refuses a second
process."""

import errno
import json
import os
import stat
import subprocess
import sys
import tempfile
import textwrap

import pytest
from conftest import mounted_tmpfs

from hiprompt.fileio import (
    FileLock,
    FolderBusyError,
    JsonlLog,
    WriteError,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    new_folder_beside,
    replace_folder,
)


def _failing(monkeypatch, module, name, code):
    """Make `module.name` raise OSError(code); returns the list of calls, to prove the failure happened."""
    calls = []

    def fail(*args, **kwargs):
        calls.append(args)
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(module, name, fail)
    return calls


@pytest.mark.parametrize("module, name, code, reason", [
    (os, "fsync", errno.ENOSPC, "no space left on the device"),  # a full disk, seen at the sync
    (tempfile, "mkstemp", errno.EROFS, "read-only file system"),  # the temporary file cannot be made
    (os, "replace", errno.EACCES, "permission denied"),
])
def test_a_failed_write_names_the_file_and_keeps_the_old_one(tmp_path, monkeypatch, module, name, code, reason):
    path = tmp_path / "run_info.json"
    path.write_text("old\n")
    calls = _failing(monkeypatch, module, name, code)
    with pytest.raises(WriteError) as raised:
        atomic_write_json(path, {"new": 1})
    assert calls, "the patched call was never reached"
    error = raised.value
    assert isinstance(error, OSError) and error.errno == code and error.filename == str(path)
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"cannot write {path}: {reason};")
    assert "nothing already written was lost" in message
    monkeypatch.undo()
    assert path.read_text() == "old\n"  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run_info.json"]  # no temporary file left


def test_a_real_full_disk_keeps_the_old_file(tmp_path):
    """On a 64 KiB tmpfs (skipped where mounting is not allowed): the write of 1 MiB fails."""
    with mounted_tmpfs(tmp_path / "small", "size=64k") as mount:
        path = mount / "scores.pt"
        atomic_write_text(path, "old")
        with pytest.raises(WriteError, match=rf"cannot write {path}: no space left on the device; "
                                             "nothing already written was lost"):
            atomic_write_text(path, "x" * (1 << 20))
        assert path.read_text() == "old"
        assert [p.name for p in mount.iterdir()] == ["scores.pt"]
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with pytest.raises(WriteError, match=rf"cannot write {path}: read-only file system; "):
            atomic_write_text(path, "new")
        assert path.read_text() == "old"

def _folder_and_replacement(tmp_path, old: tuple, new: tuple):
    """A folder `knowledge` holding file old[0] (text old[1]) and its hidden replacement beside
    it holding new[0] (text new[1]): (target, replacement)."""
    target = tmp_path / "knowledge"
    target.mkdir()
    (target / old[0]).write_text(old[1])
    replacement = new_folder_beside(target)
    (replacement / new[0]).write_text(new[1])
    return target, replacement


def test_folder_replacement_and_logs_fail_clearly(tmp_path, monkeypatch):
    target, new = _folder_and_replacement(tmp_path, ("classnames.txt", "cat\n"), ("classnames.txt", "dog\n"))
    calls = _failing(monkeypatch, os, "replace", errno.EROFS)
    with pytest.raises(WriteError, match=rf"cannot write {target}: read-only file system; nothing already"):
        replace_folder(new, target)
    assert calls
    monkeypatch.undo()
    assert (target / "classnames.txt").read_text() == "cat\n"

    log = JsonlLog(tmp_path / "answers.jsonl")
    log.append({"a": 1})
    calls = _failing(monkeypatch, os, "fsync", errno.ENOSPC)
    with pytest.raises(WriteError, match=r"answers\.jsonl: no space left on the device; "
                                         r"nothing already written was lost \(the records already"):
        log.append({"a": 2})
    assert calls
    monkeypatch.undo()
    assert log.read()[0] == {"a": 1}


def test_atomic_torch_save_fails_clearly(tmp_path, monkeypatch):
    import torch

    calls = _failing(monkeypatch, tempfile, "mkstemp", errno.ENOSPC)
    with pytest.raises(WriteError, match=r"cannot write .*model\.pth\.tar-1: no space left on the device"):
        atomic_torch_save({"x": torch.zeros(2)}, tmp_path / "model.pth.tar-1")
    assert calls and not (tmp_path / "model.pth.tar-1").exists()


# -- modes -------------------------------------------------------------------------------------
@pytest.fixture
def umask():
    def set_umask(value):
        os.umask(value)

    old = os.umask(0o022)
    yield set_umask
    os.umask(old)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_files_and_folders_honour_the_umask(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain"
    plain.write_text("")  # what open() gives under this umask
    os.mkdir(tmp_path / "plain-dir")
    file_mode = stat.S_IMODE(plain.stat().st_mode)
    dir_mode = stat.S_IMODE((tmp_path / "plain-dir").stat().st_mode)
    assert (file_mode, dir_mode) == (0o666 & ~mask, 0o777 & ~mask)  # the independent expectation

    atomic_write_json(tmp_path / "results.json", {})
    assert stat.S_IMODE((tmp_path / "results.json").stat().st_mode) == file_mode
    import torch

    atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "model.pth.tar-1")
    assert stat.S_IMODE((tmp_path / "model.pth.tar-1").stat().st_mode) == file_mode
    new = new_folder_beside(tmp_path / "knowledge")
    atomic_write_text(new / "corpus.jsonl", "")
    replace_folder(new, tmp_path / "knowledge")
    assert stat.S_IMODE((tmp_path / "knowledge").stat().st_mode) == dir_mode
    assert stat.S_IMODE((tmp_path / "knowledge" / "corpus.jsonl").stat().st_mode) == file_mode
    JsonlLog(tmp_path / "log.jsonl").append({})
    assert stat.S_IMODE((tmp_path / "log.jsonl").stat().st_mode) == file_mode


def test_replacing_a_file_keeps_its_mode(tmp_path, umask):
    """As open(path, 'w') on an existing file would: its mode stays what the owner set."""
    path = tmp_path / "predictions.csv.report.json"
    path.write_text("{}")
    path.chmod(0o640)
    atomic_write_json(path, {"a": 1})
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and json.loads(path.read_text()) == {"a": 1}


# -- FileLock ----------------------------------------------------------------------------------
def test_file_lock_refuses_a_second_process(tmp_path):
    out = tmp_path / "predictions.csv"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from hiprompt.fileio import FileLock
        with FileLock({str(out)!r}, "tagging"):
            print("locked", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(FolderBusyError) as raised:
            with FileLock(out, "tagging"):
                pass
        message = str(raised.value)
        assert str(out) in message and f"pid {holder.pid}" in message and "tagging" in message
        with FileLock(tmp_path / "other.csv", "tagging"):  # another file in the same folder is free
            pass
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
    with FileLock(out, "tagging"):  # released when the holder exits
        pass
    assert not out.exists()  # the lock does not make the file itself


# -- messages, names and contents, each in full ------------------------------------------------
@pytest.mark.parametrize("code, expected", [
    (errno.EROFS, "read-only file system; nothing already written was lost (kept); write to a folder on a "
                  "writable file system"),
    (errno.ENOSPC, "no space left on the device; nothing already written was lost (kept); free some space, or "
                   "write elsewhere, and run again"),
    (errno.EIO, f"{os.strerror(errno.EIO)}; nothing already written was lost (kept)"),  # the system's words, no advice
])
def test_write_error_reason_and_advice(tmp_path, code, expected):
    error = WriteError(tmp_path / "f", OSError(code, os.strerror(code)), kept="kept")
    assert str(error) == f"cannot write {tmp_path / 'f'}: {expected}"
    assert (error.errno, error.strerror, error.filename) == (code, expected.split(";")[0], str(tmp_path / "f"))


def test_write_error_of_an_error_without_errno_uses_its_text(tmp_path):
    error = WriteError("out.json", OSError("the disk went away"))
    assert str(error) == ("cannot write out.json: the disk went away; nothing already written was lost (the old "
                          "file, if there was one, is intact)")


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO])
def test_write_error_survives_pickling(tmp_path, code):
    """As across a DataLoader worker or a process pool: the same message and fields."""
    import pickle

    error = WriteError(tmp_path / "f", OSError(code, os.strerror(code)), kept="kept")
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is WriteError and str(again) == str(error)
    assert (again.errno, again.strerror, again.filename) == (error.errno, error.strerror, error.filename)


def test_current_umask_reads_proc_without_changing_the_umask(monkeypatch, umask):
    from hiprompt import fileio

    umask(0o027)
    calls = []
    real_umask = os.umask
    monkeypatch.setattr(os, "umask", lambda mask: calls.append(mask) or real_umask(mask))
    assert fileio.current_umask() == 0o027 and calls == []  # Linux: read from /proc/self/status
    # without /proc: set and put back at once
    monkeypatch.setattr(fileio, "open", lambda *args, **kwargs: (_ for _ in ()).throw(OSError("no /proc")),
                        raising=False)
    assert fileio.current_umask() == 0o027 and len(calls) == 2 and calls[-1] == 0o027
    assert real_umask(0o022) == 0o027


def test_atomic_write_makes_parents_through_a_hidden_temporary_file_beside(tmp_path, monkeypatch):
    path = tmp_path / "a" / "b" / "results.json"
    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda src, dst: renames.append((src, dst)) or real_replace(src, dst))
    atomic_write_json(path, {"name": "café", "scores": [1, 2]})
    assert path.read_bytes() == '{\n  "name": "café",\n  "scores": [\n    1,\n    2\n  ]\n}\n'.encode("utf-8")
    [(tmp, dst)] = renames
    assert dst == path and os.path.dirname(tmp) == str(path.parent)
    assert os.path.basename(tmp).startswith(".results.json.") and tmp.endswith(".tmp")


def test_atomic_torch_save_writes_the_object(tmp_path):
    import torch

    atomic_torch_save({"x": torch.arange(3)}, tmp_path / "m.pt")
    assert torch.load(tmp_path / "m.pt", weights_only=True)["x"].tolist() == [0, 1, 2]


def test_file_sha256_is_the_hash_of_the_bytes(tmp_path):
    import hashlib

    from hiprompt.fileio import file_sha256

    data = bytes(range(256)) * (5 * 4096 + 3)  # over one 4 MiB block
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f") == hashlib.sha256(data).hexdigest()
    (tmp_path / "empty").write_bytes(b"")
    assert file_sha256(tmp_path / "empty") == hashlib.sha256(b"").hexdigest()


def test_new_folder_is_hidden_beside_the_target_and_a_failure_says_nothing_was_written(tmp_path, monkeypatch):
    target = tmp_path / "x" / "y" / "knowledge"
    new = new_folder_beside(target)
    assert new.is_dir() and new.parent == target.parent and new.name.startswith(".knowledge.new-")
    _failing(monkeypatch, tempfile, "mkdtemp", errno.EROFS)
    with pytest.raises(WriteError) as raised:
        new_folder_beside(target)
    assert str(raised.value) == (f"cannot write {target}: read-only file system; nothing already written was lost "
                                 "(nothing was written yet); write to a folder on a writable file system")


def test_replace_folder_swaps_the_whole_folder_and_leaves_nothing_beside(tmp_path):
    target, new = _folder_and_replacement(tmp_path, ("old.txt", "old"), ("new.txt", "new"))
    replace_folder(new, target)
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["knowledge"]  # no .old- or .new- folder left


def test_replace_folder_puts_the_old_folder_back_when_the_new_cannot_move_in(tmp_path, monkeypatch):
    target, new = _folder_and_replacement(tmp_path, ("old.txt", "old"), ("new.txt", "new"))
    real_replace, moves = os.replace, []

    def second_fails(src, dst):
        moves.append((str(src), str(dst)))
        if len(moves) == 2:
            raise OSError(errno.EACCES, os.strerror(errno.EACCES))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", second_fails)
    with pytest.raises(WriteError) as raised:
        replace_folder(new, target)
    assert str(raised.value) == (f"cannot write {target}: permission denied; nothing already written was lost "
                                 "(the old folder, if there was one, is intact); write to a folder you may write to")
    old_aside = moves[0][1]
    assert moves[0][0] == str(target) and os.path.basename(old_aside) == "knowledge"
    assert os.path.dirname(os.path.dirname(old_aside)) == str(tmp_path)
    assert os.path.basename(os.path.dirname(old_aside)).startswith(".knowledge.old-")
    assert moves[1] == (str(new), str(target)) and moves[2] == (old_aside, str(target))
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]


def test_jsonl_log_reads_past_blank_and_torn_lines_and_terminates_a_torn_end(tmp_path):
    path = tmp_path / "logs" / "deep" / "answers.jsonl"
    log = JsonlLog(path)  # makes the folders
    assert path.parent.is_dir() and log.read() == []
    path.write_bytes(b'{"a": 1}\n\n{"a": 2, "b"\n{"a": 3}\n{"a": 4')  # blank, torn-then-appended, torn end
    assert log.read() == [{"a": 1}, {"a": 3}]
    log.append({"a": "é"})
    assert path.read_bytes().endswith(b'{"a": 4\n{"a": "\xc3\xa9"}\n')  # the torn end closed, UTF-8 kept
    assert log.read() == [{"a": 1}, {"a": 3}, {"a": "é"}]
    path.write_bytes(b"{")  # a one-byte torn record
    log.append({"b": 1})
    assert path.read_bytes() == b'{\n{"b": 1}\n' and log.read() == [{"b": 1}]
    path.write_bytes(b'{"c": 1}\n')  # a whole last line: nothing added before the next
    log.append({"c": 2})
    assert path.read_bytes() == b'{"c": 1}\n{"c": 2}\n'


def test_jsonl_log_that_cannot_make_its_folder_names_the_file(tmp_path, monkeypatch):
    from pathlib import Path

    _failing(monkeypatch, Path, "mkdir", errno.EACCES)
    with pytest.raises(WriteError) as raised:
        JsonlLog(tmp_path / "a" / "log.jsonl")
    assert str(raised.value) == (f"cannot write {tmp_path / 'a' / 'log.jsonl'}: permission denied; nothing already "
                                 "written was lost (the records already in it are intact; a torn last one is skipped "
                                 "when read); write to a folder you may write to")


def test_folder_lock_records_its_holder_and_is_released(tmp_path, monkeypatch):
    from hiprompt.fileio import FolderLock

    folder = tmp_path / "run" / "deep"
    monkeypatch.setattr(sys, "argv", ["train.py"] + ["--flag"] * 40)  # 326 characters
    lock_file = folder / ".lock"
    folder.mkdir(parents=True)
    lock_file.write_text("a stale holder's long line\n")
    with FolderLock(folder, "training"):
        written = lock_file.read_text()
        assert written == f"pid {os.getpid()} (training: {' '.join(sys.argv)[:200]})\n"
        assert len(written) == len(f"pid {os.getpid()} (training: ") + 200 + 2
    first = FolderLock(folder, "training")
    with first:
        pass
    with FolderLock(folder, "training"):  # released on exit (the first lock still exists): taken again
        pass
    with FileLock(tmp_path / "predictions.csv", "tagging"):
        assert (tmp_path / ".predictions.csv.lock").read_text().startswith(f"pid {os.getpid()} (tagging: train.py")
    with FolderLock(tmp_path / "new" / "deeper", "training"):  # the folders are made
        assert (tmp_path / "new" / "deeper" / ".lock").is_file()


def test_locks_held_elsewhere_are_refused_naming_the_holder(tmp_path):
    import fcntl

    from hiprompt.fileio import FileBusyError, FileLock, FolderLock

    folder = tmp_path / "run"
    folder.mkdir()
    with open(folder / ".lock", "a+") as other:  # held through another open file, nothing written in it
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FolderBusyError) as raised:
            with FolderLock(folder, "training"):
                pass
    assert str(raised.value) == (f"{folder} is in use by another process; wait for it to finish, or write this "
                                 "training elsewhere")
    out = tmp_path / "predictions.csv"
    with open(tmp_path / ".predictions.csv.lock", "a+") as other:
        other.write("pid 1 (tagging: hiprompt tag)\n")
        other.flush()
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(FileBusyError) as raised:
            with FileLock(out, "tagging"):
                pass
    assert str(raised.value) == (f"{out} is being written by pid 1 (tagging: hiprompt tag); wait for it to finish, "
                                 "or write this tagging to another file")


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_a_lock_that_cannot_be_made_names_what_was_locked(tmp_path, monkeypatch, kind):
    from pathlib import Path

    from hiprompt.fileio import FileLock, FolderLock

    _failing(monkeypatch, Path, "mkdir", errno.EROFS)
    target = tmp_path / "a" / "out"
    lock = FolderLock(target, "training") if kind == "folder" else FileLock(target, "tagging")
    with pytest.raises(WriteError) as raised:
        with lock:
            pass
    name = target / ".lock" if kind == "folder" else f"{target} (its lock file .out.lock)"
    assert str(raised.value) == (f"cannot write {name}: read-only file system; nothing already written was lost "
                                 "(nothing was written yet); write to a folder on a writable file system")


def test_a_lock_whose_holder_line_cannot_be_written_is_released_and_named(tmp_path, monkeypatch):
    from hiprompt.fileio import FolderLock

    folder = tmp_path / "run"
    with monkeypatch.context() as patch:
        patch.setattr(os, "getpid", lambda: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full")))
        with pytest.raises(WriteError) as raised:
            with FolderLock(folder, "training"):
                pass
    assert str(raised.value) == (f"cannot write {folder / '.lock'}: no space left on the device; nothing already "
                                 "written was lost (nothing was written yet); free some space, or write elsewhere, "
                                 "and run again")
    with FolderLock(folder, "training"):  # the failed one let go of the lock
        pass
