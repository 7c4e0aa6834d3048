"""Fit speed: the job path's LeNet fit against a plain ``model.fit`` of the same model.

Both train the ``seed`` LeNet as the preset defines it (augmentation by rotation and blur in the
graph) on the same preprocessed NumPy arrays, with validation each epoch, in this one process, in
the order plain, job, plain, job, ... (``--repeats``). "plain" compiles with Keras' defaults (one
step per compiled call); "job" compiles through ``lenet_family.compile_lenet``, which is what
``python -m core.train`` uses (``STEPS_PER_EXECUTION`` steps per call). An epoch's time is the
wall time between consecutive ``on_epoch_end`` calls; the first epoch (graph tracing) is left
out. Prints the speed-up plain / job of the fastest steady epochs, the mean steady epochs, and
both arms' validation accuracy after the last epoch (same seed, so they should agree within
noise). The target is a speed-up of at least 1.8; the script exits 1 when it misses.

    .venv/bin/python bench/bench_lenet_fit.py                  # GTSRB if installed
    .venv/bin/python bench/bench_lenet_fit.py --dataset synthetic-signs --epochs 3
"""

from __future__ import annotations

import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_training_overhead import (  # noqa: E402  (same timer and options)
    make_timer, parse_lenet_bench_arguments, steady)

TARGET_SPEEDUP = 1.8


def main(argv=None) -> int:
    arguments = parse_lenet_bench_arguments(__doc__.splitlines()[0], argv, 4, "plain/job pairs to run")

    import keras

    from core.datasets import preprocess
    from core.models import lenet
    from core.training import lenet_family, trainer

    dataset = arguments.dataset
    config = lenet_family.resolve_config({"model": "lenet5", "preset": "seed", "dataset": dataset,
                                          "epochs": arguments.epochs})
    print(f"dataset {dataset}, seed LeNet with its augmentation, {arguments.epochs} epochs", flush=True)
    train_split, val_split, _ = trainer.load_prepared_splits(config)
    print(f"{len(train_split)} train / {len(val_split)} val images", flush=True)
    steps = -(-len(train_split) // config["batch_size"])

    def fit(steps_per_execution: int) -> tuple[list[float], float]:
        keras.utils.set_random_seed(config["seed"])
        model = lenet.build_from_config(config, len(train_split.class_names),
                                        tuple(train_split.images.shape[1:]),
                                        preprocess.build_augmentation(config["augmentation"]))
        lenet_family.compile_lenet(model, config, steps, steps_per_execution)
        timer = make_timer()
        history = model.fit(train_split.images, train_split.labels, batch_size=config["batch_size"],
                            epochs=config["epochs"], shuffle=True, verbose=0,
                            validation_data=(val_split.images, val_split.labels), callbacks=[timer])
        return timer.seconds, float(history.history["val_accuracy"][-1])

    plain_all, job_all, plain_means, job_means = [], [], [], []
    for repeat in range(arguments.repeats):
        plain, plain_accuracy = fit(1)
        job, job_accuracy = fit(lenet_family.STEPS_PER_EXECUTION)
        print(f"repeat {repeat + 1}: plain epochs {[round(s, 2) for s in plain]} s "
              f"(val {plain_accuracy:.4f}), job epochs {[round(s, 2) for s in job]} s "
              f"(val {job_accuracy:.4f})", flush=True)
        plain_means.append(steady(plain))
        job_means.append(steady(job))
        plain_all.extend(plain[1:] or plain)
        job_all.extend(job[1:] or job)
    mean_speedup = statistics.mean(plain_means) / statistics.mean(job_means)
    speedup = min(plain_all) / min(job_all)
    print(f"mean steady epoch: plain {statistics.mean(plain_means):.2f} s, job "
          f"{statistics.mean(job_means):.2f} s (speed-up {mean_speedup:.2f}; noisy on a shared CPU)")
    print(f"fastest steady epoch: plain {min(plain_all):.2f} s, job {min(job_all):.2f} s")
    print(f"speed-up plain/job = {speedup:.2f} (target >= {TARGET_SPEEDUP})")
    return 0 if speedup >= TARGET_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
