"""The synthetic-signs generator: deterministic, GTSRB ids, labelled synthetic, cached."""

import numpy as np

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
