"""Learning-rate schedules whose length can change while ``fit`` runs (registered for loading).

``ResizableCosineDecay`` is Keras' ``CosineDecay`` (alpha 0, no warm-up) with its number of decay
steps held in a Keras variable instead of a Python number fixed when the training step is traced.
``core.training.callbacks.TimeBudget`` shortens a run that would overrun its time budget and
calls ``set_decay_steps`` so the learning rate still reaches zero at the new last step, rather
than stopping with the rate halfway down. Written with ``keras.ops`` only (any backend).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops

PACKAGE = "tllab"


def _positive_steps(decay_steps) -> int:
    if isinstance(decay_steps, bool) or not isinstance(decay_steps, (int, float)) or decay_steps < 1:
        raise ValueError(f"decay_steps must be a positive number of steps, received {decay_steps!r}")
    return int(decay_steps)


def _inverse(steps: int) -> float:
    """1 / steps rounded to float32, as TensorFlow folds a division by a constant."""
    return float(np.float32(1.0) / np.float32(steps))


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResizableCosineDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Cosine decay from ``initial_learning_rate`` to 0 over ``decay_steps``, resizable in flight.

    ``rate(step) = initial_learning_rate * 0.5 * (1 + cos(pi * min(step, decay_steps) /
    decay_steps))``, as ``keras.optimizers.schedules.CosineDecay`` with ``alpha=0``. The
    division is a product with ``1 / decay_steps`` rounded to float32 (a second variable): that
    is what TensorFlow's graph optimiser makes of ``CosineDecay``'s division by a constant, so a
    compiled TensorFlow training step gets bit for bit the rates it got from ``CosineDecay``
    (measured: a 2-epoch plus run gave the same losses to the last digit; with a true division,
    or with the variables passed through ``ops.cast``, they differed from the first epoch on).
    Eager ``CosineDecay`` divides, so eager values can differ from these in the last bit.

    Args:
        initial_learning_rate: the rate at step 0.
        decay_steps: steps until the rate reaches 0 (it stays 0 after); ``set_decay_steps``
            changes it, also inside a compiled training step.
        name: the schedule's name.
    """

    def __init__(self, initial_learning_rate: float, decay_steps: int,
                 name: str = "resizable_cosine_decay"):
        super().__init__()
        self.initial_learning_rate = float(initial_learning_rate)
        self.name = name
        steps = _positive_steps(decay_steps)
        self._decay_steps = keras.Variable(float(steps), dtype="float32", trainable=False,
                                           name="decay_steps")
        self._inverse_decay_steps = keras.Variable(_inverse(steps), dtype="float32",
                                                   trainable=False, name="inverse_decay_steps")

    @property
    def decay_steps(self) -> int:
        """The current number of decay steps."""
        return int(round(float(ops.convert_to_numpy(self._decay_steps))))

    def set_decay_steps(self, decay_steps: int) -> None:
        """Makes the rate reach 0 at step ``decay_steps`` (a positive int) from now on."""
        steps = _positive_steps(decay_steps)
        self._decay_steps.assign(float(steps))
        self._inverse_decay_steps.assign(_inverse(steps))

    def __call__(self, step):
        initial_learning_rate = ops.convert_to_tensor(self.initial_learning_rate)
        dtype = initial_learning_rate.dtype  # float32, as the variables (used uncast: see above)
        step = ops.minimum(ops.cast(step, dtype), self._decay_steps)
        fraction = ops.multiply(step, self._inverse_decay_steps)
        cosine = 0.5 * (1.0 + ops.cos(ops.multiply(ops.array(math.pi, dtype=dtype), fraction)))
        return ops.multiply(initial_learning_rate, cosine)

    def get_config(self) -> dict:
        return {"initial_learning_rate": self.initial_learning_rate,
                "decay_steps": self.decay_steps, "name": self.name}
