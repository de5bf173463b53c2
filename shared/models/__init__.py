"""Model identity and loading shared by inference and trainer (torch imported lazily)."""
