"""Custom datasets: ``python -m core.datasets create`` (real subprocess), every refused input
(nothing created), and ``load()`` of the result."""

import io
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest
from PIL import Image

from core import datasets
from core.datasets import base, custom, registry
from tests.conftest import REPO_ROOT


def _photo(seed: int, size=(40, 30)) -> bytes:
    """A distinct small JPEG (random pixels, so no two seeds give the same bytes)."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def _folder(path, count: int, first_seed: int):
    path.mkdir(parents=True)
    for index in range(count):
        (path / f"img{index:02d}.jpg").write_bytes(_photo(first_seed + index))
    return path


def _cli(*arguments, data_dir):
    return subprocess.run([sys.executable, "-m", "core.datasets", *map(str, arguments)],
                          capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                          env=dict(os.environ, TLLAB_DATA_DIR=str(data_dir)))


def _created(data_dir) -> list[str]:
    """What exists under the data root besides the (empty) staging folder."""
    staging = data_dir / base.STAGING_FOLDER
    leftovers = list(staging.iterdir()) if staging.is_dir() else []
    return sorted(child.name for child in data_dir.iterdir() if child.name != base.STAGING_FOLDER) \
        + [f".staging/{child.name}" for child in leftovers]


def test_cli_create_from_folder_zip_and_single_images_then_info_and_delete(tmp_path, isolated_roots):
    data = isolated_roots["data"]
    cats = _folder(tmp_path / "cats", 6, 0)
    (cats / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (cats / "readme.txt").write_text("not an image")
    (cats / "again.jpg").write_bytes((cats / "img00.jpg").read_bytes())  # a duplicate
    with zipfile.ZipFile(tmp_path / "dogs.zip", "w") as archive:
        for index in range(4):
            archive.writestr(f"dogs/d{index}.jpg", _photo(100 + index))
    single = tmp_path / "one_more_dog.png"
    Image.open(io.BytesIO(_photo(200))).save(single)

    result = _cli("create", "pets", "--class", f"cat={cats}", "--class", f"dog={tmp_path / 'dogs.zip'}",
                  "--class", f"dog={single}", "--quiet", data_dir=data)

    assert result.returncode == 0, result.stderr
    assert "pets: created in" in result.stdout
    assert "skipped at import: 1 duplicates, 1 non image files, 1 undecodable images" in result.stdout
    assert "train       9 images in 2 classes" in result.stdout
    assert "val         2 images in 2 classes" in result.stdout
    manifest = base.read_manifest("pets")
    assert manifest["kind"] == "custom"
    assert manifest["class_names"] == ["cat", "dog"]
    assert manifest["parts"]["images"]["counts"] == {"cat": 6, "dog": 5}
    assert manifest["parts"]["images"]["skipped"] == {"non_image_files": 1, "undecodable_images": 1,
                                                      "too_large_files": 0, "duplicates": 1}
    assert "pets" in registry.dataset_names()
    assert registry.status("pets") == "ready"
    listing = _cli("list", data_dir=data)
    assert "pets             ready" in listing.stdout
    info = _cli("info", "pets", data_dir=data)
    assert info.returncode == 0 and "    0  cat" in info.stdout
    deleted = _cli("delete", "pets", data_dir=data)
    assert deleted.returncode == 0 and "pets: deleted" in deleted.stdout
    assert not (data / "pets").exists()
    assert "pets" not in registry.dataset_names()
    assert _cli("info", "pets", data_dir=data).returncode == 1


def test_cli_create_from_a_folder_of_class_folders(tmp_path, isolated_roots):
    source = tmp_path / "objects"
    _folder(source / "mug", 5, 0)
    _folder(source / "pen", 7, 50)
    _folder(source / "phone", 5, 90)
    result = _cli("create", "desk", "--from", source, "--quiet", data_dir=isolated_roots["data"])
    assert result.returncode == 0, result.stderr
    assert registry.get_info("desk").class_names == ["mug", "pen", "phone"]
    assert registry.split_counts("desk")["counts"] == {"train": [4, 6, 4], "val": [1, 1, 1]}


@pytest.mark.parametrize("case, expected", [
    ("one_class", "at least 2 classes, received 1 ('cat')"),
    ("two_images", "'dog' has 2 image file(s)"),
    ("path_name", "dataset name '../x' is not allowed"),
    ("non_images", "'junk' has 0 image file(s)"),
    ("undecodable", "'junk' has 0 distinct decodable image(s)"),
    ("duplicates_only", "'dog' has 1 distinct decodable image(s)"),
    ("builtin_name", "'gtsrb' is a built-in dataset"),
    ("bad_label", "class label '../up' is not allowed"),
])
def test_cli_refuses_bad_input_and_creates_nothing(tmp_path, isolated_roots, case, expected):
    data = isolated_roots["data"]
    cats = _folder(tmp_path / "cats", 5, 0)
    dogs = _folder(tmp_path / "dogs", 5, 10)
    junk = tmp_path / "junk"
    junk.mkdir()
    if case == "non_images":
        for index in range(6):
            (junk / f"note{index}.txt").write_text("text")
    if case == "undecodable":
        for index in range(6):
            (junk / f"fake{index}.jpg").write_bytes(b"GIF89a but not really" + bytes([index]))
    two = _folder(tmp_path / "two", 2, 20)
    same = tmp_path / "same"
    same.mkdir()
    for index in range(5):
        (same / f"copy{index}.jpg").write_bytes(_photo(30))
    arguments = {
        "one_class": ["create", "solo", "--class", f"cat={cats}"],
        "two_images": ["create", "small", "--class", f"cat={cats}", "--class", f"dog={two}"],
        "path_name": ["create", "../x", "--class", f"cat={cats}", "--class", f"dog={dogs}"],
        "non_images": ["create", "junky", "--class", f"cat={cats}", "--class", f"junk={junk}"],
        "undecodable": ["create", "junky", "--class", f"cat={cats}", "--class", f"junk={junk}"],
        "duplicates_only": ["create", "copies", "--class", f"cat={cats}", "--class", f"dog={same}"],
        "builtin_name": ["create", "gtsrb", "--class", f"cat={cats}", "--class", f"dog={dogs}"],
        "bad_label": ["create", "labels", "--class", f"cat={cats}", "--class", f"../up={dogs}"],
    }[case]
    result = _cli(*arguments, "--quiet", data_dir=data)
    assert result.returncode == 1, result.stdout
    assert expected in result.stderr
    assert result.stderr.startswith("error: ")
    assert _created(data) == []
    assert not (tmp_path / "x").exists()


def test_create_refuses_an_existing_name_and_keeps_the_first(tmp_path):
    classes = {"cat": [str(_folder(tmp_path / "cats", 5, 0))], "dog": [str(_folder(tmp_path / "dogs", 5, 10))]}
    custom.create("pets", classes)
    with pytest.raises(datasets.DatasetError, match="'pets' already exists"):
        custom.create("pets", {"a": [str(tmp_path / "cats")], "b": [str(tmp_path / "dogs")]})
    assert registry.get_info("pets").class_names == ["cat", "dog"]


def test_load_custom_dataset_stratified_seeded_and_cached(tmp_path):
    uploads = {"red": [(f"r{index}.jpg", _photo(index)) for index in range(10)],
               "blue": [_photo(100 + index) for index in range(5)]}
    manifest = datasets.create("my-things", uploads, title="My things")
    assert manifest["parts"]["images"]["num_images"] == 15
    assert base.check_name("my-things") == "my-things"

    train = datasets.load("my-things", "train", image_size=32)
    val = datasets.load("my-things", "val", image_size=32)

    assert train.images.shape == (12, 32, 32, 3) and train.images.dtype == np.uint8
    assert val.images.shape == (3, 32, 32, 3)
    assert train.class_counts() == [8, 4] and val.class_counts() == [2, 1]
    assert train.class_names == ["red", "blue"]
    assert not set(train.file_names) & set(val.file_names)
    assert registry.get_info("my-things").title == "My things"
    again = datasets.load("my-things", "val", image_size=32, use_cache=False)
    assert again.file_names == val.file_names
    np.testing.assert_array_equal(again.images, val.images)
    other_seed = datasets.load("my-things", "val", image_size=32, split_seed=3)
    assert other_seed.class_counts() == [2, 1] and other_seed.file_names != val.file_names
    assert len(list((base.cache_dir("my-things")).glob("*.npz"))) == 3  # train, val, val seed 3
    with pytest.raises(datasets.DatasetError, match="no 'test' split"):
        datasets.load("my-things", "test")
    with pytest.raises(datasets.DatasetError, match="custom dataset"):
        datasets.get("my-things")
    assert datasets.delete("my-things") > 0
    with pytest.raises(datasets.DatasetError, match="unknown dataset 'my-things'"):
        datasets.load("my-things", "train")


def test_names_with_path_characters_are_never_datasets(isolated_roots):
    outside = isolated_roots["data"].parent / "outside"
    outside.mkdir()
    (outside / "manifest.json").write_text('{"dataset": "../outside", "kind": "custom"}')
    for name in ("../outside", "/etc", "a/b", ".staging", "", "UPPER"):
        assert not base.is_custom(name)
        with pytest.raises(datasets.DatasetError):
            base.check_name(name)
        with pytest.raises(datasets.DatasetError):
            custom.check_new_name(name)


def test_datasets_page_lists_a_custom_dataset_and_deletes_it(tmp_path):
    from tests.conftest import run_page

    datasets.create("desk", {"mug": [_photo(index) for index in range(6)],
                             "pen": [_photo(50 + index) for index in range(5)]})
    app = run_page("pages/datasets.py", datasets_selected="desk")
    assert not app.exception, app.exception
    assert "desk" in app.radio(key="datasets_selected").options
    assert app.radio(key="datasets_selected").value == "desk"
    assert any("Your own dataset" in block.value for block in app.markdown)
    overview = app.dataframe[0].value
    row = overview[overview["dataset"] == "desk"].iloc[0]
    assert (row["status"], row["train"], row["val"], row["test"]) == ("ready", "9", "2", "–")
    app.button(key="datasets_delete_desk").click().run()
    app.button(key="datasets_delete_yes_desk").click().run()
    assert not app.exception, app.exception
    assert "desk" not in registry.dataset_names()
    assert app.radio(key="datasets_selected").value != "desk"
