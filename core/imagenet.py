"""What ImageNet already sees: the pretrained networks with their 1,000-class top, zero-shot.

``ImageNetClassifier.load(backbone="mobilenetv2")`` builds the Keras application with its
top from the weights installed by ``python -m core.weights`` (never downloading), and
``predict(images) -> (N, 1000)`` probabilities in Keras' class order, with the backbone's own
preprocessing. ``cat_dog_zero_shot`` turns those into a cat-vs-dog answer by probability
mass: ImageNet's domestic-cat classes 281-285 against its dog breeds 151-268, the number a
trained transfer model has to beat.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

LABELS_FILE = Path(__file__).with_name("imagenet_labels_1000.txt")
NUM_IMAGENET_CLASSES = 1000
IMAGE_SIZE = 224
PREDICT_BATCH_SIZE = 32
DEFAULT_TOP_K = 5
CAT_CLASSES = tuple(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
DOG_CLASSES = tuple(range(151, 269))  # Chihuahua ... Mexican hairless
DEFAULT_BACKBONE = "mobilenetv2"


def imagenet_class_names() -> list[str]:
    """The 1,000 ImageNet class names in Keras order (index 281 = 'tabby, tabby cat')."""
    names = LABELS_FILE.read_text(encoding="utf-8").splitlines()
    if len(names) != NUM_IMAGENET_CLASSES:
        raise ValueError(f"{LABELS_FILE} must hold {NUM_IMAGENET_CLASSES} names, found {len(names)}")
    return names


class ImageNetClassifier:
    """A pretrained backbone with its ImageNet top.

    Attributes:
        backbone: ``mobilenetv2``, ``mobilenet`` or ``vgg16``.
        class_names: the 1,000 ImageNet names in Keras order.
        model: the Keras model (input: preprocessed floats; output: softmax over 1,000).
        weights: the installed manifest entry (path, source, sha256, alpha).
    """

    def __init__(self, backbone: str, model, weights: dict):
        self.backbone = backbone
        self.model = model
        self.weights = weights
        self.class_names = imagenet_class_names()
        self._preprocessing = None

    @classmethod
    def load(cls, backbone: str = DEFAULT_BACKBONE) -> "ImageNetClassifier":
        """Builds the with-top network from the installed weights.

        Raises:
            core.weights.WeightsUnavailableError: the with-top weights are not installed; the
                message says how to install them.
        """
        from core import weights as weights_store
        from core.models import backbones

        module = backbones.backbone_module(backbone)
        entry = weights_store.resolve_imagenet(backbone, weights_store.TOP, allow_download=False)
        kwargs = {} if entry.get("alpha") is None else {"alpha": entry["alpha"]}
        model = module.build_base(IMAGE_SIZE, entry["path"], include_top=True, **kwargs)
        classifier = cls(backbone, model, entry)
        classifier._preprocessing = module.preprocessing_layer()
        return classifier

    def preprocess(self, images) -> np.ndarray:
        """Resizes images to 224x224 RGB the way runs do (uint8, what the backbone then scales)."""
        from core.datasets import preprocess
        from core.predictor import as_image_list

        spec = {"image_size": IMAGE_SIZE, "color": "rgb", "equalization": "none", "blur": 0}
        return preprocess.apply_preprocessing(as_image_list(images), spec)

    def predict(self, images) -> np.ndarray:
        """Probabilities over the 1,000 classes.

        Args:
            images: a list of PIL images (or uint8 arrays), any sizes.

        Returns:
            float32 array (N, 1000); rows sum to 1.
        """
        batch = self.preprocess(images).astype("float32")
        if not len(batch):
            return np.zeros((0, NUM_IMAGENET_CLASSES), dtype="float32")
        scaled = np.asarray(self._preprocessing(batch))
        return np.asarray(self.model.predict(scaled, batch_size=PREDICT_BATCH_SIZE, verbose=0),
                          dtype="float32")

    def top_k(self, probabilities: np.ndarray, k: int = DEFAULT_TOP_K) -> list[list[dict]]:
        """Per image, the ``k`` most probable classes as ``{"class", "index", "probability"}``."""
        results = []
        for row in np.atleast_2d(probabilities):
            order = np.argsort(row)[::-1][:k]
            results.append([{"class": self.class_names[index], "index": int(index),
                             "probability": float(row[index])} for index in order])
        return results


def cat_dog_masses(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ImageNet probability mass on the domestic-cat and on the dog classes, per image."""
    probabilities = np.atleast_2d(probabilities)
    return (probabilities[:, list(CAT_CLASSES)].sum(axis=1),
            probabilities[:, list(DOG_CLASSES)].sum(axis=1))


def cat_dog_zero_shot(probabilities: np.ndarray, class_names: list[str]) -> np.ndarray:
    """Zero-shot labels for a cat/dog dataset: the index of ``"cat"`` or ``"dog"`` in its names.

    Raises:
        ValueError: when ``class_names`` is not a cat/dog pair.
    """
    lowered = [name.lower() for name in class_names]
    if sorted(lowered) != ["cat", "dog"]:
        raise ValueError(f"zero-shot cat vs dog needs class names ['cat', 'dog'], received {class_names}")
    cat_mass, dog_mass = cat_dog_masses(probabilities)
    return np.where(cat_mass > dog_mass, lowered.index("cat"), lowered.index("dog"))


def zero_shot_accuracy(classifier: ImageNetClassifier, images, labels, class_names: list[str],
                       batch_size: int = 100) -> dict:
    """The zero-shot cat-vs-dog baseline on labelled images (what transfer has to beat).

    Returns:
        ``{"accuracy", "num_images", "correct"}``.
    """
    labels = np.asarray(labels)
    predictions = []
    for start in range(0, len(labels), batch_size):
        chunk = images[start:start + batch_size]
        predictions.append(cat_dog_zero_shot(classifier.predict(list(chunk)), class_names))
    predicted = np.concatenate(predictions) if predictions else np.zeros(0, dtype=int)
    correct = int((predicted == labels).sum())
    return {"accuracy": correct / max(len(labels), 1), "num_images": int(len(labels)), "correct": correct}
