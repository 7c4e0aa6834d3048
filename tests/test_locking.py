"""Correct locking (issue 11, part 4): cache metadata under a lock; a lock that times out raises."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os

import pytest

from core import files
from core.training import bottleneck

PROCESSES = 4
UPDATES_PER_PROCESS = 25


def _update_many(folder: str, worker: int) -> None:
    for index in range(UPDATES_PER_PROCESS):
        bottleneck.update_meta(folder, f"split-{worker}-{index}", {"worker": worker, "index": index})


def test_concurrent_meta_updates_from_processes_lose_nothing(tmp_path):
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_update_many, args=(str(tmp_path), worker))
               for worker in range(PROCESSES)]
    for process in workers:
        process.start()
    for process in workers:
        process.join(timeout=60)
        assert process.exitcode == 0
    meta = json.loads((tmp_path / bottleneck.META_FILE).read_text())
    assert len(meta) == PROCESSES * UPDATES_PER_PROCESS
    assert meta["split-3-24"] == {"worker": 3, "index": 24}


def test_meta_update_times_out_instead_of_writing_unlocked(tmp_path, monkeypatch):
    bottleneck.update_meta(tmp_path, "train", {"shape": [1, 2]})
    before = (tmp_path / bottleneck.META_FILE).read_text()
    holder = os.open(tmp_path / bottleneck.META_LOCK_FILE, os.O_RDWR)
    fcntl.flock(holder, fcntl.LOCK_EX)
    monkeypatch.setattr(files, "LOCK_TIMEOUT_SECONDS", 0.2)
    try:
        with pytest.raises(TimeoutError, match=r"could not lock .*\.meta\.json\.lock within 0\.2 s"):
            bottleneck.update_meta(tmp_path, "val", {"shape": [3, 4]})
    finally:
        os.close(holder)
    assert (tmp_path / bottleneck.META_FILE).read_text() == before


def test_cached_features_records_both_splits_in_meta(tmp_path):
    import numpy as np

    labels = np.array([0, 1, 1])
    features = np.zeros((1, 3, 2), dtype="float16")
    for split in ("train", "val"):
        _, info = bottleneck.cached_features("key", split, lambda: features, labels, root=tmp_path)
        assert info["hit"] is False
    meta = json.loads((tmp_path / "key" / bottleneck.META_FILE).read_text())
    assert sorted(meta) == ["train", "val"]
    assert meta["val"]["shape"] == [1, 3, 2]
