"""Inference latency through ``core.inference.Predictor`` against a bare ``model.predict``.

Builds two run folders in a temporary runs root (no data needed): the ``seed`` LeNet-5 (43
classes, 32x32, with its augmentation and random-blur layers, saved and reloaded in safe mode)
and the study's VGG16 transfer model at 224x224 (``weights=None``: timing only). After a
warm-up, for each model it measures in one process, side by side:

* ``Predictor.predict([image])`` for one uploaded-size image (preprocessing included), the
  page's case, against ``model.predict(x, verbose=0)`` on the same preprocessed array;
* a batch of images through ``Predictor.predict`` against ``model.predict`` on the same batch.

VGG16 is timed twice: float32 (bit-for-bit the saved model) and ``precision="auto"`` (what the
page uses: mixed bfloat16 on CPUs with bfloat16 instructions; the bare baseline stays the saved
float32 model, so that ratio also shows the precision gain).

It prints ms/image (median of the repeats) and the ratio Predictor / bare ``model.predict``.
Targets (issue #6): LeNet <= 5 ms/image, VGG16 <= 150 ms/image, ratio <= 1.2.

Usage: ``.venv/bin/python bench/bench_inference.py [--repeats N] [--batch N] [--skip-vgg]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

LENET_TARGET_MS = 5.0
VGG16_TARGET_MS = 150.0
RATIO_TARGET = 1.2
DEFAULT_REPEATS = 30
DEFAULT_BATCH = 32


def make_lenet_run(runs_root: Path) -> Path:
    """A run folder holding the seed LeNet-5 exactly as the trainer builds it."""
    from core import runs
    from core.datasets import preprocess, signs
    from core.models import lenet
    from core.training import lenet_family

    config = lenet_family.resolve_config({"model": "lenet5", "preset": "seed",
                                          "dataset": "gtsrb"})
    spec = config["preprocessing"]
    channels = 1 if spec["color"] == "grayscale" else 3
    model = lenet.build_from_config(config, signs.NUM_CLASSES,
                                    (spec["image_size"], spec["image_size"], channels),
                                    augmentation=preprocess.build_augmentation(config["augmentation"]))
    return _save_run(runs_root, config, model, list(signs.CLASS_NAMES))


def make_vgg16_run(runs_root: Path) -> Path:
    """A run folder holding the study's VGG16 transfer model (random weights) at 224x224."""
    from core.models import transfer

    config = {"model": "vgg16", "dataset": "dogs-vs-cats", "strategy": "feature_extraction",
              "weights": None,
              "preprocessing": {"image_size": 224, "color": "rgb", "equalization": "none",
                                "blur": 0}}
    model = transfer.build_transfer_model(2, image_size=224)
    return _save_run(runs_root, config, model, ["cat", "dog"])


def _save_run(runs_root: Path, config: dict, model, class_names: list[str]) -> Path:
    from core import runs

    run_dir = runs.create_run(config, runs_root)
    model.save(run_dir / runs.MODEL_FILE)
    (run_dir / "class_names.json").write_text(json.dumps(class_names))
    runs.write_status(run_dir, state=runs.COMPLETED)
    return run_dir


def interleaved_ms(functions: dict, repeats: int) -> dict:
    """Median wall time (ms) of each function, timed in turn within every repeat.

    Interleaving gives every path the same share of a busy machine (five people share these
    two cores), so ratios stay fair even when absolute times drift.
    """
    times: dict = {name: [] for name in functions}
    cpu_times: dict = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            started, cpu_started = time.perf_counter(), time.process_time()
            function()
            times[name].append((time.perf_counter() - started) * 1000.0)
            cpu_times[name].append((time.process_time() - cpu_started) * 1000.0)
    medians = {name: statistics.median(values) for name, values in times.items()}
    medians.update({f"{name}_cpu": statistics.median(values) for name, values in cpu_times.items()})
    return medians


def bench_model(name: str, run_dir: Path, source_size: int, repeats: int, batch: int,
                precision: str = "auto") -> dict:
    """Times one run through the Predictor and through bare ``model.predict``."""
    from core.inference import Predictor

    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (source_size, source_size + 7, 3), dtype=np.uint8)
              for _ in range(batch)]
    predictor = Predictor.from_run(run_dir, precision=precision)
    model = predictor.model  # the model as saved (float32): the bare baseline
    single_input = predictor.preprocess(images[:1]).astype("float32")
    batch_input = predictor.preprocess(images).astype("float32")
    # warm-up: trace both paths for both shapes
    for _ in range(3):
        predictor.predict(images[:1])
        predictor.predict(images)
        model.predict(single_input, verbose=0)
        model.predict(batch_input, batch_size=batch, verbose=0)
    difference = np.abs(predictor.predict(images) - model.predict(batch_input, verbose=0)).max()
    if predictor.precision == "float32" and difference > 1e-5:
        raise AssertionError(f"Predictor and model.predict disagree by {difference}")
    batch_repeats = max(3, repeats // 4)
    single = interleaved_ms({
        "predictor": lambda: predictor.predict(images[:1]),
        "bare": lambda: model.predict(single_input, verbose=0),
        "call": lambda: model(single_input, training=False),
        "preprocess": lambda: predictor.preprocess(images[:1]),
    }, repeats)
    batched = interleaved_ms({
        "predictor": lambda: predictor.predict(images),
        "bare": lambda: model.predict(batch_input, batch_size=batch, verbose=0),
    }, batch_repeats)
    result = {
        "model": f"{name}, Predictor precision {predictor.precision}",
        "max_probability_difference": float(difference),
        "single_predictor_ms": single["predictor"],
        "single_predictor_cpu_ms": single["predictor_cpu"],
        "single_bare_ms": single["bare"],
        "single_model_call_ms": single["call"],
        "preprocess_ms": single["preprocess"],
        "batch_predictor_ms": batched["predictor"] / batch,
        "batch_bare_ms": batched["bare"] / batch,
    }
    result["single_ratio"] = result["single_predictor_ms"] / result["single_bare_ms"]
    result["batch_ratio"] = result["batch_predictor_ms"] / result["batch_bare_ms"]
    return result


def report(result: dict, target_ms: float) -> str:
    ok = "OK" if result["single_predictor_ms"] <= target_ms else "OVER"
    ratio_ok = "OK" if result["batch_ratio"] <= RATIO_TARGET else "OVER"
    return (
        f"{result['model']}:\n"
        f"  one image   Predictor {result['single_predictor_ms']:8.2f} ms/image "
        f"(target <= {target_ms:g}: {ok}; preprocessing {result['preprocess_ms']:.2f} ms; "
        f"CPU time {result['single_predictor_cpu_ms']:.1f} ms over all threads)\n"
        f"              bare model.predict {result['single_bare_ms']:8.2f} ms/image, "
        f"model(x) {result['single_model_call_ms']:.2f} ms  ->  ratio "
        f"{result['single_ratio']:.2f}\n"
        f"  batch       Predictor {result['batch_predictor_ms']:8.2f} ms/image, bare "
        f"model.predict {result['batch_bare_ms']:.2f} ms/image  ->  ratio "
        f"{result['batch_ratio']:.2f} (target <= {RATIO_TARGET}: {ratio_ok})\n"
        f"  largest probability difference Predictor vs model.predict: "
        f"{result['max_probability_difference']:.1e}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS)
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH)
    parser.add_argument("--skip-vgg", action="store_true", help="time LeNet only")
    arguments = parser.parse_args(argv)
    import tensorflow as tf

    print(f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores, intra-op threads "
          f"{tf.config.threading.get_intra_op_parallelism_threads() or 'default'}, load average "
          f"{' '.join(f'{value:.1f}' for value in os.getloadavg())} (wall times grow with it)")
    with tempfile.TemporaryDirectory(prefix="bench_inference_") as root:
        runs_root = Path(root)
        lenet = bench_model("LeNet-5 seed (32x32, 43 classes)", make_lenet_run(runs_root),
                            48, arguments.repeats, arguments.batch)
        print(report(lenet, LENET_TARGET_MS), flush=True)
        if not arguments.skip_vgg:
            vgg_run = make_vgg16_run(runs_root)
            for precision in ("float32", "auto"):
                vgg = bench_model("VGG16 transfer (224x224, 2 classes, weights=None)", vgg_run,
                                  300, max(5, arguments.repeats // 3), min(8, arguments.batch),
                                  precision=precision)
                print(report(vgg, VGG16_TARGET_MS), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
