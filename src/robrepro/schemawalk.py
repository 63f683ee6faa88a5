"""One walk of a configuration beside its JSON schema, shared by the configuration's checks and the report.

It follows ``$ref`` (a reference's siblings, a description or a default, refine the definition it
points to), ``properties``, ``additionalProperties`` and ``items``, and calls ``visit`` on every
node it reaches; the visitor decides whether to go below it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# visit(schema as written, schema with its $ref resolved, node, dotted path) -> whether to walk below the node
Visitor = Callable[[Any, Any, Any, str], bool]


def resolve(root: dict[str, Any], sch: Any) -> Any:
    while isinstance(sch, dict) and "$ref" in sch:
        sch = {**root["$defs"][sch["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in sch.items() if k != "$ref"}}
    return sch


def walk(root: dict[str, Any], sch: Any, node: Any, visit: Visitor, path: str = "") -> None:
    """Visit ``node`` (validated by ``sch``, a part of ``root``) and, where ``visit`` says so, every node below it."""
    full = resolve(root, sch)
    if not visit(sch, full, node, path) or not isinstance(full, dict):
        return
    if isinstance(node, dict):
        props, extra = full.get("properties", {}), full.get("additionalProperties")
        for k, v in node.items():
            sub = props.get(k, extra if isinstance(extra, dict) else None)
            if sub is not None:
                walk(root, sub, v, visit, f"{path}.{k}" if path else str(k))
    elif isinstance(node, list) and isinstance(full.get("items"), dict):
        for i, v in enumerate(node):
            walk(root, full["items"], v, visit, f"{path}.{i}")
