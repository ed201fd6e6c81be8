"""Audited job operations: create, update, delete, run and abort, each recorded before and after its call."""
