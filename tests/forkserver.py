"""Fresh processes without paying TensorFlow's import each time: forked from one that has imported it.

Importing TensorFlow, Keras and fcn_keras costs about 5 s of CPU. Tests that need fresh
processes (a kill that really ends one, tf.distribute's per-process device set-up) start
them here instead of ``subprocess.Popen([sys.executable, script, ...])``: a server process
imports the modules once, then forks one child per request. A child is a process of its
own: its environment, working directory, arguments and output file are the request's, it
runs the script as ``__main__`` in a fresh namespace, and it exits (or is killed) alone.
What it shares with its siblings is only the state the imports left, which the script's
own imports would make alike. Forking is safe because nothing has run TensorFlow in the
server (no op, no thread pool: one thread); so devices can still be configured in a child.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

_SERVER = r"""
import json, os, runpy, select, sys, traceback
for name in json.loads(sys.argv[1]):
    __import__(name)
running = {}


def send(message):
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def start(request):
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        running[pid] = request["id"]
        send({"id": request["id"], "pid": pid})
        return
    status = 1
    try:
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        output = os.open(request["output"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(output, 1)
        os.dup2(output, 2)  # one stream, as Popen(stderr=STDOUT)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        argv = request["argv"]
        if argv[0] == "-c":  # python -c CODE ARGS
            sys.argv, sys.path[0] = ["-c", *argv[2:]], ""
            exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
        else:  # python SCRIPT ARGS
            sys.argv, sys.path[0] = argv, os.path.dirname(os.path.abspath(argv[0]))
            runpy.run_path(argv[0], run_name="__main__")
        status = 0
    except SystemExit as exc:
        if isinstance(exc.code, int) or exc.code is None:
            status = exc.code or 0
        else:
            print(exc.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


send({"ready": os.getpid()})
pending, stdin_open = b"", True
while stdin_open or running:
    if stdin_open and select.select([0], [], [], 0.05 if running else None)[0]:
        chunk = os.read(0, 1 << 16)
        stdin_open = bool(chunk)
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            start(json.loads(line))
    elif not stdin_open:
        select.select([], [], [], 0.05)
    while running:
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if not pid:
            break
        send({"id": running.pop(pid), "returncode": os.waitstatus_to_exitcode(status),
              "cpu_s": usage.ru_utime + usage.ru_stime})
"""


class ForkServer:
    """The server process; :meth:`start` gives a :class:`Forked` child with ``Popen``'s ``communicate``.

    Example (not run: it starts a TensorFlow process)::

        with ForkServer(tmp_path, env) as server:
            child = server.start(["script.py", "arg"], env=env)
            output, _ = child.communicate(timeout=300)
            assert child.returncode == 0, output
    """

    def __init__(self, directory: Path, env: dict, preload=("tensorflow", "keras", "fcn_keras")):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "server.py").write_text(_SERVER)
        with open(self.directory / "server.log", "w") as log:
            self.process = subprocess.Popen([sys.executable, str(self.directory / "server.py"), json.dumps(preload)],
                                            cwd=self.directory, env=env, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, stderr=log)
        self._pending, self._messages, self._count = b"", [], 0
        self._next(lambda m: "ready" in m, timeout=300)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def start(self, argv: list, env: dict, cwd: str | os.PathLike | None = None) -> "Forked":
        """Forks a child that runs ``python *argv`` (a script and its arguments, or ``-c CODE ...``)."""
        self._count += 1
        output = self.directory / f"child-{self._count}.log"
        request = {"id": self._count, "argv": [str(a) for a in argv], "env": {k: str(v) for k, v in env.items()},
                   "cwd": str(cwd or os.getcwd()), "output": str(output)}
        self.process.stdin.write((json.dumps(request) + "\n").encode())
        self.process.stdin.flush()
        started = self._next(lambda m: m.get("id") == request["id"] and "pid" in m, timeout=60)
        return Forked(self, request["id"], started["pid"], output)

    def _next(self, wanted, timeout: float | None) -> dict:
        """The first message for which ``wanted`` is true (others are kept for later calls)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for i, message in enumerate(self._messages):
                if wanted(message):
                    return self._messages.pop(i)
            while b"\n" not in self._pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise subprocess.TimeoutExpired(self.process.args, timeout)
                if not select.select([self.process.stdout], [], [], left)[0]:
                    continue
                chunk = os.read(self.process.stdout.fileno(), 1 << 16)
                if not chunk:
                    log = (self.directory / "server.log").read_text(errors="replace")[-4000:]
                    raise RuntimeError(f"the fork server ended (exit status {self.process.wait()}):\n{log}")
                self._pending += chunk
            line, self._pending = self._pending.split(b"\n", 1)
            self._messages.append(json.loads(line))


class Forked:
    """A child of :class:`ForkServer`: ``pid``, ``returncode`` and ``communicate`` as ``Popen``'s;
    ``cpu_s``, its CPU seconds (user + system), once it has ended."""

    def __init__(self, server: ForkServer, id: int, pid: int, output: Path):
        self.server, self.id, self.pid, self.output = server, id, pid, output
        self.returncode = self.cpu_s = None

    def communicate(self, timeout: float | None = None) -> tuple[str, None]:
        """Waits for the child to end; returns its output (stdout and stderr together)."""
        if self.returncode is None:
            try:
                done = self.server._next(lambda m: m.get("id") == self.id and "returncode" in m, timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise
            self.returncode, self.cpu_s = done["returncode"], done["cpu_s"]
        return self.output.read_text(errors="replace"), None

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
