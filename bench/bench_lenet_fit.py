"""Fit speed: the job path's LeNet fit against a plain ``model.fit`` of the same model.

Both arms train the ``seed`` LeNet as the preset defines it (augmentation by rotation and blur in
the graph) on the same preprocessed NumPy arrays, with validation each epoch, for the same epochs
and seed. Each arm runs in its own Python process, because TensorFlow fixes its CPU kernels when
it is imported; the order is plain, job, plain, job, ... (``--repeats``):

* **plain**: what the job path did before: ``model.fit`` compiled with Keras' defaults (one step
  per compiled call), in a process with TensorFlow's own default kernels (the
  ``TF_ENABLE_ONEDNN_OPTS`` variable removed from its environment);
* **job**: what ``python -m core.train`` does now: the worker turns TensorFlow's oneDNN CPU
  kernels on (``core.environment.prefer_onednn_kernels``) and compiles through
  ``lenet_family.compile_lenet`` (``STEPS_PER_EXECUTION`` steps per call).

TensorFlow turns oneDNN on by itself on some CPUs (then most of the gain goes) and leaves it off
on others (a 2-core AMD EPYC here): the script prints which, from the plain arm's TensorFlow.
``--plain-kernels onednn`` gives the plain arm oneDNN too, which measures what the job path
gains on a CPU where TensorFlow turns it on by itself.
An epoch's time is the wall time between consecutive ``on_epoch_end`` calls; the first epoch
(graph tracing) is left out. Prints the speed-up plain / job of the fastest steady epochs, the
mean steady epochs, and both arms' validation accuracy after the last epoch (same seed, so they
agree within noise). The target is a speed-up of at least 1.8; the script exits 1 when it misses.

    .venv/bin/python bench/bench_lenet_fit.py                  # GTSRB if installed
    .venv/bin/python bench/bench_lenet_fit.py --dataset synthetic-signs --epochs 3
    .venv/bin/python bench/bench_lenet_fit.py --plain-kernels onednn
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from bench_training_overhead import (  # noqa: E402  (same timer and options)
    make_timer, parse_lenet_bench_arguments, steady)

TARGET_SPEEDUP = 1.8
ARMS = ("plain", "job")
ARM_FLAG = "--arm"
PLAIN_KERNELS_FLAG = "--plain-kernels"
PLAIN_KERNELS = ("default", "onednn")


def onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow runs oneDNN kernels (None when TensorFlow cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def fit_arm(arm: str, dataset: str, epochs: int) -> dict:
    """Trains one arm in this process; returns its epoch times and final validation accuracy."""
    import keras

    from core.datasets import preprocess
    from core.models import lenet
    from core.training import lenet_family, trainer

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "seed", "dataset": dataset,
                                          "epochs": epochs})
    train_split, val_split, _ = trainer.load_prepared_splits(config)
    steps = -(-len(train_split) // config["batch_size"])
    keras.utils.set_random_seed(config["seed"])
    model = lenet.build_from_config(config, len(train_split.class_names),
                                    tuple(train_split.images.shape[1:]),
                                    preprocess.build_augmentation(config["augmentation"]))
    lenet_family.compile_lenet(model, config, steps,
                               lenet_family.STEPS_PER_EXECUTION if arm == "job" else 1)
    timer = make_timer()
    history = model.fit(train_split.images, train_split.labels, batch_size=config["batch_size"],
                        epochs=config["epochs"], shuffle=True, verbose=0,
                        validation_data=(val_split.images, val_split.labels), callbacks=[timer])
    return {"seconds": timer.seconds, "val_accuracy": float(history.history["val_accuracy"][-1]),
            "onednn": onednn_enabled(), "train_images": len(train_split),
            "val_images": len(val_split)}


def run_arm(arm: str, dataset: str, epochs: int, plain_kernels: str = "default") -> dict:
    """Runs ``fit_arm`` in a child process with the arm's environment; returns its result."""
    from core import environment

    child_environment = dict(os.environ)
    child_environment.pop(environment.ONEDNN_ENV, None)
    if arm == "job" or plain_kernels == "onednn":
        environment.prefer_onednn_kernels(child_environment)
    completed = subprocess.run(
        [sys.executable, __file__, ARM_FLAG, arm, "--dataset", dataset, "--epochs", str(epochs)],
        env=child_environment, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"the {arm} arm failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    plain_kernels = "default"
    if PLAIN_KERNELS_FLAG in argv:
        index = argv.index(PLAIN_KERNELS_FLAG)
        plain_kernels = argv[index + 1] if index + 1 < len(argv) else ""
        if plain_kernels not in PLAIN_KERNELS:
            print(f"{PLAIN_KERNELS_FLAG} must be one of {PLAIN_KERNELS}, received {plain_kernels!r}",
                  file=sys.stderr)
            return 2
        del argv[index:index + 2]
    if ARM_FLAG in argv:  # a child: one arm, result as the last stdout line
        index = argv.index(ARM_FLAG)
        arm = argv[index + 1]
        arguments = parse_lenet_bench_arguments(__doc__.splitlines()[0],
                                                argv[:index] + argv[index + 2:], 4, "")
        print(json.dumps(fit_arm(arm, arguments.dataset, arguments.epochs)))
        return 0
    arguments = parse_lenet_bench_arguments(__doc__.splitlines()[0], argv, 4, "plain/job pairs to run")
    print(f"dataset {arguments.dataset}, seed LeNet with its augmentation, {arguments.epochs} epochs, "
          "each arm in its own process", flush=True)
    epochs = {arm: [] for arm in ARMS}
    means = {arm: [] for arm in ARMS}
    onednn = {}
    for repeat in range(arguments.repeats):
        results = {arm: run_arm(arm, arguments.dataset, arguments.epochs, plain_kernels)
                   for arm in ARMS}
        if repeat == 0:
            print(f"{results['job']['train_images']} train / {results['job']['val_images']} val images")
        for arm, result in results.items():
            epochs[arm].extend(result["seconds"][1:] or result["seconds"])
            means[arm].append(steady(result["seconds"]))
            onednn[arm] = result["onednn"]
        print(f"repeat {repeat + 1}: " + ", ".join(
            f"{arm} epochs {[round(s, 2) for s in results[arm]['seconds']]} s "
            f"(val {results[arm]['val_accuracy']:.4f})" for arm in ARMS), flush=True)
    plain_label = "TensorFlow's default here" if plain_kernels == "default" else "forced on"
    print(f"oneDNN kernels: plain arm ({plain_label}) {onednn['plain']}, job arm {onednn['job']}")
    mean_speedup = statistics.mean(means["plain"]) / statistics.mean(means["job"])
    speedup = min(epochs["plain"]) / min(epochs["job"])
    print(f"mean steady epoch: plain {statistics.mean(means['plain']):.2f} s, job "
          f"{statistics.mean(means['job']):.2f} s (speed-up {mean_speedup:.2f}; noisy on a shared CPU)")
    print(f"fastest steady epoch: plain {min(epochs['plain']):.2f} s, job {min(epochs['job']):.2f} s")
    print(f"speed-up plain/job = {speedup:.2f} (target >= {TARGET_SPEEDUP})")
    return 0 if speedup >= TARGET_SPEEDUP else 1


if __name__ == "__main__":
    sys.exit(main())
