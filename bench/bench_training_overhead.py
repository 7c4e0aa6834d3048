"""Job-path overhead: the seed LeNet through ``trainer.run_training`` against a bare ``model.fit``.

Both train the ``seed`` LeNet with augmentation off on the same preprocessed arrays, in this one
process, in the order bare, job, bare, job, ... (``--repeats``). The job path is the real one
(run folder, heartbeat thread, metrics/progress/cancel/best-model callbacks, results.json); the
bare path is ``model.fit`` with no callbacks but the same epoch timer. An epoch's time is the
wall time between consecutive ``on_epoch_end`` calls of that timer (so saving ``model.keras`` and
writing files count); the first epoch (graph tracing) is left out. Prints the ratio job / bare
of the fastest steady epochs (robust when other processes share the CPU, as ``timeit`` takes
the minimum) and of the mean steady epochs; the target is at most 1.10.

    .venv/bin/python bench/bench_training_overhead.py                 # GTSRB if installed
    .venv/bin/python bench/bench_training_overhead.py --dataset synthetic-signs --epochs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET_RATIO = 1.10


def make_timer():
    import keras

    class EpochTimer(keras.callbacks.Callback):
        """Records the wall time of each epoch as the gap between consecutive epoch ends."""

        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self._last = None

        def on_train_begin(self, logs=None):
            self._last = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            now = time.perf_counter()
            self.seconds.append(now - self._last)
            self._last = now

    return EpochTimer()


def steady(seconds: list[float]) -> float:
    """Mean epoch time without the first (tracing) epoch."""
    return statistics.mean(seconds[1:] if len(seconds) > 1 else seconds)


def parse_lenet_bench_arguments(description: str, argv, default_epochs: int, repeats_help: str,
                                add_options=None):
    """The LeNet benches' shared options; ``--dataset auto`` becomes gtsrb when it is installed.

    Args:
        description: the parser's description.
        argv: the arguments to parse (None: ``sys.argv[1:]``).
        default_epochs: the ``--epochs`` default.
        repeats_help: what ``--repeats`` repeats.
        add_options: called with the parser to add a bench's own options, or None.

    Returns:
        The parsed arguments, with ``dataset`` resolved to a dataset name.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dataset", choices=("auto", "gtsrb", "synthetic-signs"), default="auto")
    parser.add_argument("--epochs", type=int, default=default_epochs)
    parser.add_argument("--repeats", type=int, default=1, help=repeats_help)
    if add_options is not None:
        add_options(parser)
    arguments = parser.parse_args(argv)
    if arguments.dataset == "auto":
        from core.datasets import registry

        arguments.dataset = "gtsrb" if registry.status("gtsrb") == "ready" else "synthetic-signs"
    return arguments


def main(argv=None) -> int:
    arguments = parse_lenet_bench_arguments(__doc__.splitlines()[0], argv, 3, "bare/job pairs to run")

    import keras

    from core import jobs, runs
    from core.datasets import preprocess
    from core.models import lenet
    from core.training import lenet_family, trainer

    dataset = arguments.dataset
    config = lenet_family.resolve_config({
        "model": "lenet5", "preset": "seed", "dataset": dataset, "epochs": arguments.epochs,
        "augmentation": {"rotation_degrees": 0.0}, "random_blur": 0.0, "max_test_images": 500,
        "epoch_repeats": 1,
    })
    print(f"dataset {dataset}, seed LeNet, {arguments.epochs} epochs, augmentation off", flush=True)
    train_split, val_split, _ = trainer.load_prepared_splits(config)
    print(f"{len(train_split)} train / {len(val_split)} val images", flush=True)

    def bare_fit() -> list[float]:
        keras.utils.set_random_seed(config["seed"])
        steps = -(-len(train_split) // config["batch_size"])
        model = lenet.build_from_config(config, len(train_split.class_names),
                                        tuple(train_split.images.shape[1:]),
                                        preprocess.build_augmentation(config["augmentation"]))
        model.compile(optimizer=lenet.make_optimizer(config, steps),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        timer = make_timer()
        model.fit(train_split.images, train_split.labels, batch_size=config["batch_size"],
                  epochs=config["epochs"], shuffle=True, verbose=0,
                  validation_data=(val_split.images, val_split.labels), callbacks=[timer])
        return timer.seconds

    def job_fit(runs_root: Path) -> list[float]:
        run_dir = jobs.create_job(config, runs_root)
        timer = make_timer()
        state = trainer.run_training(run_dir, extra_callbacks=[timer])
        if state != runs.COMPLETED:
            raise SystemExit(f"job path ended {state}: {runs.read_status(run_dir).get('error')}")
        return timer.seconds

    bare_times, job_times, bare_all, job_all = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="tllab-bench-") as runs_root:
        for repeat in range(arguments.repeats):
            bare = bare_fit()
            job = job_fit(Path(runs_root))
            print(f"repeat {repeat + 1}: bare epochs {[round(s, 2) for s in bare]} s, "
                  f"job epochs {[round(s, 2) for s in job]} s", flush=True)
            bare_times.append(steady(bare))
            job_times.append(steady(job))
            bare_all.extend(bare[1:] or bare)
            job_all.extend(job[1:] or job)
    bare_epoch, job_epoch = statistics.mean(bare_times), statistics.mean(job_times)
    mean_ratio = job_epoch / bare_epoch
    ratio = min(job_all) / min(bare_all)
    print(f"mean steady epoch: bare model.fit {bare_epoch:.2f} s, job path {job_epoch:.2f} s "
          f"(ratio {mean_ratio:.3f}; noisy when the CPU is shared)")
    print(f"fastest steady epoch: bare model.fit {min(bare_all):.2f} s, job path {min(job_all):.2f} s")
    print(f"epoch-time ratio job/bare = {ratio:.3f} (target <= {TARGET_RATIO})")
    return 0 if ratio <= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
