"""Replacing pooling by a strided convolution (Springenberg et al. 2015, the all-convolutional net).

Springenberg, Dosovitskiy, Brox and Riedmiller, "Striving for simplicity: the all convolutional
net" (ICLR 2015 workshop, arXiv:1412.6806) replace each max-pooling layer of a CNN in one of
two ways and lose no accuracy on CIFAR-10:

* **Strided-CNN**: drop the pooling layer and give the convolution before it the pooling's
  stride (fewer operations, no extra parameters, but a smaller receptive field);
* **All-CNN**: put a convolution with the pooling's window and stride in its place (same output
  size and receptive field as the pooling; its parameters are learnt instead of fixed max).

``pooling_variants`` writes the three variants of one block as layer stacks, and
``compare_pooling_variants`` runs them through ``analyze_stack`` (output size, parameters,
receptive field), the same numbers that ``build_keras_model`` reproduces with Keras layers.
Defaults: the first block of the paper's model C on CIFAR-10 (32×32×3, two 3×3 convolutions
with 96 maps, then 3×3 max pooling with stride 2).
"""

from __future__ import annotations

from core.concepts.checks import _non_negative, _positive
from core.concepts.stacks import analyze_stack

SPRINGENBERG_2015 = ("Springenberg, J. T., Dosovitskiy, A., Brox, T. and Riedmiller, M. (2015). "
                     "Striving for simplicity: the all convolutional net. ICLR 2015 workshop track, "
                     "arXiv:1412.6806.")
POOLING = "max pooling (model C)"
STRIDED_CONV = "strided conv in its place (All-CNN-C)"
STRIDED_PREVIOUS = "stride the previous conv (Strided-CNN-C)"
STRIDED_VARIANTS = (POOLING, STRIDED_CONV, STRIDED_PREVIOUS)
DEFAULT_INPUT_SHAPE = (32, 32, 3)
DEFAULT_FILTERS = 96
DEFAULT_KERNEL = 3
DEFAULT_POOL_SIZE = 3
DEFAULT_POOL_STRIDE = 2


def _conv(name: str, filters: int, kernel: int, stride: int = 1, padding: int = 0) -> dict:
    return {"name": name, "type": "conv", "filters": filters, "kernel": kernel, "stride": stride,
            "padding": padding, "dilation": 1, "activation": "relu"}


def pooling_variants(filters: int = DEFAULT_FILTERS, kernel: int = DEFAULT_KERNEL,
                     pool_size: int = DEFAULT_POOL_SIZE,
                     pool_stride: int = DEFAULT_POOL_STRIDE) -> dict[str, list[dict]]:
    """One block (two convolutions, then pooling) written three ways.

    Convolutions pad by ``(kernel - 1) // 2`` and the pooling (or the conv replacing it) by
    ``(pool_size - 1) // 2``, so with odd windows every variant halves the side for stride 2.

    Args:
        filters: feature maps of every convolution (96 in the paper's model C).
        kernel: kernel of the block's convolutions (3).
        pool_size: the pooling window, also the replacing convolution's kernel (3).
        pool_stride: the pooling stride, also the replacing (or strided) convolution's (2).

    Returns:
        ``{variant: layer dicts}`` for each name of ``STRIDED_VARIANTS``.
    """
    filters = _positive(filters, "filters")
    kernel = _positive(kernel, "kernel")
    pool_size = _positive(pool_size, "pool_size")
    pool_stride = _positive(pool_stride, "pool_stride")
    padding, pool_padding = (kernel - 1) // 2, _non_negative((pool_size - 1) // 2, "pool padding")
    first = _conv("conv1", filters, kernel, padding=padding)
    return {
        POOLING: [first, _conv("conv2", filters, kernel, padding=padding),
                  {"name": "pool", "type": "max_pool", "kernel": pool_size, "stride": pool_stride,
                   "padding": pool_padding, "dilation": 1}],
        STRIDED_CONV: [first, _conv("conv2", filters, kernel, padding=padding),
                       _conv("pool_conv", filters, pool_size, pool_stride, pool_padding)],
        STRIDED_PREVIOUS: [first, _conv("conv2", filters, kernel, pool_stride, padding)],
    }


def compare_pooling_variants(input_shape=DEFAULT_INPUT_SHAPE, **options) -> list[dict]:
    """Output size, parameters, multiply-accumulates and receptive field of each variant.

    Args:
        input_shape: ``(height, width, channels)`` of the block's input.
        **options: ``pooling_variants`` arguments.

    Returns:
        One dict per variant, in ``STRIDED_VARIANTS`` order: ``variant``, ``output_shape``,
        ``params`` (whole block), ``replacement_params`` (what the pooling's replacement adds:
        0 for pooling), ``macs``, ``rf`` and ``jump`` of the block's last layer, and ``layers``.
    """
    rows = []
    variants = pooling_variants(**options)
    baseline = None
    for variant in STRIDED_VARIANTS:
        layers = variants[variant]
        analysis = analyze_stack(layers, input_shape)
        params = sum(row["params"] for row in analysis)
        baseline = params if baseline is None else baseline
        rows.append({
            "variant": variant, "output_shape": analysis[-1]["output_shape"], "params": params,
            "replacement_params": params - baseline, "macs": sum(row["macs"] for row in analysis),
            "rf": analysis[-1]["rf"], "jump": analysis[-1]["jump"], "layers": layers,
        })
    return rows
