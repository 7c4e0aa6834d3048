"""CNN concepts: everything the Concepts page computes, in plain Python/NumPy, one module per job.

* ``geometry``: output sizes (formula, Keras ``valid``/``same``), pooling sizes, receptive fields;
* ``stacks``: LeNet-5 and VGG16 layer stacks, their analysis (shapes, parameters, MACs, fields)
  and the same stack built with real Keras layers (``build_keras_model``);
* ``connections``: LeNet-5's C3 partial connection table (LeCun et al. 1998, table I);
* ``strided``: replacing pooling by a strided convolution (Springenberg et al. 2015);
* ``playground``: the sample picture, uploads, kernels, NumPy convolution and pooling;
* ``partial_conv``: the Keras layer for a partial connection table (imports Keras: loaded only
  by ``build_keras_model`` and the tests, never by this package).

Every public name is re-exported here, so ``from core.concepts import X`` keeps working.
"""

from core.concepts.checks import AttrDict
from core.concepts.connections import (LENET5_C3_CONNECTIONS, LENET5_C3_INPUTS, connection_matrix,
                                       connection_parameter_counts, partial_conv_params)
from core.concepts.geometry import (INPUT_START, KERAS_PADDINGS, POOL_MODES, conv_output_size,
                                    dilated_kernel_size, keras_output_size, keras_padding_amounts,
                                    misprinted_output_size, output_size_report, pooling_output_size,
                                    receptive_field, receptive_window)
from core.concepts.playground import (CUSTOM_KERNEL_SIZES, KERNELS, MAX_PLAYGROUND_SIDE,
                                      SAMPLE_IMAGE_SIZE, convolve2d, image_from_bytes, kernel_weights,
                                      pad_image, pool2d, sample_image, to_grayscale)
from core.concepts.stacks import (ACTIVATIONS, LAYER_TYPES, LENET5_INPUT_SHAPE, LENET5_NUM_CLASSES,
                                  POOL_TYPES, PRESET_NAMES, STACK_COLUMNS, VGG16_INPUT_SHAPE,
                                  VGG16_NUM_CLASSES, analyze_stack, build_keras_model, lenet5_stack,
                                  parse_stack_table, preset_stack, stack_table, stack_totals,
                                  use_partial_c3, vgg16_stack)
from core.concepts.strided import (SPRINGENBERG_2015, STRIDED_VARIANTS, compare_pooling_variants,
                                   pooling_variants)

__all__ = [
    "ACTIVATIONS", "AttrDict", "CUSTOM_KERNEL_SIZES", "INPUT_START", "KERAS_PADDINGS", "KERNELS",
    "LAYER_TYPES", "LENET5_C3_CONNECTIONS", "LENET5_C3_INPUTS", "LENET5_INPUT_SHAPE",
    "LENET5_NUM_CLASSES", "MAX_PLAYGROUND_SIDE", "POOL_MODES", "POOL_TYPES", "PRESET_NAMES",
    "SAMPLE_IMAGE_SIZE", "SPRINGENBERG_2015", "STACK_COLUMNS", "STRIDED_VARIANTS",
    "VGG16_INPUT_SHAPE", "VGG16_NUM_CLASSES", "analyze_stack", "build_keras_model",
    "compare_pooling_variants", "connection_matrix", "connection_parameter_counts", "conv_output_size",
    "convolve2d", "dilated_kernel_size", "image_from_bytes", "kernel_weights", "keras_output_size",
    "keras_padding_amounts", "lenet5_stack", "misprinted_output_size", "output_size_report",
    "pad_image", "parse_stack_table", "partial_conv_params", "pool2d", "pooling_output_size",
    "pooling_variants", "preset_stack", "receptive_field", "receptive_window", "sample_image",
    "stack_table", "stack_totals", "to_grayscale", "use_partial_c3", "vgg16_stack",
]
