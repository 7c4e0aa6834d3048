"""LeNet-5's C3 partial connection table (LeCun, Bottou, Bengio and Haffner 1998, table I).

C3 has 16 feature maps over S2's 6 maps, but in the paper no C3 map sees all six: maps 0-5 take
3 contiguous S2 maps, maps 6-11 take 4 contiguous, maps 12-14 take 4 non-contiguous and map 15
takes all six. The paper gives two reasons: it keeps the number of connections "within
reasonable bounds", and it breaks the symmetry, so different maps are forced to learn different
features. Each C3 map has one 5×5 kernel per S2 map it reads plus one bias, so C3 has
``60·25 + 16 = 1,516`` trainable parameters against ``6·16·25 + 16 = 2,416`` when fully connected.
"""

from __future__ import annotations

import numpy as np

from core.concepts.checks import _positive

LENET5_C3_INPUTS = 6
# For each C3 map (0..15), the S2 maps (0..5) it reads (the X marks of table I, by column).
LENET5_C3_CONNECTIONS = (
    (0, 1, 2), (1, 2, 3), (2, 3, 4), (3, 4, 5), (0, 4, 5), (0, 1, 5),
    (0, 1, 2, 3), (1, 2, 3, 4), (2, 3, 4, 5), (0, 3, 4, 5), (0, 1, 4, 5), (0, 1, 2, 5),
    (0, 1, 3, 4), (1, 2, 4, 5), (0, 2, 3, 5),
    (0, 1, 2, 3, 4, 5),
)
LENET5_C3_KERNEL = 5


def check_connections(connections, num_inputs: int) -> tuple[tuple[int, ...], ...]:
    """Validates a connection table: one non-empty tuple of distinct input-map ids per output map.

    Args:
        connections: for each output map, the input maps it reads.
        num_inputs: the number of input maps (ids run 0..num_inputs-1).

    Returns:
        The table as a tuple of sorted int tuples.

    Raises:
        ValueError: naming the output map and the bad input ids.
    """
    num_inputs = _positive(num_inputs, "num_inputs")
    checked = []
    if not connections:
        raise ValueError("connections must list the input maps of at least one output map, "
                         f"received {connections!r}")
    for output, inputs in enumerate(connections):
        ids = tuple(sorted(int(value) for value in inputs))
        if not ids or len(set(ids)) != len(ids) or ids[0] < 0 or ids[-1] >= num_inputs:
            raise ValueError(f"output map {output} must read distinct input maps in 0..{num_inputs - 1}, "
                             f"received {tuple(inputs)!r}")
        checked.append(ids)
    return tuple(checked)


def connection_matrix(connections=LENET5_C3_CONNECTIONS, num_inputs: int = LENET5_C3_INPUTS) -> np.ndarray:
    """Table I as a boolean array: ``matrix[input_map, output_map]`` is True where they connect.

    Args:
        connections: for each output map, the input maps it reads.
        num_inputs: the number of input maps.

    Returns:
        A ``(num_inputs, num_outputs)`` bool array (6×16 for LeNet-5's C3).
    """
    connections = check_connections(connections, num_inputs)
    matrix = np.zeros((num_inputs, len(connections)), dtype=bool)
    for output, inputs in enumerate(connections):
        matrix[list(inputs), output] = True
    return matrix


def partial_conv_params(kernel: int, connections, num_inputs: int) -> int:
    """Trainable parameters of a partially connected convolution: ``Σ (F·F·|inputs| + 1)``.

    Args:
        kernel: kernel size F.
        connections: for each output map, the input maps it reads.
        num_inputs: the number of input maps.

    Returns:
        The weights of one F×F kernel per connection plus one bias per output map.
    """
    kernel = _positive(kernel, "kernel")
    connections = check_connections(connections, num_inputs)
    return sum(kernel * kernel * len(inputs) + 1 for inputs in connections)


def connection_parameter_counts(kernel: int = LENET5_C3_KERNEL, connections=LENET5_C3_CONNECTIONS,
                                num_inputs: int = LENET5_C3_INPUTS) -> dict:
    """Full against partial connection, side by side (LeNet-5's C3 by default).

    Args:
        kernel: kernel size F.
        connections: the partial table.
        num_inputs: the number of input maps.

    Returns:
        ``{"full_connections", "partial_connections", "full_params", "partial_params"}``:
        kernels (input-map → output-map links) and trainable parameters of each variant
        (C3: 96 and 60 links, 2,416 and 1,516 parameters).
    """
    connections = check_connections(connections, num_inputs)
    outputs = len(connections)
    return {
        "full_connections": num_inputs * outputs,
        "partial_connections": sum(len(inputs) for inputs in connections),
        "full_params": partial_conv_params(kernel, [range(num_inputs)] * outputs, num_inputs),
        "partial_params": partial_conv_params(kernel, connections, num_inputs),
    }
