"""Fit speed: the job path's LeNet fit against a plain ``model.fit`` of the same model.

Both arms train the ``seed`` LeNet as the preset defines it (augmentation by rotation and blur in
the graph) on the same preprocessed NumPy arrays, with validation each epoch, for the same epochs
and seed. Each arm runs in its own Python process, because TensorFlow fixes its CPU kernels when
it is imported; the order is plain, job, plain, job, ... (``--repeats``):

* **plain**: what the job path did before: the textbook layer order in each conv stage (conv,
  activation, pool: ``block_order`` "textbook"), ``model.fit`` compiled with Keras' defaults
  (one step per compiled call), in a process with TensorFlow's own default kernels (the
  ``TF_ENABLE_ONEDNN_OPTS`` variable removed from its environment);
* **job**: what ``python -m core.train`` does now: the preset's ``block_order`` "auto", which
  pools right after each convolution (the same function, since a max commutes with ReLU; the
  activation then runs on a quarter of the values), the worker turns TensorFlow's oneDNN CPU
  kernels on (``core.environment.prefer_onednn_kernels``), turns tf.data's autotuning off in
  Keras' array pipelines (``core.environment.disable_tf_data_autotune``: no idle pause between
  epochs), compiles through ``lenet_family.compile_lenet`` (``STEPS_PER_EXECUTION`` steps
  per call) and, since round 39, fits the preset's ``batch_branches`` (2) parts of each batch
  side by side (``lenet_family.build_models``) with one CPU thread per operation on 2 cores
  (``core.environment.share_cpu_threads``). Since round 41 the job path freezes the heap
  for the fit (``callbacks.FrozenHeap``: Python's garbage collector stops rescanning
  TensorFlow's objects), and the random blur is two small matrix products instead of a
  1-channel depthwise convolution (``layers.RandomGaussianBlur``; both arms get this one,
  since it is the model's own layer). Since round 42 the job path fits a copy of the model
  whose pooled convolutions add their bias after the pooling (``folding.bias_after_pooling``:
  the same function), and the rotation warp is compiled by XLA on TensorFlow
  (``fused_kernels.projective_transform``; both arms again: the model's own layer).

TensorFlow turns oneDNN on by itself on some CPUs (then most of the gain goes) and leaves it off
on others (a 2-core AMD EPYC here): the script prints which, from the plain arm's TensorFlow.
``--plain-kernels onednn`` gives the plain arm oneDNN too, which measures what the job path
gains on a CPU where TensorFlow turns it on by itself.
An epoch's time is the wall time between consecutive ``on_epoch_end`` calls; the first epoch
(graph tracing) is left out. Prints the speed-up plain / job of the fastest steady epochs, the
mean steady epochs, the median steady epochs (neither the pauses nor a lucky quiet minute of a
shared host move it), and both arms' validation accuracy after the last epoch (same seed, so
they agree within noise). The target is a speed-up of at least 1.8 of the fastest steady epochs; the
script exits 1 when it misses. The fastest epoch leaves out the pauses between epochs, which
the mean includes (``--target-on mean`` judges the mean instead).

    .venv/bin/python bench/bench_lenet_fit.py                  # GTSRB if installed
    .venv/bin/python bench/bench_lenet_fit.py --dataset synthetic-signs --epochs 3
    .venv/bin/python bench/bench_lenet_fit.py --plain-kernels onednn
    .venv/bin/python bench/bench_lenet_fit.py --plain-kernels onednn --target-on mean
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from arms import add_arm_options, onednn_enabled, report_speedup, run_arm  # noqa: E402
from bench_training_overhead import (  # noqa: E402  (same timer and options)
    make_timer, parse_lenet_bench_arguments, steady)

TARGET_SPEEDUP = 1.8
ARMS = ("plain", "job")
TARGET_MEASURES = ("fastest", "mean")


def fit_arm(arm: str, dataset: str, epochs: int) -> dict:
    """Trains one arm in this process; returns its epoch times and final validation accuracy."""
    import keras

    from core import environment
    from core.datasets import preprocess
    from core.models import lenet
    from core.training import callbacks as run_callbacks
    from core.training import lenet_family, trainer

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "seed", "dataset": dataset,
                                          "epochs": epochs})
    if arm == "job":
        environment.share_cpu_threads(config["batch_branches"])
        environment.disable_tf_data_autotune()
    else:
        config["block_order"] = "textbook"
    train_split, val_split, _ = trainer.load_prepared_splits(config)
    steps = -(-len(train_split) // config["batch_size"])
    keras.utils.set_random_seed(config["seed"])
    num_classes, input_shape = len(train_split.class_names), tuple(train_split.images.shape[1:])
    if arm == "job":
        model, _ = lenet_family.build_models(config, num_classes, input_shape)
    else:
        model = lenet.build_from_config(config, num_classes, input_shape,
                                        preprocess.build_augmentation(config["augmentation"]))
    lenet_family.compile_lenet(model, config, steps,
                               lenet_family.STEPS_PER_EXECUTION if arm == "job" else 1)
    timer = make_timer()
    extra_callbacks = [run_callbacks.FrozenHeap()] if arm == "job" else []  # as RunContext adds
    history = model.fit(train_split.images, train_split.labels, batch_size=config["batch_size"],
                        epochs=config["epochs"], shuffle=True, verbose=0,
                        validation_data=(val_split.images, val_split.labels),
                        callbacks=[timer, *extra_callbacks])
    return {"seconds": timer.seconds, "val_accuracy": float(history.history["val_accuracy"][-1]),
            "onednn": onednn_enabled(), "train_images": len(train_split),
            "val_images": len(val_split)}


def main(argv=None) -> int:
    def add_options(parser):
        add_arm_options(parser, ARMS)
        parser.add_argument("--target-on", choices=TARGET_MEASURES, default="fastest",
                            help="the speed-up judged against the target: of the fastest steady "
                                 "epochs (default) or of the mean steady epochs (pauses included)")

    arguments = parse_lenet_bench_arguments(__doc__.splitlines()[0], argv, 4, "plain/job pairs to run",
                                            add_options=add_options)
    if arguments.arm is not None:  # a child: one arm, result as the last stdout line
        print(json.dumps(fit_arm(arguments.arm, arguments.dataset, arguments.epochs)))
        return 0
    child_argv = ["--dataset", arguments.dataset, "--epochs", str(arguments.epochs)]
    plain_kernels = arguments.plain_kernels
    print(f"dataset {arguments.dataset}, seed LeNet with its augmentation, {arguments.epochs} epochs, "
          "each arm in its own process", flush=True)
    epochs = {arm: [] for arm in ARMS}
    means = {arm: [] for arm in ARMS}
    onednn = {}
    for repeat in range(arguments.repeats):
        results = {arm: run_arm(__file__, arm, child_argv,
                                onednn=arm == "job" or plain_kernels == "onednn")
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
    print(f"median steady epoch: plain {statistics.median(epochs['plain']):.2f} s, job "
          f"{statistics.median(epochs['job']):.2f} s (speed-up "
          f"{statistics.median(epochs['plain']) / statistics.median(epochs['job']):.2f})")
    print(f"fastest steady epoch: plain {min(epochs['plain']):.2f} s, job {min(epochs['job']):.2f} s "
          f"(speed-up {speedup:.2f})")
    print(f"judged: the {arguments.target_on} steady epochs")
    return report_speedup(speedup if arguments.target_on == "fastest" else mean_speedup, TARGET_SPEEDUP)


if __name__ == "__main__":
    sys.exit(main())
