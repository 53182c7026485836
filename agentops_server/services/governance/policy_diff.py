"""What changed between two policy documents, rule by rule: for the audit log and the API.

Rules are matched by id. A diff says which rules were added and removed (whole), which changed
(before and after), whether the order of the rules both keep changed (it decides between equal
outcomes), and which settings of the set itself changed (``name``, ``description``,
``shadow``). The ``version`` stamp is left out: it differs between any two versions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["diff_documents"]

_UNSTAMPED = frozenset({"version", "rules"})


def diff_documents(
    before: Mapping[str, Any] | None, after: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The changes from ``before`` to ``after`` (None: no document, every rule added or
    removed), as JSON: ``{"added": [rule...], "removed": [rule...], "changed": [{"id",
    "before", "after"}...], "reordered": bool, "settings": {name: {"before", "after"}}}``."""
    old_rules = _rules(before)
    new_rules = _rules(after)
    kept = [rule_id for rule_id in new_rules if rule_id in old_rules]
    settings = {
        name: {"before": (before or {}).get(name), "after": (after or {}).get(name)}
        for name in sorted({*(before or {}), *(after or {})} - _UNSTAMPED)
        if (before or {}).get(name) != (after or {}).get(name)
    }
    return {
        "added": [rule for rule_id, rule in new_rules.items() if rule_id not in old_rules],
        "removed": [rule for rule_id, rule in old_rules.items() if rule_id not in new_rules],
        "changed": [
            {"id": rule_id, "before": old_rules[rule_id], "after": new_rules[rule_id]}
            for rule_id in kept
            if old_rules[rule_id] != new_rules[rule_id]
        ],
        "reordered": kept != [rule_id for rule_id in old_rules if rule_id in new_rules],
        "settings": settings,
    }


def _rules(document: Mapping[str, Any] | None) -> dict[str, Any]:
    """The document's rules by id, in order (the hub stores validated documents only)."""
    rules = (document or {}).get("rules") or []
    return {str(rule["id"]): rule for rule in rules}
