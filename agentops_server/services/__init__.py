"""Domain logic of the hub: no HTTP here, only sessions and schemas. One subpackage per domain
(``identity``, ``telemetry``; next ``governance``, ``costs``, ``analytics``, ``notifications``),
and what every domain shares beside them (``audit``, ``pagination``, ``row_claims``)."""
