"""An ONNX file's graph as a converter needs it: initializers as numpy arrays, who consumes and who produces
each value, every node's attributes.

Read with the `onnx` package (protobuf only): nothing in the file is executed. Exporters name few
initializers after the torch parameter they hold; the others are anonymous (`onnx::Conv_8240`) but the node
that consumes them is named after the module that ran it (`/flow/flows.0/enc/in_layers.0/Conv`), which is
how the families' converters (Piper, Kokoro) give each one its torch name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from models.errors import WeightsError

GRAPH_CONSTANT_MAX = 8  # elements: an unnamed initializer larger than this must be a parameter we use


class OnnxGraph:
    """The graph of one ONNX file. `kind` names what the file should be, for error messages."""

    def __init__(self, path: Path, *, kind: str = "an ONNX model") -> None:
        try:
            import onnx
            from onnx import numpy_helper
        except ImportError:  # pragma: no cover
            raise WeightsError("reading an ONNX file needs the onnx package (pip install onnx)") from None
        self.path = Path(path)
        self.kind = kind
        try:
            model = onnx.load(str(self.path))
        except Exception as exc:
            raise WeightsError(f"cannot read {self.path.name}: {exc}") from None
        graph = model.graph
        self.nodes: list[Any] = list(graph.node)
        self.consumers: dict[str, list[tuple[Any, int]]] = {}
        self.producers: dict[str, Any] = {}
        for node in self.nodes:
            for i, name in enumerate(node.input):
                if name:
                    self.consumers.setdefault(name, []).append((node, i))
            for name in node.output:
                self.producers[name] = node
        self.attributes: dict[str, dict[str, Any]] = {
            node.name: {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            for node in self.nodes
        }
        self.initializers: dict[str, np.ndarray] = {
            init.name: numpy_helper.to_array(init) for init in graph.initializer
        }
        self.inputs: list[str] = [i.name for i in graph.input if i.name not in self.initializers]
        self.outputs: list[str] = [o.name for o in graph.output]

    def attribute(self, node: str, key: str) -> Any:
        try:
            return self.attributes[node][key]
        except KeyError:
            raise WeightsError(f"not {self.kind}: no {key!r} on node {node!r}") from None

    def initializer(self, name: str) -> np.ndarray:
        try:
            return self.initializers[name]
        except KeyError:
            raise WeightsError(f"not {self.kind}: {name!r} is not an initializer") from None
