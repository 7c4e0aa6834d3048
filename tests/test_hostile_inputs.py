"""Hostile inputs, as a student's browser or a careless command line would send them.

Every case checks three things: the user gets a clear message (asserted on its words), no
traceback reaches the page or the command line, and no file is left behind (the whole test
folder, which holds the data root, the runs root and the inputs, is listed before and after;
only the datasets CLI's own progress record of the failure, ``<data>/.progress/NAME.json``, is
expected to change).
"""

from __future__ import annotations

import contextlib
import io
import re
import stat
import struct
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from PIL import Image

from core import imaging, runs
from core.datasets import background, base, registry, sources
from tests.conftest import run_page
from tests import test_datasets_support as fixtures
from tests.test_serving import served_on

TRAIN_FOLDER = fixtures.TRAIN_PREFIX + "00000/"
TRAIN_CSV = TRAIN_FOLDER + "GT-00000.csv"
LENET = ["--model", "lenet5", "--dataset", "synthetic-signs", "--epochs", "1"]
VGG_FEATURES = ["--model", "vgg16", "--strategy", "feature-extraction", "--dataset", "synthetic-signs",
                "--epochs", "1"]


# --- input builders ------------------------------------------------------------------------------

def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def png_bomb_header(width: int = 100_000, height: int = 100_000) -> bytes:
    """A 1 KB PNG whose header claims width x height pixels (10 gigapixels by default)."""
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
            + _chunk(b"IDAT", zlib.compress(bytes(1000))) + _chunk(b"IEND", b""))


def jpeg_bytes(size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def huge_png(width: int = 9000, height: int = 5000) -> bytes:
    """A real, valid 45-megapixel PNG (bilevel, so it stays a few KB)."""
    buffer = io.BytesIO()
    Image.new("1", (width, height)).save(buffer, format="PNG")
    return buffer.getvalue()


def gtsrb_members(image_name="00000_00000.ppm", image=None) -> dict[str, bytes]:
    """Class 00000 with a CSV listing one image (``image`` bytes, default a good sign)."""
    csv_text = fixtures.GTSRB_HEADER + f"\n{image_name};32;32;2;2;29;29;0\n"
    data = fixtures.encode(fixtures.sign_image(0, 1)) if image is None else image
    return {TRAIN_CSV: csv_text.encode(), TRAIN_FOLDER + image_name: data}


def zip_with(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)  # ZipInfo keeps the name as given (even '/x', '../x')
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3  # Unix, so external_attr carries the file type
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def truncated_h5(path: Path) -> Path:
    import h5py

    whole = path.with_suffix(".whole")
    with h5py.File(whole, "w") as weights:
        weights.create_dataset("block1_conv1/kernel", data=np.arange(20_000, dtype="float32"))
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


# --- the three front doors: the datasets CLI, the training CLI, core calls --------------------------

def datasets_cli(*arguments: str) -> str:
    """``python -m core.datasets ...`` in this process; returns what it printed (rc must be 1)."""
    from core.datasets.__main__ import main

    return _cli(main, list(arguments) + ["--quiet"], expected_status=1)


def train_cli(*arguments: str) -> str:
    """``python -m core.train ...`` in this process; returns what it printed (rc must be 2)."""
    from core.train import main

    return _cli(main, list(arguments), expected_status=2)


def _cli(main, argv: list[str], expected_status: int) -> str:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    printed = out.getvalue() + err.getvalue()
    assert status == expected_status, printed
    lines = err.getvalue().strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), printed  # one clear line
    return printed


def message_of(call: Callable[[], object], kind=ValueError) -> str:
    """Runs a core call that must refuse its input; returns the exception's message."""
    with pytest.raises(kind) as caught:
        call()
    return str(caught.value)


# --- the cases -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """``prepare(inputs folder)`` builds the hostile input (before the snapshot); ``act(value,
    roots)`` feeds it to the app and returns the text the user sees; ``words`` must be in it."""

    id: str
    prepare: Callable[[Path], object]
    act: Callable[[object, dict], str]
    words: str


def _nothing(inputs: Path):
    return None


def _file(name: str, data: bytes):
    def prepare(inputs: Path) -> Path:
        path = inputs / name
        path.write_bytes(data)
        return path
    return prepare


def _zip(name: str, members: Callable[[], dict], symlinks: dict | None = None):
    def prepare(inputs: Path) -> Path:
        return zip_with(inputs / name, members(), symlinks)
    return prepare


def _get(dataset: str):
    return lambda path, roots: datasets_cli("get", dataset, "--from", str(path))


def _outside_run(inputs: Path) -> Path:
    """A folder that looks like a run, outside the runs root (a target worth deleting)."""
    folder = inputs / "outside"
    folder.mkdir()
    (folder / runs.CONFIG_FILE).write_text("{}")
    return folder


def _link_in_runs_root(inputs: Path) -> str:
    target = _outside_run(inputs)
    (runs.paths.runs_dir() / "evil-link").symlink_to(target)
    return "evil-link"


def _nested_gtsrb_zip() -> dict:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        for name, data in gtsrb_members().items():
            archive.writestr(name, data)
    return {"GTSRB_Final_Training_Images.zip": inner.getvalue()}


def _patched(module, name, value, call):
    """Runs ``call`` with ``module.name`` temporarily set to ``value`` (small caps, fast cases)."""
    def run(*arguments):
        previous = getattr(module, name)
        setattr(module, name, value)
        try:
            return call(*arguments)
        finally:
            setattr(module, name, previous)
    return run


def _concepts_upload(value, roots) -> str:
    from core import concepts

    return message_of(lambda: concepts.image_from_bytes(value))


def _page_concepts_bomb(value, roots) -> str:
    app_test = run_page("pages/concepts.py")
    app_test.radio(key="concepts_image_source").set_value("upload").run()
    app_test.file_uploader(key="concepts_upload").set_value(
        ("bomb.png", png_bomb_header(), "image/png")).run()
    assert not app_test.exception
    return "\n".join(error.value for error in app_test.error)


def _page_datasets_on_lan(value, roots) -> str:
    with served_on("0.0.0.0"):
        app_test = run_page("pages/datasets.py", datasets_selected="gtsrb")
        app_test.radio(key="datasets_selected").set_value("dogs-vs-cats").run()
    assert not app_test.exception
    assert not list(app_test.text_area) and not list(app_test.text_input)  # no path input at all
    return "\n".join(caption.value for caption in app_test.caption)


def _page_datasets_bomb_upload(path: Path, roots) -> str:
    with served_on("0.0.0.0"):
        app_test = run_page("pages/datasets.py", datasets_selected="gtsrb")
        app_test.file_uploader(key="datasets_upload_gtsrb").set_value(
            [("GTSRB_Final_Training_Images.zip", path.read_bytes(), "application/zip")]).run()
        app_test.button(key="datasets_import_upload_gtsrb").click().run()
        deadline = time.monotonic() + 60
        while registry.status("gtsrb") == "downloading" and time.monotonic() < deadline:
            time.sleep(0.3)
        app_test.run()
    assert not app_test.exception
    shown = "\n".join(error.value for error in app_test.error)
    # the background process's failure record and log are the page's report of the failure
    for leftover in ("gtsrb.json", "gtsrb.log"):
        (roots["data"] / base.PROGRESS_FOLDER / leftover).unlink(missing_ok=True)
    return shown


def _page_datasets_too_many_uploads(value, roots) -> str:
    app_test = run_page("pages/datasets.py", datasets_selected="dogs-vs-cats")
    buffer = io.BytesIO()
    zipfile.ZipFile(buffer, "w").close()
    small = buffer.getvalue()  # an empty zip, four times
    app_test.file_uploader(key="datasets_upload_dogs-vs-cats").set_value(
        [(f"train{index}.zip", small, "application/zip") for index in range(4)]).run()
    app_test.button(key="datasets_import_upload_dogs-vs-cats").click().run()
    assert not app_test.exception
    assert registry.status("dogs-vs-cats") == "absent"
    return "\n".join(error.value for error in app_test.error)


CASES = [
    # images
    Case("image-not-an-image", _nothing,
         lambda value, roots: message_of(lambda: imaging.read_image(b"hello, this is text")),
         "not an image"),
    Case("image-truncated-jpeg", _nothing,
         lambda value, roots: message_of(lambda: imaging.read_image(jpeg_bytes()[:700])),
         "truncated or corrupt"),
    Case("image-zero-bytes", _nothing,
         lambda value, roots: message_of(lambda: imaging.read_image(b"")), "empty \\(0 bytes\\)"),
    Case("image-decompression-bomb-png-header", _nothing,
         lambda value, roots: message_of(lambda: imaging.read_image(png_bomb_header())),
         "decompression bomb"),
    Case("image-huge-dimensions", _nothing,
         lambda value, roots: message_of(lambda: imaging.read_image(huge_png())),
         "9000x5000 = 45.0 megapixels, above the 40 megapixels limit"),
    Case("image-concepts-upload-bomb", lambda inputs: png_bomb_header(), _concepts_upload,
         "Could not read the upload as an image.*decompression bomb"),
    Case("image-gtsrb-member-ppm-bomb",
         _zip("ppm-bomb.zip", lambda: gtsrb_members(image=b"P6\n100000 100000\n255\n" + bytes(300))),
         _get("gtsrb"), "00000_00000.ppm cannot be decoded"),
    # zips
    Case("zip-member-above-the-size-cap",
         _zip("bomb.zip", lambda: gtsrb_members(image=bytes(2 * 1024 * 1024))),
         _patched(sources, "MAX_MEMBER_BYTES", 1024 * 1024, _get("gtsrb")),
         "unpacks to 2.0 MiB, above the 1.0 MiB limit per file \\(a possible zip bomb\\)"),
    Case("zip-compression-ratio-bomb",
         _zip("ratio.zip", lambda: gtsrb_members(image=bytes(8 * 1024 * 1024))),
         _get("gtsrb"), "inflates [0-9,]+ times, above the 100x limit \\(a possible zip bomb\\)"),
    Case("zip-total-above-the-cap",
         _zip("total.zip", lambda: {f"train/cat.{i}.jpg": jpeg_bytes() for i in range(4)}),
         _patched(sources, "MAX_TOTAL_BYTES", 4000, _get("dogs-vs-cats")),
         "unpack to more than .*MiB \\(a possible zip bomb\\)"),
    Case("zip-path-traversal-member",
         _zip("traversal.zip", lambda: {**gtsrb_members(), "../x.ppm": b"P6\n1 1\n255\n\0\0\0"}),
         _get("gtsrb"), "'../x.ppm' would land outside the dataset folder"),
    Case("zip-absolute-member",
         _zip("absolute.zip", lambda: {**gtsrb_members(), "/tmp/x.ppm": b"P6\n1 1\n255\n\0\0\0"}),
         _get("gtsrb"), "'/tmp/x.ppm' would land outside the dataset folder"),
    Case("zip-symlink-member",
         _zip("symlink.zip", gtsrb_members, symlinks={TRAIN_FOLDER + "00000_00001.ppm": "/etc/passwd"}),
         _get("gtsrb"), "00000_00001.ppm' is a symbolic link"),
    Case("zip-nested-zip-gtsrb", _zip("nested.zip", _nested_gtsrb_zip), _get("gtsrb"),
         "no GTSRB files found"),
    Case("zip-nested-zip-dogs", _zip("nested.zip", _nested_gtsrb_zip), _get("dogs-vs-cats"),
         "no labelled images found"),
    Case("zip-empty", _zip("empty.zip", dict), _get("gtsrb"), "no GTSRB files found .* nothing"),
    Case("zip-wrong-layout", _zip("dogs.zip", lambda: fixtures.dogs_flat_members(2)), _get("gtsrb"),
         "no GTSRB files found"),
    Case("zip-not-a-zip", _file("train.zip", b"PK\x03\x04 but nothing else"), _get("dogs-vs-cats"),
         "not a readable zip file"),
    # weights files
    Case("weights-random-bytes-h5", _file("vgg16.weights.h5", np.random.default_rng(1).bytes(4096)),
         lambda path, roots: train_cli(*VGG_FEATURES, "--weights", str(path)),
         "not an HDF5 weights file"),
    Case("weights-truncated-h5", lambda inputs: truncated_h5(inputs / "vgg16.weights.h5"),
         lambda path, roots: train_cli(*VGG_FEATURES, "--weights", str(path)),
         "damaged HDF5 file \\(truncated or corrupt\\)"),
    Case("weights-random-bytes-keras", _file("model.keras", b"\x00" * 512),
         lambda path, roots: train_cli(*VGG_FEATURES, "--weights", str(path)),
         "not a Keras .keras file"),
    Case("weights-wrong-suffix", _file("weights.txt", b"hello"),
         lambda path, roots: train_cli(*VGG_FEATURES, "--weights", str(path)),
         "must end in .h5, .weights.h5 or .keras"),
    # run ids
    *[Case(f"run-id-{label}", _outside_run,
           lambda value, roots, run_id=run_id: message_of(lambda: runs.run_path(run_id)),
           f"'{re.escape(run_id)}' is outside the runs root")
      for label, run_id in (("dotdot-outside", "../outside"), ("dotdot-etc", "../../etc"),
                            ("absolute-etc", "/etc"), ("a-dotdot-dotdot", "a/../../outside"))],
    Case("run-id-symlink-out-of-the-root", _link_in_runs_root,
         lambda run_id, roots: message_of(lambda: runs.run_path(run_id)),
         "'evil-link' points outside the runs root"),
    Case("run-id-shell-characters", _nothing,
         lambda value, roots: message_of(lambda: runs.run_path("x; rm -rf ~")), "is not a run id"),
    Case("run-delete-outside-the-root", _outside_run,
         lambda folder, roots: message_of(lambda: runs.delete_run(folder)), "is outside the runs root"),
    Case("run-weights-cli-dotdot", _outside_run,
         lambda folder, roots: train_cli(*VGG_FEATURES, "--weights", "run:../x"),
         "'../x' is outside the runs root"),
    Case("run-weights-cli-absolute", _outside_run,
         lambda folder, roots: train_cli(*VGG_FEATURES, "--weights", f"run:{folder}"),
         "is outside the runs root"),
    # --set values
    Case("set-bad-key", _nothing, lambda value, roots: train_cli(*LENET, "--set", "nonsense_key=1"),
         "unknown LeNet setting\\(s\\) \\['nonsense_key'\\]"),
    Case("set-non-json-nonsense", _nothing, lambda value, roots: train_cli(*LENET, "--set", "batch_size={{"),
         "batch_size must be an int in 1..8192, received '\\{\\{'"),
    Case("set-huge-number", _nothing,
         lambda value, roots: train_cli(*LENET, "--set", "epochs=99999999999999999999"),
         "epochs must be an int in 1..1000, received 99999999999999999999"),
    Case("set-infinite-number", _nothing, lambda value, roots: train_cli(*LENET, "--set", "epochs=1e400"),
         "epochs must be an int in 1..1000, received inf"),
    Case("set-negative-epochs", _nothing, lambda value, roots: train_cli(*LENET, "--set", "epochs=-3"),
         "epochs must be an int in 1..1000, received -3"),
    Case("set-not-a-number", _nothing, lambda value, roots: train_cli(*LENET, "--set", "learning_rate=NaN"),
         "learning_rate must be a number"),
    Case("set-without-equals", _nothing, lambda value, roots: train_cli(*LENET, "--set", "epochs"),
         "--set expects key=value"),
    # page inputs
    Case("page-datasets-lan-has-no-path-input", _nothing, _page_datasets_on_lan,
         "LAN mode: upload the zip\\(s\\); paths on the server are not accepted"),
    Case("page-concepts-bomb-upload", _nothing, _page_concepts_bomb,
         "Could not read the upload as an image.*decompression bomb"),
    Case("page-datasets-ratio-bomb-upload",
         _zip("upload.zip", lambda: gtsrb_members(image=bytes(8 * 1024 * 1024))),
         _page_datasets_bomb_upload, "Last download/import failed: .*a possible zip bomb"),
    Case("page-datasets-too-many-uploads", _nothing, _page_datasets_too_many_uploads,
         "4 files uploaded at once; expected at most 3 zips"),
]


def snapshot(folder: Path) -> dict[str, int]:
    """Every file and folder under ``folder`` with its size (folders: -1), except the datasets
    CLI's progress record."""
    listing = {}
    for path in folder.rglob("*"):
        relative = path.relative_to(folder)
        if relative.parts[:2] == ("data", base.PROGRESS_FOLDER):
            continue
        listing[relative.as_posix()] = -1 if path.is_dir() else path.lstat().st_size
    return listing


def test_the_battery_has_at_least_25_cases():
    assert len(CASES) >= 25
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_input(case, tmp_path, isolated_roots):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    value = case.prepare(inputs)
    before = snapshot(tmp_path)
    shown = case.act(value, isolated_roots)
    assert re.search(case.words, shown), shown
    assert "Traceback" not in shown
    assert snapshot(tmp_path) == before


def test_upload_names_are_unique_and_stay_in_their_folder(tmp_path):
    targets = [background.upload_target(tmp_path, index, name) for index, name in
               enumerate(["train.zip", "train.zip", "../../etc/passwd", "C:\\evil\\x.zip", "", ".."])]
    assert [target.name for target in targets] == [
        "000-train.zip", "001-train.zip", "002-passwd.zip", "003-x.zip", "004-upload.zip",
        "005-upload.zip"]
    assert all(target.parent == tmp_path for target in targets)
