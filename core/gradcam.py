"""Grad-CAM (Selvaraju et al. 2017) following Keras' "Grad-CAM class activation visualization".

The recipe: a model mapping the input to (last conv activations, predictions); the gradient of
the class score with respect to the conv activations; channel weights = the mean gradient over
space; a ReLU of the weighted sum of channels; normalised to 0..1, resized and overlaid.

The class score is the pre-softmax logit when the output layer is a softmax ``Dense`` (as in
Keras' example, which removes the softmax): a saturated softmax has vanishing gradients.

Gradients need a backend: TensorFlow's ``GradientTape`` is used, behind ``_tensorflow_gradients``;
other backends get a ``GradCamError`` naming the backend.

A network with a spatial transformer (``core.models.layers.AffineSampler``) convolves the warped
image, so its map is warped back onto the input (``_unwarped``): parts of the input the
transformer did not look at get 0.
"""

from __future__ import annotations

import numpy as np

from core.models import iter_layers

DEFAULT_ALPHA = 0.4
DEFAULT_COLORMAP = "jet"
# Layer classes that count as convolutions when searching for the last one.
_CONV_CLASS_NAMES = ("Conv2D", "DepthwiseConv2D", "SeparableConv2D", "Conv2DTranspose")


class GradCamError(ValueError):
    """Grad-CAM cannot be computed for this model or backend (message for humans)."""


def _is_model(layer) -> bool:
    import keras

    return isinstance(layer, keras.Model)


def _is_conv(layer) -> bool:
    import keras

    conv_classes = tuple(getattr(keras.layers, name) for name in _CONV_CLASS_NAMES
                         if hasattr(keras.layers, name))
    return isinstance(layer, conv_classes)


def find_last_conv_layer(model) -> str:
    """Names the last convolution layer of ``model``, searching nested models too.

    For VGG16 (whether its layers sit in the model or in a nested ``vgg16`` model) this is
    ``block5_conv3``.

    Raises:
        GradCamError: when the model has no convolution layer.
    """
    conv_names = [layer.name for layer in iter_layers(model) if _is_conv(layer)]
    if not conv_names:
        raise GradCamError(
            f"Model {model.name!r} has no convolution layer: Grad-CAM needs a convolutional model"
        )
    return conv_names[-1]


def has_conv_layer(model) -> bool:
    """Tells whether Grad-CAM applies (the model has at least one convolution layer)."""
    return any(_is_conv(layer) for layer in iter_layers(model))


def _find_layer(model, name: str):
    for layer in iter_layers(model):
        if layer.name == name:
            return layer
    known = [layer.name for layer in iter_layers(model)]
    raise GradCamError(f"No layer named {name!r} in model {model.name!r}; layers: {known}")


def _contains(model, target) -> bool:
    return any(layer is target for layer in iter_layers(model))


def _softmax_dense(layer) -> bool:
    """True for a ``Dense`` whose activation is softmax (its logits can be recomputed)."""
    import keras

    activation = getattr(layer, "activation", None)
    return isinstance(layer, keras.layers.Dense) and getattr(activation, "__name__", "") == "softmax"


def build_gradcam_model(model, layer_name: str | None = None):
    """Builds the Keras model input -> (conv activations, final-layer input, predictions).

    Nested Functional/Sequential models are re-traced (their layers are reused, weights shared)
    so that a conv layer inside a nested backbone becomes reachable from the outer input.

    Args:
        model: a Functional or Sequential Keras model taking images.
        layer_name: the conv layer to explain; default ``find_last_conv_layer(model)``.

    Returns:
        ``(gradcam_model, output_layer)``: the three-output model and the model's last layer
        (used to recompute logits from the final-layer input when it is a softmax ``Dense``).
    """
    import keras

    name = layer_name or find_last_conv_layer(model)
    target = _find_layer(model, name)
    if _has_output(target) and len(target.output.shape) != 4:
        raise GradCamError(f"Layer {name!r} does not output a (batch, H, W, C) feature map")
    captured: dict = {}
    output_layer = model.layers[-1]

    def call_layer(layer, *args, **kwargs):
        if layer is target:
            result = layer(*args, **kwargs)
            captured["conv"] = result
            return result
        if _is_model(layer) and _contains(layer, target):
            return call_model(layer, args[0])
        if layer is output_layer:
            captured["final_input"] = args[0]
        return layer(*args, **kwargs)

    def call_model(inner, inputs):
        if isinstance(inner, keras.Sequential):
            tensor = inputs
            for layer in inner.layers:
                tensor = call_layer(layer, tensor)
            return tensor
        clone = keras.models.clone_model(
            inner, input_tensors=inputs, clone_function=lambda layer: layer,
            call_function=call_layer,
        )
        return clone.outputs[0] if len(clone.outputs) == 1 else clone.outputs

    shape = tuple(model.inputs[0].shape[1:]) if getattr(model, "inputs", None) else None
    if shape is None:
        raise GradCamError("The model has no defined input shape; build it on an Input first")
    inputs = keras.Input(shape=shape, dtype=model.inputs[0].dtype)
    outputs = call_model(model, inputs)
    if isinstance(outputs, (list, tuple)):
        outputs = outputs[0]
    if "conv" not in captured:
        raise GradCamError(f"Could not reach layer {name!r} from the model's input")
    final_input = captured.get("final_input", outputs)
    gradcam_model = keras.Model(inputs, [captured["conv"], final_input, outputs],
                                name=f"{model.name}_gradcam")
    return gradcam_model, output_layer


def _has_output(layer) -> bool:
    try:
        layer.output  # noqa: B018 - property access raises when the layer was never called
    except (AttributeError, ValueError):
        return False
    return True


def _scaled_to_unit_maximum(cams: np.ndarray) -> np.ndarray:
    """Divides each (h, w) map of a (N, h, w) batch by its maximum (all-zero maps stay zero)."""
    maxima = cams.reshape(len(cams), -1).max(axis=1)
    maxima[maxima <= 0] = 1.0
    return (cams / maxima[:, None, None]).astype(np.float32)


def committee_members(model) -> list:
    """The member networks of a committee model, or ``[]`` for any other model.

    A committee (``core.models.lenet.build_committee``) ends in an ``Average`` layer over two or
    more nested convolutional models that each take the image and output probabilities.
    """
    import keras

    if not getattr(model, "layers", None) or not isinstance(model.layers[-1], keras.layers.Average):
        return []
    members = [layer for layer in model.layers if _is_model(layer) and has_conv_layer(layer)]
    return members if len(members) >= 2 else []


class GradCam:
    """Computes Grad-CAM heatmaps for one model (builds the gradient model once).

    A committee that votes by averaging its members' probabilities (``committee_members``) is
    explained member by member, each for the class the committee chose, and the members'
    normalised maps are averaged: the map shows where the committee as a whole looked.

    Args:
        model: a convolutional Keras model (Functional or Sequential, possibly nested).
        layer_name: the conv layer to explain; default the last one (``block5_conv3`` for VGG16;
            for a committee, each member's last one).
    """

    def __init__(self, model, layer_name: str | None = None):
        import keras

        self.backend = keras.backend.backend()
        if self.backend != "tensorflow":
            raise GradCamError(
                f"Grad-CAM needs gradients through the TensorFlow backend; the Keras backend "
                f"is {self.backend!r} (set KERAS_BACKEND=tensorflow)"
            )
        self.model = model
        members = committee_members(model) if layer_name is None else []
        self.members = [GradCam(member) for member in members]
        if self.members:
            names = sorted({member.layer_name for member in self.members})
            self.layer_name = f"{', '.join(names)} of each of its {len(self.members)} members, averaged"
            return
        self.layer_name = layer_name or find_last_conv_layer(model)
        self.gradcam_model, self.output_layer = build_gradcam_model(model, self.layer_name)
        self.uses_logits = _softmax_dense(self.output_layer)
        self.warp_model = _spatial_transformer_warp(model)

    def heatmaps(self, images, class_indices=None) -> tuple[np.ndarray, np.ndarray]:
        """Grad-CAM maps for a batch of model inputs.

        Args:
            images: (N, S, S, C) array of model inputs (e.g. ``Predictor.preprocess`` output).
            class_indices: the class to explain per image (int or sequence); default each
                image's top prediction.

        Returns:
            ``(heatmaps, class_indices)``: float32 (N, h, w) maps in 0..1 at the conv layer's
            resolution (at the input's for a spatial transformer network, unwarped), and the
            explained class of each image.
        """
        batch = np.asarray(images, dtype=np.float32)
        if batch.ndim == 3:
            batch = batch[None]
        if self.members:
            return self._committee_heatmaps(batch, class_indices)
        conv, grads, predictions = _tensorflow_gradients(
            self.gradcam_model, batch, class_indices, self.output_layer, self.uses_logits
        )
        weights = grads.mean(axis=(1, 2))  # (N, C): the mean gradient per channel
        cams = np.maximum(np.einsum("nhwc,nc->nhw", conv, weights), 0.0)
        if self.warp_model is not None:
            cams = _unwarped(cams, np.asarray(self.warp_model(batch, training=False)), batch.shape[1:3])
        return _scaled_to_unit_maximum(cams), predictions

    def _committee_heatmaps(self, batch, class_indices):
        if class_indices is None:
            chosen = np.asarray(self.model(batch, training=False)).argmax(axis=-1).astype(np.int32)
        else:
            chosen = np.broadcast_to(np.asarray(class_indices, np.int32), (len(batch),)).copy()
        cams = np.mean([member.heatmaps(batch, chosen)[0] for member in self.members], axis=0)
        return _scaled_to_unit_maximum(cams), chosen

    def __call__(self, images, class_indices=None) -> np.ndarray:
        return self.heatmaps(images, class_indices)[0]


def _spatial_transformer_warp(model):
    """A model from ``model``'s input to its ``AffineSampler``'s 2 × 3 matrices, or None."""
    import keras

    samplers = [layer for layer in model.layers if type(layer).__name__ == "AffineSampler"]
    if not samplers:
        return None
    return keras.Model(model.inputs[0], samplers[0].input[1])


def _unwarped(cams: np.ndarray, thetas: np.ndarray, size) -> np.ndarray:
    """Maps computed on warped images, carried back onto the input images.

    Args:
        cams: (N, h, w) maps covering the warped images.
        thetas: (N, 6) matrices of ``AffineSampler`` (warped pixel -> input point, in
            coordinates from -1 to 1).
        size: (height, width) of the input images.

    Returns:
        float32 (N, height, width) maps: each input pixel takes the map's value where the warp
        put it, 0 where the warped image does not reach.
    """
    import cv2

    from core.models.layers import sampling_points

    height, width = int(size[0]), int(size[1])
    points = sampling_points(height, width).astype(np.float64)  # (2, H*W) input points
    unwarped = np.zeros((len(cams), height, width), np.float32)
    for index, (cam, theta) in enumerate(zip(cams, thetas)):
        matrix = np.asarray(theta, np.float64).reshape(2, 3)
        try:
            warped_points = np.linalg.solve(matrix[:, :2], points - matrix[:, 2:])
        except np.linalg.LinAlgError:  # a degenerate warp saw no 2-D region of the input
            continue
        upsampled = cv2.resize(np.asarray(cam, np.float32), (width, height), interpolation=cv2.INTER_LINEAR)
        map_x = ((warped_points[0] + 1.0) * (width - 1) / 2.0).reshape(height, width).astype(np.float32)
        map_y = ((warped_points[1] + 1.0) * (height - 1) / 2.0).reshape(height, width).astype(np.float32)
        unwarped[index] = cv2.remap(upsampled, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    return unwarped


def _tensorflow_gradients(gradcam_model, batch, class_indices, output_layer, uses_logits):
    """Runs the gradient model under ``tf.GradientTape``; returns (conv, grads, classes)."""
    import tensorflow as tf

    inputs = tf.convert_to_tensor(batch)
    with tf.GradientTape() as tape:
        conv, final_input, predictions = gradcam_model(inputs, training=False)
        if uses_logits:
            scores_all = tf.matmul(final_input, output_layer.kernel)
            if output_layer.use_bias:
                scores_all = scores_all + output_layer.bias
        else:
            scores_all = predictions
        if class_indices is None:
            chosen = tf.argmax(predictions, axis=-1, output_type=tf.int32)
        else:
            chosen = tf.constant(np.broadcast_to(np.asarray(class_indices, np.int32),
                                                 (batch.shape[0],)))
        scores = tf.gather(scores_all, chosen, axis=-1, batch_dims=1)
    grads = tape.gradient(scores, conv)
    if grads is None:
        raise GradCamError("The class score does not depend on the chosen layer's output")
    return conv.numpy(), grads.numpy(), chosen.numpy()


def compute_heatmap(model, images, class_index=None, layer_name: str | None = None) -> np.ndarray:
    """One-shot Grad-CAM: ``GradCam(model, layer_name)(images, class_index)``.

    Returns:
        float32 (N, h, w) heatmaps in 0..1.
    """
    return GradCam(model, layer_name)(images, class_index)


def colorize(heatmap: np.ndarray, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Maps a 0..1 heatmap to a uint8 RGB image with an OpenCV colormap (``"jet"`` etc.)."""
    import cv2

    code = getattr(cv2, f"COLORMAP_{colormap.upper()}", None)
    if code is None:
        raise ValueError(f"Unknown colormap {colormap!r}; expected an OpenCV name such as 'jet'")
    levels = np.clip(np.round(np.asarray(heatmap, np.float32) * 255.0), 0, 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, code), cv2.COLOR_BGR2RGB)


def overlay_heatmap(image: np.ndarray, heatmap: np.ndarray, alpha: float = DEFAULT_ALPHA,
                    size: int | None = None, colormap: str = DEFAULT_COLORMAP) -> np.ndarray:
    """Blends a heatmap over an image, as in Keras' example.

    Args:
        image: uint8 (H, W), (H, W, 1) or (H, W, 3) image (e.g. what the model saw).
        heatmap: (h, w) map in 0..1; resized (bilinear) to the image.
        alpha: heatmap opacity, 0..1.
        size: optional side to resize the image to first (nearest neighbour; for small inputs).
        colormap: OpenCV colormap name.

    Returns:
        uint8 (H, W, 3) RGB overlay.
    """
    import cv2

    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be between 0 and 1, received {alpha}")
    picture = np.asarray(image)
    if picture.ndim == 3 and picture.shape[-1] == 1:
        picture = picture[..., 0]
    if picture.ndim == 2:
        picture = np.stack([picture] * 3, axis=-1)
    picture = picture.astype(np.uint8)
    if size:
        picture = cv2.resize(picture, (size, size), interpolation=cv2.INTER_NEAREST)
    height, width = picture.shape[:2]
    resized = cv2.resize(np.asarray(heatmap, np.float32), (width, height),
                         interpolation=cv2.INTER_LINEAR)
    colored = colorize(np.clip(resized, 0.0, 1.0), colormap).astype(np.float32)
    blended = picture.astype(np.float32) * (1.0 - alpha) + colored * alpha
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)
