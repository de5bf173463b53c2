"""The services as separate processes on real Kafka and Neo4j: a write and a search
travel as events to a test consumer group, the scheduler's faust processor and
the governance audit log."""

from __future__ import annotations

import httpx
import pytest

from tests.e2e.support import Collector, Stack, Tenant, wait_until

pytestmark = pytest.mark.e2e


def test_memories_added_through_the_api_arrive_as_memory_created(
    stack: Stack, tenant: Tenant, collector: Collector
) -> None:
    r = tenant.add_messages([(f"m{i}", f"my cat number {i} likes fish") for i in range(10)])
    assert r.status_code == 201, r.text
    ids = {m["id"] for m in r.json()["memories"]}

    def created() -> set[str]:
        return {e.subject or "" for e in collector.of("memory.created", tenant.id)} & ids

    wait_until(lambda: created() == ids, 60, "memory.created for every cube")
    events = collector.of("memory.created", tenant.id)
    assert all(e.namespace == tenant.namespace and e.source == "/memgrid/vault" for e in events)
    assert {e.data["version"] for e in events} == {1}


def test_a_search_produces_memory_accessed_and_the_scheduler_counts_it(
    stack: Stack, tenant: Tenant, collector: Collector
) -> None:
    r = tenant.add_messages([("a", "the spare key is under the blue flowerpot")])
    assert r.status_code == 201, r.text
    cube = r.json()["memories"][0]["id"]
    for _ in range(3):
        r = tenant.search("where is the spare key?", top_k=3)
        assert r.status_code == 200, r.text
        assert cube in [hit["id"] for hit in r.json()["results"]]

    accessed = wait_until(
        lambda: [e for e in collector.of("memory.accessed", tenant.id) if e.subject == cube][2:],
        60,
        "three memory.accessed events",
    )
    assert accessed[0].data["channel"] == "search"

    usage_url = f"{stack.url('scheduler')}/usage/{cube}"

    def usage() -> dict[str, object] | None:
        r = httpx.get(usage_url, params={"tenant": tenant.id}, timeout=5)
        return r.json() if r.status_code == 200 and r.json()["access_count"] >= 3 else None

    view = wait_until(usage, 60, "the scheduler's usage view to count 3 accesses")
    assert view["access_count"] == 3  # exactly: each event counted once
    assert view["tenant"] == tenant.id and view["namespace"] == tenant.namespace
    assert view["distinct_principals"] == 1
    assert view["version"] == 1 and view["state"] == "active"  # from memory.created
    # Another tenant's id gets nothing, as on the public API.
    r = httpx.get(usage_url, params={"tenant": "t_someone_else"}, timeout=5)
    assert r.status_code == 404
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "usage_not_found"

    stats = httpx.get(f"{stack.url('scheduler')}/stats/usage", timeout=5).json()
    assert stats["applied"] >= 4 and stats["latency_ms"]["p99"] is not None


def test_governance_audits_every_event_once(
    stack: Stack, tenant: Tenant, collector: Collector
) -> None:
    r = tenant.add_messages([("x", "audit me"), ("y", "and me")])
    assert r.status_code == 201, r.text
    ids = {m["id"] for m in r.json()["memories"]}
    wait_until(
        lambda: {e.subject for e in collector.of("memory.created", tenant.id)} >= ids,
        60,
        "memory.created at the collector",
    )
    wanted = {e.id for e in collector.of("memory.created", tenant.id) if e.subject in ids}

    def audited() -> bool:
        return wanted <= {entry["event_id"] for entry in stack.audit_entries()}

    wait_until(audited, 60, "the audit log to hold the events")
    entries = stack.audit_entries()
    event_ids = [entry["event_id"] for entry in entries]
    assert len(event_ids) == len(set(event_ids)), "an event id appears twice in the audit log"
    assert [entry["seq"] for entry in entries] == list(range(1, len(entries) + 1))


def test_a_poison_message_goes_to_the_dead_letter_topic_of_each_processor(
    stack: Stack, collector: Collector
) -> None:
    from kafka import KafkaProducer

    servers = collector.bus.servers
    producer = KafkaProducer(bootstrap_servers=servers)
    key = b"poison-e2e"
    producer.send("memory.accessed", key=key, value=b"{not an event").get(timeout=30)
    producer.close()

    def letters() -> set[str]:
        return {
            e.data["group"]
            for e in collector.of("deadletter")
            if e.data.get("key") == key.decode() and e.data.get("topic") == "memory.accessed"
        }

    def both() -> bool:
        groups = letters()
        return any("scheduler" in g for g in groups) and any("governance" in g for g in groups)

    wait_until(both, 60, "dead letters from the scheduler's and governance's groups")
    # The processors went on: both are still healthy.
    for service in ("scheduler", "governance"):
        assert stack.pid(service) is not None, stack.log(service)
