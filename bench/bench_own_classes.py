"""Your own classes: seconds from pressing Train to a usable model, against the 30 s target.

Does what the page's Train button does, with the page's own code (``core.own_classes``):
a collection of ``--classes`` x ``--per-class`` photos becomes a custom dataset, then a
MobileNetV2 feature-extraction job runs through ``core.jobs.submit`` (a real worker process).
Measured twice: the first press computes the backbone's features; the second press (same
pictures) reuses the dataset and reads the features from the bottleneck cache, which is the
case the target is about. Prints both times and the ratio to the target; exits 1 above it.

Photos: cats and dogs from ``../shared/datasets/dogs-vs-cats/train-2000.zip`` and, as a third
class, GTSRB signs (``--classes 3``). Weights: ``--weights`` (a Keras MobileNetV2 no-top
file; default ``../shared/weights/imagenet/mobilenet_v2_1.0_224_imagenet_no_top.weights.h5``) is
imported into the temporary data root with ``core.weights.import_file`` and trained with
``weights="imagenet"``, as the page does.

Usage::

    python bench/bench_own_classes.py

Runs in temporary data/runs roots; about a minute and a half on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import zipfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "datasets"
DEFAULT_WEIGHTS = (Path(__file__).resolve().parent.parent.parent / "shared" / "weights" / "imagenet"
                   / "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5")
TARGET_SECONDS = 30.0


def photos(per_class: int, classes: int) -> dict[str, list[tuple[str, bytes]]]:
    """``{label: [(file name, bytes)]}`` from the shared archives (the last files, so never
    the first ones a test might use)."""
    chosen: dict[str, list[tuple[str, bytes]]] = {}
    with zipfile.ZipFile(SHARED / "dogs-vs-cats" / "train-2000.zip") as archive:
        names = sorted(name for name in archive.namelist() if name.endswith(".jpg"))
        for label in ("cat", "dog")[:classes]:
            members = [name for name in names if name.rsplit("/", 1)[-1].startswith(f"{label}.")]
            chosen[label] = [(member, archive.read(member)) for member in members[-per_class:]]
    if classes >= 3:
        with zipfile.ZipFile(SHARED / "gtsrb" / "GTSRB_Final_Training_Images.zip") as archive:
            members = sorted(name for name in archive.namelist() if "/00014/" in name and name.endswith(".ppm"))
            step = max(1, len(members) // per_class)
            chosen["stop sign"] = [(member, archive.read(member)) for member in members[::step][:per_class]]
    return chosen


def press_train(collection, previous) -> tuple[float, dict, dict]:
    """One press of Train: dataset (or reuse), submit, wait; returns (seconds, record, results)."""
    from core import jobs, own_classes, runs

    pressed = time.time()
    dataset, reused = own_classes.dataset_for(collection, previous)
    backbone, _ = own_classes.best_backbone()
    run_id = jobs.submit(own_classes.training_config(dataset, backbone))
    while jobs.status(run_id)["state"] not in runs.TERMINAL_STATES:
        time.sleep(0.2)
    status = jobs.status(run_id)
    if status["state"] != runs.COMPLETED:
        raise SystemExit(f"run {run_id} ended {status['state']}: {status.get('error')}")
    seconds = time.time() - pressed
    record = {"digest": own_classes.collection_digest(collection), "dataset": dataset}
    results = runs.read_results(runs.run_path(run_id)) or {}
    results["reused"] = reused
    results["run_id"] = run_id
    return seconds, record, results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", type=int, default=3, choices=(2, 3))
    parser.add_argument("--per-class", type=int, default=20)
    parser.add_argument("--weights", default=str(DEFAULT_WEIGHTS), help="MobileNetV2 no-top weights file")
    arguments = parser.parse_args(argv)
    if not SHARED.is_dir():
        print(f"{SHARED} is absent: this benchmark needs the shared photos", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="bench-own-") as root:
        os.environ["TLLAB_DATA_DIR"] = str(Path(root) / "data")
        os.environ["TLLAB_RUNS_DIR"] = str(Path(root) / "runs")
        from core import own_classes

        from core import weights

        weights.import_file("mobilenetv2", arguments.weights)
        collection = own_classes.new_collection()[:0]
        for label, files in photos(arguments.per_class, arguments.classes).items():
            own_class = own_classes.add_class(collection, label)
            for name, data in files:
                own_classes.add_image(own_class, data, name, "upload")
        first, record, first_results = press_train(collection, None)
        second, _, second_results = press_train(collection, record)
    shape = f"{arguments.classes} classes x {arguments.per_class} images at {own_classes.IMAGE_SIZE} px"
    print(f"{'':<44}{'seconds':>10}{'/ target':>10}{'val acc':>10}")
    for what, seconds, results in (("first Train (features computed)", first, first_results),
                                   ("second Train (features cached)", second, second_results)):
        accuracy = results.get("best_val_accuracy")
        print(f"{what:<44}{seconds:>10.1f}{seconds / TARGET_SECONDS:>10.2f}"
              f"{accuracy if accuracy is None else f'{accuracy:.3f}':>10}")
    print(f"{shape}; target: Train to usable model <= {TARGET_SECONDS:.0f} s with cached features; "
          f"cache hit on the second press: {second_results.get('bottleneck_cache_hit')}")
    return 0 if second <= TARGET_SECONDS else 1


if __name__ == "__main__":
    sys.exit(main())
