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

from hiprompt.fileio import (FileLock, FolderBusyError, JsonlLog, WriteError, atomic_torch_save, atomic_write_json,
                             atomic_write_text, new_folder_beside, replace_folder)


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

def test_folder_replacement_and_logs_fail_clearly(tmp_path, monkeypatch):
    target = tmp_path / "knowledge"
    target.mkdir()
    (target / "classnames.txt").write_text("cat\n")
    new = new_folder_beside(target)
    (new / "classnames.txt").write_text("dog\n")
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
