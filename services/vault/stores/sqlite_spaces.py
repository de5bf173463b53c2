"""What the vector and keyword caches share: one in-memory space per (tenant,
namespace), loaded lazily, kept in step with commits.

Only namespaces already loaded are touched by ``apply``; the others read the
committed rows from SQLite when first searched. A cube id belongs to one tenant
and at most one row per namespace (the store refuses versions of an id across
tenants), so removal by id is exact.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Generic, Protocol, TypeVar


class _Row(Protocol):
    @property
    def tenant(self) -> str: ...
    @property
    def namespace(self) -> str: ...


RowT = TypeVar("RowT", bound=_Row)
RowT_contra = TypeVar("RowT_contra", contravariant=True)


class _Space(Protocol[RowT_contra]):
    def append(self, rows: Sequence[RowT_contra]) -> None: ...
    def discard(self, cube_ids: Iterable[str]) -> None: ...
    def maybe_compact(self) -> None: ...


SpaceT = TypeVar("SpaceT", bound=_Space)


class SpaceCache(Generic[SpaceT, RowT]):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spaces: dict[tuple[str, str], SpaceT] = {}

    def is_loaded(self, tenant: str, namespace: str) -> bool:
        with self._lock:
            return (tenant, namespace) in self._spaces

    def install(self, tenant: str, namespace: str, space: SpaceT) -> None:
        with self._lock:
            self._spaces[(tenant, namespace)] = space

    def apply(self, removed: Iterable[str], added: Sequence[RowT]) -> None:
        """After a commit: drop the rows of ``removed`` cube ids, append new searchable rows."""
        gone = list(removed)
        grouped: dict[tuple[str, str], list[RowT]] = defaultdict(list)
        for row in added:
            grouped[(row.tenant, row.namespace)].append(row)
        with self._lock:
            touched = set()
            if gone:
                for key, space in self._spaces.items():
                    space.discard(gone)
                    touched.add(key)
            for key, rows in grouped.items():
                loaded = self._spaces.get(key)
                if loaded is not None:
                    loaded.append(rows)
                    touched.add(key)
            for key in touched:
                self._spaces[key].maybe_compact()

    def clear(self) -> None:
        with self._lock:
            self._spaces.clear()
