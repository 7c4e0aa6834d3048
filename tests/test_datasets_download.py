"""The real download code against a real HTTP server on 127.0.0.1 serving fixture archives."""

import errno
import http.server
import os
import threading

import pytest

from core import datasets
from core.datasets import download, registry, sources
from tests import test_datasets_support as fixtures


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Serves files from the server's folder; ``/drop/NAME`` sends half of NAME, then hangs up."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        if self.path.startswith("/drop/"):
            data = (self.server.folder / self.path[len("/drop/"):]).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()

    def translate_path(self, path):
        return str(self.server.folder / path.lstrip("/").split("?")[0])


@pytest.fixture
def server(tmp_path):
    folder = tmp_path / "served"
    folder.mkdir()
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.folder = folder
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    httpd.url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def _data_files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and ".progress" not in p.parts)


def _gtsrb_remotes(server, training_md5=None):
    training = fixtures.gtsrb_training_zip(server.folder)
    images_zip, gt_zip = fixtures.gtsrb_test_zips(server.folder)
    return [
        download.RemoteFile(server.url + path.name, path.name, md5=md5)
        for path, md5 in ((training, training_md5 or fixtures.md5(training)),
                          (images_zip, fixtures.md5(images_zip)), (gt_zip, fixtures.md5(gt_zip)))
    ]


def test_official_files_carry_the_official_md5s():
    files = {remote.file_name: remote for remote in download.official_files("gtsrb")}
    assert files["GTSRB_Final_Training_Images.zip"].md5 == "f33fd80ac59bff73c82d25ab499e03a3"
    assert files["GTSRB_Final_Training_Images.zip"].size == 276294756
    assert files["GTSRB_Final_Test_Images.zip"].md5 == "c7e4e6327067d32654124b0fe9e82185"
    assert files["GTSRB_Final_Test_GT.zip"].md5 == "fe31e9c9270bbcd7b84b7f21a9d9d9e5"
    assert files["GTSRB_Final_Training_Images.zip"].url.startswith("https://sid.erda.dk/public/archives/")
    microsoft = download.official_files("dogs-vs-cats", "microsoft")[0]
    assert microsoft.sha256.startswith("b7974bd00a84") and microsoft.size == 824887076
    filtered = download.official_files("dogs-vs-cats")[0]
    assert filtered.pin_sha256 and filtered.size == 68606236 and filtered.sha256 is None


def test_download_reports_progress_verifies_and_installs(server, isolated_roots):
    calls = []
    manifest = download.download_and_install(
        "gtsrb", progress=lambda phase, done, total: calls.append((phase, done, total)),
        files=_gtsrb_remotes(server))
    assert set(manifest["parts"]) == {"train", "test"} and len(manifest["downloads"]) == 3
    training = [(done, total) for phase, done, total in calls
                if phase == "download GTSRB_Final_Training_Images.zip"]
    size = (server.folder / "GTSRB_Final_Training_Images.zip").stat().st_size
    assert training[0] == (0, size) and training[-1] == (size, size)
    assert [done for done, _ in training] == sorted(done for done, _ in training)
    assert any(phase == "extract training images" for phase, _, _ in calls)
    assert registry.status("gtsrb") == "ready" and len(datasets.load("gtsrb", "test")) == 6
    assert not list((isolated_roots["data"] / ".staging").iterdir())  # downloads cleaned up


def test_checksum_mismatch_installs_nothing_and_keeps_existing_data(server, tmp_path, isolated_roots):
    datasets.get("gtsrb", [fixtures.gtsrb_training_zip(tmp_path / "local", classes=(9,))])
    before = _data_files(isolated_roots["data"])
    with pytest.raises(ValueError, match="checksum mismatch.*MD5"):
        download.download_and_install("gtsrb", files=_gtsrb_remotes(server, training_md5="0" * 32))
    assert _data_files(isolated_roots["data"]) == before
    assert set(datasets.load("gtsrb", "train").labels.tolist()) == {9}


def test_connection_dropped_mid_file(server, isolated_roots):
    archive = fixtures.gtsrb_training_zip(server.folder)
    remote = download.RemoteFile(server.url + "drop/" + archive.name, archive.name)
    with pytest.raises(ValueError, match="connection dropped"):
        download.download_and_install("gtsrb", files=[remote])
    assert registry.status("gtsrb") == "absent"
    assert _data_files(isolated_roots["data"]) == []


def test_http_error_and_unreachable_server(server):
    with pytest.raises(ValueError, match="HTTP 404"):
        download.download_and_install("gtsrb", files=[download.RemoteFile(server.url + "missing.zip", "x.zip")])
    with pytest.raises(ValueError, match="cannot reach"):
        download.download_and_install("gtsrb", files=[download.RemoteFile("http://127.0.0.1:9/x.zip", "x.zip")],
                                      timeout=5)


def test_sha256_is_pinned_on_first_success_then_enforced(server):
    archive = fixtures.write_zip(server.folder / "cats_and_dogs_filtered.zip", fixtures.dogs_filtered_members(3, 2))
    remote = download.RemoteFile(server.url + archive.name, archive.name, pin_sha256=True)
    download.download_and_install("dogs-vs-cats", files=[remote])
    assert download.pinned_sha256(remote.url) == fixtures.sha256(archive)
    assert len(datasets.load("dogs-vs-cats", "val", image_size=16)) == 4
    fixtures.write_zip(archive, fixtures.dogs_filtered_members(4, 2))  # the file changes upstream
    with pytest.raises(ValueError, match="SHA-256"):
        download.download_and_install("dogs-vs-cats", files=[remote])
    assert len(datasets.load("dogs-vs-cats", "train", image_size=16)) == 6  # old data kept


def test_full_disk_during_download_is_reported(server, isolated_roots, monkeypatch):
    # SIMULATION: the write layer raises ENOSPC, as a full file system would.
    remotes = _gtsrb_remotes(server)

    def full(stream, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(sources, "write_chunk", full)
    with pytest.raises(ValueError, match="disk is full"):
        download.download_and_install("gtsrb", files=remotes)
    assert _data_files(isolated_roots["data"]) == []


def test_not_enough_free_space_is_refused_before_downloading(server):
    remote = download.RemoteFile(server.url + "huge.zip", "huge.zip", size=1 << 60)
    with pytest.raises(ValueError, match="not enough free disk space"):
        download.download_and_install("gtsrb", files=[remote])
