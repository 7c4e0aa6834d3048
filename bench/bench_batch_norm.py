"""Batch norm: the plus LeNet's training epoch with Keras' BatchNormalization against the fused one.

Both arms build the ``plus`` network as the preset defines it (spatial transformer, three conv
stages with batch norm, multi-scale features, its augmentation), compile it as the job path does
(``lenet_family.compile_lenet``) and train it on the same images with the same seed, in this one
process (both arms get the same TensorFlow kernels), in the order keras, fused, keras, fused, ...
(``--repeats``):

* **keras**: every batch norm is ``keras.layers.BatchNormalization``, what the plus preset used
  before: on TensorFlow its training step is a chain of ``keras.ops`` (moments, then scale and
  shift) and a longer chain of gradient ops;
* **fused**: ``core.models.layers.FusedBatchNormalization``, what it uses now: the same function
  and weights, one ``FusedBatchNormV3`` kernel forward and one gradient kernel backward.

The images are random 32 x 32 grayscale pixels with random labels (``--steps`` batches of 128
per epoch): how fast a step runs does not depend on what the pixels show. An epoch's time is the
wall time between consecutive ``on_epoch_end`` calls; the first epoch (graph tracing) is left
out. Prints the speed-up keras / fused of the fastest steady epochs and of the mean steady
epochs, and the largest difference between the two arms' losses after the first epoch (same
function, so they agree up to float rounding, which training amplifies slowly). The target is
a speed-up of at least 1.15 of the fastest steady epochs; the script exits 1 when it misses.

    .venv/bin/python bench/bench_batch_norm.py
    .venv/bin/python bench/bench_batch_norm.py --steps 40 --repeats 2      # quicker, noisier
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from arms import report_speedup  # noqa: E402
from bench_training_overhead import make_timer, steady  # noqa: E402

TARGET_SPEEDUP = 1.15
ARMS = ("keras", "fused")
BATCH_SIZE = 128
IMAGE_SIDE = 32


def fit_arm(arm: str, images, labels, epochs: int) -> dict:
    """Trains the plus LeNet with one arm's batch norm; returns its epoch times and losses."""
    import keras

    from core.datasets import preprocess
    from core.models import lenet
    from core.training import lenet_family

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "plus", "epochs": epochs})
    keras.utils.set_random_seed(config["seed"])
    model = lenet.build_from_config(config, lenet.NUM_CLASSES, tuple(images.shape[1:]),
                                    preprocess.build_augmentation(config["augmentation"]),
                                    fused_batch_norm=arm == "fused")
    lenet_family.compile_lenet(model, config, len(images) // BATCH_SIZE,
                               lenet_family.STEPS_PER_EXECUTION)
    timer = make_timer()
    history = model.fit(images, labels, batch_size=BATCH_SIZE, epochs=epochs, shuffle=False,
                        verbose=0, callbacks=[timer])
    return {"seconds": timer.seconds, "losses": history.history["loss"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=80, help="batches of 128 per epoch")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per arm (the first is left out)")
    parser.add_argument("--repeats", type=int, default=3, help="keras/fused pairs to run")
    arguments = parser.parse_args(argv)
    if arguments.steps < 1 or arguments.epochs < 2 or arguments.repeats < 1:
        parser.error(f"--steps must be at least 1, --epochs at least 2 and --repeats at least 1, "
                     f"received {arguments.steps}, {arguments.epochs} and {arguments.repeats}")

    import numpy as np

    from core import environment

    environment.prefer_onednn_kernels()
    environment.disable_tf_data_autotune()
    rng = np.random.default_rng(0)
    count = arguments.steps * BATCH_SIZE
    images = rng.integers(0, 256, (count, IMAGE_SIDE, IMAGE_SIDE, 1)).astype(np.float32)
    labels = rng.integers(0, 43, count)
    print(f"plus LeNet, {arguments.steps} steps of {BATCH_SIZE} random images per epoch, "
          f"{arguments.epochs} epochs per arm", flush=True)
    epochs = {arm: [] for arm in ARMS}
    means = {arm: [] for arm in ARMS}
    loss_gap = 0.0
    for repeat in range(arguments.repeats):
        results = {arm: fit_arm(arm, images, labels, arguments.epochs) for arm in ARMS}
        for arm, result in results.items():
            epochs[arm].extend(result["seconds"][1:])
            means[arm].append(steady(result["seconds"]))
        loss_gap = max(loss_gap, abs(results["keras"]["losses"][0] - results["fused"]["losses"][0]))
        print(f"repeat {repeat + 1}: " + ", ".join(
            f"{arm} epochs {[round(s, 2) for s in results[arm]['seconds']]} s "
            f"(losses {[round(loss, 4) for loss in results[arm]['losses']]})" for arm in ARMS),
            flush=True)
    mean_speedup = statistics.mean(means["keras"]) / statistics.mean(means["fused"])
    speedup = min(epochs["keras"]) / min(epochs["fused"])
    print(f"first-epoch loss, largest difference between the arms: {loss_gap:.4f}")
    print(f"mean steady epoch: keras {statistics.mean(means['keras']):.2f} s, fused "
          f"{statistics.mean(means['fused']):.2f} s (speed-up {mean_speedup:.2f}; noisy on a shared CPU)")
    print(f"fastest steady epoch: keras {min(epochs['keras']):.2f} s, fused {min(epochs['fused']):.2f} s "
          f"(speed-up {speedup:.2f})")
    return report_speedup(speedup, TARGET_SPEEDUP, "keras/fused")


if __name__ == "__main__":
    sys.exit(main())
