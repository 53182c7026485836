"""SDK options: one typed object, read once at ``init()``.

Every option has a documented default and, where it makes sense, an environment variable.
Precedence: an explicit argument to ``init()`` beats the environment, which beats the default.
A variable set to a blank value counts as unset. An invalid value raises
:class:`~agentops_sdk.errors.ConfigurationError` naming the option, or the variable it came from.

======================  ==============================  =====================================
option                  environment variable            default
======================  ==============================  =====================================
api_key                 AGENTOPS_API_KEY                None
hub_url                 AGENTOPS_HUB_URL                None: record to ``jsonl_path``
environment             AGENTOPS_ENVIRONMENT            ``"dev"`` (prod, staging, test, dev)
agent                   AGENTOPS_AGENT                  ``"default"``
enabled                 AGENTOPS_ENABLED                True
exporter                AGENTOPS_EXPORTER               ``"auto"``: hub if hub_url, else jsonl
jsonl_path              AGENTOPS_JSONL_PATH             ``.agentops/events.jsonl``
capture                 AGENTOPS_CAPTURE                True
max_capture_chars       AGENTOPS_MAX_CAPTURE_CHARS      4096
max_queue_events        AGENTOPS_MAX_QUEUE_EVENTS       10,000
max_queue_bytes         AGENTOPS_MAX_QUEUE_BYTES        16 MiB
batch_max_events        AGENTOPS_BATCH_MAX_EVENTS       100
batch_max_bytes         AGENTOPS_BATCH_MAX_BYTES        1 MiB
flush_interval          AGENTOPS_FLUSH_INTERVAL         1.0 s
shutdown_timeout        AGENTOPS_SHUTDOWN_TIMEOUT       3.0 s
export_timeout          AGENTOPS_EXPORT_TIMEOUT         10.0 s per HTTP request
max_backoff             AGENTOPS_MAX_BACKOFF            5.0 s between tries, hub down
spool                   AGENTOPS_SPOOL                  True
spool_dir               AGENTOPS_SPOOL_DIR              ``~/.cache/agentops/spool``
spool_max_bytes         AGENTOPS_SPOOL_MAX_BYTES        64 MiB
overflow                AGENTOPS_OVERFLOW               ``"spill"`` (or ``"drop"``)
otel                    AGENTOPS_OTEL                   None: on if a tracer provider is set
tags                    AGENTOPS_TAGS (comma-separated) ()
integrations            AGENTOPS_INTEGRATIONS (same)    None: every installed integration
disabled_integrations   AGENTOPS_DISABLED_INTEGRATIONS  ()
controls                AGENTOPS_CONTROLS               True: hub pause, kill and policies
controls_poll_interval  AGENTOPS_CONTROLS_POLL_INTERVAL 10.0 s, while the stream is down
max_staleness           AGENTOPS_MAX_STALENESS          60.0 s without news from the hub
on_stale                AGENTOPS_ON_STALE               ``"continue"`` (or ``pause``, ``stop``)
hub_wait                AGENTOPS_HUB_WAIT               5.0 s for the hub's first word (0: none)
budget_lease_ttl        AGENTOPS_BUDGET_LEASE_TTL       60.0 s a budget lease lasts unrenewed
budget_wait             AGENTOPS_BUDGET_WAIT            2.0 s a call waits for a budget lease
policy_file             AGENTOPS_POLICY_FILE            None: no local policy (docs/policies.md)
before_send             (code only)                     None
======================  ==============================  =====================================
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from agentops_sdk.errors import ConfigurationError

if TYPE_CHECKING:
    from agentops_sdk.exporters import Exporter

__all__ = [
    "ENVIRONMENTS",
    "BeforeSend",
    "Environment",
    "ExporterName",
    "OnStale",
    "Options",
    "Overflow",
]

Environment = Literal["prod", "staging", "test", "dev"]
ENVIRONMENTS: tuple[str, ...] = get_args(Environment)
ExporterName = Literal["auto", "hub", "jsonl", "console", "memory", "none"]
Overflow = Literal["spill", "drop"]
"""What a full in-memory queue does with the oldest events: ``spill`` them to the spool (the
agent's thread encodes and writes them, so nothing is lost while the spool has room), or ``drop``
the newest and count it (the agent never pays more than a counter)."""

OnStale = Literal["continue", "pause", "stop"]
"""What calls do while the SDK's copy of the hub's controls is older than ``max_staleness``:
``continue`` as the last controls say, ``pause`` (refused with ``AgentPaused``) or ``stop``
(refused with ``AgentKilled``) until the hub is heard again."""

BeforeSend = Callable[[dict[str, Any]], "dict[str, Any] | None"]
"""Called with each event (a wire dict) before it is exported, on the SDK's worker thread.

Return the event, edited or not, to send it; return ``None`` to drop it.
"""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """Everything ``init()`` accepts. See the module docstring for defaults and variables."""

    api_key: str | None = None
    hub_url: str | None = None
    environment: Environment = "dev"
    agent: str = "default"
    enabled: bool = True
    exporter: ExporterName | Exporter = "auto"
    jsonl_path: Path = Path(".agentops/events.jsonl")
    capture: bool = True
    max_capture_chars: int = 4096
    max_queue_events: int = 10_000
    max_queue_bytes: int = 16 * 1024 * 1024
    batch_max_events: int = 100
    batch_max_bytes: int = 1024 * 1024
    flush_interval: float = 1.0
    shutdown_timeout: float = 3.0
    export_timeout: float = 10.0
    max_backoff: float = 5.0
    spool: bool = True
    spool_dir: Path = dataclasses.field(
        default_factory=lambda: Path.home() / ".cache" / "agentops" / "spool"
    )
    spool_max_bytes: int = 64 * 1024 * 1024
    overflow: Overflow = "spill"
    otel: bool | None = None
    tags: tuple[str, ...] = ()
    integrations: tuple[str, ...] | None = None
    disabled_integrations: tuple[str, ...] = ()
    controls: bool = True
    controls_poll_interval: float = 10.0
    max_staleness: float = 60.0
    on_stale: OnStale = "continue"
    hub_wait: float = 5.0
    """How long ``init()`` waits for the hub's controls and policies before it returns, so that
    the first calls are governed by them, unless an earlier process saved a copy (a restart
    starts from it at once); 0 returns at once. Past it, a warning is logged and calls go ahead
    under whatever has arrived (and the local policy file) until the hub answers."""
    budget_lease_ttl: float = 60.0
    """Seconds a budget lease lasts unless renewed (it is renewed a third of the way through):
    what a crashed process holds back from the others at most that long (at most 3600)."""
    budget_wait: float = 2.0
    """Seconds at most an LLM call that does not fit the budget leases held waits for the hub to
    grant one (or more), before the budget's fail mode applies."""
    policy_file: Path | None = None
    """A policy set (JSON, or YAML with PyYAML) enforced with no hub; read at ``init()``."""
    before_send: BeforeSend | None = None

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            problem = _problem(field.name, getattr(self, field.name))
            if problem is not None:
                raise ConfigurationError(f"{field.name} {problem}")
        if self.exporter == "hub" and not self.hub_url:
            raise ConfigurationError("exporter 'hub' needs hub_url (or AGENTOPS_HUB_URL)")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Options:
        """Build options from ``AGENTOPS_*`` variables, then apply explicit ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            variable = f"AGENTOPS_{field.name.upper()}"
            raw = environ.get(variable, "")
            if field.name in _CODE_ONLY or not raw.strip():  # blank counts as unset
                continue
            value = _parse(field.name, variable, raw)
            problem = _problem(field.name, value)
            if problem is not None:
                raise ConfigurationError(f"{variable}={raw!r} is invalid: {field.name} {problem}")
            values[field.name] = value
        unknown = set(overrides) - {field.name for field in dataclasses.fields(cls)}
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(sorted(unknown))}")
        values.update({key: value for key, value in overrides.items() if value is not None})
        for name in _LISTS:
            if values.get(name) is not None:
                values[name] = tuple(values[name])
        for name in ("jsonl_path", "spool_dir", "policy_file"):
            if values.get(name) is not None:
                values[name] = Path(values[name]).expanduser()
        return cls(**values)

    @property
    def exporter_name(self) -> str:
        """The exporter that ``"auto"`` resolves to, or the given name."""
        if not isinstance(self.exporter, str):
            return "custom"
        if self.exporter == "auto":
            return "hub" if self.hub_url else "jsonl"
        return self.exporter


_LISTS = ("tags", "integrations", "disabled_integrations")
_CODE_ONLY = frozenset({"before_send"})
_POSITIVE = (
    "max_capture_chars",
    "max_queue_events",
    "max_queue_bytes",
    "batch_max_events",
    "batch_max_bytes",
    "flush_interval",
    "shutdown_timeout",
    "export_timeout",
    "max_backoff",
    "spool_max_bytes",
    "controls_poll_interval",
    "budget_wait",
    "max_staleness",
)
_BOOLS = {"enabled", "capture", "spool", "otel", "controls"}
_INTS = {
    "max_capture_chars",
    "max_queue_events",
    "max_queue_bytes",
    "batch_max_events",
    "batch_max_bytes",
    "spool_max_bytes",
}
_FLOATS = {
    "flush_interval",
    "shutdown_timeout",
    "export_timeout",
    "max_backoff",
    "controls_poll_interval",
    "max_staleness",
    "hub_wait",
    "budget_lease_ttl",
    "budget_wait",
}
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(name: str, variable: str, raw: str) -> Any:
    text = raw.strip()
    try:
        if name in _BOOLS:
            lowered = text.lower()
            if name == "otel" and lowered in {"", "auto"}:
                return None
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError("expected true or false")
        if name in _INTS:
            return int(text)
        if name in _FLOATS:
            return float(text)
    except ValueError as exc:
        raise ConfigurationError(f"{variable}={raw!r} is invalid: {exc}") from None
    if name in _LISTS:
        return tuple(item.strip() for item in text.split(",") if item.strip())
    return text


def _problem(name: str, value: Any) -> str | None:
    """What is wrong with ``value`` for the option ``name``; None when nothing is."""
    if name == "environment" and value not in ENVIRONMENTS:
        return f"must be one of {', '.join(ENVIRONMENTS)}, got {value!r}"
    if name == "overflow" and value not in get_args(Overflow):
        return f"must be one of {', '.join(get_args(Overflow))}, got {value!r}"
    if name == "on_stale" and value not in get_args(OnStale):
        return f"must be one of {', '.join(get_args(OnStale))}, got {value!r}"
    if name == "exporter" and isinstance(value, str) and value not in get_args(ExporterName):
        return f"must be one of {', '.join(get_args(ExporterName))} or an Exporter, got {value!r}"
    if name == "hub_url" and value and not value.startswith(("http://", "https://")):
        return f"must be an http(s) URL, got {value!r}"
    if name == "hub_wait" and not 0 <= value < math.inf:
        return f"must be a number of seconds, 0 or more, got {value!r}"
    if name == "budget_lease_ttl" and not 0 < value <= 3600:
        return f"must be a number of seconds above 0, at most 3600, got {value!r}"
    if name in _POSITIVE and not 0 < value < math.inf:  # NaN fails both comparisons
        return f"must be a positive number, got {value!r}"
    if name == "before_send" and value is not None and not callable(value):
        return "must be callable"
    return None
