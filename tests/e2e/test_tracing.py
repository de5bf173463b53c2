"""One add through the API is one trace across the processes: the interface's
HTTP span, the vault's (over HTTP), the Kafka send span of memory.created and
the scheduler's process span, each the parent of the next.

Every process of the stack exports its spans over OTLP/HTTP (telemetry.exporter
=otlp, set in conftest) to an in-memory receiver in the test process
(tests/e2e/otlp_sink.py); the test sends its own traceparent, so that its trace
id finds the spans of this request among everybody's."""

from __future__ import annotations

import secrets
from typing import Any

import httpx
import pytest

from tests.e2e.otlp_sink import OtlpSink
from tests.e2e.support import Stack, Tenant, wait_until

pytestmark = pytest.mark.e2e


def chain(span: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """``span`` and its ancestors, innermost first, as far as they were exported."""
    out = [span]
    while (parent := by_id.get(out[-1]["parent_span_id"] or "")) is not None:
        out.append(parent)
    return out


def test_one_add_is_one_trace_from_the_api_through_kafka_to_the_scheduler(
    stack: Stack, tenant: Tenant, otlp_sink: OtlpSink
) -> None:
    trace_id, caller_span = secrets.token_hex(16), secrets.token_hex(8)
    r = tenant.http.post(
        f"/v1/namespaces/{tenant.namespace}/memories",
        json={"messages": [{"id": "t1", "role": "user", "content": "traces cross processes"}]},
        headers={**tenant.headers, "traceparent": f"00-{trace_id}-{caller_span}-01"},
    )
    assert r.status_code == 201, r.text
    cube = r.json()["memories"][0]["id"]

    def scheduler_span() -> dict[str, Any] | None:
        for s in otlp_sink.spans(trace_id):
            if (
                s["service"].endswith("-scheduler")
                and s["kind"] == "CONSUMER"
                and s["name"] == "process memory.created"
            ):
                return s
        return None

    def whole_chain() -> list[dict[str, Any]] | None:
        # Each process exports in its own batches (every few seconds), so the
        # scheduler's span may arrive before its ancestors do: wait for the chain
        # to reach the span whose parent is the client's.
        processed = scheduler_span()
        if processed is None:
            return None
        found = chain(processed, {s["span_id"]: s for s in otlp_sink.spans(trace_id)})
        return found if found[-1]["parent_span_id"] == caller_span else None

    # Innermost first: scheduler <- Kafka send (vault's relay) <- ... <- interface.
    ancestors = wait_until(whole_chain, 60, "the chain from the scheduler's span to the client's")
    processed = ancestors[0]
    spans = otlp_sink.spans(trace_id)
    by_id = {s["span_id"]: s for s in spans}
    assert {s["trace_id"] for s in spans} == {trace_id}
    send = ancestors[1]
    assert send["kind"] == "PRODUCER" and send["name"] == "send memory.created"
    assert send["service"].endswith("-vault")
    assert send["attributes"]["messaging.destination.name"] == "memory.created"
    assert send["attributes"]["messaging.kafka.message.key"] == cube
    assert processed["attributes"]["messaging.consumer.group.name"].startswith("e2e-scheduler-")

    servers = [s for s in ancestors if s["kind"] == "SERVER"]
    assert [s["service"].rsplit("-", 1)[-1] for s in servers] == ["vault", "interface"]
    vault_http, api = servers
    assert api["name"] == "POST /v1/namespaces/{namespace_id}/memories"
    assert api["attributes"]["http.response.status_code"] == 201
    assert api["parent_span_id"] == caller_span  # the client's traceparent was continued
    assert vault_http["name"].startswith("POST ")
    assert ancestors[-1] is api  # nothing between the client and the API span is missing

    # Spans of the vault's own work (store calls) hang under its HTTP span too.
    vault_work = [s for s in spans if s["service"].endswith("-vault") and s["kind"] == "INTERNAL"]
    assert any(vault_http in chain(s, by_id) for s in vault_work)

    # The governance audit processes memory.created in batches: its span links
    # to the send span instead of having it as parent.
    def audit_linked() -> bool:
        return any(
            s["service"].endswith("-governance")
            and {"trace_id": trace_id, "span_id": send["span_id"]} in s["links"]
            for s in otlp_sink.spans()
        )

    wait_until(audit_linked, 60, "the governance batch span linked to the send span")


def test_every_service_serves_prometheus_metrics(stack: Stack, tenant: Tenant) -> None:
    assert tenant.search("anything").status_code == 200
    api = httpx.get(f"{stack.api}/metrics", timeout=10)
    assert api.status_code == 200 and api.headers["content-type"].startswith("text/plain")
    assert 'route="/v1/search"' in api.text and "memgrid_http_requests_total" in api.text
    for service in ("vault", "scheduler", "governance", "trainer"):
        r = httpx.get(f"{stack.url(service)}/metrics", timeout=10)
        assert r.status_code == 200, (service, r.text[:200])
        assert "process_cpu_seconds_total" in r.text, service
    vault = httpx.get(f"{stack.url('vault')}/metrics", timeout=10).text
    assert 'memgrid_events_published_total{topic="memory.created"}' in vault


def test_every_service_answers_its_readiness_probe(stack: Stack) -> None:
    # The chart's readinessProbe paths: each checks the service's dependencies.
    assert httpx.get(f"{stack.api}/readyz", timeout=10).status_code == 200
    for service in ("vault", "scheduler", "governance", "trainer"):
        r = httpx.get(f"{stack.url(service)}/readyz", timeout=10)
        assert r.status_code == 200, (service, r.text[:200])
        assert r.json()["status"] == "ready", service
