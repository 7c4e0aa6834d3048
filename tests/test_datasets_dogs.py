"""Dogs vs Cats sources (a)-(d), seeded stratified subsampling, skipped files, bad inputs."""

import numpy as np
import pytest

from core import datasets
from core.datasets import dogs_vs_cats, registry
from tests.conftest import shared_file
from tests import test_datasets_support as fixtures


def test_kaggle_flat_zip_validation_first_then_train_gets_the_rest(tmp_path):
    archive = fixtures.write_zip(tmp_path / "train.zip", fixtures.dogs_flat_members(per_class=10))
    manifest = datasets.get("dogs-vs-cats", [archive])
    assert manifest["class_names"] == ["cat", "dog"]
    assert manifest["parts"]["images"]["counts"] == {"train": {"cat": 10, "dog": 10}}
    val = datasets.load("dogs-vs-cats", "val", image_size=32, valid_size=6)
    train = datasets.load("dogs-vs-cats", "train", image_size=32, valid_size=6)
    assert val.class_counts() == [3, 3] and train.class_counts() == [7, 7]
    assert not set(val.file_names) & set(train.file_names)
    assert val.images.shape == (6, 32, 32, 3) and val.images.dtype == np.uint8
    assert train.file_names[0].startswith("cat/cat.")
    capped = datasets.load("dogs-vs-cats", "train", image_size=32, valid_size=6, train_size=4)
    assert capped.class_counts() == [2, 2] and set(capped.file_names) <= set(train.file_names)
    # Seeded: the same split_seed gives the same validation set, another one a different set.
    assert datasets.load("dogs-vs-cats", "val", image_size=32, valid_size=6).file_names == val.file_names
    other = datasets.load("dogs-vs-cats", "val", image_size=32, valid_size=6, split_seed=1)
    assert other.file_names != val.file_names
    # Natural size is 224.
    assert datasets.load("dogs-vs-cats", "val", valid_size=2).images.shape == (2, 224, 224, 3)
    with pytest.raises(ValueError, match="no 'test' split"):
        datasets.load("dogs-vs-cats", "test")


def test_filtered_layout_uses_its_own_validation_folder(tmp_path):
    archive = fixtures.write_zip(tmp_path / "cats_and_dogs_filtered.zip", fixtures.dogs_filtered_members())
    manifest = datasets.get("dogs-vs-cats", [archive])
    assert manifest["parts"]["images"]["counts"] == {"train": {"cat": 6, "dog": 6},
                                                     "validation": {"cat": 4, "dog": 4}}
    assert manifest["parts"]["images"]["skipped"]["non_image_files"] == 1  # vectorize.py
    val = datasets.load("dogs-vs-cats", "val", image_size=16)
    train = datasets.load("dogs-vs-cats", "train", image_size=16)
    assert len(val) == 8 and all(".10" in name for name in val.file_names)  # cat.1000...
    assert len(train) == 12


def test_microsoft_layout_skips_and_counts_thumbs_and_undecodable(tmp_path):
    archive = fixtures.write_zip(tmp_path / "kagglecatsanddogs_5340.zip", fixtures.dogs_microsoft_members(6))
    manifest = datasets.get("dogs-vs-cats", [archive])
    part = manifest["parts"]["images"]
    assert part["counts"] == {"train": {"cat": 6, "dog": 6}}
    assert part["skipped"]["undecodable_images"] == 3
    assert part["skipped"]["non_image_files"] == 4  # 2 Thumbs.db, the pdf, the txt
    summary = registry.split_counts("dogs-vs-cats")
    assert summary["skipped"]["undecodable_images"] == 3
    assert summary["counts"] == {"train": [3, 3], "val": [3, 3]}


def test_folder_per_class_tree_with_three_classes_and_test_folder(tmp_path):
    members = {}
    for split, count in (("train", 4), ("test", 2)):
        for label, animal in enumerate(("bird", "cat", "fish")):
            for index in range(count):
                members[f"{split}/{animal}/{animal}_{index}.png"] = fixtures.encode(
                    fixtures.animal_image(label, index), ".png")
    tree = fixtures.write_tree(tmp_path / "mine", members)
    datasets.get("dogs-vs-cats", [tree])
    info = registry.get_info("dogs-vs-cats")
    assert info.class_names == ["bird", "cat", "fish"] and info.splits == ("train", "val", "test")
    test = datasets.load("dogs-vs-cats", "test", image_size=20)
    assert test.class_counts() == [2, 2, 2] and test.file_names[0] == "bird/bird_0.png"
    val = datasets.load("dogs-vs-cats", "val", image_size=20, valid_size=3)
    assert val.class_counts() == [1, 1, 1]


@pytest.mark.parametrize("members, message", [
    ({"cats/a.jpg": None, "cats/b.jpg": None}, "only one class"),
    ({"readme.txt": b"x", "notes/a.md": b"y"}, "no labelled images"),
    ({"cat/a.jpg": b"broken", "dog/b.jpg": b""}, "none of the 2 images"),
])
def test_bad_trees_are_refused_with_a_reason(tmp_path, members, message):
    members = {name: (fixtures.jpeg(0, 1) if data is None else data) for name, data in members.items()}
    with pytest.raises(ValueError, match=message):
        datasets.get("dogs-vs-cats", [fixtures.write_tree(tmp_path / "tree", members)])
    assert registry.status("dogs-vs-cats") == "absent"


def test_truncated_zip_fails_cleanly(tmp_path, isolated_roots):
    archive = fixtures.truncate(fixtures.write_zip(tmp_path / "train.zip", fixtures.dogs_flat_members(5)), 0.6)
    with pytest.raises(ValueError, match="not a readable zip"):
        datasets.get("dogs-vs-cats", [archive])
    assert registry.status("dogs-vs-cats") == "absent"
    staging = isolated_roots["data"] / ".staging"
    assert not staging.exists() or not list(staging.iterdir())


def test_shared_train_2000_zip_gives_1000_cats_1000_dogs_and_1500_500():
    archive = shared_file("dogs-vs-cats", "train-2000.zip")
    manifest = datasets.get("dogs-vs-cats", [archive])
    assert manifest["parts"]["images"]["counts"] == {"train": {"cat": 1000, "dog": 1000}}
    counts = registry.split_counts("dogs-vs-cats")["counts"]
    assert counts == {"train": [750, 750], "val": [250, 250]}
    folder, files, labels = dogs_vs_cats.plan_split("train")
    assert len(files) == 1500 and folder == "train"
