"""Identity and access: accounts, sessions and second factors, external identities, orgs, their
members, teams, invitations and API keys."""
