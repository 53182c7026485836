"""A policy set and its table tests as an author writes them: JSON or YAML text.

Both formats decode to the same document, which is validated and stored as it always is (the
API's JSON); the format is only how the editor reads and shows it. YAML is read as a JSON
document written another way: no anchors or aliases (a few of them expand to gigabytes), no
tags, and a date or time stays the string it was written as.

:func:`decoded` refuses text that does not parse with ``invalid_json`` or ``invalid_yaml``,
its ``errors`` carrying the ``line`` and ``column``; :func:`located` adds the line and column
of the value a validation problem's ``pointer`` names, so the author sees where it is.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, SequenceNode

from agentops_server.refusals import Invalid

__all__ = ["PolicyFormat", "decoded", "encoded", "format_of", "located"]

PolicyFormat = Literal["json", "yaml"]


def format_of(value: str | None) -> PolicyFormat:
    """The format a form names: ``yaml``, or ``json`` for anything else (JSON is the API's)."""
    return "yaml" if value == "yaml" else "json"


def decoded(text: str, format: PolicyFormat, what: str) -> Any:
    """The value ``text`` holds (``what`` names it in a refusal: ``document`` or ``tests``).

    Refusals: ``invalid_json`` or ``invalid_yaml``, with one error: the ``field`` (``what``),
    the ``line`` and ``column`` (from 1) and the ``message``.
    """
    if format == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise _unreadable("JSON", what, exc.msg, exc.lineno, exc.colno) from None
    try:
        return yaml.load(text, Loader=_JSONLikeLoader)  # a safe loader, stricter still
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        message = " ".join(part for part in (exc.context, exc.problem) if part) or str(exc)
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        raise _unreadable("YAML", what, message, line, column) from None
    except yaml.YAMLError as exc:
        raise _unreadable("YAML", what, str(exc), None, None) from None


def encoded(value: Any, format: PolicyFormat) -> str:
    """``value`` as the editor shows it: indented JSON, or block-style YAML in the document's
    own key order."""
    if format == "json":
        return json.dumps(value, indent=2, ensure_ascii=False)
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, default_flow_style=False)


def located(errors: list[dict[str, Any]], texts: dict[str, str]) -> list[dict[str, Any]]:
    """``errors`` of a validation refusal, each with the ``line`` and ``column`` in the
    author's text of the value its ``pointer`` names (``/document/rules/1/outcome``: the
    ``document`` text); an error whose value cannot be found keeps what it had."""
    trees: dict[str, Node | None] = {}
    found = []
    for error in errors:
        pointer = str(error.get("pointer") or "")
        text_name, _, path = pointer.lstrip("/").partition("/")
        if text_name not in texts or "line" in error:
            found.append(error)
            continue
        if text_name not in trees:
            trees[text_name] = _tree(texts[text_name])
        mark = _mark(trees[text_name], path)
        found.append(error | {"line": mark[0], "column": mark[1]} if mark else error)
    return found


# -- reading -----------------------------------------------------------------------------------


class _JSONLikeLoader(yaml.SafeLoader):
    """PyYAML's safe loader without anchors and aliases, and without timestamps: what it reads
    is what JSON can hold."""

    def compose_node(self, parent: Node | None, index: Any) -> Node | None:
        event = self.peek_event()  # type: ignore[no-untyped-call]
        if isinstance(event, AliasEvent) or getattr(event, "anchor", None) is not None:
            raise ComposerError(
                None, None, "anchors and aliases (&, *) are not allowed", event.start_mark
            )
        return super().compose_node(parent, index)

    def construct_undefined(self, node: Node) -> Any:
        raise ConstructorError(None, None, f"the tag {node.tag} is not allowed", node.start_mark)


_JSONLikeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
for _tag in (
    None,
    *(f"tag:yaml.org,2002:{name}" for name in ("binary", "timestamp", "omap", "pairs", "set")),
):
    _JSONLikeLoader.add_constructor(_tag, _JSONLikeLoader.construct_undefined)


def _unreadable(
    name: str, what: str, message: str, line: int | None, column: int | None
) -> Invalid:
    where = f" at line {line}, column {column}" if line else ""
    return Invalid(
        f"invalid_{name.lower()}",
        f"The {what} is not {name}: {message}{where}.",
        errors=[{"field": what, "line": line, "column": column, "message": message}],
    )


# -- locating ----------------------------------------------------------------------------------


def _tree(text: str) -> Node | None:
    """The text's node tree with the position of each value. JSON is read as YAML, which it
    nearly always is; a text that does not compose has no positions to give."""
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None


def _mark(node: Node | None, path: str) -> tuple[int, int] | None:
    """The line and column (from 1) of the value at the JSON pointer ``path`` below ``node``,
    or of the nearest value above it that exists (a missing field: the rule it is missing
    from)."""
    if node is None:
        return None
    for raw in path.split("/") if path else ():
        part = raw.replace("~1", "/").replace("~0", "~")
        child: Node | None = None
        if isinstance(node, MappingNode):
            child = next((value for key, value in node.value if key.value == part), None)
        elif isinstance(node, SequenceNode) and part.isdigit() and int(part) < len(node.value):
            child = node.value[int(part)]
        if child is None:
            break
        node = child
    return node.start_mark.line + 1, node.start_mark.column + 1
