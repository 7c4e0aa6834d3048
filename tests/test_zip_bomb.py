"""A GTSRB-layout zip bomb (one 1 GiB member of zeros, about 1 MB on disk) is refused by the CLI
within seconds, in bounded memory, with one clear line, and nothing is installed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import zipfile

from core.datasets import base
from tests.conftest import REPO_ROOT
from tests import test_datasets_support as fixtures

BOMB_MEMBER_BYTES = 1024 ** 3  # 1 GiB of zeros
CHUNK_BYTES = 16 * 1024 * 1024
MAX_SECONDS = 60
MAX_PEAK_BYTES = 1.5 * 1024 ** 3
# Runs the CLI as the only child of a fresh interpreter, so that RUSAGE_CHILDREN's peak is the
# CLI's own (this pytest process may have run larger children before).
MEASURE = """
import json, resource, subprocess, sys, time
started = time.monotonic()
result = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"returncode": result.returncode, "stdout": result.stdout, "stderr": result.stderr,
                  "seconds": time.monotonic() - started,
                  "peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}))
"""


def write_gtsrb_bomb(path):
    """Class 00000 with a CSV listing one image whose member is 1 GiB of zeros (streamed)."""
    csv_text = fixtures.GTSRB_HEADER + "\n00000_00000.ppm;32;32;2;2;29;29;0\n"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        archive.writestr(fixtures.TRAIN_PREFIX + "00000/GT-00000.csv", csv_text)
        info = zipfile.ZipInfo(fixtures.TRAIN_PREFIX + "00000/00000_00000.ppm")
        info.compress_type = zipfile.ZIP_DEFLATED
        zeros = bytes(CHUNK_BYTES)
        with archive.open(info, "w", force_zip64=True) as member:
            for _ in range(BOMB_MEMBER_BYTES // CHUNK_BYTES):
                member.write(zeros)
    return path


def _listing(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*")
                  if base.PROGRESS_FOLDER not in path.relative_to(root).parts)


def test_gigabyte_zip_bomb_is_refused_fast_in_bounded_memory(tmp_path, isolated_roots):
    data = isolated_roots["data"]
    good = fixtures.gtsrb_training_zip(tmp_path / "good", classes=(1,), tracks=2, frames=2)
    environment = dict(os.environ, TLLAB_DATA_DIR=str(data))
    installed = subprocess.run([sys.executable, "-m", "core.datasets", "get", "gtsrb", "--from",
                                str(good), "--quiet"], cwd=REPO_ROOT, env=environment,
                               capture_output=True, text=True, timeout=120)
    assert installed.returncode == 0, installed.stderr
    manifest_before = (data / "gtsrb" / base.MANIFEST_NAME).read_bytes()
    before = _listing(data)

    bomb = write_gtsrb_bomb(tmp_path / "bomb.zip")
    assert bomb.stat().st_size < 2 * 1024 * 1024  # ~1 MB on disk for 1 GiB inside
    command = [sys.executable, "-m", "core.datasets", "get", "gtsrb", "--from", str(bomb), "--quiet"]
    started = time.monotonic()
    measured = subprocess.run([sys.executable, "-c", MEASURE, *command], cwd=REPO_ROOT,
                              env=environment, capture_output=True, text=True, timeout=2 * MAX_SECONDS)
    report = json.loads(measured.stdout)
    seconds = time.monotonic() - started

    assert report["returncode"] == 1
    lines = report["stderr"].strip().splitlines()
    assert len(lines) == 1, report["stderr"]
    assert lines[0].startswith("error: ") and "zip bomb" in lines[0] and "00000_00000.ppm" in lines[0]
    assert "Traceback" not in report["stderr"] + report["stdout"]
    assert seconds < MAX_SECONDS
    assert report["peak_kib"] * 1024 < MAX_PEAK_BYTES, f"peak {report['peak_kib'] / 1024:.0f} MiB"
    # nothing installed: the earlier good install is intact, no staging left
    assert (data / "gtsrb" / base.MANIFEST_NAME).read_bytes() == manifest_before
    assert _listing(data) == before
    progress = json.loads((data / base.PROGRESS_FOLDER / "gtsrb.json").read_text())
    assert progress["state"] == "failed" and "zip bomb" in progress["message"]
