"""Organizations, users, memberships, sessions and API keys."""
