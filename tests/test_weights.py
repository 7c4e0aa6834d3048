"""ImageNet weights as managed assets: identify, import, refuse, download, resolve offline.

Default tests use small generated files (weights=None MobileNet v1 at alpha 0.25 and MobileNetV2
at alpha 0.35, saved by Keras); the real ImageNet files in ../shared are imported by the tests
marked ``shared`` in name, which skip with a reason when ../shared is absent.
"""

from __future__ import annotations

import http.server
import io
import socket
import subprocess
import sys
import threading
import zipfile
from functools import partial
from pathlib import Path

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from core import weights  # noqa: E402
from core.weights import store  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_WEIGHTS = REPO_ROOT.parent / "shared" / "weights" / "imagenet"
SHARED_FILES = {
    ("mobilenetv2", "no_top"): "mobilenet_v2_1.0_224_imagenet_no_top.weights.h5",
    ("mobilenetv2", "top"): "mobilenet_v2_1.0_224_imagenet.weights.h5",
    ("mobilenet", "no_top"): "mobilenet_v1_0.75_224_imagenet_no_top.weights.h5",
    ("mobilenet", "top"): "mobilenet_v1_0.75_224_imagenet.weights.h5",
}


def shared_weights(backbone: str, variant: str) -> Path:
    path = SHARED_WEIGHTS / SHARED_FILES[(backbone, variant)]
    if not path.is_file():
        pytest.skip(f"{path} is absent: the real ImageNet weights only exist on the developers' machines")
    return path


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """Random-weight files: MobileNet v1 alpha 0.25 (no top, top) and MobileNetV2 alpha 0.35."""
    folder = tmp_path_factory.mktemp("weights-files")
    files = {}
    for name, builder, kwargs in (
        ("v1_no_top", keras.applications.MobileNet, {"alpha": 0.25, "include_top": False}),
        ("v1_top", keras.applications.MobileNet, {"alpha": 0.25, "include_top": True}),
        ("v2_no_top", keras.applications.MobileNetV2, {"alpha": 0.35, "include_top": False}),
    ):
        model = builder(input_shape=(224, 224, 3), weights=None, **kwargs)
        files[name] = folder / f"{name}.weights.h5"
        model.save_weights(files[name])
    data = files["v1_no_top"].read_bytes()
    files["truncated"] = folder / "truncated.weights.h5"
    files["truncated"].write_bytes(data[: len(data) // 2])
    files["random"] = folder / "random.h5"
    files["random"].write_bytes(np.random.default_rng(0).integers(0, 256, 50_000, dtype=np.uint8).tobytes())
    return files


def _tree(root: Path) -> dict:
    return {str(path.relative_to(root)): path.read_bytes() for path in sorted(root.rglob("*"))
            if path.is_file() and path.name != store.LOCK_FILE}


def test_import_detects_variant_and_alpha_and_records_provenance(small_files, isolated_roots):
    entry = weights.import_file("mobilenet", small_files["v1_no_top"])
    assert (entry["variant"], entry["alpha"], entry["format"]) == ("no_top", 0.25, "keras3")
    assert entry["sha256"] == weights.file_sha256(small_files["v1_no_top"])
    assert entry["source"] == f"file {small_files['v1_no_top'].resolve()}"
    assert entry["installed_at"].endswith("Z")
    top = weights.import_file("mobilenet", small_files["v1_top"])
    assert top["variant"] == "top" and top["layers"] == entry["layers"] + 1
    installed = weights.installed_file("mobilenet")
    assert installed == isolated_roots["data"] / "weights" / "mobilenet" / "no_top.weights.h5"
    assert installed.read_bytes() == small_files["v1_no_top"].read_bytes()
    assert not any((isolated_roots["data"] / "weights" / ".staging").iterdir())
    rows = {(row["backbone"], row["variant"]): row for row in weights.rows()}
    assert rows[("mobilenet", "no_top")]["status"] == "installed"
    assert rows[("mobilenetv2", "no_top")]["status"] == "absent"


@pytest.mark.parametrize("bad, backbone, message", [
    ("truncated", "mobilenet", "truncated"),
    ("random", "mobilenet", "not HDF5"),
    ("v2_no_top", "mobilenet", "does not fit mobilenet"),
    ("v1_no_top", "vgg16", "does not fit vgg16"),
])
def test_bad_files_are_refused_in_one_line_and_nothing_changes_on_disk(small_files, isolated_roots,
                                                                       bad, backbone, message):
    weights.import_file("mobilenet", small_files["v1_no_top"])  # an earlier good install
    root = isolated_roots["data"] / "weights"
    before = _tree(root)
    with pytest.raises(weights.WeightsFileError, match=message) as raised:
        weights.import_file(backbone, small_files[bad])
    assert "\n" not in str(raised.value) and small_files[bad].name in str(raised.value)
    assert _tree(root) == before  # the good install is intact, no staged copy left behind
    assert weights.installed("mobilenet")["sha256"] == weights.file_sha256(small_files["v1_no_top"])


def test_import_stream_stages_an_upload_directly_within_the_size_bound(small_files, isolated_roots,
                                                                       monkeypatch):
    data = small_files["v1_no_top"].read_bytes()
    staging = isolated_roots["data"] / "weights" / ".staging"
    seen = []
    entry = weights.import_stream("mobilenet", io.BytesIO(data), display_name="mine.weights.h5",
                                  source_label="upload mine.weights.h5", size=len(data),
                                  progress=lambda done, total: seen.append((done, total)))
    assert (entry["variant"], entry["source"]) == ("no_top", "upload mine.weights.h5")
    assert entry["size"] == len(data) and seen[-1] == (len(data), len(data))
    assert weights.installed_file("mobilenet").read_bytes() == data
    assert not any(staging.iterdir())
    monkeypatch.setattr(store, "MAX_WEIGHTS_BYTES", len(data) - 1)
    # Refused when the size says so up front, and while streaming when it is unknown.
    for size, said in ((len(data), f"{len(data):,}"), (None, f"over {len(data) - 1:,}")):
        with pytest.raises(weights.WeightsFileError,
                           match=rf"mine\.weights\.h5 is {said} bytes; weights files above [\d,]+ bytes are refused"):
            weights.import_stream("mobilenet", io.BytesIO(data), display_name="mine.weights.h5",
                                  source_label="upload mine.weights.h5", size=size)
        assert not any(staging.iterdir())


def test_cli_imports_lists_and_refuses_with_exit_codes(small_files, isolated_roots):
    def cli(*arguments):
        return subprocess.run([sys.executable, "-m", "core.weights", *arguments], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300)

    refused = cli("get", "mobilenet", "--quiet", "--from", str(small_files["random"]))
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines()[-1].startswith("error: random.h5 is not a Keras weights file")
    imported = cli("get", "mobilenet", "--quiet", "--from", str(small_files["v1_no_top"]))
    assert imported.returncode == 0 and "installed no_top (alpha 0.25" in imported.stdout
    listing = cli("list")
    assert any(line.split()[:3] == ["mobilenet", "no_top", "installed"] for line in listing.stdout.splitlines())
    info = cli("info", "mobilenet")
    assert weights.file_sha256(small_files["v1_no_top"]) in info.stdout
    assert cli("delete", "mobilenet").returncode == 0
    assert weights.installed("mobilenet") is None


@pytest.fixture
def http_server(tmp_path):
    """Serves ``tmp_path/served`` on 127.0.0.1; yields (folder, base URL)."""
    folder = tmp_path / "served"
    folder.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_reports_progress_pins_the_sha256_and_refuses_a_changed_file(small_files, http_server):
    folder, url = http_server
    (folder / "w.h5").write_bytes(small_files["v1_no_top"].read_bytes())
    seen = []
    entry = weights.download("mobilenet", "no_top", url=f"{url}/w.h5",
                             progress=lambda done, total: seen.append((done, total)))
    assert entry["source"] == f"download {url}/w.h5" and entry["alpha"] == 0.25
    assert seen[-1][0] == seen[-1][1] == small_files["v1_no_top"].stat().st_size
    weights.delete("mobilenet")
    (folder / "w.h5").write_bytes(small_files["v2_no_top"].read_bytes())  # the server's file changed
    with pytest.raises(weights.WeightsUnavailableError, match="SHA-256"):
        weights.download("mobilenet", "no_top", url=f"{url}/w.h5")
    assert weights.installed("mobilenet") is None


def test_offline_download_says_how_to_import_a_file(isolated_roots):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(weights.WeightsUnavailableError) as raised:
        weights.download("mobilenetv2", "no_top", url=f"http://127.0.0.1:{port}/x.h5", timeout=5)
    message = str(raised.value)
    assert "Offline?" in message and "python -m core.weights get mobilenetv2 --from FILE" in message
    with pytest.raises(weights.WeightsUnavailableError, match="not installed"):
        weights.resolve_imagenet("mobilenetv2", allow_download=False)


def test_a_held_install_lock_times_out_with_weights_unavailable(isolated_roots):
    import fcntl
    import os

    weights.weights_root().mkdir(parents=True)
    holder = os.open(weights.weights_root() / store.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(holder, fcntl.LOCK_EX)  # another install in progress
    entered = []
    try:
        with pytest.raises(weights.WeightsUnavailableError, match=r"another install holds .*\.lock for over 0 s"):
            with store._install_lock(timeout=0.1):
                entered.append(True)
    finally:
        os.close(holder)
    assert entered == []
    with store._install_lock(timeout=0.1):
        entered.append(True)
    assert entered == [True]


def test_imagenet_after_import_opens_no_connection(small_files, isolated_roots, monkeypatch):
    from core.training import backbone_family

    weights.import_file("mobilenet", small_files["v1_no_top"])

    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    config = backbone_family.resolve_config({"model": "mobilenet", "weights": "imagenet", "image_size": 64})
    assert config["alpha"] == 0.25 and config["weights_sha256"] == weights.file_sha256(small_files["v1_no_top"])
    path = backbone_family.resolve_weights_file(config)
    model = backbone_family.build_model_for_config(config, 2, path)
    reference = keras.applications.MobileNet(input_shape=(224, 224, 3), alpha=0.25, include_top=False,
                                             weights=None)
    reference.load_weights(small_files["v1_no_top"])
    np.testing.assert_array_equal(model.get_layer("conv1").get_weights()[0],
                                  reference.get_layer("conv1").get_weights()[0])


@pytest.mark.parametrize("backbone", ["mobilenetv2", "mobilenet"])
def test_the_real_shared_files_import_with_their_variants(backbone, isolated_roots):
    no_top = weights.import_file(backbone, shared_weights(backbone, "no_top"))
    top = weights.import_file(backbone, shared_weights(backbone, "top"))
    expected_alpha = {"mobilenetv2": 1.0, "mobilenet": 0.75}[backbone]
    assert (no_top["variant"], top["variant"]) == ("no_top", "top")
    assert no_top["alpha"] == top["alpha"] == expected_alpha
    prefixes = {"mobilenetv2": ("a681c2f6b5428ebc", "91a493db62690bf4"),
                "mobilenet": ("2355a64e26b9a7c6", "603cb4d8f4df2b8a")}[backbone]
    assert (no_top["sha256"][:16], top["sha256"][:16]) == prefixes


def test_imagenet_classifier_sees_a_shared_cat_photo_as_a_cat(isolated_roots):
    from PIL import Image

    from core.inference import ImageNetClassifier
    from core import imagenet

    weights.import_file("mobilenetv2", shared_weights("mobilenetv2", "top"))
    archive = REPO_ROOT.parent / "shared" / "datasets" / "dogs-vs-cats" / "train-2000.zip"
    if not archive.is_file():
        pytest.skip(f"{archive} is absent")
    with zipfile.ZipFile(archive) as handle:
        cat = Image.open(io.BytesIO(handle.read("train/cat.1.jpg")))
        dog = Image.open(io.BytesIO(handle.read("train/dog.1.jpg")))
    classifier = ImageNetClassifier.load(backbone="mobilenetv2")
    assert len(classifier.class_names) == 1000 and classifier.class_names[281].startswith("tabby")
    probabilities = classifier.predict([cat, dog])
    assert probabilities.shape == (2, 1000)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-4)
    assert int(np.argmax(probabilities[0])) in imagenet.CAT_CLASSES
    assert list(imagenet.cat_dog_zero_shot(probabilities, ["cat", "dog"])) == [0, 1]


def test_imagenet_classifier_without_weights_says_how_to_get_them(isolated_roots):
    from core.inference import ImageNetClassifier

    with pytest.raises(weights.WeightsUnavailableError, match="python -m core.weights get mobilenetv2"):
        ImageNetClassifier.load(backbone="mobilenetv2")
