"""YAML documents as plain Python values, with the line of every field.

libyaml (``yaml.CSafeLoader``) composes each document into a node tree that carries source marks; this
module turns the tree into JSON-like values (dict, list, str, int, float, bool, None) and records, for
each path, the line of the field that names it (the key of a mapping entry, the start of a list item).

Safety limits make hostile input an error rather than a hang or a crash: libyaml itself refuses
nesting deeper than 1000, this module refuses documents deeper than ``max_depth`` (``MAX_DEPTH`` unless
given) and alias expansion
larger than the text could hold without aliases ("billion laughs").

Paths are tuples of mapping keys (str) and list indexes (int): ``("spec", "http", 0, "route")``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from pilot.config.objects import Severity

YamlPath = tuple[str | int, ...]

MAX_DEPTH = 100

# libyaml's loader; the pure-Python one (same API, slower) if PyYAML was built without libyaml.
_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_TAG = "tag:yaml.org,2002:"
# Scalars kept as their text: timestamps (Kubernetes YAML reads them as strings) and !!binary (base64,
# which is what protobuf JSON wants for bytes fields).
_TEXT_TAGS = {_TAG + "str", _TAG + "timestamp", _TAG + "binary"}
_CONSTRUCTED_TAGS = {_TAG + "int", _TAG + "float", _TAG + "bool", _TAG + "null"}


@dataclass(frozen=True, slots=True)
class Problem:
    """Something wrong in the YAML itself, at ``path`` of a document (``line`` is 1-based)."""

    message: str
    line: int | None
    path: YamlPath = ()
    severity: Severity = "error"


@dataclass(frozen=True, slots=True)
class Document:
    """One YAML document: its value, the line it starts on, and the line of each path in it."""

    value: Any
    line: int
    lines: Mapping[YamlPath, int]
    # Line of the first content line of each block scalar (``mesh: |``), to place errors inside it.
    block_starts: Mapping[YamlPath, int] = field(default_factory=dict)
    problems: tuple[Problem, ...] = ()

    def line_of(self, path: YamlPath) -> int:
        """The line of ``path``, or of its nearest ancestor that the document has."""
        return line_of(self.lines, path, self.line)


@dataclass(frozen=True, slots=True)
class Loaded:
    """Every document of a text, or the fatal problem that stopped reading it."""

    documents: tuple[Document, ...] = ()
    fatal: Problem | None = None


def line_of(lines: Mapping[YamlPath, int], path: YamlPath, default: int) -> int:
    """The line of ``path`` in ``lines``, or of its nearest ancestor, or ``default``."""
    for end in range(len(path), 0, -1):
        line = lines.get(path[:end])
        if line is not None:
            return line
    return default


def format_path(path: YamlPath) -> str:
    """``("spec", "http", 0, "route")`` → ``spec.http[0].route``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def load_documents(text: str, max_depth: int = MAX_DEPTH, max_objects: int | None = None) -> Loaded:
    """Read every document of ``text``; a syntax error anywhere makes the whole text fatal.

    With ``max_objects``, more objects than that (a document is one, a ``kind: *List`` document is
    as many as its ``items``) is fatal too, found from libyaml's node tree before any of it is
    turned into Python values (the costly part for a List of 100,000 items).
    """
    try:
        loader = _Loader(text)
    except UnicodeEncodeError as err:
        return Loaded(fatal=Problem(f"not valid UTF-8 text: {err.reason}", _line_at(text, err.start)))
    # Without aliases every node costs at least one character; more nodes than that means alias expansion.
    converter = _Converter(loader, budget=2 * len(text) + 10_000, max_depth=max_depth)
    documents: list[Document] = []
    nodes: list[yaml.Node] = []
    objects = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            objects += _object_count(node)
            if max_objects is not None and objects > max_objects:
                message = f"holds more than {max_objects} objects (the limit); not loaded"
                return Loaded(fatal=Problem(message, node.start_mark.line + 1))
            nodes.append(node)
        for node in nodes:
            document = converter.document(node)
            if document is None:
                return Loaded(
                    fatal=Problem("YAML aliases expand to too many nodes", node.start_mark.line + 1)
                )
            documents.append(document)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = None if mark is None else mark.line + 1
        return Loaded(fatal=Problem(f"invalid YAML: {_describe(err)}", line))
    except yaml.reader.ReaderError as err:
        return Loaded(fatal=Problem(f"invalid YAML: {err.reason}", _line_at(text, err.position)))
    except yaml.YAMLError as err:
        return Loaded(fatal=Problem(f"invalid YAML: {err}", None))
    except UnicodeError as err:
        return Loaded(fatal=Problem(f"not valid UTF-8 text: {err}", None))
    except RecursionError:  # only the pure-Python loader recurses; libyaml stops at depth 1000 itself
        return Loaded(fatal=Problem("invalid YAML: nested too deeply", None))
    finally:
        loader.dispose()
    return Loaded(documents=tuple(documents))


def _object_count(node: yaml.Node) -> int:
    """1, or the number of ``items`` of a ``kind: *List`` mapping."""
    if not isinstance(node, yaml.MappingNode):
        return 1
    fields = {key.value: value for key, value in node.value if isinstance(key, yaml.ScalarNode)}
    kind, items = fields.get("kind"), fields.get("items")
    if isinstance(kind, yaml.ScalarNode) and str(kind.value).endswith("List"):
        if isinstance(items, yaml.SequenceNode):
            return len(items.value)
    return 1


def _describe(err: yaml.MarkedYAMLError) -> str:
    parts = [part for part in (err.context, err.problem) if part]
    return ", ".join(parts) if parts else "syntax error"


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, max(position, 0)) + 1


class _BudgetExceeded(Exception):
    pass


class _Converter:
    def __init__(self, loader: Any, budget: int, max_depth: int) -> None:
        self._loader = loader
        self._max_depth = max_depth
        self._budget = budget
        self._lines: dict[YamlPath, int] = {}
        self._block_starts: dict[YamlPath, int] = {}
        self._problems: list[Problem] = []

    def document(self, root: yaml.Node) -> Document | None:
        self._lines = {}
        self._block_starts = {}
        self._problems = []
        try:
            value = self._value(root, (), 0)
        except _BudgetExceeded:
            return None
        return Document(
            value=value,
            line=root.start_mark.line + 1,
            lines=self._lines,
            block_starts=self._block_starts,
            problems=tuple(self._problems),
        )

    def _value(self, node: yaml.Node, path: YamlPath, depth: int) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise _BudgetExceeded
        if depth > self._max_depth:
            self._problems.append(Problem(f"nested deeper than {self._max_depth} levels", _line(node), path))
            return None
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, path, depth)
        if isinstance(node, yaml.SequenceNode):
            out: list[Any] = []
            for index, item in enumerate(node.value):
                item_path = (*path, index)
                self._lines[item_path] = _line(item)
                out.append(self._value(item, item_path, depth + 1))
            return out
        return self._scalar(node, path)

    def _mapping(self, node: yaml.MappingNode, path: YamlPath, depth: int) -> dict[str, Any]:
        try:
            self._loader.flatten_mapping(node)  # resolves "<<" merge keys, as PyYAML's constructor does
        except yaml.YAMLError as err:
            self._problems.append(Problem(f"invalid merge key: {err}", _line(node), path))
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self._problems.append(Problem("mapping keys must be strings", _line(key_node), path))
                continue
            # Kubernetes turns YAML into JSON, where every key is a string: "80: x" has the key "80".
            key = str(key_node.value)
            key_path = (*path, key)
            if key in out:
                self._problems.append(
                    Problem(f'duplicate key "{key}"; the last one wins', _line(key_node), key_path, "warning")
                )
            self._lines[key_path] = _line(key_node)
            if isinstance(value_node, yaml.ScalarNode) and value_node.style in ("|", ">"):
                self._block_starts[key_path] = _line(value_node) + 1
            out[key] = self._value(value_node, key_path, depth + 1)
        return out

    def _scalar(self, node: yaml.Node, path: YamlPath) -> Any:
        tag = node.tag
        if tag in _TEXT_TAGS:
            text = str(node.value)
            return "".join(text.split()) if tag == _TAG + "binary" else text
        if tag in _CONSTRUCTED_TAGS:
            try:
                return self._loader.construct_object(node, deep=True)
            except (yaml.YAMLError, ValueError, OverflowError) as err:
                self._problems.append(Problem(f"invalid scalar: {err}", _line(node), path))
                return None
        self._problems.append(Problem(f"unsupported YAML tag {tag}", _line(node), path))
        return None


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1
