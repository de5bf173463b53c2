"""Embedded mode's durable state: mappings kept in memory and flushed to SQLite.

The scheduler writes its records on every event; writing each to disk at once
would cost a transaction per event. ``StateFile`` instead keeps every mapping
in memory, remembers which keys changed, and writes them in one transaction
on ``flush`` (the embedded scheduler flushes after every tick and on close).
A crash loses at most the changes since the last flush, which is what the
in-process bus loses anyway: it keeps no events across a restart either.
Distributed mode does not use this; there a faust Table's changelog holds the
state.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, MutableMapping
from pathlib import Path
from typing import Any

TABLES = ("cubes", "spaces", "journal")


class DirtyDict(MutableMapping[str, Any]):
    """A dict that remembers which keys were written or deleted since the last flush."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self.dirty: set[str] = set()

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value
        self.dirty.add(key)

    def __delitem__(self, key: str) -> None:
        del self._data[key]
        self.dirty.add(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)


class StateFile:
    """The scheduler's three mappings, loaded from and flushed to one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._lock = threading.Lock()
        self.maps: dict[str, DirtyDict] = {}
        for table in TABLES:
            self._db.execute(
                f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
            )
            rows = self._db.execute(f"SELECT key, value FROM {table}")
            self.maps[table] = DirtyDict({k: json.loads(v) for k, v in rows})
        self._db.commit()

    def __getitem__(self, table: str) -> DirtyDict:
        return self.maps[table]

    def flush(self) -> int:
        """Writes the changed keys of every mapping in one transaction; returns how many.

        The caller holds off writers meanwhile (the embedded scheduler's lock)."""
        with self._lock, self._db:
            written = 0
            for table, mapping in self.maps.items():
                for key in sorted(mapping.dirty):
                    value = mapping.get(key)
                    if value is None:
                        self._db.execute(f"DELETE FROM {table} WHERE key = ?", (key,))
                    else:
                        self._db.execute(
                            f"INSERT OR REPLACE INTO {table} (key, value) VALUES (?, ?)",
                            (key, json.dumps(value, separators=(",", ":"))),
                        )
                    written += 1
                mapping.dirty.clear()
        return written

    def close(self) -> None:
        self.flush()
        self._db.close()


def read_state(path: Path) -> dict[str, dict[str, Any]]:
    """The three mappings as last flushed, opened read-only: for a reader beside
    a running embedded scheduler (``memgrid scheduler explain``), which must
    neither create the file nor take a write lock on it. FileNotFoundError when
    there is no state file."""
    if not path.is_file():
        raise FileNotFoundError(path)
    db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        maps: dict[str, dict[str, Any]] = {}
        for table in TABLES:
            try:
                rows = db.execute(f"SELECT key, value FROM {table}").fetchall()
            except sqlite3.OperationalError:  # no such table: a file from an older version
                rows = []
            maps[table] = {k: json.loads(v) for k, v in rows}
        return maps
    finally:
        db.close()
