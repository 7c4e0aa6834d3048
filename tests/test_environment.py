"""core.environment: process-level framework settings for training on this kind of machine."""

from __future__ import annotations

import os

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


def test_share_cpu_threads_changes_nothing_for_one_branch_or_a_users_setting(monkeypatch):
    monkeypatch.delenv(environment.INTRA_OP_THREADS_ENV, raising=False)
    assert environment.share_cpu_threads(1) is None
    monkeypatch.setenv(environment.INTRA_OP_THREADS_ENV, "4")
    assert environment.share_cpu_threads(2) is None


def _in_fresh_python(script: str) -> str:
    import subprocess
    import sys

    from core import paths

    child_environment = {key: value for key, value in os.environ.items()
                         if key != environment.INTRA_OP_THREADS_ENV}
    completed = subprocess.run([sys.executable, "-c", script], cwd=paths.REPO_ROOT,
                               env={**child_environment, "TF_CPP_MIN_LOG_LEVEL": "3"},
                               capture_output=True, text=True, timeout=120, check=True)
    return completed.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(keras.backend.backend() != "tensorflow", reason="TensorFlow's thread pools")
def test_share_cpu_threads_gives_each_branch_its_share_before_tensorflow_starts():
    # Fresh processes: this one's TensorFlow already runs, and its pools are fixed then.
    before = _in_fresh_python(
        "import tensorflow as tf\n"
        "from core import environment\n"
        "threads = environment.share_cpu_threads(2)\n"
        "print(threads, tf.config.threading.get_intra_op_parallelism_threads(),"
        " environment.usable_cores())\n")
    threads, configured, cores = (int(value) for value in before.split())
    assert threads == configured == max(1, cores // 2)
    after = _in_fresh_python(
        "import tensorflow as tf\n"
        "from core import environment\n"
        "tf.constant(1.0) + 1.0\n"  # TensorFlow runs now: its pools can no longer change
        "print(environment.share_cpu_threads(2), tf.config.threading.get_intra_op_parallelism_threads())\n")
    assert after == "None 0"  # 0: TensorFlow's own choice, left as it was
