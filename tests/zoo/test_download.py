"""Downloads and the cache: atomic and resumable fetches from a real HTTP server on
127.0.0.1, file:// URLs, checksum refusal, offline failure and an unusable cache.

No test needs the internet; "offline" is a real refused connection on loopback.
"""

from __future__ import annotations

import hashlib
import http.server
import socket
import threading

import numpy as np
import pytest

import fcn_keras.zoo as zoo
from fcn_keras.files import current_umask
from fcn_keras.zoo.cache import read_registry, save_registry
from fcn_keras.zoo.downloads import download_source
from fcn_keras.caffe import CaffeLayer, write_caffemodel

from tests.zoo.zoo_env import TmpZoo

PAYLOAD = np.random.default_rng(0).bytes(3_000_000)


class _Handler(http.server.BaseHTTPRequestHandler):
    """Serves PAYLOAD with Range support; in "drop" mode sends half and closes the connection."""

    mode = "full"
    ranges: list = []

    def do_GET(self):  # noqa: N802 (http.server's naming)
        start = 0
        header = self.headers.get("Range")
        type(self).ranges.append(header)
        if header:
            start = int(header.removeprefix("bytes=").split("-")[0])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        else:
            self.send_response(200)
        body = PAYLOAD[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if type(self).mode == "drop":
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    _Handler.mode, _Handler.ranges = "full", []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def tmp_zoo(tmp_path, monkeypatch):
    return TmpZoo(tmp_path, monkeypatch)


def test_interrupted_download_is_never_complete_and_resumes(server, tmp_zoo):
    file = tmp_zoo.add_card("fcn32s_voc", url=f"{server}/fcn32s-heavy-pascal.caffemodel")
    card = zoo.info("fcn32s_voc")
    dest, part = tmp_zoo.downloads / file, tmp_zoo.downloads / f"{file}.part"

    _Handler.mode = "drop"
    with pytest.raises(zoo.DownloadError, match="kept and the next attempt resumes it") as info:
        download_source(card, progress=False)
    assert file in str(info.value) and str(dest) in str(info.value)
    assert not dest.exists()  # a partial file is never taken for the weights
    assert 0 < part.stat().st_size < len(PAYLOAD)
    kept = part.stat().st_size

    _Handler.mode = "full"
    assert download_source(card, progress=True) == dest
    assert _Handler.ranges == [None, f"bytes={kept}-"]  # the second request resumed
    assert dest.read_bytes() == PAYLOAD and not part.exists()


def test_file_url_download(tmp_path, tmp_zoo):
    source = tmp_path / "mirror" / "fcn16s-heavy-pascal.caffemodel"
    source.parent.mkdir()
    source.write_bytes(PAYLOAD[:1000])
    tmp_zoo.add_card("fcn16s_voc", url=source.as_uri())
    path = download_source(zoo.info("fcn16s_voc"), progress=False)
    assert path.parent == tmp_zoo.downloads and path.read_bytes() == PAYLOAD[:1000]
    # Published through fcn_keras.files: the modes of a plain write, so another user can read the cache.
    umask = current_umask()
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    save_registry(read_registry())
    assert (tmp_zoo.home / "registry.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_checksum_mismatch_is_refused_and_deleted(server, tmp_zoo):
    wrong = "sha256:" + "0" * 64
    file = tmp_zoo.add_card("fcn8s_voc", url=f"{server}/fcn8s-heavy-pascal.caffemodel", checksum=wrong)
    with pytest.raises(zoo.ChecksumError) as info:
        zoo.download("fcn8s_voc", progress=False)
    message = str(info.value)
    assert "0" * 64 in message and hashlib.sha256(PAYLOAD).hexdigest() in message and "deleted" in message
    assert list(tmp_zoo.downloads.iterdir()) == []


def test_weights_path_with_a_wrong_checksum_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("FCN_KERAS_HOME", str(tmp_path / "home"))
    path = tmp_path / "mine.caffemodel"
    write_caffemodel(path, [CaffeLayer("conv1_1", "Convolution", blobs=[np.ones((2, 3, 3, 3), "float32")])])
    with pytest.raises(zoo.ChecksumError) as info:
        zoo.load("fcn8s_voc", weights_path=path)
    message = str(info.value)
    assert "c449ea74dd7d83751d1357d6a8c323fcf4038962" in message
    assert hashlib.sha1(path.read_bytes()).hexdigest() in message and "verify=False" in message
    assert path.exists()  # the user's own file is not deleted
    assert not (tmp_path / "home").exists()  # and nothing was cached


def test_offline_load_fails_with_where_to_put_the_file(tmp_zoo):
    with socket.socket() as probe:  # a loopback port with nothing listening: a refused connection
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/fcn8s-heavy-pascal.caffemodel"
    tmp_zoo.add_card("fcn8s_voc", url=url)
    with pytest.raises(zoo.DownloadError) as info:
        zoo.load("fcn8s_voc")
    message = str(info.value)
    assert "fcn8s-heavy-pascal.caffemodel" in message and url in message
    assert f"place it at {tmp_zoo.downloads / 'fcn8s-heavy-pascal.caffemodel'}" in message
    assert "weights_path=" in message


def test_unusable_cache_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("a file where the cache should be")
    monkeypatch.setenv("FCN_KERAS_HOME", str(blocker / "cache"))
    with pytest.raises(zoo.CacheError, match="not writable.*FCN_KERAS_HOME"):
        zoo.load("fcn8s_voc")


def test_home_defaults_to_the_keras_cache_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("FCN_KERAS_HOME", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    assert zoo.home() == tmp_path / "keras" / "fcn_keras"


def test_a_proxy_of_an_earlier_download_in_the_process_is_not_kept(server, tmp_path, monkeypatch):
    """urlopen's global opener keeps the proxies it saw first (Keras' get_file makes it); fetch reads them anew."""
    import urllib.request

    from fcn_keras.zoo.downloads import fetch

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # the discard port: connections fail at once
    try:
        urllib.request.install_opener(urllib.request.build_opener())  # the global opener, made under the proxy
        with pytest.raises(OSError):
            urllib.request.urlopen(f"{server}/through-the-proxy", timeout=5)
        monkeypatch.delenv("http_proxy")
        assert fetch(f"{server}/payload", tmp_path / "payload", progress=False).read_bytes() == PAYLOAD
    finally:
        urllib.request.install_opener(urllib.request.build_opener())  # as the environment is now
