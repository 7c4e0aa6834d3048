"""Run folders: atomic status, append-only metrics, guarded transitions, broken folders listed."""

from __future__ import annotations

import json
import multiprocessing
import sys
import threading
import time
import types

import pytest

from core import runs

CONFIG = {"model": "lenet5", "preset": "seed", "dataset": "synthetic-signs", "epochs": 2}


def _hammer_status(run_dir: str, count: int) -> None:
    """Writes ``count`` large status updates (runs in another process)."""
    padding = "x" * 20_000  # big enough that a non-atomic write would be seen half-done
    for index in range(count):
        runs.write_status(run_dir, state=runs.RUNNING, counter=index, padding=padding)


def test_concurrent_reader_never_sees_a_partial_status(isolated_roots, monkeypatch):
    run_dir = runs.create_run(CONFIG)
    # A spawned child re-runs the parent's __main__ file; after an AppTest in this process that
    # is a page script, so the child gets a blank __main__ instead.
    monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))
    writer = multiprocessing.get_context("spawn").Process(target=_hammer_status, args=(str(run_dir), 300))
    writer.start()
    reads = 0
    try:
        while writer.is_alive() or reads == 0:
            status = runs.read_status(run_dir)  # raises RunError on a half-written file
            assert status["state"] in (runs.QUEUED, runs.RUNNING)
            reads += 1
    finally:
        writer.join(timeout=60)
    assert writer.exitcode == 0
    assert runs.read_status(run_dir)["counter"] == 299
    assert reads > 10
    leftovers = [path.name for path in run_dir.iterdir() if path.name.endswith(".tmp")]
    assert leftovers == []


def test_locked_updates_from_threads_lose_no_field(isolated_roots):
    run_dir = runs.create_run(CONFIG)

    def writer(name):
        for index in range(40):
            runs.update_status(run_dir, **{f"{name}_{index}": index})

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("heartbeat", "progress", "watcher")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    status = runs.read_status(run_dir)
    assert all(f"{name}_{index}" in status for name in ("heartbeat", "progress", "watcher") for index in range(40))


def test_guarded_transition_only_from_the_given_states(isolated_roots):
    run_dir = runs.create_run(CONFIG)
    assert runs.update_status(run_dir, only_if_state=(runs.RUNNING,), state=runs.COMPLETED) is None
    assert runs.read_status(run_dir)["state"] == runs.QUEUED
    written = runs.update_status(run_dir, only_if_state=(runs.QUEUED,), state=runs.CANCELLED)
    assert written["state"] == runs.CANCELLED
    with pytest.raises(ValueError, match="state must be one of"):
        runs.write_status(run_dir, state="exploded")


def test_config_is_written_once_and_status_starts_queued(isolated_roots):
    run_dir = runs.create_run(CONFIG)
    assert runs.read_config(run_dir) == CONFIG
    assert runs.read_status(run_dir)["state"] == runs.QUEUED
    with pytest.raises(FileExistsError):
        open(run_dir / runs.CONFIG_FILE, "x").close()


def test_metrics_are_appended_and_a_half_written_line_is_ignored(isolated_roots):
    run_dir = runs.create_run(CONFIG)
    runs.append_metrics(run_dir, {"epoch": 1, "loss": 1.5, "accuracy": 0.5, "val_loss": 1.6,
                                  "val_accuracy": 0.4, "learning_rate": 0.001, "epoch_seconds": 3.0})
    runs.append_metrics(run_dir, {"epoch": 2, "loss": 1.0, "accuracy": 0.7, "val_accuracy": float("nan")})
    with open(run_dir / runs.METRICS_FILE, "a") as stream:
        stream.write("3,0.9,0.8")  # a writer caught mid-line
    metrics = runs.read_metrics(run_dir)
    assert list(metrics.columns) == list(runs.METRICS_COLUMNS)
    assert metrics["epoch"].tolist() == [1, 2]
    assert metrics["val_accuracy"].isna().tolist() == [False, True]


def test_broken_folders_are_listed_as_broken_never_raised(isolated_roots):
    root = isolated_roots["runs"]
    good = runs.create_run(CONFIG)
    runs.write_status(good, state=runs.COMPLETED, started_at="2026-01-01T10:00:00+00:00",
                      ended_at="2026-01-01T10:02:00+00:00")
    runs.append_metrics(good, {"epoch": 1, "val_accuracy": 0.9})
    runs.write_results(good, {"test_accuracy": 0.88})
    (root / "empty-folder").mkdir()
    half = root / "half-written"
    half.mkdir()
    (half / runs.CONFIG_FILE).write_text(json.dumps(CONFIG))
    (half / runs.STATUS_FILE).write_text('{"state": "runn')
    unknown_state = root / "unknown-state"
    unknown_state.mkdir()
    (unknown_state / runs.CONFIG_FILE).write_text(json.dumps(CONFIG))
    (unknown_state / runs.STATUS_FILE).write_text(json.dumps({"state": "sleeping"}))
    bad_metrics = runs.create_run(CONFIG)
    (bad_metrics / runs.METRICS_FILE).write_text('epoch,loss\n1,"unterminated\n')
    (root / ".slots").mkdir()  # internal folders are not runs

    summaries = {summary.run_id: summary for summary in runs.list_runs()}
    assert set(summaries) == {good.name, "empty-folder", "half-written", "unknown-state", bad_metrics.name}
    assert summaries[good.name].broken is False
    assert summaries[good.name].best_val_accuracy == 0.9
    assert summaries[good.name].test_accuracy == 0.88
    assert summaries[good.name].duration_seconds == 120
    for name in ("empty-folder", "half-written", "unknown-state", bad_metrics.name):
        assert summaries[name].broken and summaries[name].state == "broken", name
        assert summaries[name].error
    assert "config.json is missing" in summaries["empty-folder"].error


def test_run_lock_raises_on_a_hung_holder_and_never_writes_unlocked(isolated_roots):
    import fcntl
    import os

    run_dir = runs.create_run(CONFIG)
    before = (run_dir / runs.STATUS_FILE).read_text()
    holder = os.open(str(run_dir), os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX)  # like a stopped process inside the lock
    entered = []
    try:
        started = time.monotonic()
        with pytest.raises(runs.RunLockTimeout, match=r"could not lock run folder .* within 0\.3 s"):
            with runs.run_lock(run_dir, timeout=0.3):
                entered.append(True)
        assert 0.3 <= time.monotonic() - started < 3
        assert entered == []  # the block never ran without the lock
        assert isinstance(runs.RunLockTimeout("x"), TimeoutError)
        assert isinstance(runs.RunLockTimeout("x"), runs.RunError)
    finally:
        os.close(holder)
    assert (run_dir / runs.STATUS_FILE).read_text() == before
    with runs.run_lock(run_dir, timeout=0.3):  # free again once the holder is gone
        entered.append(True)
    assert entered == [True]


def test_class_names_round_trip(isolated_roots):
    run_dir = runs.create_run(CONFIG)
    assert runs.read_class_names(run_dir) is None
    runs.write_class_names(run_dir, ["stop", "yield"])
    assert runs.read_class_names(run_dir) == ["stop", "yield"]


def test_run_path_is_contained_in_the_runs_root(isolated_roots, tmp_path, monkeypatch):
    root = isolated_roots["runs"].resolve()
    run_dir = runs.create_run({"model": "lenet5", "dataset": "gtsrb"})
    assert runs.run_path(run_dir.name) == run_dir
    assert runs.run_path(run_dir) == run_dir
    assert runs.run_path(str(run_dir)) == run_dir
    monkeypatch.chdir(root)
    assert runs.run_path(f"./{run_dir.name}") == run_dir  # a relative folder inside the root
    for hostile in ("../outside", "../../etc", "/etc", "a/../../outside", f"{run_dir}/..", "..", ".",
                    "", ".slots", "a\\..\\b", "x" * 300):
        with pytest.raises(ValueError):
            runs.run_path(hostile)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / runs.CONFIG_FILE).write_text("{}")
    (root / "linked").symlink_to(outside)
    with pytest.raises(ValueError, match="points outside the runs root"):
        runs.run_path("linked")
    with pytest.raises(ValueError, match="outside the runs root"):
        runs.delete_run(outside)
    assert (outside / runs.CONFIG_FILE).exists()
    (outside / runs.STATUS_FILE).write_text('{"state": "RUNNING"}')
    # Both scans of the runs root skip the link (the job queue must not count its "run").
    assert [summary.run_id for summary in runs.list_runs()] == [run_dir.name]
    assert [folder.name for folder, _ in runs.run_statuses(root)] == [run_dir.name]
    runs.delete_run(run_dir.name)
    assert not run_dir.exists()


def test_run_statuses_pass_over_hidden_and_unreadable_folders(isolated_roots):
    root = isolated_roots["runs"]
    first = runs.create_run(CONFIG)
    second = runs.create_run(CONFIG)
    (root / ".slots").mkdir()
    (root / "half-written").mkdir()
    (root / "half-written" / runs.STATUS_FILE).write_text("{half")
    (root / "stray.txt").write_text("not a run")
    found = list(runs.run_statuses(root))
    assert [entry.name for entry, _ in found] == sorted([first.name, second.name])
    assert all(status["state"] == runs.read_status(entry)["state"] for entry, status in found)
