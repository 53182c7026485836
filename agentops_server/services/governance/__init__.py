"""Governing agents: the agent registry, emergency controls and the org's policies.

- :mod:`.agents`: the registry; :mod:`.controls`, :mod:`.control_sets`, :mod:`.versions`:
  controls, the set SDKs read, the org's control version;
- :mod:`.policies`: immutable versions, activation, rollback, the effective set (and the
  stream topic's snapshot and version);
- :mod:`.policy_checks`: validation by the SDK's models, table tests, a team lead's reach;
- :mod:`.policy_diff`: what changed between two documents, rule by rule;
- :mod:`.policy_dry_run`: a candidate replayed against the org's recorded calls.

See docs/controls.md and docs/policies.md.
"""
