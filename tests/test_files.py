"""The one atomic writer and the one JSON reader (``core/files.py``)."""

from __future__ import annotations

import numpy as np
import pytest

from core import files, runs
from core.datasets import base


def test_write_atomic_keeps_the_suffix_for_np_save_and_leaves_no_temp_file(tmp_path):
    tmp_path = tmp_path / "folder"
    target = tmp_path / "features.npy"
    files.write_atomic(target, lambda temp: np.save(temp, np.arange(3)))
    np.testing.assert_array_equal(np.load(target), [0, 1, 2])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["features.npy"]


def test_a_failing_writer_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    tmp_path = tmp_path / "folder"
    target = tmp_path / "status.json"
    files.write_json_atomic(target, {"state": "running"})

    def broken(temp):
        temp.write_text("{half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.write_atomic(target, broken)
    assert files.read_json(target) == {"state": "running"}
    assert sorted(path.name for path in tmp_path.iterdir()) == ["status.json"]


def test_read_json_has_one_error_policy_that_callers_translate(tmp_path):
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="config.json in .* is not valid JSON"):
        files.read_json(bad)
    with pytest.raises(FileNotFoundError):
        files.read_json(tmp_path / "absent.json")
    with pytest.raises(runs.RunError, match="config.json in .* is not valid JSON"):
        runs.read_json(bad)
    with pytest.raises(runs.RunError, match="absent.json is missing"):
        runs.read_json(tmp_path / "absent.json")
    assert base.read_json(bad) is None and base.read_json(tmp_path / "absent.json") is None


class OwnTimeout(Exception):
    """A caller's own error class for a lock that stays taken."""


def test_file_lock_raises_the_callers_error_only_for_the_lock_itself(tmp_path):
    import fcntl
    import os

    lock_path = tmp_path / "folder" / ".lock"
    with files.file_lock(lock_path, timeout=0):
        assert lock_path.is_file()  # created, with its folder
    holder = os.open(lock_path, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    entered = []
    try:
        with pytest.raises(OwnTimeout, match=r"could not lock .*\.lock within 0\.1 s"):
            with files.file_lock(lock_path, timeout=0.1, on_timeout=lambda error: OwnTimeout(str(error))):
                entered.append(True)
    finally:
        os.close(holder)
    assert entered == []
    with pytest.raises(TimeoutError, match="from the block"):  # an error inside is not translated
        with files.file_lock(lock_path, on_timeout=lambda error: OwnTimeout(str(error))):
            raise TimeoutError("from the block")


def test_file_lock_without_create_locks_a_folder_and_creates_nothing(tmp_path):
    tmp_path = tmp_path / "run"
    tmp_path.mkdir()
    with files.file_lock(tmp_path, timeout=0, create=False):
        assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        with files.file_lock(tmp_path / "missing", create=False):
            pass
    assert not (tmp_path / "missing").exists()
