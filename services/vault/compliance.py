"""Compliance at ingest: PII and secret screening, retention and legal hold rules.

The vault calls these before it embeds or stores anything, so both modes (the
vault in process or behind its internal API) apply the same rules and a refused
batch leaves nothing written. See docs/compliance.md.

Screening scans each draft's text, its embedding text (which carries the
preceding message as context) and every string in its metadata (the reader keeps
the raw message content there). By the namespace's ``policy.pii``:

* ``allow``: stored as given, the cube tagged (``governance.sensitivity_tags``);
* ``redact``: each finding replaced by ``[REDACTED:<kind>]`` in all of those
  before embedding, the cube tagged;
* ``reject``: PiiRejected (422 ``pii_rejected``) naming each field and the kinds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from shared.compliance import watermark
from shared.compliance.pii import Detector, Finding, sensitivity_tags
from shared.errors import FieldError, Forbidden, LegalHold, NotFound, PiiRejected
from shared.ports.graph import GraphStore
from shared.schemas.api import Caller, CubeDraft, NamespacePolicy, NamespaceRecord
from shared.schemas.compliance import ExportedMemory, ExportRecord, NamespaceExport
from shared.schemas.memcube import MemCube, Origin
from shared.settings import ComplianceSettings

DAY_S = 24 * 3600


@dataclass(frozen=True)
class Screened:
    """One text after screening: what to store and embed, and its tags."""

    text: str
    embedding_text: str | None
    metadata: dict[str, Any]
    tags: list[str]  # kinds found in the text and the metadata
    text_tags: list[str]  # kinds found in the text alone


class IngestCompliance:
    def __init__(self, settings: ComplianceSettings) -> None:
        self._detector = Detector(settings.phone_region, settings.secret_min_entropy)
        self.default_policy = NamespacePolicy(pii=settings.default_pii_policy)

    def screen_drafts(
        self, ns: NamespaceRecord, drafts: Sequence[CubeDraft]
    ) -> list[tuple[CubeDraft, list[str]]]:
        """Each draft as the namespace's policy stores it, with its sensitivity tags.

        Raises PiiRejected (nothing screened is kept) or LegalHold (a TTL asked
        for in a held namespace)."""
        policy = ns.policy
        if policy.legal_hold:
            for i, d in enumerate(drafts):
                if d.ttl_seconds is not None:
                    raise LegalHold(ns.id, f"an expiry (ttl_seconds, draft {i})")
        screened = [self.screen(policy, d.text, d.embedding_text, d.metadata) for d in drafts]
        if policy.pii == "reject":
            errors = [
                FieldError(
                    _draft_field(drafts, i) if s.text_tags else "body.metadata",
                    "contains " + ", ".join(s.tags),
                )
                for i, s in enumerate(screened)
                if s.tags
            ]
            if errors:
                kinds = sorted({t for s in screened for t in s.tags})
                raise PiiRejected(
                    f"namespace {ns.id!r} rejects personal data and secrets; found: "
                    + ", ".join(kinds),
                    errors,
                )
        out = []
        for d, s in zip(drafts, screened, strict=True):
            update: dict[str, Any] = {
                "text": s.text,
                "embedding_text": s.embedding_text,
                "metadata": s.metadata,
                "ttl_seconds": capped_ttl(d.ttl_seconds, policy),
            }
            out.append((d.model_copy(update=update), s.tags))
        return out

    def screen_patch(
        self,
        ns: NamespaceRecord,
        text: str,
        metadata: dict[str, Any],
        given: Sequence[str],
    ) -> Screened:
        """The content of a memory's next version (``given``: the fields the patch
        sets). Under ``reject`` only findings in given fields refuse the change:
        the rest was stored under the policy of its time."""
        policy = ns.policy
        if policy.pii != "reject":
            return self.screen(policy, text, None, metadata)
        errors = []
        for name, value in (("text", text), ("metadata", metadata)):
            if name in given:
                tags = self.screen(policy, "", None, {name: value}).tags
                if tags:
                    errors.append(FieldError(f"body.{name}", "contains " + ", ".join(tags)))
        if errors:
            raise PiiRejected(
                f"namespace {ns.id!r} rejects personal data and secrets",
                errors,
            )
        return self.screen(policy, text, None, metadata)

    def screen(
        self,
        policy: NamespacePolicy,
        text: str,
        embedding_text: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Screened:
        """Scans every part; redacts them when the policy says so. The embedding
        text is redacted but adds no tags: its context is another message, which
        is screened (and tagged) as itself."""
        found: list[Finding] = []
        redact = policy.pii == "redact"

        def clean(value: str, record: bool = True) -> str:
            hits = self._detector.scan(value)
            if record:
                found.extend(hits)
            return self._detector.redact(value, hits) if redact and hits else value

        new_text = clean(text)
        text_tags = sensitivity_tags(found)
        new_embedding = clean(embedding_text, False) if embedding_text is not None else None
        new_meta = _walk(metadata or {}, clean)
        return Screened(new_text, new_embedding, new_meta, sensitivity_tags(found), text_tags)


def _walk(value: Any, clean: Any) -> Any:
    """``value`` with ``clean`` applied to every string inside it (keys stay)."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, dict):
        return {k: _walk(v, clean) for k, v in value.items()}
    if isinstance(value, list):
        return [_walk(v, clean) for v in value]
    return value


def _draft_field(drafts: Sequence[CubeDraft], index: int) -> str:
    """The request field a draft came from. The reader makes one draft per message,
    in order (sources = [message id]), or one draft from ``text`` (no sources);
    extracted facts come after them and point back at messages."""
    draft = drafts[index]
    if draft.origin == Origin.user_input:
        if draft.sources:
            return f"body.messages.{index}.content"
        return "body.text"
    return "body"


def capped_ttl(ttl_seconds: int | None, policy: NamespacePolicy) -> int | None:
    """The TTL a new memory gets: the asked one, at most the namespace's retention."""
    if policy.retention_days is None:
        return ttl_seconds
    cap = policy.retention_days * DAY_S
    return cap if ttl_seconds is None else min(ttl_seconds, cap)


def check_not_held(ns: NamespaceRecord, action: str) -> None:
    if ns.policy.legal_hold:
        raise LegalHold(ns.id, action)


def retention_cutoff(policy: NamespacePolicy, now: datetime) -> datetime | None:
    """Cubes created at or before this are past the namespace's retention."""
    if policy.retention_days is None:
        return None
    return now - timedelta(days=policy.retention_days)


def tagged(cube: MemCube, tags: list[str]) -> MemCube:
    """``cube`` with ``tags`` as its sensitivity tags."""
    gov = cube.governance.model_copy(update={"sensitivity_tags": tags})
    return cube.model_copy(update={"governance": gov})


MAX_EXPORT = 100_000  # memories per export; a namespace beyond that is exported in part


class NamespaceGovernance:
    """Policy changes, expiry rules (legal hold, retention) and watermarked exports."""

    def __init__(self, store: GraphStore, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._clock = clock

    def update_policy(
        self, caller: Caller, ns: NamespaceRecord, policy: NamespacePolicy
    ) -> NamespaceRecord:
        if caller.role != "tenant_admin":
            raise Forbidden(
                "changing a namespace's policy needs the tenant_admin role",
                code="permission_denied",
            )
        new = ns.model_copy(update={"policy": policy})
        if not self._store.update_namespace(new):
            raise NotFound(f"namespace {ns.id!r} not found", code="namespace_not_found")
        return new

    # --- expiry rules (LifecycleOps' ExpiryRules) ------------------------------------

    def held_check(self) -> Callable[[MemCube], bool]:
        policies: dict[tuple[str, str], bool] = {}

        def held(cube: MemCube) -> bool:
            key = (cube.tenant, cube.namespace)
            if key not in policies:
                ns = self._store.get_namespace(cube.tenant, cube.namespace)
                policies[key] = ns is not None and ns.policy.legal_hold
            return policies[key]

        return held

    def retention_due(self, now: datetime, limit: int) -> list[MemCube]:
        due: list[MemCube] = []
        for ns in self._store.namespaces_with_retention():
            cutoff = retention_cutoff(ns.policy, now)
            if ns.policy.legal_hold or cutoff is None:
                continue
            due.extend(self._store.namespace_cubes(ns.tenant, ns.id, cutoff, limit - len(due)))
            if len(due) >= limit:
                break
        return due

    # --- export ------------------------------------------------------------------------

    def export(self, caller: Caller, ns: NamespaceRecord) -> NamespaceExport:
        """The namespace's current memories, each text carrying the export id
        invisibly; the export is recorded (who, when, how many) before it is returned."""
        export_id = watermark.new_export_id()
        cubes = self._store.namespace_cubes(caller.tenant, ns.id, None, MAX_EXPORT)
        record = ExportRecord(
            id=export_id,
            tenant=caller.tenant,
            namespace=ns.id,
            principal=caller.principal,
            created_at=self._clock(),
            count=len(cubes),
        )
        self._store.insert_export(record)
        memories = [
            ExportedMemory(
                id=c.id,
                version=c.version,
                text=watermark.embed(c.text or "", export_id),
                tags=c.tags,
                sensitivity_tags=c.governance.sensitivity_tags,
                event_time=c.event_time,
                created_at=c.created_at,
                metadata=c.metadata,
            )
            for c in cubes
        ]
        return NamespaceExport(export=record, memories=memories)

    def get_export(self, caller: Caller, export_id: str) -> ExportRecord:
        record = self._store.get_export(caller.tenant, export_id)
        if record is None:
            raise NotFound(f"export {export_id!r} not found", code="export_not_found")
        return record
