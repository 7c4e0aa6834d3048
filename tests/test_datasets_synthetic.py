"""The synthetic-signs generator: deterministic, GTSRB ids, labelled synthetic, cached."""

import numpy as np
import pytest

from core import datasets
from core.datasets import cache, registry, signs, synthetic_signs


def test_generation_is_deterministic_and_order_independent():
    images, labels, names = synthetic_signs.generate([5, 14, 40], 3, "train", 32)
    again, _, _ = synthetic_signs.generate([5, 14, 40], 3, "train", 32)
    alone, _, alone_names = synthetic_signs.generate([14], 3, "train", 32)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(images[3:6], alone)
    assert labels.tolist() == [5] * 3 + [14] * 3 + [40] * 3
    assert names[3] == alone_names[0] == "synthetic_train_c14_i0000"
    other_split, _, _ = synthetic_signs.generate([14], 3, "val", 32)
    assert not np.array_equal(alone, other_split)


def test_child_processes_draw_exactly_what_one_process_draws():
    classes = [0, 5, 14, 40, 42]
    serial = synthetic_signs.generate(classes, 3, "val", 32)
    parallel = synthetic_signs.generate_in_processes(classes, 3, "val", 32, processes=2)
    np.testing.assert_array_equal(parallel[0], serial[0])
    np.testing.assert_array_equal(parallel[1], serial[1])
    assert parallel[1].dtype == serial[1].dtype == np.int64
    assert parallel[2] == serial[2]
    with pytest.raises(ValueError, match="processes must be a positive int, received 0"):
        synthetic_signs.generate_in_processes(classes, 3, "val", 32, processes=0)
    with pytest.raises(datasets.DatasetError, match="split must be one of"):
        synthetic_signs.generate_in_processes(classes, 3, "valid", 32, processes=2)


def test_large_splits_use_every_usable_core_and_small_ones_stay_in_process(monkeypatch):
    monkeypatch.setattr(synthetic_signs, "usable_cores", lambda: 2)
    assert synthetic_signs.generation_processes(synthetic_signs.PARALLEL_MIN_IMAGES - 1) == 1
    assert synthetic_signs.generation_processes(43 * synthetic_signs.default_count("train")) == 2
    monkeypatch.setattr(synthetic_signs, "usable_cores", lambda: 64)
    assert synthetic_signs.generation_processes(10**6) == synthetic_signs.MAX_GENERATION_PROCESSES


def test_a_failing_child_is_reported_and_a_missing_python_falls_back_to_this_process(monkeypatch):
    classes = [3, 33]
    serial = synthetic_signs.generate(classes, 2, "test", 32)
    monkeypatch.setattr(synthetic_signs, "_CHILD_COMMAND", "import sys; sys.exit('no memory left')")
    with pytest.raises(datasets.DatasetError, match=r"classes \[3\] failed \(exit code 1, 0 of 6,144 bytes\): no memory left"):
        synthetic_signs.generate_in_processes(classes, 2, "test", 32, processes=2)
    monkeypatch.setattr(synthetic_signs.sys, "executable", "/nonexistent/python3")
    fallback = synthetic_signs.generate_in_processes(classes, 2, "test", 32, processes=2)
    np.testing.assert_array_equal(fallback[0], serial[0])
    assert fallback[2] == serial[2]


def test_images_vary_and_classes_have_their_colours():
    images, labels, _ = synthetic_signs.generate(range(signs.NUM_CLASSES), 4, "train", 32)
    assert images.shape == (172, 32, 32, 3) and images.dtype == np.uint8
    assert len({image.tobytes() for image in images}) == len(images)
    centre = images[:, 8:24, 8:24].astype(float)
    red_minus_blue = (centre[..., 0] - centre[..., 2]).mean(axis=(1, 2))
    # Mandatory signs (blue discs) are bluer in the middle than stop signs (red octagons).
    blue = red_minus_blue[np.isin(labels, signs.MANDATORY)].mean()
    stop = red_minus_blue[labels == 14].mean()
    assert stop > blue + 40


def test_load_is_labelled_synthetic_and_cached(isolated_roots):
    info = registry.get_info("synthetic-signs")
    assert info.synthetic and "SYNTHETIC" in info.title and registry.status("synthetic-signs") == "ready"
    val = datasets.load("synthetic-signs", "val")
    assert val.synthetic and val.name == "synthetic-signs"
    assert len(val) == 43 * 30 and val.class_counts() == [30] * 43
    assert val.images.shape[1:] == (32, 32, 3) and val.labels.dtype == np.int64
    assert val.file_names[0].startswith("synthetic_val_")
    assert len(cache.entries("synthetic-signs")) == 1
    again = datasets.load("synthetic-signs", "val")
    np.testing.assert_array_equal(val.images, again.images)
    few = datasets.load("synthetic-signs", "val", classes=[33, 34], labels_per_class=2)
    assert len(few) == 60  # labels_per_class applies to train only
    subset = datasets.load("synthetic-signs", "val", classes=[1])
    assert len(subset) == 30 and subset.class_names == ["Speed limit (30km/h)"]
    big, _, _ = synthetic_signs.generate([1], 2, "test", 48)
    assert big.shape == (2, 48, 48, 3)


def test_each_generator_version_rekeys_the_cache_and_looks_like_gtsrb():
    assert synthetic_signs.GENERATOR_VERSION >= 3
    key = cache.cache_key(dataset="synthetic-signs", generator=synthetic_signs.GENERATOR_VERSION,
                          seed=synthetic_signs.GENERATOR_SEED, split="val", image_size=32,
                          count_per_class=30)
    for old_version in range(1, synthetic_signs.GENERATOR_VERSION):
        old = cache.cache_key(dataset="synthetic-signs", generator=old_version,
                              seed=synthetic_signs.GENERATOR_SEED, split="val", image_size=32,
                              count_per_class=30)
        assert key != old
    images, _, _ = synthetic_signs.generate(range(signs.NUM_CLASSES), 3, "train", 32)
    brightness = images.reshape(len(images), -1).mean(axis=1)
    # GTSRB's crops are often dark (its mean is about 84 of 255) and vary a lot in exposure.
    assert 40 < brightness.mean() < 130 and brightness.std() > 15
    # The sign fills most of the frame (GTSRB keeps a ~10 % border): the centre differs from
    # the border ring far more than two border strips differ from each other.
    centre = images[:, 10:22, 10:22].astype(float).mean(axis=(1, 2, 3))
    border = images[:, :2].astype(float).mean(axis=(1, 2, 3))
    assert np.abs(centre - border).mean() > 5


def test_speed_limit_digits_are_tall_and_narrow_like_real_signs():
    side = 128
    rows, columns = np.mgrid[0:side, 0:side]
    inside = np.hypot(rows - (side - 1) / 2, columns - (side - 1) / 2) < 0.35 * side
    for class_id, digits in signs.SPEED_LIMITS.items():
        image, _ = synthetic_signs._draw_template(class_id, side)
        ink_rows, ink_columns = np.nonzero(inside & (image.max(axis=-1) < 100))
        height = (ink_rows.max() - ink_rows.min() + 1) / side
        width = (ink_columns.max() - ink_columns.min() + 1) / side
        box_width, box_height = synthetic_signs.DIGIT_BOXES[len(digits)]
        assert abs(height - box_height) < 0.02 and abs(width - box_width) < 0.02, (class_id, height, width)
        # DIN 1451 digits are about twice as tall as wide; OpenCV's own font is not.
        assert height / (width / len(digits)) > 1.7, (class_id, height, width)
        assert ink_rows.mean() / side == pytest.approx(0.5, abs=0.03)


def test_zeros_are_plain_ovals_and_stroke_weights_vary():
    # OpenCV's zero is slashed; a German sign's is not. The middle of the "0" of 30 km/h (the
    # second half of its digit box) is paper, the ring round it is ink.
    side = 128
    image, _ = synthetic_signs._draw_template(1, side)
    gray = image.max(axis=-1)
    box_width, _ = synthetic_signs.DIGIT_BOXES[2]
    zero_centre_x = int(round((0.5 + box_width / 4) * side))
    centre_y = side // 2
    assert gray[centre_y - 3:centre_y + 4, zero_centre_x - 2:zero_centre_x + 3].min() > 200
    assert (gray[centre_y, zero_centre_x:int(0.5 * side + box_width / 2 * side) + 1] < 100).any()
    # Heavier stroke weights put more ink on the same pictogram (here: bicycles).
    ink = []
    for weight in synthetic_signs.STROKE_WEIGHTS:
        drawn, mask = synthetic_signs._draw_template(29, side, weight)
        ink.append(int(((drawn.max(axis=-1) < 100) & (mask > 128)).sum()))
    assert ink == sorted(ink) and ink[-1] > 1.3 * ink[0], ink


def test_generation_is_fast_enough_for_the_app():
    seconds = synthetic_signs.timed_generation(count_per_class=5)
    assert seconds < 10  # 43 x 5 images; the train split (43 x 600): 36 s in one process here
