"""GTSRB import (zips and folders), track split, ROI crop, cache, bad inputs; the registry."""

import errno
import json
import os

import numpy as np
import pytest

from core import datasets
from core.datasets import base, cache, gtsrb, registry, signs, sources
from tests.conftest import REPO_ROOT, shared_file
from tests import test_datasets_support as fixtures


def _installed_files(data_root):
    return sorted(path.relative_to(data_root).as_posix() for path in data_root.rglob("*") if path.is_file())


def test_class_names_are_the_43_official_ones():
    names = registry.get_info("gtsrb").class_names
    assert len(names) == 43 and names[0] == "Speed limit (20km/h)" and names[14] == "Stop"
    assert names[42] == "End of no passing by vehicles over 3.5 metric tons"
    assert registry.get_info("synthetic-signs").class_names == names


def test_absent_until_imported_then_ready(tmp_path, isolated_roots):
    assert registry.status("gtsrb") == "absent" and not registry.is_available("gtsrb")
    with pytest.raises(ValueError, match="not installed"):
        datasets.load("gtsrb", "train")
    archive = fixtures.gtsrb_training_zip(tmp_path / "src")
    manifest = datasets.get("gtsrb", [archive])
    assert manifest["parts"]["train"]["num_images"] == 4 * 3 * 4
    assert registry.status("gtsrb") == "ready" and registry.is_available("gtsrb")
    assert registry.get_info("gtsrb").splits == ("train", "val")
    assert registry.disk_usage("gtsrb")["data"] > 0
    staging = isolated_roots["data"] / ".staging"
    assert not staging.exists() or not list(staging.iterdir())


def test_load_returns_contract_arrays_and_track_split(tmp_path):
    datasets.get("gtsrb", [fixtures.gtsrb_training_zip(tmp_path, tracks=10, frames=3)])
    train = datasets.load("gtsrb", "train")
    val = datasets.load("gtsrb", "val")
    assert train.images.dtype == np.uint8 and train.images.shape[1:] == (32, 32, 3)
    assert train.labels.dtype == np.int64 and len(train.class_names) == 43
    assert len(train) + len(val) == 4 * 10 * 3
    # Whole tracks, one per class (0.11 of 10 tracks rounds to 1), and no track on both sides.
    assert len(val) == 4 * 3
    track = lambda name: name.split("_")[0]  # "00014/00003"
    assert not {track(name) for name in train.file_names} & {track(name) for name in val.file_names}
    assert sorted(set(val.labels.tolist())) == [0, 1, 2, 14]
    # Pixels are decoded as RGB: a class-0 image has class 0's colour.
    first = train.images[train.labels == 0][0].reshape(-1, 3).mean(axis=0)
    np.testing.assert_allclose(first, fixtures.class_colour(0), atol=3)
    summary = registry.split_counts("gtsrb")
    assert summary["tracks"]["shared"] == 0
    assert sum(summary["counts"]["val"]) == 12


def test_track_split_is_stratified_close_to_fraction_and_seeded():
    records = [gtsrb.Record(f"{c:05d}/{t:05d}_{f:05d}.ppm", c, 32, 32, (0, 0, 31, 31))
               for c in range(5) for t in range(30 + 10 * c) for f in range(30)]
    train, val = gtsrb.track_split(records, 0.11, split_seed=0)
    assert len(train) + len(val) == len(records)
    for class_id in range(5):
        total = sum(1 for r in records if r.class_id == class_id)
        in_val = sum(1 for i in val if records[i].class_id == class_id)
        assert abs(in_val / total - 0.11) < 0.02
    again = gtsrb.track_split(records, 0.11, split_seed=0)[1]
    other = gtsrb.track_split(records, 0.11, split_seed=1)[1]
    np.testing.assert_array_equal(val, again)
    assert not np.array_equal(val, other)


def test_second_load_reads_the_cache_not_the_images(tmp_path, isolated_roots):
    datasets.get("gtsrb", [fixtures.gtsrb_training_zip(tmp_path)])
    first = datasets.load("gtsrb", "train", image_size=24)
    assert first.images.shape[1:] == (24, 24, 3)
    assert len(cache.entries("gtsrb")) == 1
    # Remove the decoded sources: only the cache can serve the second load now.
    for path in (isolated_roots["data"] / "gtsrb" / "train").rglob("*.ppm"):
        path.unlink()
    second = datasets.load("gtsrb", "train", image_size=24)
    np.testing.assert_array_equal(first.images, second.images)
    assert first.file_names == second.file_names
    with pytest.raises(ValueError, match="cannot be decoded"):
        datasets.load("gtsrb", "train", image_size=24, use_cache=False)


def test_roi_crop_scales_the_csv_roi_to_the_actual_size(tmp_path):
    # Images are 32x32 but the CSV says 64x64 (like the resized copy in ../shared): the ROI
    # (2, 2)-(61, 61) in CSV pixels is (1, 1)-(30, 30) in actual pixels.
    members = fixtures.gtsrb_training_members(classes=(3,), tracks=2, frames=1, csv_size=(64, 64))
    for name in list(members):
        if name.endswith(".ppm"):
            image = fixtures.sign_image(3, 0)
            image[:1, :] = 0
            image[:, :1] = 0  # a black frame outside the ROI
            image[-1:, :] = 0
            image[:, -1:] = 0
            members[name] = fixtures.encode(image)
    datasets.get("gtsrb", [fixtures.write_zip(tmp_path / "roi.zip", members)])
    plain = datasets.load("gtsrb", "train", valid_fraction=0.0)
    cropped = datasets.load("gtsrb", "train", valid_fraction=0.0, roi_crop=True)
    assert plain.images[:, 0, 0].max() < 10  # the frame is there
    assert cropped.images[:, 0, 0].min() > 20  # cropped away


def test_import_from_extracted_folder_and_from_folder_of_zips(tmp_path):
    tree = fixtures.write_tree(tmp_path / "extracted", fixtures.gtsrb_training_members(classes=(5, 6)))
    datasets.get("gtsrb", [tree])
    assert sorted(set(datasets.load("gtsrb", "train").labels.tolist())) == [5, 6]
    zips = tmp_path / "zips"
    fixtures.gtsrb_training_zip(zips, classes=(7,), tracks=2)
    fixtures.gtsrb_test_zips(zips)
    manifest = datasets.get("gtsrb", [zips])
    assert set(manifest["parts"]) == {"train", "test"}
    assert set(datasets.load("gtsrb", "train").labels.tolist()) == {7}


def test_test_split_imports_with_labels_and_keeps_training(tmp_path):
    datasets.get("gtsrb", [fixtures.gtsrb_training_zip(tmp_path)])
    labels = (0, 1, 2, 14, 14, 2)
    images_zip, gt_zip = fixtures.gtsrb_test_zips(tmp_path / "test", labels=labels, extra_gt_rows=3)
    manifest = datasets.get("gtsrb", [images_zip, gt_zip])
    assert manifest["parts"]["test"]["num_images"] == 6
    assert manifest["parts"]["test"]["num_unused_labels"] == 3
    test = datasets.load("gtsrb", "test")
    assert test.labels.tolist() == list(labels)
    assert test.file_names[0] == "00000.ppm"
    assert len(datasets.load("gtsrb", "train")) > 0
    assert registry.get_info("gtsrb").splits == ("train", "val", "test")


def test_test_images_without_labels_or_labels_alone_are_refused(tmp_path):
    images_zip, gt_zip = fixtures.gtsrb_test_zips(tmp_path)
    with pytest.raises(ValueError, match="need their labels"):
        datasets.get("gtsrb", [images_zip])
    with pytest.raises(ValueError, match="only labels"):
        datasets.get("gtsrb", [gt_zip])
    _, short_gt = fixtures.gtsrb_test_zips(tmp_path / "short", labels=(1, 2))
    with pytest.raises(ValueError, match="have no label"):
        datasets.get("gtsrb", [images_zip, short_gt])
    assert registry.status("gtsrb") == "absent"


def test_shared_sample200_test_zips_import_with_their_labels(tmp_path):
    images_zip = shared_file("gtsrb", "GTSRB_Final_Test_Images.sample200.zip")
    gt_zip = shared_file("gtsrb", "GTSRB_Final_Test_GT.sample200.zip")
    datasets.get("gtsrb", [fixtures.gtsrb_training_zip(tmp_path, classes=(0, 1))])
    datasets.get("gtsrb", [images_zip, gt_zip])
    test = datasets.load("gtsrb", "test")
    assert len(test) == 200 and test.images.shape == (200, 32, 32, 3)
    # The first rows of the official GT-final_test.csv: 00000.ppm is class 16, 00001.ppm class 1.
    assert test.file_names[:2] == ["00000.ppm", "00001.ppm"] and test.labels[:2].tolist() == [16, 1]


@pytest.mark.parametrize("case", ["missing", "not_zip", "truncated", "wrong_zip", "empty_folder",
                                  "non_images", "missing_image", "undecodable", "traversal"])
def test_bad_sources_fail_cleanly_and_keep_existing_data(tmp_path, isolated_roots, case):
    datasets.get("gtsrb", [fixtures.gtsrb_training_zip(tmp_path / "good", classes=(1,))])
    before = _installed_files(isolated_roots["data"])
    if case == "missing":
        source, message = tmp_path / "nope.zip", "does not exist"
    elif case == "not_zip":
        source = tmp_path / "notes.txt"
        source.write_text("hello")
        message = "not a zip"
    elif case == "truncated":
        source = fixtures.truncate(fixtures.gtsrb_training_zip(tmp_path / "cut"))
        message = "truncated"
    elif case == "wrong_zip":
        source = fixtures.write_zip(tmp_path / "dogs.zip", fixtures.dogs_flat_members(2))
        message = "no GTSRB files"
    elif case == "empty_folder":
        source = tmp_path / "empty"
        source.mkdir()
        message = "empty folder"
    elif case == "non_images":
        source = fixtures.write_tree(tmp_path / "docs", {"a.txt": b"x", "b/readme.md": b"y"})
        message = "no GTSRB files"
    elif case == "missing_image":
        members = fixtures.gtsrb_training_members(classes=(2,))
        del members[fixtures.TRAIN_PREFIX + "00002/00001_00002.ppm"]
        source, message = fixtures.write_zip(tmp_path / "incomplete.zip", members), "00001_00002.ppm.*missing"
    elif case == "undecodable":
        members = fixtures.gtsrb_training_members(classes=(2,))
        members[fixtures.TRAIN_PREFIX + "00002/00001_00002.ppm"] = b"P6\n32 32\n255\n" + b"\x00" * 10
        source, message = fixtures.write_zip(tmp_path / "broken.zip", members), "cannot be decoded"
    else:  # a CSV row pointing outside the dataset folder
        members = fixtures.gtsrb_training_members(classes=(2,), tracks=1, frames=1)
        csv_name = fixtures.TRAIN_PREFIX + "00002/GT-00002.csv"
        members[csv_name] += b"../../evil.ppm;32;32;2;2;29;29;2\n"
        members[fixtures.TRAIN_PREFIX + "00002/../../evil.ppm"] = fixtures.encode(fixtures.sign_image(2, 5))
        source, message = fixtures.write_zip(tmp_path / "evil.zip", members), "outside the dataset folder"
    with pytest.raises(ValueError, match=message):
        datasets.get("gtsrb", [source])
    assert _installed_files(isolated_roots["data"]) == before
    assert registry.status("gtsrb") == "ready"
    assert set(datasets.load("gtsrb", "train").labels.tolist()) == {1}


def test_full_disk_during_extraction_leaves_nothing(tmp_path, isolated_roots, monkeypatch):
    # SIMULATION: no small tmpfs here, so the write layer raises ENOSPC after a few files.
    archive = fixtures.gtsrb_training_zip(tmp_path)
    written = []
    real_write = sources.write_chunk

    def write_until_full(stream, data):
        if len(written) >= 5:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(len(data))
        real_write(stream, data)

    monkeypatch.setattr(sources, "write_chunk", write_until_full)
    with pytest.raises(ValueError, match="disk is full"):
        datasets.get("gtsrb", [archive])
    assert registry.status("gtsrb") == "absent"
    assert _installed_files(isolated_roots["data"]) == []


def test_classes_and_labels_per_class(tmp_path):
    datasets.get("gtsrb", [fixtures.gtsrb_training_zip(tmp_path, tracks=4, frames=5)])
    subset = datasets.load("gtsrb", "train", classes=[14, 0])
    assert subset.class_names == ["Stop", "Speed limit (20km/h)"] and subset.class_ids == [14, 0]
    assert set(subset.labels.tolist()) == {0, 1}
    few = datasets.load("gtsrb", "train", classes=[14, 0], labels_per_class=3, seed=1)
    assert few.class_counts() == [3, 3]
    assert datasets.load("gtsrb", "train", classes=[14, 0], labels_per_class=3, seed=1).file_names == few.file_names
    assert datasets.load("gtsrb", "train", classes=[14, 0], labels_per_class=3, seed=2).file_names != few.file_names
    # Validation stays whole (comparable across few-shot runs).
    assert len(datasets.load("gtsrb", "val", classes=[14, 0], labels_per_class=3)) == 10
    with pytest.raises(ValueError, match="only"):
        datasets.load("gtsrb", "train", classes=[14], labels_per_class=100)
    with pytest.raises(ValueError, match="not class ids"):
        datasets.load("gtsrb", "train", classes=[43])
    with pytest.raises(ValueError, match="no 'test' split"):
        datasets.load("gtsrb", "test")
    with pytest.raises(ValueError, match="split must be one of"):
        datasets.load("gtsrb", "validation")


def test_status_broken_and_downloading(tmp_path, isolated_roots):
    datasets.get("gtsrb", [fixtures.gtsrb_training_zip(tmp_path, classes=(1,))])
    manifest_path = isolated_roots["data"] / "gtsrb" / base.MANIFEST_NAME
    manifest = manifest_path.read_text()
    manifest_path.unlink()
    assert registry.status("gtsrb") == "broken"
    manifest_path.write_text(manifest)
    (isolated_roots["data"] / "gtsrb" / "train").rename(isolated_roots["data"] / "gtsrb" / "moved")
    assert registry.status_details("gtsrb")["status"] == "broken"
    # A live process's progress file means "downloading"; a dead one's does not.
    progress_file = isolated_roots["data"] / ".progress" / "dogs-vs-cats.json"
    progress_file.parent.mkdir(exist_ok=True)
    progress_file.write_text(json.dumps({"state": "running", "pid": os.getpid(), "phase": "download x",
                                         "done": 5, "total": 10, "updated_at": 0}))
    assert registry.status("dogs-vs-cats") == "downloading"
    progress_file.write_text(json.dumps({"state": "running", "pid": 2 ** 22 + 12345, "updated_at": 0}))
    assert registry.status("dogs-vs-cats") == "absent"
    with pytest.raises(ValueError, match="unknown dataset"):
        registry.status("mnist")


def test_delete_removes_files_and_caches(tmp_path, isolated_roots):
    datasets.get("gtsrb", [fixtures.gtsrb_training_zip(tmp_path, classes=(1,))])
    datasets.load("gtsrb", "train")
    freed = datasets.delete("gtsrb")
    assert freed > 0 and registry.status("gtsrb") == "absent"
    assert not (isolated_roots["data"] / "gtsrb").exists()


def test_importing_the_package_does_no_work(tmp_path):
    import subprocess
    import sys

    data = tmp_path / "fresh"
    code = ("import sys, core.datasets, core.datasets.preprocess, core.datasets.registry;"
            "print('keras' in sys.modules, 'tensorflow' in sys.modules, 'streamlit' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                            env=dict(os.environ, TLLAB_DATA_DIR=str(data)), cwd=REPO_ROOT)
    assert result.stdout.split() == ["False", "False", "False"]
    assert not data.exists()


@pytest.mark.slow
def test_full_shared_training_zip_gives_39209_images_and_disjoint_tracks():
    if os.environ.get("TLLAB_SLOW_TESTS") != "1":
        pytest.skip("imports 39,209 images (~30 s); set TLLAB_SLOW_TESTS=1 to run")
    archive = shared_file("gtsrb", "GTSRB_Final_Training_Images.zip")
    datasets.get("gtsrb", [archive])
    summary = registry.split_counts("gtsrb")
    counts = summary["counts"]
    assert sum(counts["train"]) + sum(counts["val"]) == gtsrb.NUM_TRAINING_IMAGES
    assert sum(1 for a, b in zip(counts["train"], counts["val"]) if a + b) == signs.NUM_CLASSES
    assert summary["tracks"]["shared"] == 0
    assert 0.10 < sum(counts["val"]) / gtsrb.NUM_TRAINING_IMAGES < 0.12
