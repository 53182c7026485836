"""The hub's security, as pure code with no HTTP and no database: passwords, tokens, API keys,
principals and the permission matrix. The HTTP adapters that use it live in
:mod:`agentops_server.auth`."""
