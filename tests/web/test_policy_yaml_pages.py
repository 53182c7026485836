"""The policy editor in YAML: a set written in YAML is validated and saved as the same version
its JSON would be; YAML that does not parse, or a set that is invalid, is refused with the
line it is at; a version is shown back in YAML when asked."""

from __future__ import annotations

import html
import re
from typing import Any

from litestar import Litestar
from litestar.testing import TestClient

from agentops_server import Settings
from agentops_server.security.permissions import Role
from tests.server.principals import People
from tests.web.people import signed_in

POLICY_YAML = """\
name: guard
rules:
  - id: no-deletes
    match: {kind: tool, name: "delete_*"}
    outcome: deny
    message: Deleting is not allowed for agents.
  - id: no-gpt4
    match:
      kind: llm
      model: gpt-4
    outcome: deny
"""
TESTS_YAML = """\
- name: deletes are refused
  given: {kind: tool, name: delete_user}
  expect: {outcome: deny, rule: no-deletes}
- name: search runs
  given: {kind: tool, name: search}
  expect: allow
"""
POLICY_JSON = """{
  "name": "guard",
  "rules": [
    {"id": "no-deletes", "match": {"kind": "tool", "name": "delete_*"}, "outcome": "deny",
     "message": "Deleting is not allowed for agents."},
    {"id": "no-gpt4", "match": {"kind": "llm", "model": "gpt-4"}, "outcome": "deny"}
  ]
}"""
TESTS_JSON = """[
  {"name": "deletes are refused", "given": {"kind": "tool", "name": "delete_user"},
   "expect": {"outcome": "deny", "rule": "no-deletes"}},
  {"name": "search runs", "given": {"kind": "tool", "name": "search"}, "expect": "allow"}
]"""


def editor_form(
    token: str, document: str, tests: str, format: str, **fields: str
) -> dict[str, str]:
    return {
        "_csrf_token": token,
        "format": format,
        "document": document,
        "tests": tests,
    } | fields


def saved_version(client: TestClient[Litestar], headers: dict[str, str], form: Any) -> Any:
    """Save ``form`` from the editor; the version as the API serves it."""
    saved = client.post("/policies/versions", data=form, follow_redirects=False)
    assert saved.status_code == 303, saved.text
    version_id = saved.headers["location"].split("/")[-1].split("?")[0]
    answer = client.get(f"/api/v1/policies/versions/{version_id}", headers=headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


def errors_of(page: str) -> list[str]:
    """The editor's problems, as text."""
    return [
        html.unescape(re.sub(r"<[^>]+>", "", item))
        for item in re.findall(r"<li data-field=[^>]*>(.*?)</li>", page)
    ]


def test_a_policy_written_in_yaml_is_saved_as_the_same_version_its_json_saves(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    owner = people.add(Role.OWNER)
    token = signed_in(browser_client, settings, people, Role.OWNER)

    from_yaml = saved_version(
        browser_client, owner.headers, editor_form(token, POLICY_YAML, TESTS_YAML, "yaml")
    )
    from_json = saved_version(
        browser_client, owner.headers, editor_form(token, POLICY_JSON, TESTS_JSON, "json")
    )

    assert (from_yaml["number"], from_json["number"]) == (1, 2)
    assert {**from_yaml["document"], "version": 0} == {**from_json["document"], "version": 0}
    assert from_yaml["table_tests"] == from_json["table_tests"]
    assert [rule["id"] for rule in from_yaml["document"]["rules"]] == ["no-deletes", "no-gpt4"]


def test_yaml_is_validated_and_its_table_tests_run_as_json_are(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    failing = (
        TESTS_YAML + "- name: deletes run\n  given: {kind: tool, name: delete_x}\n  expect: allow\n"
    )

    passing = browser_client.post(
        "/policies/validate", data=editor_form(token, POLICY_YAML, TESTS_YAML, "yaml")
    )
    failed = browser_client.post(
        "/policies/validate", data=editor_form(token, POLICY_YAML, failing, "yaml")
    )

    assert passing.status_code == 200, passing.text
    assert "2 of 2 pass" in passing.text
    assert '<option value="yaml" selected>' in passing.text
    assert "Policy set (<span data-format-name>YAML</span>)" in passing.text
    assert failed.status_code == 400
    assert 'data-code="policy_tests_failed"' in failed.text
    assert 'data-test="deletes run" data-passed="no"' in failed.text


def test_yaml_that_does_not_parse_is_refused_with_the_line_it_is_at(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    broken = "name: guard\nrules:\n  - id: no-deletes\n    outcome: deny\n   match: {kind: tool\n"

    refused = browser_client.post(
        "/policies/versions", data=editor_form(token, broken, TESTS_YAML, "yaml")
    )

    assert refused.status_code == 400
    assert 'data-code="invalid_yaml"' in refused.text
    [problem] = errors_of(refused.text)
    assert problem.startswith("line 5, column 4 of the document: ")
    assert html.escape(broken, quote=False) in refused.text  # the author's text is kept
    assert "data-version=" not in browser_client.get("/policies").text


def test_an_invalid_field_in_yaml_is_refused_at_its_line(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    invalid = POLICY_YAML.replace("outcome: deny\n", "outcome: explode\n").replace(
        "outcome: explode\n", "outcome: deny\n", 1
    )
    wrong_test = TESTS_YAML.replace("expect: allow", "expect: maybe")

    refused = browser_client.post(
        "/policies/validate", data=editor_form(token, invalid, TESTS_YAML, "yaml")
    )
    refused_test = browser_client.post(
        "/policies/validate", data=editor_form(token, POLICY_YAML, wrong_test, "yaml")
    )

    assert refused.status_code == 400
    assert 'data-code="invalid_policy"' in refused.text
    assert 'data-field="/rules/1/outcome" data-line="11"' in refused.text
    assert errors_of(refused.text)[0].startswith(
        "/document/rules/1/outcome (rule no-gpt4, #1) at line 11, column 14: "
    )
    assert refused_test.status_code == 400
    assert 'data-code="invalid_policy_tests"' in refused_test.text
    assert any(" at line 6, column " in problem for problem in errors_of(refused_test.text))


def test_yaml_anchors_and_tags_are_refused(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    aliased = "name: &n guard\ndescription: *n\nrules: []\n"
    tagged = "name: !!python/name:os.system guard\nrules: []\n"

    answers = [
        browser_client.post("/policies/validate", data=editor_form(token, text, "", "yaml"))
        for text in (aliased, tagged)
    ]

    assert [answer.status_code for answer in answers] == [400, 400]
    assert all('data-code="invalid_yaml"' in answer.text for answer in answers)
    assert "anchors and aliases (&amp;, *) are not allowed" in answers[0].text
    assert errors_of(answers[0].text)[0].startswith("line 1, column 7 of the document")
    assert "is not allowed" in errors_of(answers[1].text)[0]


def test_the_editor_converts_between_json_and_yaml_and_a_version_shows_as_yaml(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    owner = people.add(Role.OWNER)
    token = signed_in(browser_client, settings, people, Role.OWNER)
    saved = saved_version(
        browser_client, owner.headers, editor_form(token, POLICY_JSON, TESTS_JSON, "json")
    )

    to_yaml = browser_client.post(
        "/policies/convert", data=editor_form(token, POLICY_JSON, TESTS_JSON, "json", to="yaml")
    )
    shown = browser_client.get(f"/policies/versions/{saved['id']}?format=yaml")
    editor = browser_client.get(f"/policies?from={saved['id']}&format=yaml")

    assert to_yaml.status_code == 200, to_yaml.text
    assert '<option value="yaml" selected>' in to_yaml.text
    assert "- id: no-deletes\n  match:\n    kind: tool" in html.unescape(to_yaml.text)
    assert "Convert to JSON" in to_yaml.text
    assert shown.status_code == 200
    assert 'data-shown="yaml"' in shown.text
    assert "- id: no-gpt4\n  match:\n    kind: llm" in html.unescape(shown.text)
    assert "name: guard" in html.unescape(editor.text)
    assert '<option value="yaml" selected>' in editor.text


def test_an_invalid_field_in_json_is_refused_at_its_line_too(
    browser_client: TestClient[Litestar], settings: Settings, people: People
) -> None:
    token = signed_in(browser_client, settings, people, Role.OWNER)
    invalid = POLICY_JSON.replace(
        '"model": "gpt-4"}, "outcome": "deny"', '"model": 4}, "outcome": "deny"'
    )
    column = invalid.splitlines()[5].index("4}") + 1

    refused = browser_client.post(
        "/policies/validate", data=editor_form(token, invalid, TESTS_JSON, "json")
    )

    assert refused.status_code == 400
    assert 'data-code="invalid_policy"' in refused.text
    assert (
        f"/document/rules/1/match/model (rule no-gpt4, #1) at line 6, column {column}: "
        in (errors_of(refused.text)[0])
    )
