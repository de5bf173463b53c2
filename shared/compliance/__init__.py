"""Compliance helpers shared by the vault and the governance scanner (docs/compliance.md)."""
