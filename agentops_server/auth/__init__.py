"""Who is calling: API keys, the authentication middleware, scope guards."""
