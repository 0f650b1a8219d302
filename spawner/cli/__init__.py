"""Operators' commands (make targets): settings, profiles, roster, usage, backup, upgrade, swarm."""
