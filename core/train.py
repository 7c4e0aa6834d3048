"""Headless training: ``python -m core.train --model lenet5 --preset seed --dataset gtsrb``.

Runs one job in the foreground through exactly the UI's code path: the config is resolved by its
family, the run folder is created (QUEUED), then ``core.worker.run`` waits for a free slot and
runs ``core.training.trainer.run_training`` in this process. A progress bar and the log go to
stderr; the run directory is the LAST line on stdout, so scripts can do
``RUN=$(python -m core.train ... | tail -n 1)``.

Examples::

    python -m core.train --model lenet5 --preset seed --dataset gtsrb
    python -m core.train --model lenet5 --preset plus --dataset gtsrb --runs-dir /scratch/runs
    python -m core.train --model lenet5 --preset seed --dataset synthetic-signs --epochs 1 \\
        --set labels_per_class=5 --set augmentation.rotation_degrees=0
    python -m core.train --model vgg16 --strategy feature-extraction --dataset dogs-vs-cats \\
        --weights imagenet --image-size 224 --train-size 2000 --valid-size 500
    python -m core.train --model mobilenetv2 --strategy fine-tune --dataset dogs-vs-cats \\
        --weights imagenet --set fine_tune_blocks=3
    python -m core.train --resume runs/20261127-101500-lenet5-gtsrb-1a2b   # continue a run

``--resume RUN_DIR_OR_ID`` continues a failed or cancelled run from its last finished epoch
(``core.jobs.prepare_resume``); no other option but ``--runs-dir``/``--max-jobs`` applies.

Exit status: 0 completed, 1 failed, 2 bad arguments or config, 130 cancelled.
"""

from __future__ import annotations

import argparse
import json
import sys

from core import environment
from core.models.lenet import PRESETS
from core.training.families import MODEL_NAMES
from core.training.trainer import DISTRIBUTE_OPTIONS
from core.training.transfer_support import STRATEGIES

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_CANCELLED = 0, 1, 2, 130
RESUME_CONFLICTS = ("model", "preset", "dataset", "epochs", "settings", "strategy", "weights",
                    "image_size", "train_size", "valid_size", "distribute")


def parse_value(text: str):
    """Parses a ``--set`` value: JSON when it parses (numbers, true/false, null, lists), else text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def apply_setting(config: dict, assignment: str) -> None:
    """Applies one ``key=value`` (dotted keys reach into dicts: ``augmentation.zoom=0.1``).

    Raises:
        ValueError: when the assignment has no ``=`` or an empty key.
    """
    key, separator, value = assignment.partition("=")
    key = key.strip()
    if not separator or not key:
        raise ValueError(f"--set expects key=value, received {assignment!r}")
    target = config
    parts = key.split(".")
    for part in parts[:-1]:
        child = target.get(part)
        if not isinstance(child, dict):
            child = {}
            target[part] = child
        target = child
    target[parts[-1]] = parse_value(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m core.train",
        description="Train one model into a new run folder, in the foreground.",
    )
    parser.add_argument("--model", choices=MODEL_NAMES,
                        help="model family (required unless --resume)")
    parser.add_argument("--resume", metavar="RUN_DIR_OR_ID",
                        help="continue a failed or cancelled run from its last finished epoch")
    parser.add_argument("--preset", choices=tuple(PRESETS), help="LeNet preset (default seed)")
    parser.add_argument("--dataset", help="gtsrb, synthetic-signs, dogs-vs-cats or a created "
                                          "dataset (family default if omitted)")
    parser.add_argument("--epochs", type=int, help="epochs (preset default if omitted)")
    parser.add_argument("--runs-dir", help="runs root (default $TLLAB_RUNS_DIR or runs/)")
    parser.add_argument("--set", dest="settings", action="append", default=[], metavar="KEY=VALUE",
                        help="any config key; dotted keys reach into preprocessing/augmentation; "
                             "values are JSON when they parse (repeatable)")
    parser.add_argument("--strategy", choices=STRATEGIES,
                        help="transfer strategy (vgg16, mobilenetv2, mobilenet)")
    parser.add_argument("--weights", help="'imagenet' (installed by python -m core.weights), "
                                          "'run:<id>', 'none' or a weights file")
    parser.add_argument("--image-size", type=int, help="input image side in pixels")
    parser.add_argument("--train-size", type=int, help="training images (dogs-vs-cats subsample)")
    parser.add_argument("--valid-size", type=int, help="validation images (dogs-vs-cats subsample)")
    parser.add_argument("--distribute", choices=DISTRIBUTE_OPTIONS,
                        help="'mirrored' trains across every GPU of this machine")
    parser.add_argument("--max-jobs", type=int, help="slots of the job queue (default: one per GPU)")
    return parser


def config_from_arguments(arguments: argparse.Namespace) -> dict:
    """Turns parsed options into a config dict keyed by the option names (unset ones left out)."""
    config: dict = {"model": arguments.model}
    for key in ("preset", "dataset", "epochs", "strategy", "weights", "image_size", "train_size",
                "valid_size", "distribute"):
        value = getattr(arguments, key)
        if value is not None:
            config[key] = value
    for assignment in arguments.settings:
        apply_setting(config, assignment)
    return config


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; returns the exit status."""
    environment.prefer_onednn_kernels()  # before anything imports TensorFlow
    parser = build_parser()
    arguments = parser.parse_args(argv)
    from core import jobs, runs, worker

    if arguments.resume is not None:
        given = [f"--{key.replace('_', '-')}" for key in RESUME_CONFLICTS
                 if getattr(arguments, key) not in (None, [])]
        if given:
            parser.error(f"--resume continues a run with its own config; received {', '.join(given)}")
    elif arguments.model is None:
        parser.error("--model is required (or --resume RUN_DIR_OR_ID)")
    try:
        if arguments.resume is not None:
            run_dir = jobs.prepare_resume(arguments.resume, arguments.runs_dir)
        else:
            config = config_from_arguments(arguments)
            run_dir = jobs.create_job(config, arguments.runs_dir)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{'Resuming' if arguments.resume else 'Run folder'}: {run_dir}", file=sys.stderr,
          flush=True)
    try:
        state = worker.run(run_dir, console=True, max_jobs=arguments.max_jobs)
    except KeyboardInterrupt:
        state = jobs.cancel(run_dir).get("state", runs.CANCELLED)
    final = runs.read_status(run_dir)
    if state == runs.FAILED:
        print(f"Run failed: {final.get('error')}", file=sys.stderr)
    else:
        metrics = runs.read_metrics(run_dir)
        results = runs.read_results(run_dir) or {}
        if len(metrics) and metrics["val_accuracy"].notna().any():
            print(f"Best val_accuracy {metrics['val_accuracy'].max():.4f}", file=sys.stderr)
        if results.get("test_accuracy") is not None:
            print(f"Test accuracy {results['test_accuracy']:.4f} on "
                  f"{results.get('num_test_images')} images", file=sys.stderr)
        if final.get("warning"):
            print(f"Warning: {final['warning']}", file=sys.stderr)
        print(f"Run {state}{' with a warning' if final.get('warning') else ''}", file=sys.stderr)
    sys.stdout.write(f"{run_dir}\n")
    sys.stdout.flush()
    return {runs.COMPLETED: EXIT_OK, runs.CANCELLED: EXIT_CANCELLED}.get(state, EXIT_FAILED)


if __name__ == "__main__":
    sys.exit(main())
