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
