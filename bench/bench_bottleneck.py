"""Bottleneck cache benchmark: per-epoch cost of feature extraction, base every epoch vs cached.

Measured side by side in one run, on whatever device Keras uses (a CPU on lab machines):

* **base every epoch**: the full VGG16 transfer model (frozen base + the study's head) fitted
  on images, the way feature extraction runs without the cache;
* **cached features**: the same head fitted on precomputed block5_pool features
  (``core.training.bottleneck``), the way the transfer family runs it.

Both use the app's code paths (``core.models.vgg16``, ``core.training.bottleneck``), random
weights (the cost is the same as ImageNet's) and the same images, batch size and epochs; the
first epoch of each is a warm-up (graph tracing) and is not counted. Also printed: the one-off
cost of computing the features and the epoch after which the cache has paid for itself.

Usage::

    python bench/bench_bottleneck.py [--image-size 96] [--images 256] [--batch-size 32] [--epochs 3]

Defaults finish in about a minute or two on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

TARGET_RATIO = 20.0


class EpochTimer:
    """Collects wall-clock seconds per epoch (a Keras callback built lazily)."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seconds = []
                self._start = 0.0

            def on_epoch_begin(self, epoch, logs=None):
                self._start = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.seconds.append(time.perf_counter() - self._start)

        return _Timer()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs + 1 warm-up")
    arguments = parser.parse_args(argv)

    import keras
    import numpy as np

    from core.models import transfer
    from core.training import bottleneck

    keras.utils.set_random_seed(0)
    size, count, batch = arguments.image_size, arguments.images, arguments.batch_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(count, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, size=count).astype("int64")
    print(f"Backend {keras.backend.backend()}, VGG16 random weights, {count} images of "
          f"{size}x{size}x3, batch {batch}, {arguments.epochs} epochs (+1 warm-up) per arm")

    model = transfer.build_transfer_model(2, image_size=size, weights_file=None, freeze_base=True)
    model.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    full_timer = EpochTimer()
    model.fit(images, labels, batch_size=batch, epochs=arguments.epochs + 1, verbose=0,
              callbacks=[full_timer])
    full_epoch = statistics.median(full_timer.seconds[1:])

    started = time.perf_counter()
    features = bottleneck.compute_features(transfer.feature_extractor(model), images, batch_size=batch)
    feature_seconds = time.perf_counter() - started
    head = transfer.head_model(model)
    head.compile(optimizer=keras.optimizers.SGD(1e-4, momentum=0.9),
                 loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    head_timer = EpochTimer()
    head.fit(bottleneck.make_rotating_features(features, labels, batch_size=batch),
             epochs=arguments.epochs + 1, verbose=0, callbacks=[head_timer])
    head_epoch = statistics.median(head_timer.seconds[1:])

    ratio = full_epoch / head_epoch
    break_even = feature_seconds / max(full_epoch - head_epoch, 1e-9)
    print(f"base every epoch : {full_epoch:8.3f} s/epoch")
    print(f"cached features  : {head_epoch:8.3f} s/epoch  (features computed once in "
          f"{feature_seconds:.2f} s, shape {tuple(features.shape)})")
    print(f"cache pays for itself after {break_even:.1f} epochs")
    print(f"per-epoch cost ratio: {ratio:.1f}x (target >= {TARGET_RATIO:.0f}x) "
          f"{'OK' if ratio >= TARGET_RATIO else 'BELOW TARGET'}")
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
