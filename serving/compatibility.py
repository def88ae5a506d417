"""Can the pinned TF Serving image load this export? Checks a SavedModel against serving/compatibility.toml.

    python serving/compatibility.py models/fcn/1 [models/fcn/2 ...]

A SavedModel is a graph of named ops plus a GraphDef version range. A server
loads it when (1) every op in the graph and its functions is registered in the
server's TensorFlow, and (2) the graph's ``min_consumer`` is at most the
server's ``TF_GRAPH_DEF_VERSION`` (and the server is not in ``bad_consumers``).
Which TensorFlow *wrote* the model does not matter otherwise, so this check
stays true when pip serves a newer TensorFlow, and fails on the day an export
starts using an op the pinned server lacks. ``compatibility.toml`` records the
pinned image, its TensorFlow's GraphDef version, and the ops fcn_keras exports
use, each registered in that TensorFlow (see serving/README.md).
"""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

COMPATIBILITY = Path(__file__).resolve().parent / "compatibility.toml"


def read_compatibility(path: str | Path = COMPATIBILITY) -> dict:
    """The pinned server's facts: ``tag``, ``tensorflow``, ``graph_def_version``, ``ops`` (a sorted list).

    Example:
        >>> pinned = read_compatibility()
        >>> pinned["tag"].startswith(pinned["tensorflow"] + "."), "Conv2D" in pinned["ops"]
        (True, True)
    """
    with open(path, "rb") as f:
        return tomllib.load(f)


def saved_model_graph(export_dir: str | Path) -> dict:
    """What a server needs of a SavedModel: its op types and GraphDef versions.

    Returns ``{"ops": set of op names (graph nodes and library functions, calls to
    the model's own functions excluded), "producer", "min_consumer", "bad_consumers"}``
    over every MetaGraph in ``export_dir/saved_model.pb``.

    Example:
        >>> import tempfile, tensorflow as tf
        >>> module = tf.Module()
        >>> module.f = tf.function(lambda x: x + 1, input_signature=[tf.TensorSpec([], tf.float32)])
        >>> export_dir = tempfile.mkdtemp()
        >>> tf.saved_model.save(module, export_dir)
        >>> graph = saved_model_graph(export_dir)
        >>> "AddV2" in graph["ops"], graph["min_consumer"], graph["bad_consumers"]
        (True, 12, set())
    """
    from tensorflow.core.protobuf import saved_model_pb2

    saved = saved_model_pb2.SavedModel()
    saved.ParseFromString((Path(export_dir) / "saved_model.pb").read_bytes())
    ops: set[str] = set()
    producer, min_consumer, bad = 0, 0, set()
    for meta_graph in saved.meta_graphs:
        graph = meta_graph.graph_def
        functions = {f.signature.name for f in graph.library.function}
        ops |= {node.op for node in graph.node}
        for function in graph.library.function:
            ops |= {node.op for node in function.node_def}
        ops -= functions
        producer = max(producer, graph.versions.producer)
        min_consumer = max(min_consumer, graph.versions.min_consumer)
        bad |= set(graph.versions.bad_consumers)
    return {"ops": ops, "producer": producer, "min_consumer": min_consumer, "bad_consumers": bad}


def problems(export_dir: str | Path, compatibility: dict | None = None) -> list[str]:
    """Why the pinned server could not load ``export_dir`` (empty when it can)."""
    compatibility = compatibility or read_compatibility()
    graph = saved_model_graph(export_dir)
    server, tag = compatibility["graph_def_version"], compatibility["tag"]
    found = []
    unknown = sorted(graph["ops"] - set(compatibility["ops"]))
    if unknown:
        found.append(f"{export_dir}: ops not in serving/compatibility.toml (not known to be served by "
                     f"tensorflow/serving:{tag}): {', '.join(unknown)}")
    if graph["min_consumer"] > server:
        found.append(f"{export_dir}: needs a GraphDef consumer >= {graph['min_consumer']}; "
                     f"tensorflow/serving:{tag} reads up to {server}")
    if server in graph["bad_consumers"]:
        found.append(f"{export_dir}: lists GraphDef version {server} (tensorflow/serving:{tag}) as a bad consumer")
    return found


def main(argv: list[str] | None = None) -> int:
    exports = sys.argv[1:] if argv is None else argv
    if not exports:
        print(__doc__.split("\n\n")[1].strip(), file=sys.stderr)
        return 2
    compatibility = read_compatibility()
    found = [p for export in exports for p in problems(export, compatibility)]
    for problem in found:
        print(problem, file=sys.stderr)
    if not found:
        print(f"servable by tensorflow/serving:{compatibility['tag']}: {', '.join(map(str, exports))}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
