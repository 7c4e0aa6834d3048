"""Feature-extraction speed: MobileNetV2 on Dogs vs Cats, the job path against what it did before.

Both arms run the feature-extraction stage of ``python -m core.train --model mobilenetv2
--strategy feature-extraction --dataset dogs-vs-cats --weights imagenet`` on the same images
with the family's defaults (224 px, the pooling head, 5 augmented copies of the 1,500 training
images by rotation and flip, 500 clean validation images, the head trained for 30 epochs on the
cached features), from the same seed. Each arm runs in its own Python process, because TensorFlow
fixes its CPU kernels when it is imported (``arms``):

* **plain**: what the job path did before: TensorFlow's default kernels for this CPU, the
  augmentation called eagerly before each ``predict_on_batch`` of the frozen base, the base's
  7×7×1280 feature maps cached, the head (global pooling included) trained on them;
* **job**: what the family does now: oneDNN kernels (the CLI and the worker turn them on), the
  augmentation and the base in one compiled call (``bottleneck.compute_features``), pooled
  features cached (``transfer.feature_extractor(model, pooled=True)``), the head after the pooling
  trained on them. Since round 40 ``compute_features`` also runs the base with its batch norms
  and "same" zero paddings folded into its convolutions (``core.models.folding``), mirrors
  inside the augmentation's one warp instead of with Keras' ``RandomFlip`` after it
  (``preprocess.flip_into_warp``), hands the model uint8 batches, and pads the last batch to the
  full size (one compiled shape).

Timed: computing the features (train copies and validation) plus training the head, in each
arm's process after loading the data and building the model (the same work in both). Prints
both arms' seconds and validation accuracy (best and last epoch, on the validation images) and
the speed-up plain / job; the target is at least 1.8, and the script exits 1 when it misses.
Without the ImageNet weights installed the base is random (the timing is the same, the accuracy
meaningless); without the dataset installed, random images stand in.

    .venv/bin/python bench/bench_feature_extraction.py                    # about 4 minutes on 2 cores
    .venv/bin/python bench/bench_feature_extraction.py --train-images 300 --copies 2 --epochs 5
    .venv/bin/python bench/bench_feature_extraction.py --plain-kernels onednn
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from arms import add_arm_options, onednn_enabled, report_speedup, run_arm  # noqa: E402

TARGET_SPEEDUP = 1.8
ARMS = ("plain", "job")
BACKBONE = "mobilenetv2"
DATASET = "dogs-vs-cats"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-images", type=int, default=None,
                        help="training images (default: the dataset's 1,500)")
    parser.add_argument("--copies", type=int, default=None,
                        help="augmented copies of the training set (default: the family's 5)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="head epochs on the cached features (default: the family's 30)")
    add_arm_options(parser, ARMS)
    return parser


def _config(arguments) -> dict:
    from core.training import backbone_family

    config = {"model": BACKBONE, "strategy": "feature-extraction", "dataset": DATASET,
              "weights": "imagenet"}
    for key, value in (("bottleneck_copies", arguments.copies), ("epochs", arguments.epochs)):
        if value is not None:
            config[key] = value
    return backbone_family.resolve_config(config)


def _data(config: dict, train_images: int | None):
    """The dataset's splits when installed, else random images of the same shape."""
    import numpy as np

    from core.datasets import registry
    from core.training import trainer

    if registry.status(DATASET) == "ready":
        train, val, _ = trainer.load_prepared_splits(config)
        train_x, train_y, val_x, val_y = train.images, train.labels, val.images, val.labels
        source = "installed"
    else:
        size = config["image_size"]
        rng = np.random.default_rng(0)
        train_x = rng.integers(0, 256, (1500, size, size, 3), dtype="uint8")
        val_x = rng.integers(0, 256, (500, size, size, 3), dtype="uint8")
        train_y, val_y = rng.integers(0, 2, 1500), rng.integers(0, 2, 500)
        source = "random stand-in images"
    if train_images is not None:
        train_x, train_y = train_x[:train_images], train_y[:train_images]
    return train_x, train_y, val_x, val_y, source


def _plain_features(extractor, augmentation, images, copies: int, batch_size: int):
    """The old loop: eager augmentation, then ``predict_on_batch`` of the base, feature maps kept."""
    import keras
    import numpy as np

    from core.training import bottleneck

    shape = tuple(int(dim) for dim in extractor.outputs[0].shape[1:])
    output = np.empty((copies, len(images)) + shape, dtype=bottleneck.FEATURE_DTYPE)
    for copy in range(copies):
        for start in range(0, len(images), batch_size):
            batch = np.asarray(images[start:start + batch_size], dtype="float32")
            if augmentation is not None:
                batch = keras.ops.convert_to_numpy(augmentation(batch, training=True))
            output[copy, start:start + len(batch)] = np.asarray(extractor.predict_on_batch(batch))
    return output


def run_one_arm(arm: str, arguments) -> dict:
    """Runs one arm in this process; returns its timings and validation accuracy."""
    import keras
    import numpy as np

    from core.models import transfer
    from core.training import backbone_family, bottleneck
    from core.training import transfer_support as support

    config = _config(arguments)
    train_x, train_y, val_x, val_y, source = _data(config, arguments.train_images)
    weights_file = config.get("weights_file")  # None when not installed: a random base
    keras.utils.set_random_seed(config["seed"])
    model = backbone_family.build_model_for_config(config, 2, weights_file)
    augmentation = model.get_layer(transfer.AUGMENTATION_NAME)
    copies = config["bottleneck_copies"]
    pooled = arm == "job"
    extractor = transfer.feature_extractor(model, pooled=pooled)
    started = time.perf_counter()
    if arm == "job":
        train_features = bottleneck.compute_features(extractor, train_x, augmentation=augmentation,
                                                     copies=copies)
        val_features = bottleneck.compute_features(extractor, val_x)
    else:
        train_features = _plain_features(extractor, augmentation, train_x, copies,
                                         bottleneck.DEFAULT_BATCH_SIZE)
        val_features = _plain_features(extractor, None, val_x, 1, bottleneck.DEFAULT_BATCH_SIZE)
    features_seconds = time.perf_counter() - started
    head = transfer.head_model(model, pooled=pooled)
    support.compile_classifier(head, support.make_optimizer(config["optimizer"],
                                                            config["learning_rate"],
                                                            config["momentum"]))
    data = bottleneck.make_rotating_features(train_features, train_y,
                                             batch_size=config["batch_size"], seed=config["seed"])
    started = time.perf_counter()
    history = head.fit(data, epochs=config["epochs"], verbose=0,
                       validation_data=(np.asarray(val_features[0], dtype="float32"), val_y))
    head_seconds = time.perf_counter() - started
    accuracies = history.history["val_accuracy"]
    return {"features_seconds": features_seconds, "head_seconds": head_seconds,
            "seconds": features_seconds + head_seconds, "best_val_accuracy": max(accuracies),
            "last_val_accuracy": accuracies[-1], "onednn": onednn_enabled(),
            "feature_shape": list(train_features.shape), "train_images": len(train_y),
            "val_images": len(val_y), "copies": copies, "epochs": config["epochs"],
            "data": source, "weights": "imagenet" if weights_file else "random"}


def main(argv=None) -> int:
    arguments = build_parser().parse_args(argv)
    if arguments.arm is not None:  # a child: one arm, result as the last stdout line
        print(json.dumps(run_one_arm(arguments.arm, arguments)))
        return 0
    child_argv = [text for key in ("train_images", "copies", "epochs")
                  if getattr(arguments, key) is not None
                  for text in (f"--{key.replace('_', '-')}", str(getattr(arguments, key)))]
    results = {arm: run_arm(__file__, arm, child_argv,
                            onednn=arm == "job" or arguments.plain_kernels == "onednn")
               for arm in ARMS}
    job = results["job"]
    print(f"{BACKBONE} on {DATASET} ({job['data']}, {job['weights']} weights): "
          f"{job['train_images']} train images x {job['copies']} copies, {job['val_images']} val "
          f"images, head {job['epochs']} epochs")
    for arm in ARMS:
        result = results[arm]
        print(f"{arm:>5}: oneDNN {result['onednn']}, features {result['feature_shape']} "
              f"{result['features_seconds']:.1f} s + head {result['head_seconds']:.1f} s = "
              f"{result['seconds']:.1f} s; val accuracy best {result['best_val_accuracy']:.4f}, "
              f"last {result['last_val_accuracy']:.4f}")
    speedup = results["plain"]["seconds"] / job["seconds"]
    return report_speedup(speedup, TARGET_SPEEDUP)


if __name__ == "__main__":
    sys.exit(main())
