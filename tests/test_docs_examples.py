"""Every ```python example of the README and docs/ runs, as a reader would run it.

Each page's blocks run in order in one fresh Python process of its own (the blocks of a page
share their variables, as in a notebook), in an empty temporary working directory, with the
network closed (HTTP(S) proxies point at a closed loopback port) and empty fcn_keras/Keras
caches. The page processes are forked from one process that has only imported TensorFlow,
Keras and fcn_keras (``tests/forkserver.py``): importing TensorFlow costs about 5 s of CPU,
once per page otherwise. A page still starts from a process no other page ran in, with a fresh
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
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.forkserver import ForkServer

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
def pages_server(tmp_path_factory):
    """The process the pages' processes are forked from (tests/forkserver.py), with a page's environment;
    and the Keras cache of every page (Keras reads ``$KERAS_HOME`` once, on import: the server's)."""
    home = tmp_path_factory.mktemp("docs-pages")
    with ForkServer(home, _environment(home)) as server:
        yield server, home / "keras_home"


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES)
def test_page_examples_run(page, tmp_path, stand_ins, pages_server):
    path = ROOT / page
    blocks = python_blocks(path)
    work = tmp_path / "work"
    work.mkdir()
    spec = {"page": str(path), "blocks": [{"line": line, "source": source} for line, source in blocks],
            "setup": [_zoo_cache_stand_in(name, stand_ins / name) for name in ZOO_STAND_INS.get(page, ())]}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "runner.py").write_text(_RUNNER)
    server, keras_cache = pages_server
    (tmp_path / "keras_home").mkdir()  # what Keras' import does with $KERAS_HOME, here for the page's own
    shutil.copyfile(keras_cache / "keras.json", tmp_path / "keras_home" / "keras.json")
    child = server.start([tmp_path / "runner.py", tmp_path / "spec.json"], env=_environment(tmp_path), cwd=work)
    try:
        output, _ = child.communicate(timeout=PAGE_TIMEOUT_S)
    except subprocess.TimeoutExpired:  # the child is killed
        output = None
    shutil.rmtree(tmp_path / "fcn_keras_home", ignore_errors=True)
    if output is None:
        pytest.fail(f"{page}: its examples ran past {PAGE_TIMEOUT_S} s\n{child.output.read_text()[-4000:]}",
                    pytrace=False)
    # What a page leaves in the Keras cache the pages share is removed (the next page is not hit) and named.
    left = sorted(set(os.listdir(keras_cache)) - {"keras.json"})
    for name in left:
        shutil.rmtree(keras_cache / name) if (keras_cache / name).is_dir() else (keras_cache / name).unlink()
    assert not left, f"{page}: its examples wrote {left} into Keras' cache {keras_cache}, which every page shares"
    print(f"[docs test] {page}: {child.cpu_s:.1f} s of CPU in all")
    print(output[-4000:])
    if child.returncode == 0:
        return
    failed = None
    for line in reversed(output.splitlines()):
        if line.startswith('{"failed": '):
            failed = json.loads(line)["failed"]
            break
    where = "the stand-in setup or the interpreter" if failed is None else next(
        f"the block at line {n} ({_first_line(source)!r})" for n, source in blocks if n == failed)
    pytest.fail(f"{page}: {where} failed (exit status {child.returncode}):\n{output[-6000:]}", pytrace=False)
