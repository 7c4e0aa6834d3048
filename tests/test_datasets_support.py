"""Builders of tiny dataset fixtures in the official layouts (no tests here; imported by the
dataset tests). Every image is generated, so the suite needs no real data."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import cv2
import numpy as np

GTSRB_HEADER = "Filename;Width;Height;Roi.X1;Roi.Y1;Roi.X2;Roi.Y2;ClassId"
TRAIN_PREFIX = "GTSRB/Final_Training/Images/"
TEST_PREFIX = "GTSRB/Final_Test/Images/"


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A distinct RGB colour per class, so tests can tell classes apart in decoded pixels."""
    rng = np.random.default_rng(class_id)
    return tuple(int(value) for value in rng.integers(30, 226, 3))


def sign_image(class_id: int, seed: int, size=(32, 32)) -> np.ndarray:
    """An RGB uint8 image: the class colour with a little noise."""
    height, width = size
    rng = np.random.default_rng([class_id, seed])
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = class_colour(class_id)
    noise = rng.integers(-10, 11, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def encode(image_rgb: np.ndarray, extension: str = ".ppm") -> bytes:
    ok, buffer = cv2.imencode(extension, np.ascontiguousarray(image_rgb[..., ::-1]))
    assert ok
    return buffer.tobytes()


def gtsrb_training_members(classes=(0, 1, 2, 14), tracks=3, frames=4, size=(32, 32),
                           csv_size=None, prefix=TRAIN_PREFIX) -> dict[str, bytes]:
    """Members of a training zip: ``000NN/TTTTT_FFFFF.ppm`` + ``GT-000NN.csv`` per class."""
    members = {}
    for class_id in classes:
        folder = f"{prefix}{class_id:05d}/"
        lines = [GTSRB_HEADER]
        for track in range(tracks):
            for frame in range(frames):
                file_name = f"{track:05d}_{frame:05d}.ppm"
                members[folder + file_name] = encode(sign_image(class_id, track * 100 + frame, size))
                width, height = csv_size or (size[1], size[0])
                lines.append(f"{file_name};{width};{height};2;2;{width - 3};{height - 3};{class_id}")
        members[f"{folder}GT-{class_id:05d}.csv"] = ("\n".join(lines) + "\n").encode()
    return members


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def write_tree(folder: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder


def gtsrb_training_zip(folder: Path, name="GTSRB_Final_Training_Images.zip", **options) -> Path:
    return write_zip(folder / name, gtsrb_training_members(**options))


def gtsrb_test_zips(folder: Path, labels=(0, 1, 2, 14, 14, 2), extra_gt_rows=0) -> tuple[Path, Path]:
    """The test-images zip (images + CSV without ClassId) and the GT zip (CSV with ClassId)."""
    images = {}
    test_lines = [GTSRB_HEADER.rsplit(";", 1)[0]]
    gt_lines = [GTSRB_HEADER]
    for index, label in enumerate(labels):
        file_name = f"{index:05d}.ppm"
        images[TEST_PREFIX + file_name] = encode(sign_image(label, 9000 + index))
        test_lines.append(f"{file_name};32;32;2;2;29;29")
        gt_lines.append(f"{file_name};32;32;2;2;29;29;{label}")
    for extra in range(extra_gt_rows):
        gt_lines.append(f"{len(labels) + extra:05d}.ppm;32;32;2;2;29;29;0")
    images[TEST_PREFIX + "GT-final_test.test.csv"] = ("\n".join(test_lines) + "\n").encode()
    images_zip = write_zip(folder / "GTSRB_Final_Test_Images.zip", images)
    gt_zip = write_zip(folder / "GTSRB_Final_Test_GT.zip", {"GT-final_test.csv": ("\n".join(gt_lines) + "\n").encode()})
    return images_zip, gt_zip


def animal_image(label: int, seed: int, size=(30, 40)) -> np.ndarray:
    """A small RGB 'photo': a class-coloured background with a random rectangle."""
    rng = np.random.default_rng([label, seed, 7])
    image = np.empty((*size, 3), dtype=np.uint8)
    image[:] = class_colour(100 + label)
    y, x = rng.integers(0, size[0] // 2), rng.integers(0, size[1] // 2)
    image[y:y + size[0] // 3, x:x + size[1] // 3] = rng.integers(0, 256, 3)
    return image


def jpeg(label: int, seed: int, size=(30, 40)) -> bytes:
    return encode(animal_image(label, seed, size), ".jpg")


def dogs_flat_members(per_class=10, prefix="train/") -> dict[str, bytes]:
    """Kaggle's flat ``train/cat.N.jpg`` / ``train/dog.N.jpg`` layout."""
    members = {}
    for label, animal in enumerate(("cat", "dog")):
        for index in range(per_class):
            members[f"{prefix}{animal}.{index}.jpg"] = jpeg(label, index)
    return members


def dogs_filtered_members(train_per_class=6, validation_per_class=4) -> dict[str, bytes]:
    """``cats_and_dogs_filtered/{train,validation}/{cats,dogs}/*.jpg``."""
    members = {}
    for split, count in (("train", train_per_class), ("validation", validation_per_class)):
        for label, animal in enumerate(("cats", "dogs")):
            for index in range(count):
                number = index + (1000 if split == "validation" else 0)
                members[f"cats_and_dogs_filtered/{split}/{animal}/{animal[:-1]}.{number}.jpg"] = jpeg(label, number)
    members["cats_and_dogs_filtered/vectorize.py"] = b"print('not an image')\n"
    return members


def dogs_microsoft_members(per_class=6) -> dict[str, bytes]:
    """``PetImages/{Cat,Dog}/N.jpg`` with Thumbs.db, an empty file and a truncated JPEG."""
    members = {"CDLA-Permissive-2.0.pdf": b"%PDF-1.4 licence", "readme[1].txt": b"readme"}
    for label, animal in enumerate(("Cat", "Dog")):
        for index in range(per_class):
            members[f"PetImages/{animal}/{index}.jpg"] = jpeg(label, index)
        members[f"PetImages/{animal}/Thumbs.db"] = b"\x00" * 64
    good = jpeg(0, 99)
    members["PetImages/Cat/666.jpg"] = b""  # empty, as in the real archive
    members["PetImages/Dog/11702.jpg"] = good[: len(good) // 3]  # truncated JPEG
    members["PetImages/Dog/999.jpg"] = b"GIF89a this is not really an image"
    return members


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def truncate(path: Path, fraction=0.5) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()
