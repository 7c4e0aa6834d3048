"""Custom Keras layers used by the LeNet family (registered for safe_mode loading).

Written with ``keras.ops`` and ``keras.random`` only, so they run on every Keras backend;
``FusedBatchNormalization`` and ``RandomAffine`` also use a backend's fused kernel where
``core.models.fused_kernels`` has one.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

from core.models import fused_kernels
from core.validation import number_in_range

PACKAGE = "tllab"
MAX_OCCLUSION_ASPECT = 10.0  # bound of ``RandomOcclusion``'s height-to-width ratio


def gaussian_kernel_1d(kernel_size: int, sigma: float) -> list[float]:
    """Normalised 1-D Gaussian weights of odd length ``kernel_size``."""
    half = kernel_size // 2
    weights = [math.exp(-(offset * offset) / (2.0 * sigma * sigma)) for offset in range(-half, half + 1)]
    total = sum(weights)
    return [weight / total for weight in weights]


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomGaussianBlur(keras.layers.Layer):
    """Blurs a random share of the images of a batch with a Gaussian kernel, in training only.

    The study's "blur" augmentation as an in-graph layer: at inference (``training=False``)
    images pass through unchanged.

    Args:
        probability: share of images blurred in each batch, in [0, 1].
        kernel_size: odd side of the Gaussian kernel (3 or more).
        sigma: standard deviation of the Gaussian in pixels.
        seed: seed of the random choice, or None.
    """

    def __init__(self, probability: float = 0.25, kernel_size: int = 3, sigma: float = 0.8,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 <= float(probability) <= 1.0:
            raise ValueError(f"probability must be in [0, 1], received {probability!r}")
        if int(kernel_size) < 3 or int(kernel_size) % 2 == 0:
            raise ValueError(f"kernel_size must be an odd integer >= 3, received {kernel_size!r}")
        if float(sigma) <= 0:
            raise ValueError(f"sigma must be positive, received {sigma!r}")
        self.probability = float(probability)
        self.kernel_size = int(kernel_size)
        self.sigma = float(sigma)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def _blur(self, images):
        """The Gaussian blur of every image, zero-padded at the border ("same" size).

        The 2-D Gaussian is the outer product of a 1-D one, so the blur is two banded matrix
        products, down the columns then along the rows (``banded_blur_matrix``): the same values
        as a depthwise convolution with the 2-D kernel and zero padding, but on a small image
        with one channel the matrix products are several times cheaper (a 1-channel depthwise
        convolution keeps the CPU's vector lanes mostly idle).
        """
        height, width, channels = images.shape[1], images.shape[2], images.shape[3]
        weights = gaussian_kernel_1d(self.kernel_size, self.sigma)
        if height is None or width is None or channels is None:  # unknown sides: the 2-D kernel
            kernel = ops.convert_to_tensor([[row * column for column in weights] for row in weights],
                                           dtype=self.compute_dtype)
            kernel = ops.tile(ops.reshape(kernel, (self.kernel_size, self.kernel_size, 1, 1)),
                              (1, 1, ops.shape(images)[-1], 1))
            return ops.depthwise_conv(images, kernel, strides=1, padding="same")
        down = ops.convert_to_tensor(banded_blur_matrix(height, weights), dtype=self.compute_dtype)
        across = ops.convert_to_tensor(banded_blur_matrix(width, weights).T, dtype=self.compute_dtype)
        if channels > 1:  # channels first, so that each image's rows are contiguous
            images = ops.transpose(images, (0, 3, 1, 2))
        columns = ops.matmul(down, ops.reshape(images, (-1, height, width)))  # (N·C, H, W)
        rows = ops.matmul(ops.reshape(columns, (-1, width)), across)  # one (N·C·H, W) product
        if channels > 1:
            return ops.transpose(ops.reshape(rows, (-1, channels, height, width)), (0, 2, 3, 1))
        return ops.reshape(rows, (-1, height, width, channels))

    def call(self, inputs, training=None):
        if not training or self.probability == 0.0:
            return inputs
        inputs = ops.cast(inputs, self.compute_dtype)
        batch = ops.shape(inputs)[0]
        draw = keras.random.uniform((batch, 1, 1, 1), seed=self.seed_generator)
        chosen = ops.cast(ops.less(draw, self.probability), self.compute_dtype)
        return chosen * self._blur(inputs) + (1.0 - chosen) * inputs

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(probability=self.probability, kernel_size=self.kernel_size,
                      sigma=self.sigma, seed=self.seed)
        return config


def banded_blur_matrix(size: int, weights) -> np.ndarray:
    """The 1-D convolution with odd-length ``weights`` over ``size`` samples, zero-padded.

    Output sample i is ``sum(weights[k] * input[i + k - half])`` over the samples inside the
    image (``half = len(weights) // 2``), as a "same" convolution with zero padding computes it.

    Returns:
        float32 (size, size): multiplying a column of ``size`` samples gives the blurred column.
    """
    half = len(weights) // 2
    matrix = np.zeros((int(size), int(size)), np.float64)
    for row in range(int(size)):
        for offset, weight in enumerate(weights):
            column = row + offset - half
            if 0 <= column < size:
                matrix[row, column] = weight
    return matrix.astype(np.float32)


def area_shrink_matrix(size: int, target: int) -> np.ndarray:
    """The 1-D area-averaging resize from ``size`` to ``target`` samples (``target`` <= ``size``).

    Output sample j averages the input over [j * size / target, (j + 1) * size / target),
    each input sample weighted by its overlap, as OpenCV's ``INTER_AREA`` shrinks an image.

    Returns:
        float32 (target, size): multiplying a column of ``size`` samples gives ``target``.
    """
    if not 1 <= int(target) <= int(size):
        raise ValueError(f"target must be in [1, {size}], received {target!r}")
    step = size / target
    matrix = np.zeros((target, size), np.float64)
    for row in range(target):
        low, high = row * step, (row + 1) * step
        for column in range(int(math.floor(low)), min(size, int(math.ceil(high)))):
            matrix[row, column] = max(0.0, min(high, column + 1) - max(low, column)) / step
    return matrix.astype(np.float32)


def linear_enlarge_matrix(size: int, target: int) -> np.ndarray:
    """The 1-D linear-interpolation resize from ``size`` to ``target`` samples.

    Pixel centres are aligned (output sample i reads input position (i + 0.5) * size / target
    - 0.5, clamped to the edge samples), as OpenCV's ``INTER_LINEAR`` resizes.

    Returns:
        float32 (target, size).
    """
    matrix = np.zeros((int(target), int(size)), np.float64)
    for row in range(int(target)):
        position = min(max((row + 0.5) * size / target - 0.5, 0.0), size - 1.0)
        left = int(math.floor(position))
        right = min(left + 1, size - 1)
        fraction = position - left
        matrix[row, left] += 1.0 - fraction
        matrix[row, right] += fraction
    return matrix.astype(np.float32)


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomLowResolution(keras.layers.Layer):
    """Makes a random share of the images look photographed from further away, in training only.

    A chosen image is shrunk to a smaller side by area averaging (as a small photo's pixels
    average the scene) and enlarged back by linear interpolation, as the preprocessing enlarges
    a small photo (OpenCV's ``INTER_AREA`` and ``INTER_LINEAR``, ``core.datasets.base.
    resize_square``): it keeps the detail of a photo that many pixels wide. The smaller side is
    one of ``levels`` sizes evenly spaced from ``min_scale`` of the side to one pixel less than
    the side, drawn uniformly per image. Both resizes are linear, so each size is one matrix
    per axis, and a batch costs two batched matrix products (cheaper than resizing it to
    every size). At inference (``training=False``) images pass through unchanged.

    Args:
        probability: share of images made coarser in each batch, in [0, 1].
        min_scale: smallest fraction of the side, in (0, 1).
        levels: number of sizes to draw from, 1 or more.
        seed: seed of the random draws, or None.
    """

    def __init__(self, probability: float = 0.25, min_scale: float = 0.5, levels: int = 4,
                 seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.probability = number_in_range("probability", probability, 0.0, 1.0)
        self.min_scale = number_in_range("min_scale", min_scale, 0.0, 1.0, high_open=True)
        if self.min_scale == 0.0:
            raise ValueError(f"min_scale must be in (0, 1), received {min_scale!r}")
        if isinstance(levels, bool) or not isinstance(levels, (int, np.integer)) or levels < 1:
            raise ValueError(f"levels must be an integer >= 1, received {levels!r}")
        self.levels = int(levels)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def sizes(self, side: int) -> list[int]:
        """The sides an image of side ``side`` may be shrunk to, one per level, smallest first."""
        largest = (self.levels - 1) or 1
        scales = [self.min_scale + (1.0 - self.min_scale) * level / largest
                  for level in range(self.levels)]
        return [min(max(1, round(side * scale)), max(1, side - 1)) for scale in scales]

    def operators(self, side: int) -> np.ndarray:
        """The identity, then one shrink-and-enlarge matrix per size of ``sizes(side)``.

        Returns:
            float32 (1 + len(sizes), side, side).
        """
        matrices = [np.eye(side, dtype=np.float32)]
        for size in self.sizes(side):
            matrices.append(linear_enlarge_matrix(size, side) @ area_shrink_matrix(side, size))
        return np.stack(matrices)

    def call(self, inputs, training=None):
        if not training or self.probability == 0.0:
            return inputs
        inputs = ops.cast(inputs, self.compute_dtype)
        height, width = int(inputs.shape[1]), int(inputs.shape[2])
        if height < 2 or width < 2:
            return inputs
        rows = ops.convert_to_tensor(self.operators(height), dtype=self.compute_dtype)
        columns = ops.convert_to_tensor(self.operators(width), dtype=self.compute_dtype)
        draws = keras.random.uniform((ops.shape(inputs)[0], 2), seed=self.seed_generator)
        level = ops.minimum(ops.cast(draws[:, 1] * self.levels, "int32"), self.levels - 1) + 1
        choice = ops.where(ops.less(draws[:, 0], self.probability), level, ops.zeros_like(level))
        # Channels first, so each image's matrices multiply all its channels: R · X · Cᵀ.
        outputs = ops.matmul(ops.expand_dims(ops.take(rows, choice, axis=0), 1),
                             ops.transpose(inputs, (0, 3, 1, 2)))
        columns_transposed = ops.swapaxes(ops.take(columns, choice, axis=0), 1, 2)
        outputs = ops.matmul(outputs, ops.expand_dims(columns_transposed, 1))
        return ops.transpose(outputs, (0, 2, 3, 1))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(probability=self.probability, min_scale=self.min_scale, levels=self.levels,
                      seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomOcclusion(keras.layers.Layer):
    """Covers a random rectangle of a random share of the images with noise, in training only.

    Random erasing (Zhong et al. 2017, "Random Erasing Data Augmentation"): a chosen image gets
    one rectangle whose area is a uniform share in [``min_area``, ``max_area``] of the image and
    whose height-to-width ratio is log-uniform in [1 / ``max_aspect``, ``max_aspect``], placed
    uniformly where it fits wholly inside; its pixels become uniform noise in [0, 255] (the
    models take uint8-valued images). A pixel is covered when its centre lies inside the
    rectangle. It stands for what hides part of a real sign: a branch, a sticker, another
    sign's edge. At inference (``training=False``) images pass through unchanged.

    Args:
        probability: share of images occluded in each batch, in [0, 1].
        min_area: smallest share of the image area a rectangle covers, in (0, 1].
        max_area: largest share, in [``min_area``, 1].
        max_aspect: largest height-to-width ratio (and width-to-height), in [1,
            ``MAX_OCCLUSION_ASPECT``].
        seed: seed of the random draws, or None.
    """

    def __init__(self, probability: float = 0.5, min_area: float = 0.02, max_area: float = 0.2,
                 max_aspect: float = 3.0, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.probability = number_in_range("probability", probability, 0.0, 1.0)
        self.min_area = number_in_range("min_area", min_area, 0.0, 1.0)
        if self.min_area == 0.0:
            raise ValueError(f"min_area must be in (0, 1], received {min_area!r}")
        self.max_area = number_in_range("max_area", max_area, self.min_area, 1.0)
        self.max_aspect = number_in_range("max_aspect", max_aspect, 1.0, MAX_OCCLUSION_ASPECT)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    def call(self, inputs, training=None):
        if not training or self.probability == 0.0:
            return inputs
        inputs = ops.cast(inputs, self.compute_dtype)
        height, width = int(inputs.shape[1]), int(inputs.shape[2])
        draws = keras.random.uniform((ops.shape(inputs)[0], 5), seed=self.seed_generator)
        area = self.min_area + (self.max_area - self.min_area) * draws[:, 0]
        aspect = ops.exp((2.0 * draws[:, 1] - 1.0) * math.log(self.max_aspect))
        rectangle_height = ops.minimum(ops.sqrt(area * aspect) * height, float(height))
        rectangle_width = ops.minimum(ops.sqrt(area / aspect) * width, float(width))
        top = draws[:, 2] * (height - rectangle_height)
        left = draws[:, 3] * (width - rectangle_width)
        row_centres = ops.arange(height, dtype=self.compute_dtype) + 0.5
        column_centres = ops.arange(width, dtype=self.compute_dtype) + 0.5
        inside_rows = ops.logical_and(ops.greater_equal(row_centres, top[:, None]),
                                      ops.less(row_centres, (top + rectangle_height)[:, None]))
        inside_columns = ops.logical_and(
            ops.greater_equal(column_centres, left[:, None]),
            ops.less(column_centres, (left + rectangle_width)[:, None]))
        chosen = ops.cast(ops.less(draws[:, 4], self.probability), self.compute_dtype)
        covered = (ops.cast(inside_rows, self.compute_dtype)[:, :, None]
                   * ops.cast(inside_columns, self.compute_dtype)[:, None, :]
                   * chosen[:, None, None])[..., None]
        noise = keras.random.uniform(ops.shape(inputs), minval=0.0, maxval=255.0,
                                     dtype=self.compute_dtype, seed=self.seed_generator)
        return inputs + covered * (noise - inputs)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(probability=self.probability, min_area=self.min_area,
                      max_area=self.max_area, max_aspect=self.max_aspect, seed=self.seed)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class RandomAffine(keras.layers.Layer):
    """One random geometric warp per image (rotation, shift, zoom, shear, perspective), in training only.

    Keras' ``RandomRotation``, ``RandomTranslation`` and ``RandomZoom`` each resample the batch;
    this layer composes all the warps into one projective matrix per image and resamples once
    (``keras.ops.image.affine_transform``; on TensorFlow the same sampling compiled by XLA,
    ``fused_kernels.projective_transform``), which is cheaper and blurs the images less. At
    inference (``training=False``) images pass through unchanged.

    Each image draws, uniformly and independently: an angle in [-rotation_degrees,
    +rotation_degrees], a horizontal shear angle in [-shear_degrees, +shear_degrees], a zoom
    factor in [1 - zoom, 1 + zoom] (above 1 zooms in), a shift in [-shift, +shift] of the width
    and of the height, and a perspective tilt that moves the corners' depth by up to
    ``perspective`` (0.1 = ±10 %). With ``flip`` the warped image is also mirrored, with
    probability 1/2 per image, as Keras' ``RandomFlip`` after the warp would do (one resampling
    instead of a warp, a reverse and a select: ``flip_into_warp``); without it no flip is drawn,
    so the other draws are the same as before the option existed.

    Args:
        rotation_degrees: largest rotation, in [0, 180].
        shift: largest translation as a fraction of the side, in [0, 1).
        zoom: largest zoom change as a fraction, in [0, 1).
        shear_degrees: largest horizontal shear angle, in [0, 60].
        perspective: largest perspective tilt, in [0, 0.4].
        fill_mode: "nearest", "reflect", "constant" or "wrap" for pixels from outside the image.
        interpolation: "bilinear" or "nearest".
        flip: "none", "horizontal", "vertical" or "horizontal_and_vertical" (Keras'
            ``RandomFlip`` modes: the last mirrors both axes together, or neither).
        seed: seed of the random draws, or None.
    """

    FILL_MODES = ("nearest", "reflect", "constant", "wrap")
    INTERPOLATIONS = ("bilinear", "nearest")
    FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
    LIMITS = {"rotation_degrees": (0.0, 180.0, False), "shift": (0.0, 1.0, True),
              "zoom": (0.0, 1.0, True), "shear_degrees": (0.0, 60.0, False),
              "perspective": (0.0, 0.4, False)}

    def __init__(self, rotation_degrees: float = 0.0, shift: float = 0.0, zoom: float = 0.0,
                 shear_degrees: float = 0.0, perspective: float = 0.0, fill_mode: str = "nearest",
                 interpolation: str = "bilinear", flip: str = "none", seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        values = {"rotation_degrees": rotation_degrees, "shift": shift, "zoom": zoom,
                  "shear_degrees": shear_degrees, "perspective": perspective}
        for key, value in values.items():
            low, high, high_open = self.LIMITS[key]
            setattr(self, key, number_in_range(key, value, low, high, high_open=high_open))
        if fill_mode not in self.FILL_MODES:
            raise ValueError(f"fill_mode must be one of {self.FILL_MODES}, received {fill_mode!r}")
        if interpolation not in self.INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {self.INTERPOLATIONS}, "
                             f"received {interpolation!r}")
        if flip not in self.FLIPS:
            raise ValueError(f"flip must be one of {self.FLIPS}, received {flip!r}")
        self.fill_mode = fill_mode
        self.interpolation = interpolation
        self.flip = flip
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.supports_masking = True

    @property
    def is_identity(self) -> bool:
        return self.flip == "none" and not any((self.rotation_degrees, self.shift, self.zoom,
                                                self.shear_degrees, self.perspective))

    def transforms(self, batch_size, height: int, width: int):
        """Draws ``batch_size`` warps as rows of 8 (``affine_transform``'s format).

        Each row maps an output pixel (x, y) to the input point it samples.
        """
        draws = keras.random.uniform((batch_size, 7), minval=-1.0, maxval=1.0,
                                     seed=self.seed_generator, dtype="float32")
        angle = draws[:, 0] * (self.rotation_degrees * math.pi / 180.0)
        shear = ops.tan(draws[:, 1] * (self.shear_degrees * math.pi / 180.0))
        inverse_zoom = 1.0 / (1.0 + draws[:, 2] * self.zoom)
        shift_x = draws[:, 3] * (self.shift * width)
        shift_y = draws[:, 4] * (self.shift * height)
        center_x, center_y = (width - 1) / 2.0, (height - 1) / 2.0
        tilt_x = draws[:, 5] * (self.perspective / max(center_x, 1.0))
        tilt_y = draws[:, 6] * (self.perspective / max(center_y, 1.0))
        cosine, sine = ops.cos(angle), ops.sin(angle)
        # Linear part: zoom · rotation · shear, applied around the image centre.
        m00, m01 = cosine * inverse_zoom, (cosine * shear - sine) * inverse_zoom
        m10, m11 = sine * inverse_zoom, (sine * shear + cosine) * inverse_zoom
        # Homography H = T(centre + shift) · M · P(tilt) · T(-centre), with P's last row
        # (tilt_x, tilt_y, 1) acting on centred coordinates; normalised so H[2, 2] = 1.
        offset_x, offset_y = center_x + shift_x, center_y + shift_y
        h20, h21 = tilt_x, tilt_y
        h22 = 1.0 - tilt_x * center_x - tilt_y * center_y
        h00 = m00 + offset_x * tilt_x
        h01 = m01 + offset_x * tilt_y
        h02 = -(m00 * center_x + m01 * center_y) + offset_x * h22
        h10 = m10 + offset_y * tilt_x
        h11 = m11 + offset_y * tilt_y
        h12 = -(m10 * center_x + m11 * center_y) + offset_y * h22
        if self.flip != "none":
            # Mirroring the output reads output pixel (x, y) from the warp's (W-1-x, y) (or
            # (x, H-1-y)): H · F, with F = diag(-1, 1, 1) and an offset of W-1 (the same for y).
            mirrored = ops.cast(ops.less(keras.random.uniform((batch_size,), seed=self.seed_generator,
                                                              dtype="float32"), 0.5), "float32")
            sign = 1.0 - 2.0 * mirrored
            if self.flip in ("horizontal", "horizontal_and_vertical"):
                offset = mirrored * (width - 1.0)
                h02, h12, h22 = h02 + h00 * offset, h12 + h10 * offset, h22 + h20 * offset
                h00, h10, h20 = h00 * sign, h10 * sign, h20 * sign
            if self.flip in ("vertical", "horizontal_and_vertical"):
                offset = mirrored * (height - 1.0)
                h02, h12, h22 = h02 + h01 * offset, h12 + h11 * offset, h22 + h21 * offset
                h01, h11, h21 = h01 * sign, h11 * sign, h21 * sign
        rows = [h00, h01, h02, h10, h11, h12, h20, h21]
        return ops.stack([row / h22 for row in rows], axis=1)

    def call(self, inputs, training=None):
        if not training or self.is_identity:
            return inputs
        inputs = ops.cast(inputs, self.compute_dtype)
        height, width = int(inputs.shape[1]), int(inputs.shape[2])
        transforms = self.transforms(ops.shape(inputs)[0], height, width)
        warped = fused_kernels.projective_transform(inputs, transforms, self.interpolation,
                                                    self.fill_mode)
        if warped is None:
            warped = ops.image.affine_transform(
                inputs, ops.cast(transforms, self.compute_dtype), interpolation=self.interpolation,
                fill_mode=self.fill_mode, data_format="channels_last")
        return ops.cast(warped, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(rotation_degrees=self.rotation_degrees, shift=self.shift, zoom=self.zoom,
                      shear_degrees=self.shear_degrees, perspective=self.perspective,
                      fill_mode=self.fill_mode, interpolation=self.interpolation, flip=self.flip,
                      seed=self.seed)
        return config


def sampling_points(height: int, width: int) -> np.ndarray:
    """Every pixel's (x, y) in ``AffineSampler``'s coordinates, row by row.

    Returns:
        float32 (2, height * width): x then y, from -1 (first column or row) to 1 (last).
    """
    grid_y, grid_x = np.meshgrid(np.linspace(-1.0, 1.0, height), np.linspace(-1.0, 1.0, width),
                                 indexing="ij")
    return np.stack([grid_x.ravel(), grid_y.ravel()]).astype(np.float32)


@keras.saving.register_keras_serializable(package=PACKAGE)
class AffineSampler(keras.layers.Layer):
    """Warps images by one affine transform per image, differentiably: a spatial transformer's
    sampler (Jaderberg et al. 2015).

    Called on ``[images, theta]``: ``theta`` is ``(batch, 6)``, the rows of a 2 x 3 matrix that
    maps each output pixel's normalised coordinates (x, y in [-1, 1], centre 0) to the input
    point it samples; ``[1, 0, 0, 0, 1, 0]`` is the identity. Sampling is bilinear, and points
    outside the image take the nearest border pixel. Unlike ``keras.ops.image.affine_transform``
    (whose TensorFlow kernel has no gradient for the transform), the gradient reaches ``theta``,
    so a localisation network in front of it learns where to look. Same output in training and
    inference, and no weights of its own.

    Args:
        output_size: side of the square output in pixels, or None for the input's own height
            and width. A smaller output than input lets the warp zoom in on detail the input
            has (e.g. a 48-pixel image sampled onto a 32-pixel canvas) instead of enlarging a
            low-resolution image.
    """

    def __init__(self, output_size: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if output_size is not None and (isinstance(output_size, bool) or int(output_size) != output_size
                                        or int(output_size) < 1):
            raise ValueError(f"output_size must be a positive int or None, received {output_size!r}")
        self.output_size = None if output_size is None else int(output_size)

    def call(self, inputs):
        images, theta = inputs
        images = ops.cast(images, self.compute_dtype)
        height, width, channels = (int(side) for side in images.shape[1:])
        out_height, out_width = (height, width) if self.output_size is None else (self.output_size,) * 2
        batch = ops.shape(images)[0]
        theta = ops.reshape(ops.cast(theta, "float32"), (batch, 2, 3))
        points = sampling_points(out_height, out_width)
        ones = np.ones((1, out_height * out_width), np.float32)
        grid = ops.convert_to_tensor(np.concatenate([points, ones]))
        source = ops.einsum("bij,jn->bin", theta, grid)  # (batch, 2, h*w), grid (3, h*w)
        x = ops.clip((source[:, 0] + 1.0) * (0.5 * (width - 1)), 0.0, float(width - 1))
        y = ops.clip((source[:, 1] + 1.0) * (0.5 * (height - 1)), 0.0, float(height - 1))
        x0, y0 = ops.floor(x), ops.floor(y)
        x1 = ops.minimum(x0 + 1.0, float(width - 1))
        y1 = ops.minimum(y0 + 1.0, float(height - 1))
        weight_x, weight_y = x - x0, y - y0
        flat = ops.reshape(images, (-1, channels))  # (batch*H*W, C)
        offsets = ops.expand_dims(ops.arange(batch, dtype="int32") * (height * width), 1)

        def gather(rows, columns):
            index = ops.cast(rows, "int32") * width + ops.cast(columns, "int32") + offsets
            return ops.take(flat, ops.reshape(index, (-1,)), axis=0)

        def column(weight):
            return ops.cast(ops.reshape(weight, (-1, 1)), self.compute_dtype)

        top = gather(y0, x0) * column(1.0 - weight_x) + gather(y0, x1) * column(weight_x)
        bottom = gather(y1, x0) * column(1.0 - weight_x) + gather(y1, x1) * column(weight_x)
        sampled = top * column(1.0 - weight_y) + bottom * column(weight_y)
        return ops.reshape(sampled, (batch, out_height, out_width, channels))

    def compute_output_shape(self, input_shape):
        if self.output_size is None:
            return input_shape[0]
        return (input_shape[0][0], self.output_size, self.output_size, input_shape[0][-1])

    def get_config(self):
        config = super().get_config()
        config["output_size"] = self.output_size
        return config


def rebuilt_as(layer: keras.layers.Layer, layer_class, input_shape, weights: list) -> keras.layers.Layer:
    """A new ``layer_class`` layer with ``layer``'s config (name included), built for
    ``input_shape`` and holding ``weights`` (``layer.get_weights()``, or an edited copy).

    Used to swap a layer for a sibling class in a graph being replayed: Keras' BatchNormalization
    for ``FusedBatchNormalization`` (``core.models.transfer``) and back, or a convolution for one
    with edited weights (``core.export``).
    """
    rebuilt = layer_class.from_config(layer.get_config())
    rebuilt.build(tuple(input_shape))
    rebuilt.set_weights(weights)
    return rebuilt


@keras.saving.register_keras_serializable(package=PACKAGE)
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """Keras' ``BatchNormalization``, trained with one fused kernel where the backend has one.

    The same layer, arguments, weights and function as ``keras.layers.BatchNormalization``; only
    its training step differs in how it is computed. When it normalises with batch statistics
    (``training=True``, trainable, no mask, no renorm or synchronisation, float32 channels-last
    input of rank 2 or 4) on a backend with a fused kernel
    (``fused_kernels.batch_norm_training``: TensorFlow's ``FusedBatchNormV3``), the statistics,
    the normalisation and, in the backward pass, the gradient each take one kernel instead of
    a chain of ``keras.ops``. The moving statistics are updated exactly as Keras does. In every
    other case (inference, the JAX or PyTorch backend) it is Keras' layer.

    ``core.export`` writes it as a plain ``BatchNormalization`` with the same weights.
    """

    def call(self, inputs, training=None, mask=None):
        fused = None
        if training and self.trainable and mask is None and not self.renorm \
                and not self.synchronized \
                and list(self._reduction_axes) == list(range(len(inputs.shape) - 1)):
            channels = inputs.shape[-1]
            scale = self.gamma if self.scale else ops.ones((channels,), dtype=inputs.dtype)
            offset = self.beta if self.center else ops.zeros((channels,), dtype=inputs.dtype)
            fused = fused_kernels.batch_norm_training(inputs, scale, offset, self.epsilon)
        if fused is None:
            return super().call(inputs, training=training, mask=mask)
        outputs, mean, variance = fused
        self.moving_mean.assign(self.moving_mean * self.momentum + mean * (1.0 - self.momentum))
        self.moving_variance.assign(
            self.moving_variance * self.momentum + variance * (1.0 - self.momentum))
        return ops.cast(outputs, self.compute_dtype)


class TrainingModeWrapper(keras.layers.Layer):
    """Calls the wrapped layer with ``training=True`` always, also inside ``predict``.

    Keras runs ``predict`` in inference mode, where augmentation layers pass images through. The
    bottleneck cache (``core.training.bottleneck.compute_features``) wants augmented copies from
    one compiled ``predict_on_batch`` call (augmentation + frozen base in one graph), so it wraps
    the augmentation in this. Not registered for saving: it only lives inside throwaway models.

    Args:
        layer: the layer to call in training mode (e.g. an augmentation ``keras.Sequential``).
    """

    def __init__(self, layer: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.layer = layer

    def call(self, inputs):
        return self.layer(inputs, training=True)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)


class BatchPart(keras.layers.Layer):
    """Passes on one of ``parts`` consecutive, near-equal parts of its batch.

    Part ``part`` of a batch of ``n`` images holds images ``n * part // parts`` up to (not
    including) ``n * (part + 1) // parts``, so the parts together are the batch, in order, also
    when ``n`` does not divide evenly (or is smaller than ``parts``: some parts are then empty).
    ``lenet.build_batch_branches`` uses one per branch. Not registered for saving: it only lives
    inside training models that are never saved.

    Args:
        part: which part, in [0, ``parts``).
        parts: how many parts the batch is cut into, at least 1.
    """

    def __init__(self, part: int, parts: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(parts, bool) or not isinstance(parts, int) or parts < 1:
            raise ValueError(f"parts must be an integer of at least 1, received {parts!r}")
        if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < parts:
            raise ValueError(f"part must be an integer in [0, {parts}), received {part!r}")
        self.part = part
        self.parts = parts

    def call(self, inputs):
        size = ops.shape(inputs)[0]
        return inputs[(size * self.part) // self.parts:(size * (self.part + 1)) // self.parts]

    def compute_output_shape(self, input_shape):
        return (None,) + tuple(input_shape[1:])


class ConvolutionWithoutBias(keras.layers.Layer):
    """A convolution layer's convolution alone, without its bias and activation.

    Half of the pair ``folding.bias_after_pooling`` puts in a training graph, with
    ``PoolingWithBias`` adding the bias back after the pooling. It owns no weights: it reads
    ``convolution``'s kernel, so training it trains that layer. Not registered for saving: it
    only lives inside training models that are never saved.

    Args:
        convolution: a built ``Conv2D`` with a linear activation.
    """

    def __init__(self, convolution: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.convolution = convolution

    def call(self, inputs):
        return self.convolution.convolution_op(inputs, self.convolution.kernel)

    def compute_output_shape(self, input_shape):
        return self.convolution.compute_output_shape(input_shape)


class PoolingWithBias(keras.layers.Layer):
    """A max pooling layer, then a convolution's bias (the other half of ``ConvolutionWithoutBias``).

    Adding a per-channel constant commutes with a max, so ``pooling(convolution(x))`` equals
    ``pooling(convolution_without_bias(x)) + bias``, with the addition (and, in training, the
    bias's gradient) on a quarter of the values. Not registered for saving.

    Args:
        pooling: a ``MaxPooling2D``, channels last.
        convolution: the ``Conv2D`` whose bias it adds.
    """

    def __init__(self, pooling: keras.layers.Layer, convolution: keras.layers.Layer, **kwargs):
        super().__init__(**kwargs)
        self.pooling = pooling
        self.convolution = convolution

    def call(self, inputs):
        return ops.add(self.pooling(inputs), self.convolution.bias)

    def compute_output_shape(self, input_shape):
        return self.pooling.compute_output_shape(input_shape)
