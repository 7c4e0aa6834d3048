"""Benchmark: GTSRB's first load (decode from the imported files) against its second load (the
disk cache), side by side in one run; target ratio >= 10x. Also times generating 43 x 200
synthetic signs (target < 60 s).

Uses the GTSRB already installed in $TLLAB_DATA_DIR if there is one; otherwise imports
../shared/datasets/gtsrb/GTSRB_Final_Training_Images.zip into a temporary data root (about
20 s) and removes it afterwards. Skips politely when neither exists.

    .venv/bin/python bench/bench_dataset_cache.py
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
SHARED_ZIP = REPO_ROOT.parent / "shared" / "datasets" / "gtsrb" / "GTSRB_Final_Training_Images.zip"
CACHED_REPEATS = 5
TARGET_RATIO = 10.0
SYNTHETIC_TARGET_SECONDS = 60.0


def main() -> int:
    from core import datasets
    from core.datasets import cache, registry, synthetic_signs

    temporary = None
    failures = []
    if registry.status("gtsrb") != "ready":
        if not SHARED_ZIP.exists():
            print(f"SKIP: GTSRB is not installed and {SHARED_ZIP} is absent")
            return 0
        temporary = tempfile.mkdtemp(prefix="tllab-bench-")
        os.environ["TLLAB_DATA_DIR"] = temporary
        started = time.perf_counter()
        datasets.get("gtsrb", [SHARED_ZIP])
        print(f"imported {SHARED_ZIP.name} into {temporary} in {time.perf_counter() - started:.1f} s")
    try:
        cache.clear("gtsrb")
        started = time.perf_counter()
        first = datasets.load("gtsrb", "train")
        first_seconds = time.perf_counter() - started
        cached = []
        for _ in range(CACHED_REPEATS):
            started = time.perf_counter()
            second = datasets.load("gtsrb", "train")
            cached.append(time.perf_counter() - started)
        assert (first.images == second.images).all() and first.file_names == second.file_names
        second_seconds = statistics.median(cached)
        ratio = first_seconds / second_seconds
        print(f"GTSRB train split: {len(first):,} images {first.images.shape[1:]}")
        print(f"first load (decode {len(first):,} .ppm files, cache cleared): {first_seconds:.2f} s")
        print(f"second load (disk cache, median of {CACHED_REPEATS}): {second_seconds:.3f} s")
        print(f"ratio: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x) {'OK' if ratio >= TARGET_RATIO else 'BELOW TARGET'}")
        if ratio < TARGET_RATIO:
            failures.append(f"GTSRB cache ratio {ratio:.1f}x < {TARGET_RATIO:.0f}x")
    finally:
        if temporary:
            shutil.rmtree(temporary, ignore_errors=True)
    seconds = synthetic_signs.timed_generation(200)
    print(f"synthetic signs: 43 x 200 images generated in {seconds:.1f} s "
          f"(target < {SYNTHETIC_TARGET_SECONDS:.0f} s) {'OK' if seconds < SYNTHETIC_TARGET_SECONDS else 'SLOW'}")
    if seconds >= SYNTHETIC_TARGET_SECONDS:
        failures.append(f"synthetic generation {seconds:.1f} s >= {SYNTHETIC_TARGET_SECONDS:.0f} s")
    for failure in failures:
        print(f"MISSED TARGET: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
