"""Portable export of a run's model: ``.keras`` with standard layers only, SavedModel, TFLite.

A run's ``model.keras`` holds training-only layers (augmentation, ``RandomGaussianBlur``) and
project layers (``CaffePreprocessing``), so loading it needs this project on ``sys.path``.
``inference_model`` rebuilds the functional graph layer by layer into a model that a bare
``keras.saving.load_model(path)`` can open anywhere:

* training-only layers (``Random*`` preprocessing layers, the augmentation ``Sequential``,
  ``RandomGaussianBlur``, ``RandomLowResolution``, ``RandomOcclusion``, dropout and noise layers,
  ``Identity``) are
  dropped;
* ``CaffePreprocessing`` (RGB -> BGR, minus the ImageNet means) becomes a standard
  ``Normalization`` layer (means in RGB order, variance 1) and the channel flip is folded into
  the kernel of the convolution that follows (``block1_conv1`` for VGG16): conv(flip(x)) with
  kernel K equals conv(x) with K's input channels reversed. When the next layer is not a
  convolution the flip becomes a 1x1 ``Conv2D`` holding a permutation matrix;
* nested functional models are flattened into the exported graph (unless their layer names
  clash, as a committee's members' do: then each is rebuilt as a nested model); every other
  layer is a standard Keras layer and is reused with its weights.

The exported model takes exactly what ``Predictor.preprocess`` produces (uint8-valued images of
shape (S, S, C), as float32 or uint8) and outputs the run's probabilities.

Command line::

    python -m core.export RUN --format keras|savedmodel|tflite [--quantize float16|int8] \
        [--output PATH]

prints the output path last. This module may use ``tf.*`` (it converts models, it builds none).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core import environment, runs

FORMATS = ("keras", "savedmodel", "tflite")
QUANTIZATIONS = ("none", "float16", "int8")
FILE_SUFFIXES = {"keras": ".keras", "savedmodel": "_savedmodel", "tflite": ".tflite"}
# Layers active only while training; they pass inputs through at inference.
TRAINING_ONLY_CLASS_NAMES = (
    "Dropout", "SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D", "GaussianNoise",
    "GaussianDropout", "AlphaDropout", "Identity", "RandomGaussianBlur", "RandomAffine",
    "RandomLowResolution", "RandomOcclusion", "ActivityRegularization",
)
CAFFE_CLASS_NAME = "CaffePreprocessing"
SAMPLER_CLASS_NAME = "AffineSampler"
# Project layers that are a standard Keras layer with another training kernel: written as it.
STANDARD_EQUIVALENTS = {"FusedBatchNormalization": "BatchNormalization"}
CONVOLUTION_CLASS_NAMES = ("Conv2D",)
# Validation images used to measure agreement, latency and the int8 calibration.
DEFAULT_VALIDATION_IMAGES = 100
CALIBRATION_IMAGES = 64
LATENCY_REPEATS = 20


class ExportError(ValueError):
    """A model cannot be exported (an unknown custom layer, a subclassed model...)."""


def is_training_only(layer) -> bool:
    """True for a layer that is the identity at inference (augmentation, blur, dropout...)."""
    import keras

    if isinstance(layer, keras.Sequential):
        return all(is_training_only(inner) for inner in layer.layers)
    name = type(layer).__name__
    return name in TRAINING_ONLY_CLASS_NAMES or (
        name.startswith("Random") and type(layer).__module__.startswith("keras.")
    )


def _is_standard(layer) -> bool:
    return type(layer).__module__.startswith("keras.")


class _GraphRebuilder:
    """Replays a functional model's graph with standard layers (see the module docstring)."""

    def __init__(self, nest_models: bool = False):
        self.flipped: set[int] = set()  # ids of tensors whose channels still need reversing
        self.new_layer_index = 0
        # Nested models are flattened into one graph, unless their layer names clash (a
        # committee's members): then each becomes a nested model of standard layers.
        self.nest_models = nest_models

    def _name(self, base: str) -> str:
        self.new_layer_index += 1
        return f"{base}_export{self.new_layer_index}" if self.new_layer_index > 1 else f"{base}_export"

    def run(self, model, inputs):
        """Rebuilds ``model`` (functional or sequential) on ``inputs``; returns its outputs."""
        import keras

        if isinstance(model, keras.Sequential):
            tensor = inputs
            for layer in model.layers:
                tensor = self.operation(layer)(tensor)
            return tensor
        if not hasattr(model, "_run_through_graph"):
            raise ExportError(f"only functional and sequential models can be exported, received "
                              f"a subclassed {type(model).__name__}")
        return model._run_through_graph(inputs, operation_fn=self.operation,
                                        call_fn=lambda operation, *args, **kwargs:
                                        operation(*args, **kwargs))

    def operation(self, layer):
        """The callable that stands for ``layer`` in the exported graph."""
        import keras

        if is_training_only(layer):
            return self._identity
        if isinstance(layer, keras.Model) and self.nest_models:
            return lambda inputs, *args, **kwargs: self._nested(layer, self._materialise(inputs))
        if isinstance(layer, keras.Model):  # nested functional or sequential model: flatten it
            return lambda inputs, *args, **kwargs: self.run(layer, self._materialise(inputs))
        if type(layer).__name__ == CAFFE_CLASS_NAME:
            return lambda inputs, *args, **kwargs: self._caffe(layer, self._materialise(inputs))
        if type(layer).__name__ == SAMPLER_CLASS_NAME:
            return lambda inputs, *args, **kwargs: self._affine_sampler(
                layer, *[self._materialise(tensor) for tensor in inputs])
        if type(layer).__name__ in STANDARD_EQUIVALENTS:
            return lambda inputs, *args, **kwargs: self._standard_equivalent(
                layer, self._materialise(inputs))
        if not _is_standard(layer):
            raise ExportError(
                f"layer {layer.name!r} is a custom {type(layer).__name__} with no standard "
                f"Keras equivalent; expected only Keras layers, CaffePreprocessing, "
                f"AffineSampler or training-only layers"
            )
        if type(layer).__name__ in CONVOLUTION_CLASS_NAMES:
            return lambda inputs, *args, **kwargs: self._convolution(layer, inputs, kwargs)
        return lambda *args, **kwargs: layer(*[self._materialise_all(arg) for arg in args], **kwargs)

    def _materialise_all(self, value):
        if isinstance(value, (list, tuple)):
            return type(value)(self._materialise(item) for item in value)
        return self._materialise(value)

    @staticmethod
    def _identity(inputs, *args, **kwargs):
        return inputs

    def _nested(self, model, inputs):
        """Rebuilds a nested model as its own model of standard layers, applied to ``inputs``."""
        import keras

        inner_inputs = keras.Input(tuple(inputs.shape[1:]), dtype="float32")
        inner_outputs = self._materialise(self.run(model, inner_inputs))
        return keras.Model(inner_inputs, inner_outputs, name=model.name)(inputs)

    def _caffe(self, layer, inputs):
        """``CaffePreprocessing`` as ``Normalization`` in RGB order; the flip stays pending."""
        import keras

        means_rgb = np.asarray(layer.means[::-1], np.float32)
        normalization = keras.layers.Normalization(
            mean=means_rgb.tolist(), variance=[1.0, 1.0, 1.0], name=layer.name)
        outputs = normalization(inputs)
        self.flipped.add(id(outputs))
        return outputs

    def _convolution(self, layer, inputs, kwargs):
        """Reuses a convolution, or a copy with reversed input channels after a pending flip."""
        kwargs = {key: value for key, value in kwargs.items() if key != "training"}
        if id(inputs) not in self.flipped:
            return layer(inputs, **kwargs)
        from core.models.layers import rebuilt_as

        weights = layer.get_weights()
        weights[0] = np.ascontiguousarray(weights[0][:, :, ::-1, :])
        return rebuilt_as(layer, type(layer), inputs.shape, weights)(inputs)

    @staticmethod
    def _standard_equivalent(layer, inputs):
        """The Keras layer ``STANDARD_EQUIVALENTS`` names for ``layer``, with its weights."""
        import keras

        from core.models.layers import rebuilt_as

        standard_class = getattr(keras.layers, STANDARD_EQUIVALENTS[type(layer).__name__])
        return rebuilt_as(layer, standard_class, inputs.shape, layer.get_weights())(inputs)

    def _affine_sampler(self, layer, images, theta):
        """``AffineSampler`` (bilinear, border pixels outside) with standard layers only.

        Bilinear sampling at a point x gives pixel column j the "tent" weight max(0, 1 - |x - j|)
        (likewise rows), so with the sampled points clipped into the image:

        * fixed ``Dense`` layers turn ``theta`` into each output pixel's source column x and row
          y, and ``ReLU(max_value=side - 1)`` clips them;
        * a fixed ``Dense`` gives x - j for every column j, and ``ReLU``/``Rescaling``/``Add``
          make the tent weights (likewise rows);
        * ``Dot`` mixes each output pixel's columns, ``Multiply`` and a ones ``Dense`` its rows.
        """
        import keras

        from core.models.layers import sampling_points

        height, width, channels = (int(side) for side in images.shape[1:])
        out_height, out_width = (height, width) if layer.output_size is None else (layer.output_size,) * 2
        pixels = out_height * out_width  # output pixels; each samples the input's height x width
        grid_x, grid_y = sampling_points(out_height, out_width)
        name = layer.name

        def source_coordinate(axis: str, first_row: int, side: int):
            half = (side - 1) / 2.0  # pixel = half * (theta_a gx + theta_b gy + theta_c + 1)
            kernel = np.zeros((6, pixels), np.float32)
            kernel[first_row] = half * grid_x
            kernel[first_row + 1] = half * grid_y
            kernel[first_row + 2] = half
            dense = keras.layers.Dense(pixels, name=f"{name}_{axis}_source")
            dense.build((None, 6))
            dense.set_weights([kernel, np.full(pixels, half, np.float32)])
            coordinate = keras.layers.ReLU(max_value=float(side - 1),
                                           name=f"{name}_{axis}_clip")(dense(theta))
            coordinate = keras.layers.Reshape((pixels, 1), name=f"{name}_{axis}_column")(coordinate)
            offsets = keras.layers.Dense(side, name=f"{name}_{axis}_offsets")  # x - j for every j
            offsets.build((None, pixels, 1))
            offsets.set_weights([np.ones((1, side), np.float32), -np.arange(side, dtype=np.float32)])
            difference = offsets(coordinate)
            above = keras.layers.ReLU(name=f"{name}_{axis}_above")(difference)
            below = keras.layers.ReLU(name=f"{name}_{axis}_below")(
                keras.layers.Rescaling(-1.0, name=f"{name}_{axis}_negated")(difference))
            distance = keras.layers.Add(name=f"{name}_{axis}_distance")([above, below])
            return keras.layers.ReLU(name=f"{name}_{axis}_weights")(
                keras.layers.Rescaling(-1.0, offset=1.0, name=f"{name}_{axis}_tent")(distance))

        column_weights = source_coordinate("x", 0, width)  # (batch, pixels, width)
        row_weights = source_coordinate("y", 3, height)  # (batch, pixels, height)
        by_column = keras.layers.Reshape((width, height * channels), name=f"{name}_by_column")(
            keras.layers.Permute((2, 1, 3), name=f"{name}_columns_first")(images))
        mixed = keras.layers.Dot(axes=(2, 1), name=f"{name}_column_mix")([column_weights, by_column])
        mixed = keras.layers.Reshape((pixels, height, channels), name=f"{name}_rows")(mixed)
        row_weights = keras.layers.Reshape((pixels, height, 1), name=f"{name}_row_weights")(row_weights)
        weighted = keras.layers.Multiply(name=f"{name}_row_mix")([mixed, row_weights])
        weighted = keras.layers.Permute((1, 3, 2), name=f"{name}_rows_last")(weighted)
        row_sum = keras.layers.Dense(1, use_bias=False, name=f"{name}_row_sum")
        row_sum.build(tuple(weighted.shape))
        row_sum.set_weights([np.ones((height, 1), np.float32)])
        return keras.layers.Reshape((out_height, out_width, channels), name=name)(row_sum(weighted))

    def _materialise(self, tensor):
        """Applies a pending channel flip as a 1x1 permutation convolution (exact in float)."""
        import keras

        if id(tensor) not in self.flipped:
            return tensor
        channels = int(tensor.shape[-1])
        flip = keras.layers.Conv2D(channels, 1, use_bias=False, name=self._name("channel_flip"))
        flip.build(tuple(tensor.shape))
        flip.set_weights([np.eye(channels, dtype=np.float32)[::-1].reshape(1, 1, channels, channels)])
        return flip(tensor)


def _layer_names_clash(model) -> bool:
    """True when flattening ``model``'s nested models would repeat a layer name."""
    import keras

    names: list[str] = []

    def collect(container):
        for layer in container.layers:
            if isinstance(layer, keras.Model):
                collect(layer)
            else:
                names.append(layer.name)

    collect(model)
    return len(names) != len(set(names))


def inference_model(model):
    """Rebuilds a run's model with standard Keras layers only, for inference.

    Args:
        model: a loaded functional (or sequential) run model.

    Returns:
        A ``keras.Model`` with the same input shape and name ``"<name>_inference"`` whose
        outputs equal ``model``'s at inference (within float32 rounding).

    Raises:
        ExportError: for a subclassed model or a custom layer without a standard equivalent.
    """
    import keras

    if not getattr(model, "inputs", None) or len(model.inputs) != 1:
        raise ExportError(f"expected a model with one image input, received "
                          f"{len(getattr(model, 'inputs', None) or [])} inputs")
    original = model.inputs[0]
    inputs = keras.Input(tuple(original.shape[1:]), name=original.name or "image", dtype="float32")
    rebuilder = _GraphRebuilder(nest_models=_layer_names_clash(model))
    outputs = rebuilder._materialise(rebuilder.run(model, inputs))
    if isinstance(outputs, (list, tuple)) and len(outputs) == 1:
        outputs = outputs[0]
    exported = keras.Model(inputs, outputs, name=f"{model.name}_inference")
    custom = [layer.name for layer in exported.layers if not _is_standard(layer)]
    if custom:
        raise ExportError(f"the exported graph still holds custom layers {custom}")
    return exported


def load_run_model(run_dir: str | os.PathLike):
    """Loads a run's ``model.keras`` (safe mode, project layers registered)."""
    import keras

    from core.models import register_custom_layers

    folder = runs.run_path(run_dir)
    model_path = folder / runs.MODEL_FILE
    if not model_path.is_file():
        raise ExportError(f"run {folder.name} has no {runs.MODEL_FILE} yet (is it still training?)")
    register_custom_layers()
    return keras.saving.load_model(model_path, compile=False, safe_mode=True)


def _representative_images(run_dir: Path, count: int) -> np.ndarray:
    """Up to ``count`` preprocessed validation images of the run (float32), for calibration."""
    images, _ = validation_images(run_dir, count)
    return images.astype(np.float32)


def validation_raw_images(run_dir: str | os.PathLike, count: int = DEFAULT_VALIDATION_IMAGES):
    """``count`` evenly spaced validation images of a run's dataset, before preprocessing.

    Args:
        run_dir: a run folder or id.
        count: how many images at most.

    Returns:
        ``(images, labels)``: a list of uint8 RGB arrays as the dataset stores them (what a
        user would hand to ``Predictor.predict``) and int64 labels.
    """
    from core import datasets
    from core.reports import image_size_of, split_load_arguments

    if int(count) < 1:
        raise ValueError(f"count must be at least 1, received {count!r}")
    config = runs.read_config(runs.run_path(run_dir))
    split = datasets.load(config["dataset"], "val", image_size_of(config),
                          **split_load_arguments(config, "val"))
    # Evenly spaced, so that a split stored class by class still gives every class a share.
    chosen = np.unique(np.linspace(0, len(split.images) - 1, min(int(count), len(split.images)))
                       .round().astype(int))
    return [np.asarray(split.images[index]) for index in chosen], np.asarray(split.labels)[chosen]


def validation_images(run_dir: str | os.PathLike, count: int = DEFAULT_VALIDATION_IMAGES):
    """Like ``validation_raw_images``, preprocessed as the run was (``Predictor.preprocess``).

    Returns:
        ``(images, labels)``: uint8 (N, S, S, C) images and int64 labels.
    """
    from core.datasets.preprocess import apply_preprocessing

    raw, labels = validation_raw_images(run_dir, count)
    config = runs.read_config(runs.run_path(run_dir))
    images = np.asarray(apply_preprocessing(raw, config.get("preprocessing") or {}))
    if images.ndim == 3:
        images = images[..., None]
    return images, labels


def _tflite_bytes(model, quantize: str, calibration: np.ndarray | None) -> bytes:
    """Converts a standard-layer Keras model to a TFLite flatbuffer through a SavedModel."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tllab-export-") as folder:
        saved_model = Path(folder) / "saved_model"
        model.export(str(saved_model), format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        if quantize == "float16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            if calibration is None or not len(calibration):
                raise ExportError("int8 quantisation needs calibration images")
            converter.optimizations = [tf.lite.Optimize.DEFAULT]

            def representative():
                for image in calibration:
                    yield [image[None].astype(np.float32)]

            converter.representative_dataset = representative
        return converter.convert()


def export_model(run_dir: str | os.PathLike, format: str = "keras", *, quantize: str = "none",
                 output: str | os.PathLike | None = None) -> Path:
    """Exports a run's model in a portable format.

    Args:
        run_dir: a run folder or a run id under the runs root.
        format: ``"keras"`` (standard layers only), ``"savedmodel"`` (a TensorFlow SavedModel
            folder) or ``"tflite"``.
        quantize: ``"none"``, ``"float16"`` or ``"int8"`` (TFLite only; int8 is calibrated on
            the run's validation images, with float input and output).
        output: where to write; default ``<run folder>/export/<run id><suffix>``.

    Returns:
        The path written (a file, or a folder for SavedModel).

    Raises:
        ValueError: for an unknown format or quantisation, or quantisation outside TFLite.
        ExportError: when the model cannot be rebuilt with standard layers.
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, received {format!r}")
    quantize = quantize or "none"
    if quantize not in QUANTIZATIONS:
        raise ValueError(f"quantize must be one of {QUANTIZATIONS}, received {quantize!r}")
    if quantize != "none" and format != "tflite":
        raise ValueError(f"quantize applies to the tflite format only, received format {format!r} "
                         f"with quantize {quantize!r}")
    folder = runs.run_path(run_dir)
    model = inference_model(load_run_model(folder))
    if output is None:
        suffix = FILE_SUFFIXES[format] if quantize == "none" else f"_{quantize}.tflite"
        output = folder / "export" / f"{folder.name}{suffix}"
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    if format == "keras":
        if output.suffix != ".keras":
            raise ValueError(f"a keras export must end in .keras, received {output.name!r}")
        model.save(output)
    elif format == "savedmodel":
        if output.exists():
            shutil.rmtree(output)
        model.export(str(output), format="tf_saved_model", verbose=False)
    else:
        calibration = (_representative_images(folder, CALIBRATION_IMAGES)
                       if quantize == "int8" else None)
        output.write_bytes(_tflite_bytes(model, quantize, calibration))
    return output


def tflite_runner(model_path_or_bytes):
    """A TFLite interpreter loaded once, as a function of preprocessed images.

    Args:
        model_path_or_bytes: a ``.tflite`` path or its bytes.

    Returns:
        ``predict(images) -> (N, num_classes) float32``, running images one at a time.
    """
    import tensorflow as tf

    if isinstance(model_path_or_bytes, (bytes, bytearray)):
        interpreter = tf.lite.Interpreter(model_content=bytes(model_path_or_bytes))
    else:
        interpreter = tf.lite.Interpreter(model_path=str(model_path_or_bytes))
    interpreter.allocate_tensors()
    input_detail = interpreter.get_input_details()[0]
    output_detail = interpreter.get_output_details()[0]

    def predict(images: np.ndarray) -> np.ndarray:
        outputs = []
        for image in np.asarray(images):
            interpreter.set_tensor(input_detail["index"], image[None].astype(input_detail["dtype"]))
            interpreter.invoke()
            outputs.append(np.asarray(interpreter.get_tensor(output_detail["index"])[0], np.float32))
        return np.stack(outputs) if outputs else np.zeros((0, 0), np.float32)

    return predict


def tflite_predict(model_path_or_bytes, images: np.ndarray) -> np.ndarray:
    """Runs a TFLite model on preprocessed images (see ``tflite_runner``).

    Args:
        model_path_or_bytes: a ``.tflite`` path or its bytes.
        images: (N, S, S, C) uint8-valued images.

    Returns:
        (N, num_classes) float32 outputs.
    """
    return tflite_runner(model_path_or_bytes)(images)


@dataclass
class ExportMeasurement:
    """One exported format measured on validation images (what the Runs page shows).

    Attributes:
        format: ``"keras"``, ``"savedmodel"`` or ``"tflite"``.
        quantize: ``"none"``, ``"float16"`` or ``"int8"``.
        path: the exported file (a ``.zip`` of the folder for SavedModel).
        size_bytes: the file's size.
        latency_ms: median milliseconds to classify one image.
        agreement: share of images whose top-1 equals the run model's.
        num_images: how many validation images were compared.
    """

    format: str
    quantize: str
    path: Path
    size_bytes: int
    latency_ms: float
    agreement: float
    num_images: int


def zip_folder(folder: Path, archive: Path) -> Path:
    """Zips a folder (e.g. a SavedModel) into ``archive``; returns ``archive``."""
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(Path(folder).rglob("*")):
            if path.is_file():
                handle.write(path, Path(folder.name) / path.relative_to(folder))
    return archive


def _median_latency_ms(predict_one, image: np.ndarray) -> float:
    predict_one(image)  # warm-up (tracing, allocation)
    timings = []
    for _ in range(LATENCY_REPEATS):
        start = time.perf_counter()
        predict_one(image)
        timings.append((time.perf_counter() - start) * 1000.0)
    return float(np.median(timings))


def measure_export(run_dir: str | os.PathLike, format: str = "keras", *, quantize: str = "none",
                   output: str | os.PathLike | None = None,
                   num_images: int = DEFAULT_VALIDATION_IMAGES) -> ExportMeasurement:
    """Exports a run and measures size, one-image latency and top-1 agreement with the run.

    Args:
        run_dir: a run folder or id.
        format: see ``export_model``.
        quantize: see ``export_model``.
        output: see ``export_model``.
        num_images: validation images to compare on.

    Returns:
        An ``ExportMeasurement``.
    """
    import keras

    from core.predictor import Predictor

    folder = runs.run_path(run_dir)
    path = export_model(folder, format, quantize=quantize, output=output)
    images, _ = validation_images(folder, num_images)
    reference = Predictor.from_run(folder, precision="float32").predict_preprocessed(images)
    if format == "keras":
        exported = keras.saving.load_model(path, compile=False)
        outputs = np.asarray(exported.predict_on_batch(images.astype(np.float32)))
        latency = _median_latency_ms(
            lambda image: exported.predict_on_batch(image[None].astype(np.float32)), images[0])
        download = path
    elif format == "savedmodel":
        import tensorflow as tf

        loaded = tf.saved_model.load(str(path))
        outputs = np.asarray(loaded.serve(tf.constant(images.astype(np.float32))))
        latency = _median_latency_ms(
            lambda image: loaded.serve(tf.constant(image[None].astype(np.float32))), images[0])
        download = zip_folder(path, path.with_suffix(".zip"))
    else:
        predict = tflite_runner(path)
        outputs = predict(images)
        latency = _median_latency_ms(lambda image: predict(image[None]), images[0])
        download = path
    agreement = float(np.mean(outputs.argmax(axis=1) == reference.argmax(axis=1)))
    return ExportMeasurement(format, quantize, Path(download), Path(download).stat().st_size,
                             latency, agreement, int(len(images)))


def build_parser() -> argparse.ArgumentParser:
    """The ``python -m core.export`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="python -m core.export",
        description="Export a run's model with standard Keras layers only (keras), as a "
                    "TensorFlow SavedModel folder, or as TFLite. Prints the output path last.")
    parser.add_argument("run", help="a run id under the runs root, or a run folder")
    parser.add_argument("--format", choices=FORMATS, default="keras")
    parser.add_argument("--quantize", choices=QUANTIZATIONS[1:], default=None,
                        help="TFLite only: float16 weights, or int8 calibrated on validation images")
    parser.add_argument("--output", default=None, help="output file (folder for savedmodel)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Runs the export command line; returns the exit status."""
    environment.prefer_onednn_kernels()  # before anything imports TensorFlow
    arguments = build_parser().parse_args(argv)
    try:
        path = export_model(arguments.run, arguments.format, quantize=arguments.quantize or "none",
                            output=arguments.output)
    except (ValueError, runs.RunError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
