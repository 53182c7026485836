"""Options: read once, from arguments and ``AGENTOPS_*`` variables, and refused when invalid."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import agentops_sdk as agentops
from agentops_sdk import client as _client
from agentops_sdk.exporters.jsonl import JsonlExporter

ENVIRONMENT_VARIABLES = [
    ("AGENTOPS_API_KEY", "ak_123", "api_key", "ak_123"),
    ("AGENTOPS_HUB_URL", "https://hub.example.com", "hub_url", "https://hub.example.com"),
    ("AGENTOPS_ENVIRONMENT", "prod", "environment", "prod"),
    ("AGENTOPS_AGENT", "support-bot", "agent", "support-bot"),
    ("AGENTOPS_ENABLED", "false", "enabled", False),
    ("AGENTOPS_EXPORTER", "console", "exporter", "console"),
    ("AGENTOPS_JSONL_PATH", "~/runs.jsonl", "jsonl_path", Path.home() / "runs.jsonl"),
    ("AGENTOPS_CAPTURE", "off", "capture", False),
    ("AGENTOPS_MAX_CAPTURE_CHARS", "100", "max_capture_chars", 100),
    ("AGENTOPS_MAX_QUEUE_EVENTS", "5", "max_queue_events", 5),
    ("AGENTOPS_MAX_QUEUE_BYTES", "2048", "max_queue_bytes", 2048),
    ("AGENTOPS_BATCH_MAX_EVENTS", " 7 ", "batch_max_events", 7),
    ("AGENTOPS_BATCH_MAX_BYTES", "4096", "batch_max_bytes", 4096),
    ("AGENTOPS_FLUSH_INTERVAL", "0.25", "flush_interval", 0.25),
    ("AGENTOPS_SHUTDOWN_TIMEOUT", "5", "shutdown_timeout", 5.0),
    ("AGENTOPS_EXPORT_TIMEOUT", "2.5", "export_timeout", 2.5),
    ("AGENTOPS_MAX_BACKOFF", "60", "max_backoff", 60.0),
    ("AGENTOPS_SPOOL", "no", "spool", False),
    ("AGENTOPS_SPOOL_DIR", "/var/spool/agentops", "spool_dir", Path("/var/spool/agentops")),
    ("AGENTOPS_SPOOL_MAX_BYTES", "1000", "spool_max_bytes", 1000),
    ("AGENTOPS_OVERFLOW", "drop", "overflow", "drop"),
    ("AGENTOPS_OTEL", "true", "otel", True),
    ("AGENTOPS_TAGS", "team-a, eu,,beta ", "tags", ("team-a", "eu", "beta")),
    ("AGENTOPS_INTEGRATIONS", "openai, langchain", "integrations", ("openai", "langchain")),
    ("AGENTOPS_DISABLED_INTEGRATIONS", "langchain", "disabled_integrations", ("langchain",)),
    ("AGENTOPS_CONTROLS", "false", "controls", False),
    ("AGENTOPS_CONTROLS_POLL_INTERVAL", "2.5", "controls_poll_interval", 2.5),
    ("AGENTOPS_MAX_STALENESS", "300", "max_staleness", 300.0),
    ("AGENTOPS_ON_STALE", "pause", "on_stale", "pause"),
    ("AGENTOPS_HUB_WAIT", "0", "hub_wait", 0.0),
    ("AGENTOPS_BUDGET_LEASE_TTL", "30", "budget_lease_ttl", 30.0),
    ("AGENTOPS_BUDGET_WAIT", "0.5", "budget_wait", 0.5),
    ("AGENTOPS_POLICY_FILE", "~/policy.yaml", "policy_file", Path.home() / "policy.yaml"),
]


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``AGENTOPS_*`` variable from the machine running the tests."""
    for variable in [name for name in os.environ if name.startswith("AGENTOPS_")]:
        monkeypatch.delenv(variable)


# -- reading the environment -----------------------------------------------------------------


@pytest.mark.parametrize(("variable", "raw", "option", "expected"), ENVIRONMENT_VARIABLES)
def test_from_env_reads_each_variable(variable: str, raw: str, option: str, expected: Any) -> None:
    options = agentops.Options.from_env({variable: raw})

    assert getattr(options, option) == expected
    untouched = {f.name for f in dataclasses.fields(agentops.Options)} - {option}
    defaults = agentops.Options()
    assert {name: getattr(options, name) for name in untouched} == {
        name: getattr(defaults, name) for name in untouched
    }


def test_every_option_but_before_send_has_a_variable_tested_above() -> None:
    tested = {option for _, _, option, _ in ENVIRONMENT_VARIABLES}

    assert tested == {f.name for f in dataclasses.fields(agentops.Options)} - {"before_send"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("TRUE", True), ("yes", True), ("on", True), ("0", False), ("Off", False)],
)
def test_boolean_variables_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    assert agentops.Options.from_env({"AGENTOPS_CAPTURE": raw}).capture is expected


@pytest.mark.parametrize("raw", ["auto", ""])
def test_otel_auto_means_on_when_a_tracer_provider_is_set(raw: str) -> None:
    assert agentops.Options.from_env({"AGENTOPS_OTEL": raw}).otel is None


@pytest.mark.parametrize(
    "variable", ["AGENTOPS_AGENT", "AGENTOPS_ENABLED", "AGENTOPS_JSONL_PATH", "AGENTOPS_EXPORTER"]
)
def test_a_blank_variable_counts_as_unset(variable: str) -> None:
    assert agentops.Options.from_env({variable: "  "}) == agentops.Options.from_env({})


def test_before_send_is_never_read_from_the_environment() -> None:
    options = agentops.Options.from_env({"AGENTOPS_BEFORE_SEND": "print"})

    assert options.before_send is None


def test_explicit_overrides_win_over_the_environment() -> None:
    environ = {"AGENTOPS_AGENT": "from-env", "AGENTOPS_MAX_CAPTURE_CHARS": "10"}

    options = agentops.Options.from_env(
        environ, agent="explicit", tags=["x", "y"], jsonl_path="~/here.jsonl", hub_url=None
    )

    assert options.agent == "explicit"
    assert options.max_capture_chars == 10
    assert options.tags == ("x", "y")
    assert options.jsonl_path == Path.home() / "here.jsonl"
    assert options.hub_url is None


def test_from_env_reads_os_environ_when_given_no_mapping(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTOPS_AGENT", "from-os-environ")

    assert agentops.Options.from_env().agent == "from-os-environ"


# -- refusing invalid values -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("AGENTOPS_MAX_CAPTURE_CHARS", "lots"),
        ("AGENTOPS_MAX_CAPTURE_CHARS", "0"),
        ("AGENTOPS_MAX_QUEUE_EVENTS", "-5"),
        ("AGENTOPS_SPOOL_MAX_BYTES", "1.5"),
        ("AGENTOPS_FLUSH_INTERVAL", "soon"),
        ("AGENTOPS_FLUSH_INTERVAL", "0"),
        ("AGENTOPS_SHUTDOWN_TIMEOUT", "nan"),
        ("AGENTOPS_MAX_BACKOFF", "inf"),
        ("AGENTOPS_ENABLED", "maybe"),
        ("AGENTOPS_ENVIRONMENT", "production"),
        ("AGENTOPS_EXPORTER", "kafka"),
        ("AGENTOPS_HUB_URL", "hub.example.com"),
        ("AGENTOPS_CONTROLS", "sometimes"),
        ("AGENTOPS_CONTROLS_POLL_INTERVAL", "0"),
        ("AGENTOPS_MAX_STALENESS", "-60"),
        ("AGENTOPS_ON_STALE", "panic"),
        ("AGENTOPS_HUB_WAIT", "-1"),
    ],
)
def test_invalid_variable_raises_configuration_error_naming_it(variable: str, raw: str) -> None:
    with pytest.raises(agentops.ConfigurationError, match=variable) as raised:
        agentops.Options.from_env({variable: raw})

    assert repr(raw) in str(raised.value)


def test_configuration_error_is_also_a_value_error() -> None:
    with pytest.raises(ValueError, match="AGENTOPS_CAPTURE"):
        agentops.Options.from_env({"AGENTOPS_CAPTURE": "sometimes"})


@pytest.mark.parametrize("environment", ["production", "PROD", ""])
def test_invalid_environment_name_is_refused(environment: str) -> None:
    with pytest.raises(agentops.ConfigurationError, match="prod, staging, test, dev"):
        agentops.Options(environment=environment)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_capture_chars", 0),
        ("flush_interval", -1.0),
        ("shutdown_timeout", float("inf")),
        ("hub_url", "localhost:8000"),
        ("exporter", "kafka"),
        ("before_send", "not callable"),
        ("controls_poll_interval", 0.0),
        ("max_staleness", float("nan")),
        ("on_stale", "ignore"),
        ("hub_wait", float("nan")),
        ("budget_lease_ttl", 7200.0),
        ("budget_lease_ttl", 0.0),
        ("budget_wait", -1.0),
    ],
)
def test_invalid_explicit_option_raises_configuration_error_naming_it(
    option: str, value: Any
) -> None:
    with pytest.raises(agentops.ConfigurationError, match=option):
        agentops.Options(**{option: value})


def test_unknown_option_is_refused_by_name() -> None:
    with pytest.raises(agentops.ConfigurationError, match=r"unknown option.*hub_ur"):
        agentops.Options.from_env({}, hub_ur="https://typo.example.com")


def test_init_refuses_invalid_options_and_keeps_no_client(
    clean_environment: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_client, "current", None)

    with pytest.raises(agentops.ConfigurationError, match="environment"):
        agentops.init(environment="qa")

    assert agentops.get_client() is None


# -- the exporter ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "exporter"),
    [
        ({}, "jsonl"),
        ({"hub_url": "http://localhost:8000"}, "hub"),
        ({"hub_url": "http://localhost:8000", "exporter": "console"}, "console"),
        ({"exporter": "memory"}, "memory"),
    ],
)
def test_auto_exporter_is_the_hub_when_a_url_is_set_else_jsonl(
    settings: dict[str, Any], exporter: str
) -> None:
    assert agentops.Options(**settings).exporter_name == exporter


def test_hub_exporter_without_a_hub_url_is_refused() -> None:
    with pytest.raises(agentops.ConfigurationError, match="AGENTOPS_HUB_URL"):
        agentops.Options(exporter="hub")


@pytest.fixture
def sdk_started_by_test(clean_environment: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No client before the test; whatever ``init()`` the test calls is shut down after it."""
    monkeypatch.setattr(_client, "current", None)
    monkeypatch.setattr(_client, "_jsonl_notice_given", False)
    yield
    agentops.shutdown(5)


@pytest.mark.usefixtures("sdk_started_by_test")
def test_init_without_hub_url_records_to_jsonl_and_warns_once_naming_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "runs" / "events.jsonl"

    @agentops.tool
    def search(query: str) -> str:
        return query

    with caplog.at_level(logging.WARNING, logger="agentops_sdk"):
        agentops.init(jsonl_path=path, spool=False, flush_interval=0.05)
        client = agentops.init(jsonl_path=path, spool=False, flush_interval=0.05)
        search("cats")
        assert agentops.flush(5).completed

    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "AGENTOPS_HUB_URL" in warnings[0]
    assert str(path) in warnings[0]
    assert client is not None
    assert isinstance(client.exporter, JsonlExporter)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["name"] for e in events if e["type"] == "span"] == ["search"]


@pytest.mark.usefixtures("sdk_started_by_test")
def test_init_with_an_explicit_jsonl_exporter_gives_no_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="agentops_sdk"):
        agentops.init(exporter="jsonl", jsonl_path=tmp_path / "e.jsonl", spool=False)

    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.usefixtures("sdk_started_by_test")
def test_init_disabled_by_environment_returns_none(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENTOPS_ENABLED", "false")

    assert agentops.init() is None
    assert agentops.get_client() is None
