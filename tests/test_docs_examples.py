"""Every ```python example of the README and docs/ runs, as a reader would run it.

Each page's blocks run in order in one fresh Python process of its own (the blocks of a page
share their variables, as in a notebook), in an empty temporary working directory, with the
network closed (HTTP(S) proxies point at a closed loopback port) and empty fcn_keras/Keras
caches. The page processes are forked from one process that has only imported TensorFlow,
Keras and fcn_keras (:data:`_ZYGOTE`): importing TensorFlow costs about 5 s of CPU, once per
page otherwise. A page still starts from a process no other page ran in, with a fresh
namespace (a page that forgets an import fails), its own environment, working directory and
caches; what it shares is only the state those imports left, which a reader's own imports
make alike. The examples themselves make what they need (a synthetic
dataset, a quick training run, a saved model), so what a reader copies works as written.

One thing no example can make offline is a file that is published on the internet. Where a
page calls ``fcn_keras.zoo.load(name)``, the harness first puts a stand-in for that download
in the fresh cache (:func:`_zoo_cache_stand_in`): the card's architecture with random
weights, recorded as the converted published file. ``load`` then runs its real code
(the card, the registry, the cached weights, the model's identity); only the weights are
not the authors'. The pages say what the real call needs (network, 540 MB, once).

A failing block is reported with its page, line and first line, and the traceback points
into the Markdown file itself.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Every Markdown page whose ```python blocks run here, in the order a reader meets them.
PAGES = ("README.md", "docs/index.md", "docs/datasets.md", "docs/training.md", "docs/export.md",
         "docs/tiling.md", "docs/zoo.md", "serving/README.md")
# Pages that download a zoo model, and the zoo names whose download the harness stands in for.
ZOO_STAND_INS = {"README.md": ("fcn8s_voc",), "docs/zoo.md": ("fcn8s_voc",)}
CLOSED_PORT_PROXY = "http://127.0.0.1:9"  # the discard port: nothing listens there, connections fail at once
PAGE_TIMEOUT_S = 300

_FENCE = re.compile(r"^(```+|~~~+)\s*(\S*)")


def python_blocks(path: Path) -> list[tuple[int, str]]:
    """The ```python blocks of a Markdown file: ``(line of the block's first code line, source)``."""
    blocks, lines = [], path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i].strip())
        if not match:
            i += 1
            continue
        fence, language = match.group(1), match.group(2).lower()
        start = i + 1
        i = start
        while i < len(lines) and not lines[i].strip().startswith(fence[:3]):
            i += 1
        if i == len(lines):
            raise ValueError(f"{path}:{start}: code block never closed")
        if language in ("python", "py"):
            blocks.append((start + 1, textwrap.dedent("\n".join(lines[start:i]))))
        i += 1
    return blocks


def _first_line(source: str) -> str:
    return next((line.strip() for line in source.splitlines() if line.strip()), "")


def _zoo_cache_stand_in(name: str, shared: Path) -> str:
    """Code that puts a stand-in for ``name``'s published weights into the page's fresh zoo cache.

    The stand-in is the card's network with random weights, recorded as the conversion of
    the published file: what ``zoo.load`` finds after its first, online, run. The first page
    that needs it builds it (2-3 s of CPU for 134M parameters); later pages hard-link the
    same files from ``shared`` into their own cache (same inode, so its recorded size and
    mtime still match and nothing is re-hashed)."""
    return f"""
import gc, hashlib, os, shutil
from pathlib import Path
from fcn_keras.zoo import home, info
from fcn_keras.zoo.cache import read_registry, save_conversion
card = info({name!r})
shared = Path({str(shared)!r})
if (shared / "registry.json").is_file():
    (home() / "converted").mkdir(parents=True, exist_ok=True)
    for converted in (shared / "converted").iterdir():
        try:
            os.link(converted, home() / "converted" / converted.name)
        except OSError:  # another file system: a copy with the same size and mtime
            shutil.copy2(converted, home() / "converted" / converted.name)
    shutil.copyfile(shared / "registry.json", home() / "registry.json")
else:
    from fcn_keras.zoo.loading import build
    stand_in = build(card, include_preprocessing=False)
    stamp = hashlib.sha256(b"docs test stand-in for " + card["weights"]["file"].encode()).hexdigest()
    digests = {{"sha256": stamp}}
    if card["weights"]["checksum"] != "none":  # what a verified download records: the published checksum
        algorithm, published = card["weights"]["checksum"].split(":")
        digests[algorithm] = published
    converted = save_conversion(card, stand_in, home() / "downloads" / card["weights"]["file"], digests)
    del stand_in
    gc.collect()
    (shared / "converted").mkdir(parents=True, exist_ok=True)
    try:
        os.link(converted, shared / "converted" / converted.name)
    except OSError:
        shutil.copy2(converted, shared / "converted" / converted.name)
    shutil.copyfile(home() / "registry.json", shared / "registry.json")
"""


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory):
    """Where the zoo stand-ins built by one page are kept for the next (the module's pages run in one worker)."""
    directory = tmp_path_factory.mktemp("zoo-stand-ins")
    yield directory
    shutil.rmtree(directory, ignore_errors=True)  # 0.5 GB per full-size stand-in: not left for pytest's retention


# Runs in the page's process: executes the blocks in one namespace, names the first one that fails.
_RUNNER = r'''
import json, os, resource, sys, time, traceback

def cpu():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

def lap(what, since):
    print(f"[docs test] {what}: {cpu() - since[0]:.1f} s CPU, {time.time() - since[1]:.1f} s wall", file=sys.stderr)
    since[:] = [cpu(), time.time()]

since = [0.0, time.time()]
spec = json.load(open(sys.argv[1]))
for text in spec["setup"]:
    exec(compile(text, "<docs test stand-in>", "exec"), {"__name__": "__docs_stand_in__"})
    lap("stand-in", since)
namespace = {"__name__": "__main__"}
for block in spec["blocks"]:
    # Padded to its line, so that tracebacks point into the Markdown file at the failing line.
    code = compile("\n" * (block["line"] - 1) + block["source"], spec["page"], "exec")
    try:
        exec(code, namespace)
    except BaseException:
        traceback.print_exc()
        print(json.dumps({"failed": block["line"]}), file=sys.stderr)
        sys.exit(1)
    sys.stdout.flush()
    lap(f"block at line {block['line']}", since)
sys.stdout.flush()
sys.stderr.flush()
os._exit(0)  # every block ran: skip the interpreter's teardown of TensorFlow (a second of CPU per page)
'''


# The parent of the page processes: imports what every page imports first, once, then forks one
# child per request (a JSON line on stdin) that takes on the page's files, directory, environment and
# arguments and runs _RUNNER; it answers with the child's exit status and CPU time (a JSON line).
# Forking is safe here: nothing has run TensorFlow yet (no op, no thread pool; one thread).
_ZYGOTE = r"""
import json, os, runpy, shutil, signal, sys, traceback
import tensorflow, keras, fcn_keras  # noqa: F401 (about 5 s of CPU: paid once, not once per page)
keras_home = os.environ["KERAS_HOME"]  # Keras read it on import: its cache for every page
sys.stdout.flush()
print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    request = json.loads(line)
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            for fd, name in ((1, "stdout"), (2, "stderr")):
                os.dup2(os.open(request[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            # What Keras' import does with $KERAS_HOME, here for the page's own.
            os.makedirs(os.environ["KERAS_HOME"], exist_ok=True)
            shutil.copyfile(os.path.join(keras_home, "keras.json"), os.path.join(os.environ["KERAS_HOME"], "keras.json"))
            sys.argv = [request["runner"], request["spec"]]
            sys.path[0] = os.path.dirname(request["runner"])  # as for `python runner.py`
            # No page may find anything an earlier page left in the Keras cache they share.
            left = sorted(set(os.listdir(keras_home)) - {"keras.json"})
            if left:
                raise RuntimeError(f"an earlier page left files in Keras' cache {keras_home}: {left}")
            signal.alarm(request["timeout"])  # SIGALRM's default action ends the process
            runpy.run_path(request["runner"], run_name="__main__")
            status = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
    _, wait_status, usage = os.wait4(pid, 0)
    # What the page left in the shared Keras cache is named (the page fails) and removed (the next is not hit).
    left = sorted(set(os.listdir(keras_home)) - {"keras.json"})
    for name in left:
        path = os.path.join(keras_home, name)
        shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) else os.remove(path)
    print(json.dumps({"returncode": os.waitstatus_to_exitcode(wait_status), "user": usage.ru_utime,
                      "system": usage.ru_stime, "left_in_keras_cache": left}), flush=True)
"""


def _environment(tmp: Path) -> dict:
    env = {key: value for key, value in os.environ.items()
           if key.lower() not in ("http_proxy", "https_proxy", "all_proxy", "no_proxy")}
    for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        env[key] = CLOSED_PORT_PROXY
    env.update({
        "PYTHONPATH": os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "FCN_KERAS_HOME": str(tmp / "fcn_keras_home"),  # no cached zoo weights
        "KERAS_HOME": str(tmp / "keras_home"),          # no cached keras.applications weights
        "KERAS_BACKEND": "tensorflow",                  # the pages' default backend, whatever the caller's
        "MPLBACKEND": "Agg",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def test_every_page_with_python_examples_is_run():
    found = {str(p.relative_to(ROOT)) for pattern in ("*.md", "docs/*.md", "serving/*.md")
             for p in ROOT.glob(pattern) if python_blocks(p)}
    assert found <= set(PAGES), f"pages with ```python examples that tests/test_docs_examples.py does not run: {sorted(found - set(PAGES))}"
    assert all(python_blocks(ROOT / page) for page in PAGES), "a page in PAGES has no ```python block"


@pytest.fixture(scope="module")
def zygote(tmp_path_factory):
    """The process the pages' processes are forked from (:data:`_ZYGOTE`), with a page's environment."""
    home = tmp_path_factory.mktemp("docs-zygote")
    (home / "zygote.py").write_text(_ZYGOTE)
    with open(home / "stderr", "w") as stderr:
        process = subprocess.Popen([sys.executable, str(home / "zygote.py")], cwd=home, env=_environment(home),
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
    if not process.stdout.readline().startswith('{"ready"'):
        process.kill()
        pytest.fail(f"the pages' parent process did not start:\n{(home / 'stderr').read_text()[-4000:]}")
    yield process, home
    process.stdin.close()
    process.wait(timeout=60)


def _run_page(zygote, tmp_path: Path, work: Path) -> dict:
    process, home = zygote
    request = {"runner": str(tmp_path / "runner.py"), "spec": str(tmp_path / "spec.json"), "cwd": str(work),
               "env": _environment(tmp_path), "stdout": str(tmp_path / "stdout"), "stderr": str(tmp_path / "stderr"),
               "timeout": PAGE_TIMEOUT_S}
    process.stdin.write(json.dumps(request) + "\n")
    process.stdin.flush()
    answer = process.stdout.readline()
    if not answer:
        pytest.fail(f"the pages' parent process died:\n{(home / 'stderr').read_text()[-4000:]}", pytrace=False)
    return {**json.loads(answer), "stdout": (tmp_path / "stdout").read_text(errors="replace"),
            "stderr": (tmp_path / "stderr").read_text(errors="replace")}


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, tmp_path, stand_ins, zygote):
    path = ROOT / page
    blocks = python_blocks(path)
    work = tmp_path / "work"
    work.mkdir()
    spec = {"page": str(path), "blocks": [{"line": line, "source": source} for line, source in blocks],
            "setup": [_zoo_cache_stand_in(name, stand_ins / name) for name in ZOO_STAND_INS.get(page, ())]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "runner.py").write_text(_RUNNER)
    run = _run_page(zygote, tmp_path, work)
    shutil.rmtree(tmp_path / "fcn_keras_home", ignore_errors=True)
    if run["returncode"] == -signal.SIGALRM:
        pytest.fail(f"{page}: its examples ran past {PAGE_TIMEOUT_S} s\n{run['stderr'][-4000:]}", pytrace=False)
    print(f"[docs test] {page}: {run['user']:.1f} s user + {run['system']:.1f} s system CPU in all")
    print(run["stdout"][-4000:])
    print("\n".join(line for line in run["stderr"].splitlines() if line.startswith("[docs test]")))
    assert not run["left_in_keras_cache"], (
        f"{page}: its examples wrote {run['left_in_keras_cache']} into Keras' cache, which every page shares")
    if run["returncode"] == 0:
        return
    failed = None
    for line in reversed(run["stderr"].splitlines()):
        if line.startswith('{"failed": '):
            failed = json.loads(line)["failed"]
            break
    where = "the stand-in setup or the interpreter" if failed is None else next(
        f"the block at line {n} ({_first_line(source)!r})" for n, source in blocks if n == failed)
    pytest.fail(f"{page}: {where} failed (exit status {run['returncode']}):\n{run['stderr'][-6000:]}", pytrace=False)
