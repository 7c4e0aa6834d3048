"""Losses used by the LeNet family (registered for loading), written with ``keras.ops`` only."""

from __future__ import annotations

import keras
from keras import ops

from core.validation import number_in_range

PACKAGE = "tllab"


@keras.saving.register_keras_serializable(package=PACKAGE)
class SparseLabelSmoothingCrossentropy(keras.losses.Loss):
    """Cross-entropy on integer labels with label smoothing (Szegedy et al. 2016).

    Keras' ``SparseCategoricalCrossentropy`` has no ``label_smoothing``; this loss takes the same
    integer labels and scores the probabilities against ``(1 - label_smoothing)`` on the true
    class plus ``label_smoothing / num_classes`` on every class, which keeps the network from
    growing ever more confident on the training images.

    Args:
        label_smoothing: share of the target spread over all classes, in [0, 1).
        name: the loss name.
    """

    def __init__(self, label_smoothing: float = 0.1, name: str = "sparse_label_smoothing_crossentropy",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = number_in_range("label_smoothing", label_smoothing, 0.0, 1.0,
                                               high_open=True)

    def call(self, y_true, y_pred):
        num_classes = int(y_pred.shape[-1])
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        targets = ops.one_hot(labels, num_classes, dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(targets, y_pred,
                                                     label_smoothing=self.label_smoothing)

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class CommitteeCrossentropy(keras.losses.Loss):
    """The mean cross-entropy of a committee's members, each scored on its own.

    The committee's training model outputs every member's probabilities stacked as
    ``(batch, members, classes)``; each member is trained as if alone (its own loss), so the
    members stay independent networks whose averaged vote is the committee's answer.

    Args:
        label_smoothing: as ``SparseLabelSmoothingCrossentropy``, in [0, 1).
        name: the loss name.
    """

    def __init__(self, label_smoothing: float = 0.0, name: str = "committee_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.member_loss = SparseLabelSmoothingCrossentropy(label_smoothing, reduction=None)
        self.label_smoothing = self.member_loss.label_smoothing

    def call(self, y_true, y_pred):
        members, num_classes = int(y_pred.shape[1]), int(y_pred.shape[-1])
        labels = ops.repeat(ops.reshape(y_true, (-1, 1)), members, axis=1)
        losses = self.member_loss(ops.reshape(labels, (-1,)), ops.reshape(y_pred, (-1, num_classes)))
        return ops.mean(ops.reshape(losses, (-1, members)), axis=1)

    def get_config(self):
        config = super().get_config()
        config.update(label_smoothing=self.label_smoothing)
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
def committee_accuracy(y_true, y_pred):
    """Accuracy of the members' averaged probabilities (``y_pred``: batch, members, classes)."""
    votes = ops.argmax(ops.mean(y_pred, axis=1), axis=-1)
    labels = ops.cast(ops.reshape(y_true, (-1,)), votes.dtype)
    return ops.cast(ops.equal(votes, labels), "float32")
