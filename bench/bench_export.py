"""Export benchmark: every portable format of one run, side by side with the exported .keras.

For each format (keras, savedmodel, tflite float32/float16/int8) prints size, median one-image
latency, the latency ratio to the exported ``.keras`` and the top-1 agreement with the run on 100
validation images. Targets: float TFLite agrees on at least 99 % and is no slower than Keras for
one image (ratio <= 1); int8 agreement is reported, not targeted. Exits 1 when a target is missed.

Usage: ``python bench/bench_export.py [RUN]``; without RUN it trains a 4-epoch LeNet ``seed`` run
on synthetic signs in a temporary root first (about 30 s).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

FORMATS = (("keras", "none"), ("savedmodel", "none"), ("tflite", "none"), ("tflite", "float16"),
           ("tflite", "int8"))
MIN_FLOAT_TFLITE_AGREEMENT = 0.99
MAX_TFLITE_LATENCY_RATIO = 1.0


def _train_seed_run(root: Path) -> Path:
    environment = dict(os.environ, TLLAB_DATA_DIR=str(root / "data"), TLLAB_RUNS_DIR=str(root / "runs"),
                       TF_CPP_MIN_LOG_LEVEL="2")
    result = subprocess.run(
        [sys.executable, "-m", "core.train", "--model", "lenet5", "--preset", "seed", "--dataset",
         "synthetic-signs", "--epochs", "4", "--set", "batch_size=64"],
        cwd=REPO_ROOT, env=environment, capture_output=True, text=True, check=True)
    os.environ["TLLAB_DATA_DIR"] = str(root / "data")
    return Path(result.stdout.strip().splitlines()[-1])


def main(argv: list[str]) -> int:
    from core import export

    with tempfile.TemporaryDirectory(prefix="bench_export_") as temporary:
        run_dir = Path(argv[0]) if argv else _train_seed_run(Path(temporary))
        output_dir = Path(temporary) / "exports"
        output_dir.mkdir()
        print(f"run {run_dir.name}")
        measured = {}
        for format, quantize in FORMATS:
            suffix = export.FILE_SUFFIXES[format]
            output = output_dir / f"model_{quantize}{suffix}"
            measured[(format, quantize)] = export.measure_export(run_dir, format, quantize=quantize,
                                                                 output=output)
        keras_latency = measured[("keras", "none")].latency_ms
        missed = []
        for (format, quantize), result in measured.items():
            ratio = result.latency_ms / keras_latency
            print(f"{format:10s} {quantize:8s} {result.size_bytes / 1e6:8.2f} MB "
                  f"{result.latency_ms:8.2f} ms/image  ratio to .keras {ratio:5.2f}  "
                  f"agreement {result.agreement:.3f} on {result.num_images}")
            if format == "tflite" and quantize != "int8":
                if result.agreement < MIN_FLOAT_TFLITE_AGREEMENT:
                    missed.append(f"tflite {quantize} agreement {result.agreement:.3f} < "
                                  f"{MIN_FLOAT_TFLITE_AGREEMENT}")
                if ratio > MAX_TFLITE_LATENCY_RATIO:
                    missed.append(f"tflite {quantize} latency ratio {ratio:.2f} > "
                                  f"{MAX_TFLITE_LATENCY_RATIO}")
    for line in missed:
        print(f"MISSED TARGET: {line}")
    print("OK" if not missed else "BELOW TARGET")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
