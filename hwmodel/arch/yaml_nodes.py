"""Strict YAML node readers shared by the architecture and ERT loaders.

Every reader takes a :class:`Context` (the file name and the key-path -> node map),
the node and a ``where`` text naming the key; a wrong type, an unknown or duplicate
key is an :class:`~hwmodel.ArchitectureError` with ``FILE:LINE:`` and ``valid: ...``.
"""

from __future__ import annotations

import re

import yaml

from hwmodel.arch.architecture import ArchitectureError

__all__ = ["TAG", "NUMBER", "Context", "kind_of", "mapping", "scalar", "text", "number",
           "integer", "boolean", "choice"]

TAG = "tag:yaml.org,2002:"
"""Prefix of YAML's standard scalar tags (``TAG + "str"`` ...)."""

NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
"""Regular expression of a decimal number (PyYAML reads ``1e-3`` as text)."""


class Context:
    """Parsing context: the file name and a map from YAML key paths to nodes."""

    def __init__(self, file: str):
        self.file = file
        self.nodes: dict[tuple, yaml.Node] = {}
        self.key_of: dict[int, yaml.Node] = {}  # id(value node) -> its key node

    def err(self, node, msg: str, valid: str) -> ArchitectureError:
        line = node.start_mark.line + 1 if node is not None else "?"
        return ArchitectureError(f"{self.file}:{line}: {msg}; valid: {valid}", file=self.file)

    def node_for(self, path: tuple):
        """The node to blame for a problem at ``path``: the longest recorded prefix;
        for a block mapping / list value, its key (the line a reader looks at)."""
        for k in range(len(path), 0, -1):
            if path[:k] in self.nodes:
                node = self.nodes[path[:k]]
                if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style:
                    return self.key_of.get(id(node), node)
                return node
        return self.nodes.get(())


# ----------------------------------------------------------------------------------
# Node helpers
# ----------------------------------------------------------------------------------


def kind_of(node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    tag = node.tag.replace(TAG, "")
    return {"str": "text", "int": "an integer", "float": "a number", "bool": "a boolean",
            "null": "null (empty)"}.get(tag, tag) + f" ({node.value!r})"


def mapping(ctx: Context, node, where: str, keys, required=()) -> dict[str, yaml.Node]:
    """A mapping node as {key: value node}: rejects duplicate and unknown keys."""
    if not isinstance(node, yaml.MappingNode):
        raise ctx.err(node, f"{where} must be a mapping (key: value lines), got {kind_of(node)}",
                      f"a mapping with keys {list(keys)}")
    out: dict[str, yaml.Node] = {}
    first_line: dict[str, int] = {}
    for knode, vnode in node.value:
        if not isinstance(knode, yaml.ScalarNode):
            raise ctx.err(knode, f"{where}: a key must be a plain name", f"one of {list(keys)}")
        k = knode.value
        if k in out:
            raise ctx.err(knode, f"{where}: duplicate key {k!r} (first given on line {first_line[k]})",
                          "each key at most once")
        if k not in keys:
            raise ctx.err(knode, f"{where}: unknown key {k!r}", f"one of {list(keys)}")
        out[k] = vnode
        first_line[k] = knode.start_mark.line + 1
        ctx.key_of[id(vnode)] = knode
    missing = [k for k in required if k not in out]
    if missing:
        raise ctx.err(node, f"{where}: missing required key{'s' if len(missing) > 1 else ''} {missing}",
                      f"add {', '.join(repr(m) for m in missing)} (keys: {list(keys)})")
    return out


def scalar(ctx, node, where, expected):
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.err(node, f"{where} must be {expected}, got {kind_of(node)}", expected)
    return node


def text(ctx, node, where) -> str:
    node = scalar(ctx, node, where, "text")
    if node.tag != TAG + "str":
        raise ctx.err(node, f"{where} must be text, got {kind_of(node)}", "text (quote it if needed)")
    return node.value


def number(ctx, node, where, valid="a number") -> float:
    node = scalar(ctx, node, where, valid)
    if node.tag in (TAG + "int", TAG + "float"):
        return float(yaml.safe_load(node.value))
    if node.tag == TAG + "str" and re.fullmatch(NUMBER, node.value.strip()):
        return float(node.value)
    raise ctx.err(node, f"{where} must be a number, got {kind_of(node)}", valid)


def integer(ctx, node, where, valid="an integer") -> int:
    node = scalar(ctx, node, where, valid)
    if node.tag != TAG + "int":
        raise ctx.err(node, f"{where} must be an integer, got {kind_of(node)}", valid)
    return int(yaml.safe_load(node.value))


def boolean(ctx, node, where) -> bool:
    node = scalar(ctx, node, where, "true or false")
    if node.tag != TAG + "bool":
        raise ctx.err(node, f"{where} must be true or false, got {kind_of(node)}", "true or false")
    return node.value.lower() in ("true", "yes", "on", "y")


def choice(ctx, node, where, choices) -> str:
    node = scalar(ctx, node, where, f"one of {list(choices)}")
    v = node.value
    if node.tag != TAG + "str" or v not in choices:
        raise ctx.err(node, f"{where} is {v!r}", f"one of {list(choices)}")
    return v
