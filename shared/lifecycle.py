"""The MemCube lifecycle state machine (DESIGN.md §1; states in shared.schemas.memcube).

    generated ──► activated ──► (merged | archived) ──► expired ──► deleted

``TRANSITIONS`` is the one table of allowed moves; :func:`transition` is the only
way the vault changes a cube's lifecycle, and every move carries a reason.

The choices, and why:

* generated → activated | merged | archived | expired | deleted. Every way out is
  open to a fresh cube: it can be promoted (a KV cache built from it), merged
  with a near-duplicate, archived, reach its TTL or be deleted by its owner.
* activated → generated: demotion. When the KV cache that contains the cube is
  evicted the cube is plaintext-only again and may be activated again later.
  activated → merged | archived | expired | deleted as for generated.
* merged → expired | deleted and archived → expired | deleted. Merged and
  archived cubes are out of search but kept for history and lineage; they may
  still reach their TTL (so retention rules apply to them as to any cube) or be
  deleted. There is no way back to a searchable state: a merged cube's content
  lives on in the cube it was merged into, and bringing an archived one back
  would be a new memory (a new cube), not a silent resurrection.
  merged ↔ archived is not allowed either: both mean "retired", only the reason
  differs, and the reason is kept anyway.
* expired → deleted: an expired cube can only be erased (tombstoned).
* deleted is terminal.
* A move to the state a cube is already in is illegal: a transition is a change,
  and refusing no-ops is what keeps "expire this cube" from firing twice.

Searchable states are generated and activated (``MemCube.searchable``).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from shared.errors import FieldError, IllegalTransition, ValidationFailed
from shared.schemas.memcube import Lifecycle, LifecycleState

S = LifecycleState

TRANSITIONS: Mapping[LifecycleState, frozenset[LifecycleState]] = {
    S.generated: frozenset({S.activated, S.merged, S.archived, S.expired, S.deleted}),
    S.activated: frozenset({S.generated, S.merged, S.archived, S.expired, S.deleted}),
    S.merged: frozenset({S.expired, S.deleted}),
    S.archived: frozenset({S.expired, S.deleted}),
    S.expired: frozenset({S.deleted}),
    S.deleted: frozenset(),
}

SEARCHABLE: frozenset[LifecycleState] = frozenset({S.generated, S.activated})
MAX_REASON_CHARS = 500


def allowed(frm: LifecycleState, to: LifecycleState) -> bool:
    return to in TRANSITIONS[frm]


def check_reason(reason: str, field: str = "body.reason") -> str:
    """The reason, stripped; raises ValidationFailed when empty or too long."""
    text = reason.strip() if isinstance(reason, str) else ""
    if not text:
        raise ValidationFailed(
            "a lifecycle transition needs a reason", [FieldError(field, "must not be empty")]
        )
    if len(text) > MAX_REASON_CHARS:
        raise ValidationFailed(
            f"reason is longer than {MAX_REASON_CHARS} characters",
            [FieldError(field, f"at most {MAX_REASON_CHARS} characters")],
        )
    return text


def transition(lifecycle: Lifecycle, to: LifecycleState, reason: str, at: datetime) -> Lifecycle:
    """The lifecycle after moving to ``to`` at ``at`` for ``reason``.

    Raises IllegalTransition (409 ``illegal_transition``) for a move the table
    does not allow, ValidationFailed (422) for an empty reason or a naive time.
    """
    why = check_reason(reason)
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValidationFailed("transition time must be timezone-aware")
    to = LifecycleState(to)
    if not allowed(lifecycle.state, to):
        raise IllegalTransition(str(lifecycle.state), str(to))
    return Lifecycle(state=to, reason=why, changed_at=at)
