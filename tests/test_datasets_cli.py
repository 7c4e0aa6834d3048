"""``python -m core.datasets`` as a real subprocess, and the background ``get`` the page uses."""

import os
import subprocess
import sys
import time

from core.datasets import background, progress, registry
from tests.conftest import REPO_ROOT
from tests import test_datasets_support as fixtures


def _cli(*arguments, data_dir):
    return subprocess.run([sys.executable, "-m", "core.datasets", *map(str, arguments)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env=dict(os.environ, TLLAB_DATA_DIR=str(data_dir)))


def test_get_info_delete_round_trip(tmp_path, isolated_roots):
    data = isolated_roots["data"]
    training = fixtures.gtsrb_training_zip(tmp_path, tracks=5, frames=2)
    images_zip, gt_zip = fixtures.gtsrb_test_zips(tmp_path / "t")
    result = _cli("get", "gtsrb", "--from", training, data_dir=data)
    assert result.returncode == 0, result.stderr
    assert "extract training images: 40 of 40" in result.stderr
    result = _cli("get", "gtsrb", "--from", images_zip, "--from", gt_zip, "--quiet", data_dir=data)
    assert result.returncode == 0, result.stderr
    info = _cli("info", "gtsrb", data_dir=data)
    assert info.returncode == 0
    assert "train + val: 40 training images in 4 classes" in info.stdout
    assert "no track is in both" in info.stdout
    assert "test        6 images" in info.stdout
    assert "   14  Stop" in info.stdout
    assert progress.read("gtsrb")["state"] == "done"
    result = _cli("delete", "gtsrb", data_dir=data)
    assert result.returncode == 0 and "deleted" in result.stdout
    assert registry.status("gtsrb") == "absent"


def test_errors_exit_1_with_a_message(tmp_path, isolated_roots):
    result = _cli("get", "gtsrb", "--from", tmp_path / "missing.zip", data_dir=isolated_roots["data"])
    assert result.returncode == 1
    assert "error:" in result.stderr and "does not exist" in result.stderr
    assert progress.read("gtsrb")["state"] == "failed"
    assert _cli("get", "mnist", data_dir=isolated_roots["data"]).returncode == 2


def test_background_get_runs_in_another_process_and_reports_progress(tmp_path, isolated_roots):
    archive = fixtures.write_zip(tmp_path / "train.zip", fixtures.dogs_flat_members(per_class=4))
    pid = background.start_get("dogs-vs-cats", [str(archive)])
    assert pid != os.getpid()
    assert registry.status("dogs-vs-cats") == "downloading"  # at once, before the child writes
    deadline = time.monotonic() + 90
    while progress.is_running("dogs-vs-cats") and time.monotonic() < deadline:
        time.sleep(0.2)
    record = progress.read("dogs-vs-cats")
    assert record["state"] == "done", background.read_log("dogs-vs-cats")
    assert record["pid"] == pid
    assert registry.status("dogs-vs-cats") == "ready"
    assert "installed" in background.read_log("dogs-vs-cats")
