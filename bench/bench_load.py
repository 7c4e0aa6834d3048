"""Load: many concurrent sessions against a real ``streamlit run app.py`` on 127.0.0.1.

Everything runs in private temporary roots (synthetic signs generated there, about 10 s), and
only on 127.0.0.1:

1. **Jobs.** ``--job-sessions`` sessions (threads, 2) each submit ``--jobs-per-session`` (3)
   tiny jobs through ``core.jobs.submit`` (1-epoch seed LeNet on synthetic signs, the same call
   the Train page makes) at the same moment, while the server runs. Checked: every job is
   queued or running right after ``submit`` returns, every job ends ``completed``, and every run
   folder parses (``config.json``, ``status.json``, ``metrics.csv``, ``results.json``,
   ``class_names.json``, ``model.keras`` present, one metrics row per epoch).
2. **Classify.** A headless Debian Chromium (``/usr/bin/chromium`` through Playwright, never
   ``playwright install``) opens the Classify page of one finished run, first in one session
   alone (the baseline), then in ``--sessions`` (20) concurrent sessions; each uploads
   ``--images`` (5) PNGs and waits until the page shows a "Top-1" result for every one. The
   latency is from the upload to the last result. Errors: a session that times out, or a page
   that shows a Streamlit exception or an error box.

It prints the job figures, then p50/p95/max latency and the error count, and the ratio of the
concurrent p50 to the lone session's latency. Exit status 1 on any error, failed job or corrupt
run folder (there is no latency target: the figures are for the README).

Usage: ``.venv/bin/python bench/bench_load.py [--sessions 20] [--images 5] [--job-sessions 2]
[--jobs-per-session 3] [--timeout 900]``
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
HOST = "127.0.0.1"
MAX_SESSIONS = 50
MAX_IMAGES = 20
MAX_JOBS = 20
SERVER_START_SECONDS = 120
SESSION_TIMEOUT_SECONDS = 300
TINY_JOB = {"model": "lenet5", "preset": "seed", "dataset": "synthetic-signs", "epochs": 1,
            "labels_per_class": 2, "valid_size": 43, "max_test_images": 43, "random_blur": 0.0,
            "augmentation": {"rotation_degrees": 0}}
RUN_FILES = ("config.json", "status.json", "metrics.csv", "results.json", "class_names.json",
             "model.keras")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def start_server(data_dir: Path, runs_dir: Path, log_path: Path) -> tuple[subprocess.Popen, str]:
    """``streamlit run app.py`` on a free 127.0.0.1 port; returns (process, base URL) once healthy."""
    port = free_port()
    environment = dict(os.environ, TLLAB_DATA_DIR=str(data_dir), TLLAB_RUNS_DIR=str(runs_dir),
                       PYTHONUNBUFFERED="1")
    log = open(log_path, "w")
    process = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
         "--server.address", HOST, "--server.port", str(port), "--browser.gatherUsageStats", "false"],
        cwd=REPO_ROOT, env=environment, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return process, base_url
        except OSError:
            pass
        if process.poll() is not None:
            break
        time.sleep(0.5)
    process.kill()
    raise RuntimeError(f"streamlit did not start; see {log_path}")


# --- jobs ------------------------------------------------------------------------------------

def check_run_folder(run_dir: Path, epochs: int) -> list[str]:
    """Problems of one finished run folder (empty when every file parses and agrees)."""
    from core import runs

    problems = [f"{name} missing" for name in RUN_FILES if not (run_dir / name).exists()]
    for name in ("config.json", "status.json", "results.json", "class_names.json"):
        try:
            json.loads((run_dir / name).read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            problems.append(f"{name} does not parse: {error}")
    try:
        metrics = runs.read_metrics(run_dir)
        if [int(epoch) for epoch in metrics["epoch"]] != list(range(1, epochs + 1)):
            problems.append(f"metrics.csv epochs {list(metrics['epoch'])}, expected 1..{epochs}")
    except (runs.RunError, ValueError) as error:
        problems.append(f"metrics.csv does not parse: {error}")
    text = (run_dir / "metrics.csv").read_text(encoding="utf-8") if (run_dir / "metrics.csv").exists() else ""
    if text and not text.endswith("\n"):
        problems.append("metrics.csv ends in a half-written line")
    return problems


def run_jobs(job_sessions: int, jobs_per_session: int, timeout: float) -> dict:
    """Submits the jobs from concurrent sessions, waits for them, checks every folder."""
    from core import jobs, runs

    submitted: list[tuple[int, str, str]] = []  # (session, run id, state right after submit)
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(job_sessions)

    def session(index: int) -> None:
        barrier.wait()
        for number in range(jobs_per_session):
            try:
                run_id = jobs.submit(dict(TINY_JOB, seed=index * 100 + number))
                state = jobs.status(run_id)["state"]
            except (ValueError, OSError) as error:
                with lock:
                    failures.append(f"session {index} job {number}: {error}")
                continue
            with lock:
                submitted.append((index, run_id, state))

    started = time.perf_counter()
    threads = [threading.Thread(target=session, args=(index,)) for index in range(job_sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    submit_seconds = time.perf_counter() - started
    queued_at_submit = sum(1 for _, _, state in submitted if state in jobs.ACTIVE_STATES)
    deadline = time.monotonic() + timeout
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {run_id: jobs.status(run_id)["state"] for _, run_id, _ in submitted}
        if all(state in runs.TERMINAL_STATES for state in states.values()):
            break
        time.sleep(1.0)
    all_seconds = time.perf_counter() - started
    corrupt = {}
    for _, run_id, _ in submitted:
        problems = check_run_folder(runs.run_path(run_id), TINY_JOB["epochs"])
        if problems:
            corrupt[run_id] = problems
    completed = [run_id for run_id, state in states.items() if state == runs.COMPLETED]
    for run_id, state in states.items():
        if state != runs.COMPLETED:
            failures.append(f"{run_id} ended {state}: {runs.read_status(runs.run_path(run_id)).get('error')}")
    return {"submitted": len(submitted), "expected": job_sessions * jobs_per_session,
            "queued_at_submit": queued_at_submit, "completed": completed, "corrupt": corrupt,
            "failures": failures, "submit_seconds": submit_seconds, "all_seconds": all_seconds}


# --- classify --------------------------------------------------------------------------------

def upload_images(count: int, session: int) -> list[dict]:
    """``count`` PNG files (synthetic test signs), different for each session."""
    from PIL import Image

    from core import datasets

    split = datasets.load("synthetic-signs", "test")
    files = []
    for index in range(count):
        position = (session * count + index * 7) % len(split.labels)
        buffer = io.BytesIO()
        Image.fromarray(split.images[position]).resize((64, 64)).save(buffer, format="PNG")
        files.append({"name": f"s{session}-{index}.png", "mimeType": "image/png",
                      "buffer": buffer.getvalue()})
    return files


async def classify_session(browser, url: str, files: list[dict], index: int) -> dict:
    """One browser session: open the page, upload, wait for every result."""
    context = await browser.new_context(viewport={"width": 1300, "height": 900})
    page = await context.new_page()
    page.set_default_timeout(SESSION_TIMEOUT_SECONDS * 1000)
    result = {"session": index, "ok": False, "latency": None, "error": ""}
    try:
        await page.goto(url)
        await page.get_by_text("Images to classify").first.wait_for(state="visible")
        uploader = page.locator("[data-testid='stFileUploader'] input[type='file']").first
        started = time.perf_counter()
        await uploader.set_input_files(files)
        results = page.get_by_text("Top-1:", exact=False)
        deadline = time.monotonic() + SESSION_TIMEOUT_SECONDS
        while await results.count() < len(files):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{await results.count()} of {len(files)} results after "
                                   f"{SESSION_TIMEOUT_SECONDS} s")
            await asyncio.sleep(0.05)
        result["latency"] = time.perf_counter() - started
        exceptions = await page.locator("[data-testid='stException']").count()
        errors = await page.locator("[data-testid='stAlertContentError']").count()
        if exceptions or errors:
            result["error"] = f"{exceptions} exception(s), {errors} error box(es) on the page"
        else:
            result["ok"] = True
    except Exception as error:  # noqa: BLE001 - every failure of a session is counted and shown
        result["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:200]}"
    finally:
        await context.close()
    return result


async def run_classify(base_url: str, run_id: str, sessions: int, images: int) -> dict:
    from playwright.async_api import async_playwright

    url = f"{base_url}/classify?run={run_id}"
    payloads = [upload_images(images, index) for index in range(sessions + 1)]
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                   args=CHROMIUM_ARGS)
        try:
            lone = await classify_session(browser, url, payloads[-1], -1)
            started = time.perf_counter()
            results = await asyncio.gather(*(classify_session(browser, url, payloads[index], index)
                                             for index in range(sessions)))
            wall = time.perf_counter() - started
        finally:
            await browser.close()
    return {"lone": lone, "results": list(results), "wall": wall}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    position = min(len(ordered) - 1, max(0, int(round(fraction * (len(ordered) - 1)))))
    return ordered[position]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--images", type=int, default=5)
    parser.add_argument("--job-sessions", type=int, default=2)
    parser.add_argument("--jobs-per-session", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=900.0,
                        help="seconds the jobs may take to finish, all together")
    parser.add_argument("--keep", action="store_true", help="keep the temporary roots")
    arguments = parser.parse_args(argv)
    for name, value, limit in (("sessions", arguments.sessions, MAX_SESSIONS),
                               ("images", arguments.images, MAX_IMAGES),
                               ("jobs", arguments.job_sessions * arguments.jobs_per_session, MAX_JOBS)):
        if not 1 <= value <= limit:
            parser.error(f"{name} must be between 1 and {limit}, received {value}")
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is absent", file=sys.stderr)
        return 2

    root = Path(tempfile.mkdtemp(prefix="tllab-load-"))
    data_dir, runs_dir = root / "data", root / "runs"
    data_dir.mkdir()
    runs_dir.mkdir()
    os.environ.update(TLLAB_DATA_DIR=str(data_dir), TLLAB_RUNS_DIR=str(runs_dir))
    server = None
    try:
        from core import datasets

        print(f"Roots under {root}; generating synthetic signs…", flush=True)
        for split in ("train", "val", "test"):
            datasets.load("synthetic-signs", split)
        server, base_url = start_server(data_dir, runs_dir, root / "streamlit.log")
        print(f"Server {base_url} (pid {server.pid})", flush=True)

        jobs_report = run_jobs(arguments.job_sessions, arguments.jobs_per_session, arguments.timeout)
        print(f"\nJobs: {arguments.job_sessions} sessions x {arguments.jobs_per_session} submitted "
              f"at once in {jobs_report['submit_seconds']:.2f} s")
        print(f"  submitted {jobs_report['submitted']}/{jobs_report['expected']}, queued or running "
              f"right after submit {jobs_report['queued_at_submit']}, completed "
              f"{len(jobs_report['completed'])}, corrupt folders {len(jobs_report['corrupt'])}, "
              f"all done after {jobs_report['all_seconds']:.1f} s")
        for line in jobs_report["failures"]:
            print(f"  FAILED {line}")
        for run_id, problems in jobs_report["corrupt"].items():
            print(f"  CORRUPT {run_id}: {'; '.join(problems)}")
        if not jobs_report["completed"]:
            print("No finished run to classify with.", file=sys.stderr)
            return 1

        print(f"\nClassify: 1 session alone, then {arguments.sessions} concurrent sessions x "
              f"{arguments.images} images…", flush=True)
        report = asyncio.run(run_classify(base_url, jobs_report["completed"][0], arguments.sessions,
                                          arguments.images))
        latencies = [item["latency"] for item in report["results"] if item["ok"]]
        errors = [item for item in report["results"] if not item["ok"]]
        lone = report["lone"]
        print(f"  lone session: {lone['latency']:.2f} s" if lone["ok"]
              else f"  lone session FAILED: {lone['error']}")
        if latencies:
            p50, p95 = statistics.median(latencies), percentile(latencies, 0.95)
            print(f"  {'':24}{'lone':>10}{'p50':>10}{'p95':>10}{'max':>10}")
            print(f"  {f'upload→{arguments.images} results (s)':24}"
                  f"{(lone['latency'] or float('nan')):>10.2f}{p50:>10.2f}{p95:>10.2f}"
                  f"{max(latencies):>10.2f}")
            if lone["ok"]:
                print(f"  ratio concurrent p50 / lone: {p50 / lone['latency']:.1f}x")
        print(f"  errors: {len(errors)} of {arguments.sessions} sessions; wall {report['wall']:.1f} s")
        for item in errors:
            print(f"  ERROR session {item['session']}: {item['error']}")

        bad = (len(errors) + (0 if lone["ok"] else 1) + len(jobs_report["failures"])
               + len(jobs_report["corrupt"])
               + (jobs_report["expected"] - jobs_report["queued_at_submit"]))
        print(f"\n{'PASS' if not bad else 'FAIL'}: {bad} problem(s)")
        return 0 if not bad else 1
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
        from core import jobs as job_module

        for entry in runs_dir.iterdir() if runs_dir.exists() else []:
            if entry.is_dir() and not entry.name.startswith("."):
                try:
                    if job_module.status(entry.name)["state"] in job_module.ACTIVE_STATES:
                        job_module.cancel(entry.name)
                except (ValueError, OSError):
                    pass
        if not arguments.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
