"""Side-by-side arms in separate processes, for benches whose arms differ in TensorFlow's kernels.

TensorFlow fixes its CPU kernels (oneDNN or its own) when it is imported, so a bench comparing
"what the job path did before" with "what it does now" runs each arm in a child process of the
same script. The parent calls ``run_arm``; the child sees ``--arm NAME`` (a hidden option added
by ``add_arm_options``), runs one arm and prints its result as JSON on its last stdout line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

ARM_OPTION = "--arm"
PLAIN_KERNELS = ("default", "onednn")
CPUINFO = "/proc/cpuinfo"


def add_arm_options(parser: argparse.ArgumentParser, arms: tuple[str, ...]) -> None:
    """Adds ``--plain-kernels`` and the hidden child option ``--arm`` to a bench's parser."""
    parser.add_argument(
        "--plain-kernels", choices=PLAIN_KERNELS, default="default",
        help="the plain arm's TensorFlow CPU kernels: TensorFlow's own choice on this CPU "
             "(default) or oneDNN forced on, as TensorFlow does by itself on some CPUs")
    parser.add_argument(ARM_OPTION, choices=arms, default=None, help=argparse.SUPPRESS)


def onednn_enabled() -> bool | None:
    """Whether this process's TensorFlow runs oneDNN kernels (None when TensorFlow cannot tell)."""
    try:
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None


def run_arm(script: str, arm: str, argv: list[str], *, onednn: bool) -> dict:
    """Runs ``script --arm ARM *argv`` in a child process and returns its JSON result.

    Args:
        script: the bench script's path (``__file__``).
        arm: the arm's name.
        argv: the options to pass on (without ``--arm`` and ``--plain-kernels``).
        onednn: turn oneDNN on in the child; otherwise the variable is removed, so TensorFlow
            uses its own default for this CPU.

    Returns:
        The dict the child printed.
    """
    from core import environment

    child_environment = dict(os.environ)
    child_environment.pop(environment.ONEDNN_ENV, None)
    if onednn:
        environment.prefer_onednn_kernels(child_environment)
    completed = subprocess.run([sys.executable, script, ARM_OPTION, arm, *argv],
                               env=child_environment, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"the {arm} arm failed:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def cpu_model() -> str:
    """This machine's CPU model as /proc/cpuinfo names it, with the core count.

    TensorFlow turns oneDNN on by itself on some CPUs and not on others, so a speed-up is only
    meaningful with the CPU it was measured on.
    """
    name = platform.processor() or "unknown CPU"
    try:
        with open(CPUINFO, encoding="utf-8") as stream:
            for line in stream:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    name = value.strip()
                    break
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} cores"


def report_speedup(speedup: float, target: float, arms: str = "plain/job") -> int:
    """Prints the speed-up (``arms``: "before/after") against its target; returns the exit status
    (1 if missed)."""
    print(f"CPU: {cpu_model()}")
    print(f"speed-up {arms} = {speedup:.2f} (target >= {target})")
    if speedup >= target:
        return 0
    print(f"MISSED TARGET: speed-up {speedup:.2f} < {target}")
    return 1
