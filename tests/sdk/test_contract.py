"""The contract (wire schema, ids, errors, decisions, the policy engine) imports alone: the hub
loads no SDK runtime.

Each import runs in a fresh interpreter, where ``os.register_at_fork`` is wrapped to note every
hook the SDK registers (and still register it), so what an import does to a process is seen whole.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

import agentops_sdk

CONTRACT = {
    "agentops_sdk.contract",
    "agentops_sdk.contract.arguments",
    "agentops_sdk.contract.decisions",
    "agentops_sdk.contract.errors",
    "agentops_sdk.contract.ids",
    "agentops_sdk.contract.patterns",
    "agentops_sdk.contract.policy",
    "agentops_sdk.contract.policy_engine",
    "agentops_sdk.contract.schema",
}
RUNTIME = {
    "agentops_sdk.buffer",
    "agentops_sdk.client",
    "agentops_sdk.decorators",
    "agentops_sdk.enforcement",
    "agentops_sdk.exporters",
    "agentops_sdk.guards",
    "agentops_sdk.ids",
    "agentops_sdk.integrations",
    "agentops_sdk.spans",
    "agentops_sdk.spool",
    "agentops_sdk.worker",
}

PROBE = """
import json, os, sys, threading

hooks = []
register = os.register_at_fork

def noting(**callbacks):
    hooks.extend(
        f"{{f.__module__}}.{{f.__qualname__}}"
        for f in callbacks.values()
        if f.__module__.startswith("agentops_sdk")  # not the standard library's (random's)
    )
    register(**callbacks)

os.register_at_fork = noting
{code}
print(json.dumps({{
    "loaded": sorted(m for m in sys.modules if m.partition(".")[0] == "agentops_sdk"),
    "fork_hooks": hooks,
    "threads": threading.active_count(),
}}))
"""


def probe(code: str) -> dict[str, Any]:
    """Run ``code`` in a fresh interpreter; what it loaded, the fork hooks, the threads alive."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(code=code)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize(
    "module",
    [
        "agentops_sdk.schema",
        "agentops_sdk.contract",
        "agentops_sdk.contract.schema",
        "agentops_sdk.contract.errors",
        "agentops_sdk.errors",
        "agentops_sdk.contract.policy_engine",
    ],
)
def test_importing_the_contract_loads_no_sdk_runtime_and_registers_no_fork_hook(
    module: str,
) -> None:
    seen = probe(f"import {module}")

    loaded = set(seen["loaded"])
    assert loaded & RUNTIME == set()
    # The package itself, its version, and (see agentops_sdk/__init__.py) its stats types.
    assert loaded - CONTRACT - {module} <= {
        "agentops_sdk",
        "agentops_sdk._version",
        "agentops_sdk.stats",
    }
    assert seen["fork_hooks"] == []
    assert seen["threads"] == 1


def test_importing_the_package_loads_no_runtime_until_a_public_name_is_used() -> None:
    seen = probe("import agentops_sdk")

    assert set(seen["loaded"]) == {"agentops_sdk", "agentops_sdk._version", "agentops_sdk.stats"}
    assert seen["fork_hooks"] == []


def test_init_registers_one_fork_hook_however_often_it_runs() -> None:
    seen = probe(
        "import agentops_sdk as agentops\n"
        "agentops.init(exporter='memory', spool=False)\n"
        "agentops.init(exporter='memory', spool=False)\n"
        "agentops.shutdown()\n"
    )

    assert seen["fork_hooks"].count("agentops_sdk.client._after_fork_in_child") == 1


def test_every_public_name_resolves_from_the_lazy_package() -> None:
    seen = probe(
        "import agentops_sdk\n"
        "missing = [n for n in agentops_sdk.__all__ if getattr(agentops_sdk, n, None) is None]\n"
        "assert not missing, missing\n"
        "from agentops_sdk import init, tool, PolicyViolation, current_span\n"
        "assert PolicyViolation.__name__ == 'PolicyViolation'\n"
        "assert set(agentops_sdk.__all__) <= set(dir(agentops_sdk))\n"
    )

    assert "agentops_sdk.decorators" in seen["loaded"]


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        agentops_sdk.nothing_here  # noqa: B018


def test_errors_keep_their_public_name_wherever_they_are_defined() -> None:
    from agentops_sdk.contract import errors as contract_errors
    from agentops_sdk.errors import EnforcementUnavailable, PolicyViolation

    assert contract_errors.PolicyViolation is PolicyViolation is agentops_sdk.PolicyViolation
    assert f"{PolicyViolation.__module__}.{PolicyViolation.__qualname__}" == (
        "agentops_sdk.errors.PolicyViolation"
    )
    assert issubclass(EnforcementUnavailable, agentops_sdk.EnforcementError)


def test_the_schema_version_is_the_contracts_and_the_spans_write_it() -> None:
    from agentops_sdk.contract import SCHEMA_VERSION
    from agentops_sdk.schema import SCHEMA_VERSION as public
    from agentops_sdk.spans import SCHEMA_VERSION as written

    assert SCHEMA_VERSION == public == written == 1
