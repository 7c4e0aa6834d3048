"""core.environment: process-level framework settings for training on this kind of machine."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from core import environment  # noqa: E402


def _label_batches(adapter_class, get_tf_dataset, labels):
    keras.utils.set_random_seed(7)
    adapter = adapter_class(np.arange(len(labels), dtype="float32")[:, None], labels, batch_size=4,
                            shuffle=True)
    dataset = get_tf_dataset(adapter)
    return dataset, [batch[1].numpy().tolist() for batch in dataset]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="a tf.data setting")
def test_array_pipelines_run_without_autotuning_and_give_the_same_batches():
    from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter

    assert environment.disable_tf_data_autotune() is True
    assert environment.disable_tf_data_autotune() is True  # idempotent: wrapped once
    wrapped = ArrayDataAdapter.get_tf_dataset
    original = wrapped.__wrapped__
    assert not getattr(original, "without_autotune", False)

    labels = np.arange(22)
    dataset, batches = _label_batches(ArrayDataAdapter, wrapped, labels)
    reference, reference_batches = _label_batches(ArrayDataAdapter, original, labels)
    assert dataset.options().autotune.enabled is False
    assert reference.options().autotune.enabled is not False  # TensorFlow's default: on
    assert batches == reference_batches  # same shuffled order, batch by batch
    assert sorted(sum(batches, [])) == labels.tolist() and batches != [labels[i:i + 4].tolist()
                                                                       for i in range(0, 22, 4)]
