"""Facts about the machine the app runs on: Python, TensorFlow/Keras, backend, GPUs, CPUs."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys

NVIDIA_SMI_TIMEOUT_SECONDS = 5
# TensorFlow leaves its oneDNN CPU kernels off on some x86 CPUs (seen on a 2-core AMD EPYC, where
# a seed-preset LeNet training step took 41 ms with them off and 15 ms with them on). Training
# and inference processes turn them on unless the user set the variable.
ONEDNN_ENV = "TF_ENABLE_ONEDNN_OPTS"
# TensorFlow's own setting of the threads each operation may use (``share_cpu_threads`` leaves a
# user's value alone).
INTRA_OP_THREADS_ENV = "TF_NUM_INTRAOP_THREADS"


def prefer_onednn_kernels(environment_vars: dict | None = None) -> None:
    """Turns TensorFlow's oneDNN CPU kernels on unless the variable is already set.

    Call it before TensorFlow is imported: TensorFlow reads the variable once, at import.

    Args:
        environment_vars: the environment to change (a child process's); default this process's.
    """
    target = os.environ if environment_vars is None else environment_vars
    target.setdefault(ONEDNN_ENV, "1")


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows
        return os.cpu_count() or 1


def share_cpu_threads(branches: int) -> int | None:
    """Gives each of ``branches`` side-by-side parts of a training step its share of the cores.

    With ``lenet.build_batch_branches`` a step runs its batch in parts whose operations are
    independent. TensorFlow then runs the parts at once (its inter-op pool has a thread per
    core), and each operation splits its work over the intra-op pool. For operations as small as
    a LeNet's that splitting costs more than it gains: one intra-op thread per part, on a 2-core
    machine, gave steady seed-preset epochs of 2.5-3.1 s against 3.1-4.2 s with the default
    threads (two parts each time; docs/RESULTS_LOG.md, round 39). So each part gets ``usable_cores() // branches`` threads (at least
    one). Call it before TensorFlow runs its first operation; it changes only this process.

    Args:
        branches: parts per training batch (``batch_branches``); 1 changes nothing.

    Returns:
        The intra-op threads now set, or None when nothing changed: one branch, a backend
        other than TensorFlow, ``TF_NUM_INTRAOP_THREADS`` set by the user, or a TensorFlow
        that already runs (its thread pools are fixed then).
    """
    if int(branches) <= 1 or os.environ.get(INTRA_OP_THREADS_ENV):
        return None
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    threads = max(1, usable_cores() // int(branches))
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow's context already exists
        return None
    return threads


def disable_tf_data_autotune() -> bool:
    """Turns tf.data's autotuning off in the pipelines Keras builds from NumPy arrays.

    Under the TensorFlow backend, ``model.fit``/``evaluate``/``predict`` on arrays go through a
    ``tf.data`` pipeline with ``AUTOTUNE`` prefetching, which starts tf.data's autotuning thread.
    Keras makes a new iterator every epoch, and destroying the old one waits for that thread's
    current sleep to end; the sleep doubles from 10 ms as the iterator lives (sleeps of 5.12 and
    10.24 s seen here, TensorFlow 2.21). So epochs started with the whole process idle, for
    longer as a run went on (a 40 s plus-preset epoch took 80-90 s at times). Without autotuning
    the batches, their order and the results are the same (the shuffling does not depend on it)
    and the pauses are gone. Idempotent; does nothing on other backends.

    Returns:
        True when Keras' array pipelines now run without autotuning, False when the backend is
        not TensorFlow or this Keras has no ``ArrayDataAdapter.get_tf_dataset`` to wrap.
    """
    import keras

    if keras.backend.backend() != "tensorflow":
        return False
    try:
        from keras.src.trainers.data_adapters.array_data_adapter import ArrayDataAdapter
    except ImportError:
        return False
    original = getattr(ArrayDataAdapter, "get_tf_dataset", None)
    if original is None:
        return False
    if getattr(original, "without_autotune", False):
        return True

    def get_tf_dataset(self):
        import tensorflow as tf

        options = tf.data.Options()
        options.autotune.enabled = False
        return original(self).with_options(options)

    get_tf_dataset.without_autotune = True
    get_tf_dataset.__wrapped__ = original
    ArrayDataAdapter.get_tf_dataset = get_tf_dataset
    return True


def positive_float_env(name: str, default: float | None, unit: str) -> float | None:
    """A positive number from the environment variable ``name``, or ``default`` when it is unset.

    Args:
        name: the variable, e.g. ``TLLAB_HEARTBEAT_SECONDS``.
        default: returned when the variable is unset or empty.
        unit: what the number counts, for the error message (``"seconds"``, ``"CPUs"``).

    Returns:
        The value as a float, or ``default``.

    Raises:
        ValueError: for text that is not a number, or a number that is not above 0.
    """
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not value > 0:
        raise ValueError(f"{name} must be a positive number of {unit}, received {text!r}")
    return value


def _nvidia_smi_gpus() -> list[dict]:
    """Lists GPUs with name and total memory through ``nvidia-smi``; empty when it is absent."""
    executable = shutil.which("nvidia-smi")
    if not executable:
        return []
    try:
        output = subprocess.run(
            [executable, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_SECONDS,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in output.strip().splitlines():
        parts = [part.strip() for part in line.split(",")]
        if len(parts) == 3:
            gpus.append({"index": int(parts[0]), "name": parts[1], "memory_mib": int(float(parts[2]))})
    return gpus


def framework_gpus() -> list[dict]:
    """Lists the GPUs the active Keras backend can see, with names where the backend tells them."""
    backend = os.environ.get("KERAS_BACKEND", "tensorflow")
    gpus: list[dict] = []
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            for index, device in enumerate(tf.config.list_physical_devices("GPU")):
                details = tf.config.experimental.get_device_details(device)
                gpus.append({"index": index, "name": details.get("device_name", device.name)})
        elif backend == "jax":
            import jax

            for device in jax.devices():
                if device.platform == "gpu":
                    gpus.append({"index": device.id, "name": device.device_kind})
        elif backend == "torch":
            import torch

            for index in range(torch.cuda.device_count()):
                gpus.append({"index": index, "name": torch.cuda.get_device_name(index)})
    except Exception:  # noqa: BLE001 - an unusable backend means "no GPU", never a crash
        return []
    return gpus


def visible_gpu_count() -> int:
    """How many GPUs training may use, without importing a framework.

    Uses ``CUDA_VISIBLE_DEVICES`` when set, else ``nvidia-smi``; 0 on a CPU-only machine.
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([item for item in visible.split(",") if item.strip() and item.strip() != "-1"])
    return len(_nvidia_smi_gpus())


def describe_environment() -> dict:
    """Returns the environment panel's facts.

    Returns:
        A dict with ``python``, ``platform``, ``cpu_count``, ``tensorflow``, ``keras``,
        ``keras_backend`` and ``gpus`` (a list of ``{index, name, memory_mib}``).
    """
    report = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpu_count": os.cpu_count() or 1,
        "tensorflow": None,
        "keras": None,
        "keras_backend": None,
        "gpus": [],
    }
    try:
        import tensorflow as tf

        report["tensorflow"] = tf.__version__
    except Exception:  # noqa: BLE001 - TensorFlow may be absent on a JAX-only machine
        pass
    try:
        import keras

        report["keras"] = keras.__version__
        report["keras_backend"] = keras.backend.backend()
    except Exception:  # noqa: BLE001
        pass
    smi = {gpu["index"]: gpu for gpu in _nvidia_smi_gpus()}
    gpus = framework_gpus()
    for gpu in gpus:
        gpu["memory_mib"] = smi.get(gpu["index"], {}).get("memory_mib")
    report["gpus"] = gpus
    return report
