"""Runs the benchmark suite: ``python -m bench [--quick] [--backend B] [--only NAME ...] [--out DIR]``.

Every module ``bench/bench_<name>.py`` defines ``run(quick: bool = False) -> dict``
returning JSON-serialisable figures with a ``"table"`` list of row dicts. This
runner calls each (or those named by ``--only``), then writes ``results.json``
(the figures, with the machine and software described) and ``results.md`` (one
Markdown table per benchmark) to ``--out`` (default ``bench/results``). A
benchmark that raises is recorded with its error and the run exits non-zero.

``--backend`` (``tensorflow``, the default, or ``jax``) is the Keras backend the
measurements run on. The benchmarks whose ``run`` takes a ``backend`` argument
(inference, train) run on either; the others are TensorFlow's, so ``--backend
jax`` runs the former only, and naming one of the latter with it is an error.

Example:
    python -m bench --quick --only inference --out /tmp/bench
    python -m bench --backend jax --out /tmp/bench-jax
"""

from __future__ import annotations

import argparse
import ast
import datetime
import importlib
import importlib.metadata
import json
import os
import platform
import pkgutil
import sys
import time
import traceback
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
PREFIX = "bench_"


def available() -> list[str]:
    """Names of the benchmarks in ``bench/`` (``bench_inference.py`` -> ``"inference"``)."""
    return sorted(m.name[len(PREFIX):] for m in pkgutil.iter_modules([str(BENCH_DIR)]) if m.name.startswith(PREFIX))


def takes_backend(name: str) -> bool:
    """Whether benchmark ``name``'s ``run`` takes a ``backend`` (runs on Keras' JAX backend too).

    Read from the module's source, not imported: some benchmarks import TensorFlow at the top, and the
    GPU machine has none.

    Example:
        >>> takes_backend("inference"), takes_backend("export")
        (True, False)
    """
    tree = ast.parse((BENCH_DIR / f"{PREFIX}{name}.py").read_text())
    run = next((node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "run"), None)
    return run is not None and any(arg.arg == "backend" for arg in run.args.args + run.args.kwonlyargs)


def machine() -> dict:
    """The machine and software the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines()
                if line.startswith("model name")), platform.processor())
    versions = {}
    for package in ("tensorflow", "keras", "jax", "torch", "numpy"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            pass
    return {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "versions": versions,
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def markdown(results: dict) -> str:
    """The Markdown report: the machine, then one table per benchmark."""
    m = results["machine"]
    lines = [
        f"# fcn_keras benchmarks{' (quick)' if results['quick'] else ''}, Keras backend {results['backend']}",
        "",
        f"{m['date_utc']}; {m['cpu']}, {m['nproc']} cores, {m['memory_gb']} GB; "
        f"load average at start {m['load_average_at_start']}; "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()),
    ]
    for name, figures in results["benchmarks"].items():
        lines += ["", f"## {name} ({figures.get('seconds', '?')} s)", ""]
        if "error" in figures:
            lines += ["```", figures["error"].rstrip(), "```"]
            continue
        lines += _table(figures.get("table", []))
        if figures.get("left_out"):
            lines += ["", f"Left out on {results['backend']}: " + "; ".join(figures["left_out"]) + "."]
    return "\n".join(lines) + "\n"


def _table(rows: list[dict]) -> list[str]:
    if not rows:
        return ["(no table)"]
    columns = list(dict.fromkeys(key for row in rows for key in row))
    cell = lambda v: "" if v is None else str(v)  # noqa: E731
    return (["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
            + ["| " + " | ".join(cell(row.get(c)) for c in columns) + " |" for row in rows])


def main(argv: list[str] | None = None) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds: the CI smoke test")
    parser.add_argument("--only", nargs="+", metavar="NAME", help=f"run only these benchmarks; known: {names}")
    parser.add_argument("--backend", default="tensorflow", choices=("tensorflow", "jax"),
                        help="Keras backend the measurements run on (default tensorflow)")
    parser.add_argument("--out", default=str(BENCH_DIR / "results"), help="output folder (default bench/results)")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        parser.error(f"--only: unknown benchmark(s) {unknown}; known: {names}")
    if str(BENCH_DIR.parent) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR.parent))
    if argv is None:  # a command line: this process is the run's own, and imports fcn_keras (Keras) below
        os.environ["KERAS_BACKEND"] = args.backend
    chosen = args.only or names
    if args.backend != "tensorflow":
        tf_only = [name for name in chosen if not takes_backend(name)]
        if args.only and tf_only:
            parser.error(f"--only: {tf_only} run on the TensorFlow backend only; "
                         f"on {args.backend}: {[n for n in names if takes_backend(n)]}")
        chosen = [name for name in chosen if name not in tf_only]

    results = {"quick": args.quick, "backend": args.backend, "machine": machine(), "benchmarks": {}}
    failed = False
    for name in chosen:
        print(f"== bench {name}{' (quick)' if args.quick else ''}", flush=True)
        start = time.perf_counter()
        try:
            module = importlib.import_module(f"bench.{PREFIX}{name}")
            figures = (module.run(quick=args.quick, backend=args.backend) if takes_backend(name)
                       else module.run(quick=args.quick))
        except Exception:  # one broken benchmark must not lose the others' figures
            figures = {"error": traceback.format_exc()}
            failed = True
            print(figures["error"], file=sys.stderr)
        figures["seconds"] = round(time.perf_counter() - start, 1)
        results["benchmarks"][name] = figures

    from fcn_keras.files import write_text  # here: `import fcn_keras` loads Keras, and --help should not wait

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "results.json", json.dumps(results, indent=2, default=float) + "\n")
    write_text(out / "results.md", markdown(results))
    print(f"wrote {out / 'results.json'} and {out / 'results.md'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
