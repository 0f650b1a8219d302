"""Signing people in: local accounts, OAuth/OpenID Connect, and the username rule at every door."""
