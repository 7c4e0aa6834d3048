"""The app shell: navigation lists every page, and every page renders without an exception."""

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT, run_page

import app


def test_navigation_lists_every_page_file():
    listed = {path for _, path, _, _ in app.PAGES}
    on_disk = {f"pages/{path.name}" for path in (REPO_ROOT / "pages").glob("*.py")}
    assert listed == on_disk


def test_navigation_groups_pages_into_the_five_sections():
    sections = [section for section, *_ in app.PAGES]
    assert list(dict.fromkeys(sections)) == ["Learn", "Data", "Train", "Compare & classify", "Runs"]


def test_app_runs_home_page_by_default():
    from streamlit.testing.v1 import AppTest

    app_test = AppTest.from_file(str(REPO_ROOT / "app.py"), default_timeout=60).run()
    assert not app_test.exception
    assert app_test.title[0].value == "Transfer Learning Lab"


@pytest.mark.parametrize("page_path", [path for _, path, _, _ in app.PAGES])
def test_every_page_renders_without_exception(page_path):
    app_test = run_page(page_path)
    assert not app_test.exception, app_test.exception


def test_home_page_shows_python_and_cpu_count():
    import os
    import sys

    app_test = run_page("pages/home.py")
    metrics = {metric.label: metric.value for metric in app_test.metric}
    assert metrics["Python"] == sys.version.split()[0]
    assert metrics["CPU cores"] == str(os.cpu_count())


def test_core_never_imports_streamlit():
    offenders = []
    for path in (REPO_ROOT / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(name.split(".")[0] == "streamlit" for name in names):
                offenders.append(str(path.relative_to(REPO_ROOT)))
    assert offenders == []


def test_home_page_lists_every_dataset_and_the_finished_runs_as_backbones(isolated_roots):
    from core import runs

    run_dir = runs.create_run({"model": "lenet5", "dataset": "synthetic-signs"})
    runs.write_status(run_dir, state=runs.COMPLETED)
    app_test = run_page("pages/home.py")
    assert not app_test.exception
    dataset_table, backbone_table = (frame.value for frame in app_test.dataframe[-2:])
    assert list(dataset_table["dataset"]) == ["gtsrb", "dogs-vs-cats", "synthetic-signs"]
    assert list(dataset_table["status"][:2]) == ["absent", "absent"]
    assert "1 usable as source backbones" in list(backbone_table["status"])
