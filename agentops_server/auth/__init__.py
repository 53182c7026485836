"""Who is calling, over HTTP: the authentication middleware, the permission guards, OAuth/OIDC
sign-in and Supabase tokens (the pure security code they use is :mod:`agentops_server.security`)."""
