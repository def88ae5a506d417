"""One reduced demo run shared by the CLI tests: its model, SavedModel and dataset are real inputs."""

from __future__ import annotations

import contextlib
import io

import pytest

from fcn_keras import cli

# Few images and steps: checks that every artefact is made and well-formed, not the mean IU target.
REDUCED_DEMO = ["--num-images", "8", "--epochs", "2", "--steps-per-epoch", "2", "--batch-size", "2",
                "--size", "32x48"]


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """(output directory, exit status, stdout) of ``fcn-keras demo`` in its reduced configuration."""
    out = tmp_path_factory.mktemp("demo") / "fcn-demo"
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        status = cli.main(["demo", "--out", str(out), *REDUCED_DEMO])
    return out, status, stdout.getvalue()


@pytest.fixture
def fcn_keras_cmd(capsys):
    """Runs ``fcn-keras ARGV`` in this process; returns (exit status, stdout, stderr)."""

    def run(*argv: str) -> tuple[int, str, str]:
        status = cli.main([str(a) for a in argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run


@pytest.fixture(autouse=True)
def no_network(monkeypatch, tmp_path):
    """Every CLI test runs offline, wherever it runs: tests that name zoo models must not
    start a 540 MB download on a machine that has a network. All proxies point at a
    closed loopback port, urllib's cached opener is dropped so it reads them again,
    and the zoo cache is a fresh directory."""
    import urllib.request

    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(urllib.request, "_opener", None)
    monkeypatch.setenv("FCN_KERAS_HOME", str(tmp_path / "fcn_keras_home"))
