"""Loading a run's model and classifying images exactly as the run was trained.

``Predictor.from_run(run_dir)`` reads a run folder of the registry (``core.runs``): its
``model.keras`` (Keras ``safe_mode`` on, custom layers registered by importing ``core.models``),
its class names and its preprocessing spec. ``predict`` applies that spec through
``core.datasets.preprocess.apply_preprocessing`` (the very function the trainer uses) and runs
the model through ``predict_on_batch``: one compiled call per small batch, without the data
adapter, callbacks and progress bar that ``model.predict`` sets up on every call.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from core import runs

# Images per compiled model call; bigger inputs are split into chunks of this size.
PREDICT_BATCH_SIZE = 32
# "auto" precision runs models with at least this many parameters in mixed bfloat16 on CPUs
# with bfloat16 instructions (VGG16: ~2x faster, probabilities within ~1e-3); smaller models
# (LeNet) stay in float32, where they are already fast. Either way batch norms are folded into
# the convolutions first (``inference_copy``).
PRECISIONS = ("auto", "float32", "bfloat16")
LARGE_MODEL_PARAMS = 2_000_000
BF16_CPU_FLAGS = ("avx512_bf16", "amx_bf16")
DEFAULT_TOP_K = 5
# A run's output layer may end in softmax (probabilities) or not (logits); rows summing to 1
# within this tolerance with no negative value are taken as probabilities.
PROBABILITY_TOLERANCE = 1e-3


class PredictorError(ValueError):
    """A run cannot be used for prediction (no model yet, unreadable files, shape mismatch)."""


def _to_uint8_rgb(image) -> np.ndarray:
    """Turns one PIL image or array into a uint8 (H, W, 3) RGB array.

    Accepts PIL images of any mode (converted like ``core.imaging.to_rgb``), and uint8 arrays
    shaped (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) (alpha composited over white).
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        from core.imaging import to_rgb

        return np.asarray(to_rgb(image), dtype=np.uint8)
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(
            f"Images must be uint8 arrays (0..255) or PIL images, received dtype {array.dtype}"
        )
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim != 3 or array.shape[-1] not in (1, 3, 4) or min(array.shape[:2]) < 1:
        raise ValueError(
            f"An image array must be shaped (H, W), (H, W, 1), (H, W, 3) or (H, W, 4), "
            f"received {array.shape}"
        )
    if array.shape[-1] == 1:
        return np.repeat(array, 3, axis=-1)
    if array.shape[-1] == 4:
        alpha = array[..., 3:4].astype(np.float32) / 255.0
        blended = array[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.clip(np.round(blended), 0, 255).astype(np.uint8)
    return array


def as_image_list(images) -> list[np.ndarray]:
    """Normalises the accepted inputs to a list of uint8 (H, W, 3) RGB arrays.

    Args:
        images: one PIL image, one (H, W[, C]) uint8 array, a (N, H, W, C) uint8 batch, or a
            list/tuple of PIL images and arrays of any sizes.

    Returns:
        A list of uint8 RGB arrays.
    """
    from PIL import Image

    if isinstance(images, Image.Image):
        return [_to_uint8_rgb(images)]
    if isinstance(images, np.ndarray):
        if images.ndim == 4:
            return [_to_uint8_rgb(image) for image in images]
        return [_to_uint8_rgb(images)]
    if isinstance(images, (list, tuple)):
        return [_to_uint8_rgb(image) for image in images]
    raise ValueError(
        f"images must be a PIL image, a uint8 array or a list of them, "
        f"received {type(images).__name__}"
    )


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 for numerical safety, returned as float32."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return (exponentials / exponentials.sum(axis=-1, keepdims=True)).astype(np.float32)


def cpu_has_bfloat16() -> bool:
    """True when /proc/cpuinfo lists bfloat16 instructions (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as stream:
            flags = set(stream.read().split())
    except OSError:
        return False
    return any(flag in flags for flag in BF16_CPU_FLAGS)


def _tensorflow_gpu_visible() -> bool:
    try:
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    except Exception:  # noqa: BLE001 - no TensorFlow means no TensorFlow GPU
        return False


def resolve_precision(model, precision: str = "auto") -> str:
    """Chooses ``"float32"`` or ``"bfloat16"`` for inference.

    ``"auto"`` picks bfloat16 only for large models (``LARGE_MODEL_PARAMS``) on the TensorFlow
    backend, on a CPU with bfloat16 instructions and no GPU.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, received {precision!r}")
    if precision != "auto":
        return precision
    import keras

    large = model.count_params() >= LARGE_MODEL_PARAMS
    if (large and keras.backend.backend() == "tensorflow" and cpu_has_bfloat16()
            and not _tensorflow_gpu_visible()):
        return "bfloat16"
    return "float32"


def bfloat16_copy(model):
    """A copy of ``model`` computing in mixed bfloat16 (float32 weights, bfloat16 math).

    Layers up to the first convolution/dense layer (input normalisation, augmentation) and the
    output layer stay float32 and are shared with ``model``; the others are rebuilt with the
    ``mixed_bfloat16`` policy and get ``model``'s weights.

    Raises:
        ValueError: when the model cannot be cloned (e.g. a subclassed model).
    """
    import keras

    compute_types = (keras.layers.Conv2D, keras.layers.Dense)
    layers = list(model.layers)
    first_compute = next((index for index, layer in enumerate(layers)
                          if isinstance(layer, compute_types)), len(layers))
    keep = {id(layer) for layer in layers[:first_compute]} | {id(layers[-1])}
    originals = {}

    def clone_layer(layer):
        if id(layer) in keep or isinstance(layer, keras.Model):
            return layer
        config = layer.get_config()
        config["dtype"] = "mixed_bfloat16"
        clone = layer.__class__.from_config(config)
        originals[id(clone)] = layer
        return clone

    copy = keras.models.clone_model(model, clone_function=clone_layer)
    for layer in copy.layers:
        original = originals.get(id(layer))
        if original is not None and original.weights:
            layer.set_weights(original.get_weights())
    return copy


def inference_copy(model):
    """``model`` with its batch norms and "same" zero paddings folded into its convolutions.

    The same predictions up to float rounding, computed faster where the model has any
    (``core.models.folding.fold_for_inference``: MobileNets fold every batch norm; a LeNet
    seed or a VGG16 has none and comes back as itself). ``Predictor.model`` stays the saved
    model, for Grad-CAM and the export. A bfloat16 copy (``bfloat16_copy``) is made from the
    folded one: on 200 Dogs vs Cats photos through a MobileNetV2 run, its probabilities moved
    from float32's by at most 0.077, against 0.082 for a copy of the unfolded model.

    Returns:
        The folded copy, or ``model`` itself when nothing folds or folding fails (a model it
        cannot clone simply runs unfolded).
    """
    from core.models.folding import fold_for_inference

    try:
        return fold_for_inference(model)
    except Exception:  # noqa: BLE001 - an unfoldable model simply runs as saved
        return model


def _output_activation(model) -> str | None:
    """The activation name of the model's output layer, when it has one (e.g. ``"softmax"``)."""
    layer = model.layers[-1] if getattr(model, "layers", None) else None
    activation = getattr(layer, "activation", None)
    return getattr(activation, "__name__", None) if activation is not None else None


class Predictor:
    """A finished run's model with its preprocessing and class names.

    Build one with ``Predictor.from_run(run_dir)``. ``predict`` is thread-safe (Streamlit
    sessions share one cached instance).

    Attributes:
        run_dir: the run folder.
        config: the run's ``config.json``.
        model: the loaded Keras model.
        class_names: one name per model output, index = class id.
        preprocessing: the preprocessing spec (``config["preprocessing"]``).
        image_size: side of the square images the model takes.
        channels: 1 (grayscale) or 3 (RGB) input channels.
        precision: ``"float32"`` or ``"bfloat16"`` (see ``resolve_precision``).
    """

    def __init__(self, model, class_names: list[str], config: dict | None = None,
                 run_dir: str | os.PathLike | None = None, precision: str = "float32"):
        self.model = model
        self.config = dict(config or {})
        self.run_dir = Path(run_dir) if run_dir is not None else None
        input_shape = tuple(model.inputs[0].shape) if getattr(model, "inputs", None) else None
        if input_shape is None or len(input_shape) != 4:
            raise PredictorError(
                f"Expected a model taking (batch, size, size, channels) images, received input "
                f"shape {input_shape}"
            )
        spec = dict(self.config.get("preprocessing") or {})
        model_size = input_shape[1]
        if "image_size" not in spec:
            spec["image_size"] = int(model_size or self.config.get("image_size") or 32)
        if "color" not in spec and input_shape[-1] == 1:
            spec["color"] = "grayscale"
        self.preprocessing = spec
        self.image_size = int(spec["image_size"])
        self.channels = int(input_shape[-1] or 3)
        if model_size is not None and model_size != self.image_size:
            raise PredictorError(
                f"The model takes {model_size}x{model_size} images but the run's preprocessing "
                f"makes {self.image_size}x{self.image_size}"
            )
        num_outputs = int(model.outputs[0].shape[-1])
        self._binary_sigmoid = num_outputs == 1
        self.num_classes = 2 if self._binary_sigmoid else num_outputs
        if len(class_names) != self.num_classes:
            raise PredictorError(
                f"The run names {len(class_names)} classes but its model outputs "
                f"{self.num_classes}"
            )
        self.class_names = [str(name) for name in class_names]
        self._activation = _output_activation(model)
        self._lock = threading.Lock()
        self.precision = resolve_precision(model, precision)
        self._inference_model = inference_copy(model)
        if self.precision == "bfloat16":
            try:
                self._inference_model = bfloat16_copy(self._inference_model)
            except Exception:  # noqa: BLE001 - an uncloneable model simply stays float32
                self.precision = "float32"

    # ----------------------------------------------------------------------------------------
    @classmethod
    def from_run(cls, run_dir: str | os.PathLike, runs_root: str | os.PathLike | None = None,
                 precision: str = "auto") -> "Predictor":
        """Loads a run of the registry for prediction.

        Only run folders (with ``config.json``) are accepted: an arbitrary ``.keras`` file is
        never loaded, and Keras ``safe_mode`` stays on (no lambda/arbitrary code deserialised).

        Args:
            run_dir: a run folder or a run id under the runs root.
            runs_root: the runs root for run ids; default ``core.paths.runs_dir()``.
            precision: ``"auto"`` (bfloat16 for large models on bfloat16-capable CPUs, see
                ``resolve_precision``), ``"float32"`` or ``"bfloat16"``.

        Returns:
            A ready ``Predictor``.

        Raises:
            PredictorError: when the folder is not a run, has no model yet, or its files are
                unreadable or inconsistent.
        """
        try:
            folder = runs.run_path(run_dir, runs_root)
            config = runs.read_config(folder)
        except runs.RunError as error:
            raise PredictorError(str(error)) from error
        model_path = folder / runs.MODEL_FILE
        if not model_path.is_file():
            raise PredictorError(
                f"Run {folder.name} has no {runs.MODEL_FILE} yet (is it still training?)"
            )
        import keras

        from core.models import register_custom_layers

        register_custom_layers()

        try:
            model = keras.saving.load_model(model_path, compile=False, safe_mode=True)
        except Exception as error:  # noqa: BLE001 - any load failure is reported the same way
            raise PredictorError(
                f"Could not load {runs.MODEL_FILE} of run {folder.name}: {error}"
            ) from error
        class_names = run_class_names(folder, config)
        if class_names is None:
            num_outputs = int(model.outputs[0].shape[-1])
            class_names = [f"class {index}" for index in range(max(num_outputs, 2))]
        return cls(model, class_names, config=config, run_dir=folder, precision=precision)

    # ----------------------------------------------------------------------------------------
    def preprocess(self, images) -> np.ndarray:
        """Applies the run's preprocessing: what the model sees.

        Args:
            images: see ``as_image_list`` (PIL images, uint8 arrays of any size, or a batch).

        Returns:
            uint8 array (N, image_size, image_size, channels).
        """
        from core.datasets.preprocess import apply_preprocessing

        arrays = as_image_list(images)
        if not arrays:
            return np.zeros((0, self.image_size, self.image_size, self.channels), np.uint8)
        processed = np.asarray(apply_preprocessing(arrays, self.preprocessing))
        if processed.ndim == 3:
            processed = processed[..., None]
        if processed.shape[1:] != (self.image_size, self.image_size, self.channels):
            raise PredictorError(
                f"Preprocessing made images of shape {processed.shape[1:]}, but the model takes "
                f"{(self.image_size, self.image_size, self.channels)}"
            )
        return processed

    def predict_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """Runs the model on already preprocessed images.

        Args:
            batch: (N, S, S, C) array as returned by ``preprocess``.

        Returns:
            (N, num_classes) float32 probabilities.
        """
        batch = np.asarray(batch)
        if len(batch) == 0:
            return np.zeros((0, self.num_classes), np.float32)
        inputs = batch.astype(np.float32, copy=False)
        outputs = []
        with self._lock:
            for start in range(0, len(inputs), PREDICT_BATCH_SIZE):
                chunk = inputs[start:start + PREDICT_BATCH_SIZE]
                outputs.append(np.asarray(self._inference_model.predict_on_batch(chunk),
                                          np.float32))
        return self._to_probabilities(np.concatenate(outputs, axis=0))

    def _to_probabilities(self, outputs: np.ndarray) -> np.ndarray:
        if self._binary_sigmoid:
            positive = outputs[:, 0]
            if self._activation not in ("sigmoid",):
                positive = 1.0 / (1.0 + np.exp(-positive))
            return np.stack([1.0 - positive, positive], axis=-1).astype(np.float32)
        if self._activation == "softmax":
            return outputs
        sums = outputs.sum(axis=-1)
        looks_like_probabilities = (outputs.min() >= 0.0
                                    and np.all(np.abs(sums - 1.0) < PROBABILITY_TOLERANCE))
        return outputs if looks_like_probabilities else softmax(outputs)

    def warm_up(self) -> None:
        """Runs one small grey image through preprocessing and the model, so that the first real
        call pays neither for graph tracing nor for OpenCV's lazy initialisation."""
        blank = np.full((self.image_size * 2 + 3, self.image_size * 2 + 1, 3), 128, np.uint8)
        self.predict([blank])

    def predict(self, images) -> np.ndarray:
        """Classifies images exactly as the run was trained.

        Args:
            images: a list of PIL images (e.g. from ``core.inference.read_image``) or uint8 RGB
                arrays of any size; also one image or a (N, H, W, C) batch.

        Returns:
            (N, num_classes) float32 array of probabilities.
        """
        return self.predict_preprocessed(self.preprocess(images))

    def top_k(self, images, k: int = DEFAULT_TOP_K) -> list[list[dict[str, Any]]]:
        """The ``k`` most probable classes of each image.

        Args:
            images: as for ``predict``.
            k: how many classes per image (capped at ``num_classes``).

        Returns:
            One list per image of ``{"class_id", "class_name", "probability"}``, most probable
            first.
        """
        return top_k_from_probabilities(self.predict(images), self.class_names, k)

    def __repr__(self) -> str:
        name = self.run_dir.name if self.run_dir else "model"
        return (f"Predictor({name}: {self.num_classes} classes, "
                f"{self.image_size}x{self.image_size}x{self.channels}, {self.precision})")


def top_k_from_probabilities(probabilities: np.ndarray, class_names: list[str],
                             k: int = DEFAULT_TOP_K) -> list[list[dict[str, Any]]]:
    """Ranks each row of ``probabilities``; see ``Predictor.top_k``."""
    if k < 1:
        raise ValueError(f"k must be at least 1, received {k}")
    probabilities = np.asarray(probabilities)
    k = min(int(k), probabilities.shape[-1])
    ranked = []
    for row in probabilities:
        order = np.argsort(-row, kind="stable")[:k]
        ranked.append([
            {"class_id": int(index), "class_name": class_names[index],
             "probability": float(row[index])}
            for index in order
        ])
    return ranked


def run_class_names(run_dir: str | os.PathLike, config: dict | None = None) -> list[str] | None:
    """A run's class names: ``class_names.json``, else ``config.json``, else ``results.json``.

    Returns:
        The list, or None when the run records none.
    """
    run_dir = Path(run_dir)
    path = run_dir / getattr(runs, "CLASS_NAMES_FILE", "class_names.json")
    try:
        if path.exists():
            names = runs.read_json(path)
            if isinstance(names, list) and names:
                return [str(name) for name in names]
        config = config if config is not None else runs.read_config(run_dir)
        if isinstance(config.get("class_names"), list) and config["class_names"]:
            return [str(name) for name in config["class_names"]]
        results = runs.read_results(run_dir)
        if results and isinstance(results.get("class_names"), list) and results["class_names"]:
            return [str(name) for name in results["class_names"]]
    except runs.RunError:
        return None
    return None


def model_mtime(run_dir: str | os.PathLike) -> float:
    """The modification time of a run's ``model.keras`` (0.0 when absent): a cache key part."""
    try:
        return (Path(run_dir) / runs.MODEL_FILE).stat().st_mtime
    except OSError:
        return 0.0
