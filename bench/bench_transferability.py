"""Transferability scores: the judged check, and their validation against trained accuracy.

Default (the judged check, about 2 minutes on 2 cores): on Dogs vs Cats with 400 images at
224 px, ``imagenet:mobilenetv2`` and ``imagenet:mobilenet`` must both beat the untrained
``random:mobilenetv2`` with LogME and with LEEP, each source within 180 s (scores recomputed,
features from the bottleneck cache when present; ``--cold`` clears this benchmark's feature
cache first). Prints each source's margin over the control side by side.

``--validate`` (about 15 minutes): for two targets (Dogs vs Cats; a 10-class GTSRB subset) and
five sources (the two ImageNet MobileNets, their seeded random controls, a LeNet trained on the
synthetic signs), trains one small feature-extraction run per source and target with
``python -m core.train`` (400 training / 400 validation images, 96 px, no augmentation), scores
each source with LogME, LEEP and H-score on the same 400 training images, and prints the
Spearman rank correlation between each metric and the validation accuracy reached, per target.
The exact train and score commands are printed, and the table is written to
``artifacts/transferability_validation.json``.

Needs Dogs vs Cats (and GTSRB for ``--validate``) and the MobileNet weights installed:
``python -m core.datasets get ...``, ``python -m core.weights get mobilenetv2 --from FILE``.
Exits 1 when the judged check fails; prints "skipped" and exits 0 when the data or weights are
not installed (``make bench`` on a fresh clone).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from core import paths, runs  # noqa: E402
from core import transferability as tr  # noqa: E402

JUDGED_SOURCES = ("imagenet:mobilenetv2", "imagenet:mobilenet")
CONTROL = "random:mobilenetv2"
JUDGED_METRICS = (tr.LOGME, tr.LEEP)
MAX_SECONDS_PER_SOURCE = 180.0
MAX_IMAGES = 400

VALIDATION_IMAGE_SIZE = 96
VALIDATION_TRAIN_SIZE = 400
VALIDATION_VALID_SIZE = 400
VALIDATION_EPOCHS = 30
GTSRB_CLASSES = (1, 2, 4, 5, 9, 10, 12, 13, 25, 38)  # speed limits, no passing, priority, yield, road work, keep right
TARGETS = (("dogs-vs-cats", None), ("gtsrb", GTSRB_CLASSES))
LENET_SOURCE_EPOCHS = 8
EXPERIMENT_TAG = "transferability-validation"
ARTIFACT = REPO_ROOT / "artifacts" / "transferability_validation.json"


def judged_check(cold: bool) -> int:
    """Scores the judged sources and the control; returns the exit status."""
    missing = [source for source in JUDGED_SOURCES
               if tr.imagenet_weights(tr.parse_source(source).name) is None]
    if missing:
        print(f"skipped: no ImageNet weights for {missing}: python -m core.weights get NAME --from FILE")
        return 0
    if cold:
        for folder in tr.bottleneck_cache_folders("dogs-vs-cats"):
            shutil.rmtree(folder, ignore_errors=True)
    failures = []
    print(f"{'metric':8s} {'source':24s} {'score':>10s} {'control':>10s} {'margin':>8s} {'seconds':>8s}")
    for metric in JUDGED_METRICS:
        control = tr.score_details(CONTROL, "dogs-vs-cats", metric, MAX_IMAGES, use_cache=False)
        print(f"{metric:8s} {CONTROL:24s} {control['score']:10.4f} {'':>10s} {'':>8s} {control['seconds']:8.1f}")
        if control["seconds"] > MAX_SECONDS_PER_SOURCE:
            failures.append(f"{CONTROL} {metric} took {control['seconds']:.0f} s")
        for source in JUDGED_SOURCES:
            details = tr.score_details(source, "dogs-vs-cats", metric, MAX_IMAGES, use_cache=False)
            margin = details["score"] - control["score"]
            print(f"{metric:8s} {source:24s} {details['score']:10.4f} {control['score']:10.4f} "
                  f"{margin:+8.4f} {details['seconds']:8.1f}")
            if margin <= 0:
                failures.append(f"{source} {metric} {details['score']:.4f} <= control {control['score']:.4f}")
            if details["seconds"] > MAX_SECONDS_PER_SOURCE:
                failures.append(f"{source} {metric} took {details['seconds']:.0f} s")
    for failure in failures:
        print(f"MISSED: {failure}")
    print("judged check:", "passed" if not failures else "FAILED")
    return 1 if failures else 0


# --- validation -----------------------------------------------------------------------------------

def _train(arguments: list[str]) -> tuple[Path, str]:
    command = [sys.executable, "-m", "core.train", *arguments]
    shown = "python -m core.train " + " ".join(arguments)
    print(f"$ {shown}", flush=True)
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)
    if completed.returncode != 0:
        raise RuntimeError(f"training failed: {completed.stderr[-2000:]}")
    return Path(completed.stdout.strip().splitlines()[-1]), shown


def _random_weights_file(backbone: str) -> Path:
    """The seeded random network ``random:BACKBONE`` scores, saved so a run can start from it."""
    path = paths.data_dir() / "validation" / f"random_{backbone}_seed0.weights.h5"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        models = tr.load_source(f"{tr.RANDOM_PREFIX}{backbone}", image_size=VALIDATION_IMAGE_SIZE)
        models.extractor.layers[-1].save_weights(path)
    return path


def _existing_run(config_subset: dict) -> Path | None:
    for summary in runs.list_runs():
        if summary.broken or summary.state != runs.COMPLETED:
            continue
        if all(summary.config.get(key) == value for key, value in config_subset.items()):
            return summary.path
    return None


def _lenet_source() -> tuple[Path, str]:
    found = _existing_run({"model": "lenet5", "dataset": "synthetic-signs", "preset": "seed",
                           "epochs": LENET_SOURCE_EPOCHS})
    arguments = ["--model", "lenet5", "--preset", "seed", "--dataset", "synthetic-signs",
                 "--epochs", str(LENET_SOURCE_EPOCHS)]
    if found:
        return found, "python -m core.train " + " ".join(arguments)
    return _train(arguments)


def _feature_extraction_run(source: str, dataset: str, classes, lenet_dir: Path) -> tuple[Path, str]:
    common = ["--dataset", dataset, "--train-size", str(VALIDATION_TRAIN_SIZE),
              "--valid-size", str(VALIDATION_VALID_SIZE), "--epochs", str(VALIDATION_EPOCHS),
              "--set", f"experiment={EXPERIMENT_TAG}", "--set", "augmentation={}"]
    if classes:
        common += ["--set", f"classes={json.dumps(list(classes)).replace(' ', '')}"]
    parsed = tr.parse_source(source)
    if parsed.kind == "run":
        arguments = ["--model", "lenet5-transfer", "--strategy", "feature-extraction",
                     "--set", f"source_run={lenet_dir.name}", *common]
        wanted = {"model": "lenet5-transfer", "source_run": lenet_dir.name}
    else:
        weights = "imagenet" if parsed.kind == "imagenet" else str(_random_weights_file(parsed.name))
        arguments = ["--model", parsed.name, "--strategy", "feature-extraction", "--weights", weights,
                     "--image-size", str(VALIDATION_IMAGE_SIZE), *common]
        wanted = {"model": parsed.name, "weights": weights if parsed.kind == "imagenet" else str(Path(weights).resolve())}
    wanted.update({"dataset": dataset, "experiment": EXPERIMENT_TAG, "strategy": "feature-extraction",
                   "classes": list(classes) if classes else None})
    found = _existing_run(wanted)
    if found:
        return found, "python -m core.train " + " ".join(arguments)
    return _train(arguments)


def validate() -> int:
    """Trains (or reuses) the validation runs, scores every source, prints the correlations."""
    lenet_dir, lenet_command = _lenet_source()
    sources = [*JUDGED_SOURCES, "random:mobilenetv2", "random:mobilenet", f"run:{lenet_dir.name}"]
    report = {"lenet_source": {"run": lenet_dir.name, "command": lenet_command}, "targets": []}
    print(f"LeNet source: {lenet_dir.name} ({lenet_command})")
    for dataset, classes in TARGETS:
        rows = []
        for source in sources:
            run_dir, command = _feature_extraction_run(source, dataset, classes, lenet_dir)
            accuracy = runs.summarize_run(run_dir).best_val_accuracy
            row = {"source": source, "run": run_dir.name, "train_command": command,
                   "val_accuracy": accuracy}
            for metric in tr.METRICS:
                details = tr.score_details(source, dataset, metric, MAX_IMAGES, image_size=VALIDATION_IMAGE_SIZE,
                                           classes=classes)
                row[metric] = details["score"]
                row[f"{metric}_seconds"] = details["seconds"]
            rows.append(row)
            print(f"{dataset:13s} {source:28s} val {accuracy:.3f}  " + "  ".join(
                f"{metric} {row[metric]:+.4f}" for metric in tr.METRICS), flush=True)
        correlations = {metric: tr.spearman([row[metric] for row in rows], [row["val_accuracy"] for row in rows])
                        for metric in tr.METRICS}
        classes_option = f" --classes {','.join(map(str, classes))}" if classes else ""
        score_command = (f"python -m core.experiments transferability --dataset {dataset} --sources "
                         f"{','.join(sources)} --metric METRIC --max-images {MAX_IMAGES} "
                         f"--image-size {VALIDATION_IMAGE_SIZE}{classes_option}")
        print(f"{dataset}: Spearman " + ", ".join(f"{metric} {value:+.2f}" for metric, value in correlations.items()))
        report["targets"].append({"dataset": dataset, "classes": list(classes) if classes else None,
                                  "rows": rows, "spearman": correlations, "score_command": score_command})
    ARTIFACT.parent.mkdir(parents=True, exist_ok=True)
    ARTIFACT.write_text(json.dumps(report, indent=2))
    print(f"written {ARTIFACT}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validate", action="store_true", help="train the validation runs and correlate")
    parser.add_argument("--cold", action="store_true", help="clear the Dogs vs Cats score features first")
    arguments = parser.parse_args(argv)
    from core.datasets import registry

    if registry.status("dogs-vs-cats") != "ready":
        print("skipped: Dogs vs Cats is not installed: python -m core.datasets get dogs-vs-cats --from train-2000.zip")
        return 0
    if arguments.validate:
        return validate()
    return judged_check(arguments.cold)


if __name__ == "__main__":
    sys.exit(main())
