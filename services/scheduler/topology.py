"""The distributed scheduler's Kafka layout: its tables and internal topics.

See services.scheduler.stream for how they are used and why they are
partitioned the way they are.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import faust

from shared.topics import (
    DAY_MS,
    MEMORY_ACCESSED,
    MEMORY_CREATED,
    MEMORY_DELETED,
    MEMORY_EXPIRED,
    MEMORY_PROMOTED,
    MEMORY_UPDATED,
    TopicSpec,
)

TABLE_NAME = "usage"
JOURNAL_TABLE = "journal"
SPACES_TABLE = "spaces"
# Co-partitioned with memory.accessed / memory.promoted: see the module docstring.
PARTITIONS = MEMORY_ACCESSED.partitions
SPACE_PARTITIONS = MEMORY_PROMOTED.partitions
LIFECYCLE_SOURCES = (MEMORY_CREATED, MEMORY_UPDATED, MEMORY_DELETED, MEMORY_EXPIRED)
# A namespace record carries a summary per live cube (~130 bytes each): a
# namespace of 10,000 cubes is over Kafka's default 1 MB message limit.
SPACE_MAX_BYTES = 16 * 1024 * 1024


def lifecycle_spec(app_id: str) -> TopicSpec:
    return TopicSpec(
        f"{app_id}-lifecycle",
        PARTITIONS,
        7 * DAY_MS,
        False,
        "cube id, as on memory.accessed",
        "memory.created/updated/deleted/expired re-keyed for the scheduler's usage table",
    )


def notes_spec(app_id: str) -> TopicSpec:
    return TopicSpec(
        f"{app_id}-cube-notes",
        PARTITIONS,
        7 * DAY_MS,
        False,
        "cube id, as on memory.accessed",
        "decisions of the scheduler's ticks about a cube, for the worker that owns it",
    )


def summaries_spec(app_id: str) -> TopicSpec:
    return TopicSpec(
        f"{app_id}-summaries",
        SPACE_PARTITIONS,
        7 * DAY_MS,
        False,
        "namespace id, as on memory.promoted",
        "cube summaries for the worker that owns the cubes' namespace",
    )


def spaces_changelog_spec(app_id: str) -> TopicSpec:
    """Created before ensure_faust_topics would create it with the default limit."""
    return TopicSpec(
        f"{app_id}-{SPACES_TABLE}-changelog",
        SPACE_PARTITIONS,
        -1,
        True,
        "namespace id",
        f"changelog of faust table {SPACES_TABLE}",
        max_message_bytes=SPACE_MAX_BYTES,
    )


class Keyed(MutableMapping[str, Any]):
    """A table keyed by ``str`` ids, stored under their raw UTF-8 bytes.

    faust would JSON-encode ``str`` keys (``"c_1"`` with quotes), which hash to
    another partition than the raw key the vault publishes; raw bytes keep the
    changelog partition equal to the source partition."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def __getitem__(self, key: str) -> Any:
        return self.table[key.encode()]

    def get(self, key: str, default: Any = None) -> Any:
        value = self.table.get(key.encode())
        return default if value is None else value

    def __setitem__(self, key: str, value: Any) -> None:
        self.table[key.encode()] = value

    def __delitem__(self, key: str) -> None:
        del self.table[key.encode()]

    def __iter__(self) -> Iterator[str]:
        return (k.decode() for k in self.table)

    def __len__(self) -> int:
        return len(self.table)


class Tables:
    """The app's three tables and what the agents need to know about ownership."""

    def __init__(self, app: faust.App) -> None:
        common: dict[str, Any] = {"default": None, "key_type": bytes, "use_partitioner": True}
        self.app = app
        self.usage = app.Table(
            TABLE_NAME, partitions=PARTITIONS, help="per-cube usage (usage.CubeUsage)", **common
        )
        self.journal = app.Table(
            JOURNAL_TABLE, partitions=PARTITIONS, help="last decisions per cube", **common
        )
        self.spaces = app.Table(
            SPACES_TABLE,
            partitions=SPACE_PARTITIONS,
            help="per-namespace state (spaces.Space)",
            **common,
        )

    def changelogs(self) -> list[str]:
        return [t.changelog_topic.get_topic_name() for t in (self.usage, self.journal, self.spaces)]

    async def load_metadata(self) -> None:
        # With use_partitioner, faust partitions each changelog write (and routes
        # each request) with the producer's metadata of the changelog topic,
        # which the producer does not load by itself: the first write would
        # fail. Load it before the first batch (a private accessor, hence the
        # guard; partitions_for is aiokafka's public, idempotent call).
        ensure = getattr(self.app.producer, "_ensure_producer", None)
        if ensure is not None:
            for name in self.changelogs():
                await ensure().partitions_for(name)

    def ready(self) -> bool:
        recovery = getattr(self.app.tables, "recovery", None)
        return not (recovery is None or not recovery.completed.is_set() or self.app.rebalancing)

    def owned_partitions(self, table: Any) -> set[int]:
        topic = table.changelog_topic.get_topic_name()
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    def owns(self, table: Any, key: str, owned: set[int] | None = None) -> bool:
        topic = table.changelog_topic.get_topic_name()
        partition = self.app.producer.key_partition(topic, key.encode()).partition
        return partition in (self.owned_partitions(table) if owned is None else owned)
