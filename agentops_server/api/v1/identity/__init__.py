"""The identity routes: sign-up and sign-in, sessions, passwords, second factors, OAuth, orgs,
members, teams, invitations, API keys."""
