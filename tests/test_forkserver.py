"""tests/forkserver.py: each child is a process of its own, with the request's arguments, environment and
directory, and its exit status, output and CPU time come back; a child past its time is killed."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.forkserver import ForkServer

SCRIPT = """
import json, os, sys
mode = sys.argv[1]
print(json.dumps({"argv": sys.argv, "cwd": os.getcwd(), "pid": os.getpid(), "ppid": os.getppid(),
                  "variable": os.environ.get("FORKSERVER_TEST"), "seen": "_forkserver_mark" in globals()}))
sys.stdout.flush()
globals()["_forkserver_mark"] = True
if mode == "exit":
    sys.exit(3)
if mode == "kill":
    os._exit(17)
if mode == "raise":
    raise ValueError("boom")
if mode == "hang":
    import time
    time.sleep(600)
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    # Nothing preloaded: the mechanics are the same as with TensorFlow, without its 5 s import.
    with ForkServer(tmp_path_factory.mktemp("forks"), dict(os.environ), preload=("json",)) as server:
        yield server


def test_children_run_alone_with_their_arguments_environment_and_directory(server, tmp_path):
    (tmp_path / "child.py").write_text(SCRIPT)
    children = {mode: server.start([tmp_path / "child.py", mode], env={"FORKSERVER_TEST": mode}, cwd=tmp_path)
                for mode in ("ok", "exit", "kill", "raise")}
    outputs = {mode: child.communicate(timeout=60)[0] for mode, child in reversed(children.items())}
    assert {mode: child.returncode for mode, child in children.items()} == {"ok": 0, "exit": 3, "kill": 17, "raise": 1}
    assert "ValueError: boom" in outputs["raise"]  # stderr comes with stdout, as Popen(stderr=STDOUT)
    reports = {mode: json.loads(output.splitlines()[0]) for mode, output in outputs.items()}
    for mode, report in reports.items():
        assert report["argv"] == [str(tmp_path / "child.py"), mode] and report["variable"] == mode
        assert report["cwd"] == str(tmp_path) and report["ppid"] == server.process.pid
        assert not report["seen"]  # a fresh namespace: nothing of an earlier child's run
    assert len({report["pid"] for report in reports.values()}) == 4
    assert all(child.cpu_s >= 0 for child in children.values())


def test_python_dash_c_and_a_child_past_its_time(server, tmp_path):
    child = server.start(["-c", "import sys; print(sys.argv); sys.exit(5)", "a"], env={}, cwd=tmp_path)
    assert child.communicate(timeout=60)[0].strip() == "['-c', 'a']" and child.returncode == 5
    (tmp_path / "child.py").write_text(SCRIPT)
    hanging = server.start([tmp_path / "child.py", "hang"], env={}, cwd=tmp_path)
    with pytest.raises(subprocess.TimeoutExpired):
        hanging.communicate(timeout=1)
    assert hanging.communicate(timeout=60)[1] is None and hanging.returncode == -9  # killed: SIGKILL
