"""The one settings tree. Nothing else in memgrid reads the environment.

Every value comes from ``MEMGRID_*`` environment variables (nested groups use a
double underscore: ``MEMGRID_SEARCH__DENSE_WEIGHT``) or from keyword arguments in
tests. Unknown ``MEMGRID_*`` variables and unknown backend names stop start-up
with a message that names them, because a typo silently falling back to a default
(say, an in-memory bus in production) is worse than not starting.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Literal

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError
from shared.settings_services import (
    ComplianceSettings,
    GovernanceSettings,
    InferenceServeSettings,
    InferenceSettings,
    SchedulerPolicy,
    SchedulerSettings,
    SettingsGroup,
    TrainerSettings,
)

# The service groups live in shared.settings_services; importing them from here
# is the public way, as for every other group.
__all__ = [
    "ENV_PREFIX",
    "BlobSettings",
    "BusSettings",
    "ComplianceSettings",
    "EmbedderSettings",
    "ExtractorSettings",
    "GovernanceSettings",
    "GraphSettings",
    "InferenceServeSettings",
    "InferenceSettings",
    "LimitSettings",
    "SchedulerPolicy",
    "SchedulerSettings",
    "SearchSettings",
    "Settings",
    "SettingsGroup",
    "TelemetrySettings",
    "TrainerSettings",
    "VaultClientSettings",
    "load_settings",
    "unknown_env_settings",
]

ENV_PREFIX = "MEMGRID_"
NESTED = "__"


class GraphSettings(SettingsGroup):
    """Where the vault keeps cubes, versions and provenance.

    ``url`` picks the adapter by scheme: ``sqlite:///path`` or ``bolt://host:port``.
    Empty means SQLite under the data directory.
    """

    url: str = ""
    user: str = "neo4j"
    password: SecretStr = SecretStr("")
    database: str = "neo4j"
    shard_min_vectors: int = Field(
        default=10_000,
        ge=0,
        description="Neo4j: a namespace with this many searchable vectors gets its own "
        "vector index (0: never); see services/vault/stores/neo4j_shards.py",
    )


class BlobSettings(SettingsGroup):
    """Content-addressed blob storage: ``file:///dir`` or ``s3://bucket`` (MinIO).

    For ``s3://`` the bucket (one per deployment) is created if missing;
    ``endpoint``, the keys and ``secure`` (HTTPS) say how to reach the S3 service.
    """

    url: str = ""
    endpoint: str = "127.0.0.1:9000"
    access_key: SecretStr = SecretStr("")
    secret_key: SecretStr = SecretStr("")
    secure: bool = False
    region: str = Field(default="", description="S3 region; empty asks the service")
    timeout_s: float = Field(default=10.0, gt=0, description="connect/read timeout per request")


class BusSettings(SettingsGroup):
    """Event bus: ``memory://`` (in process) or ``kafka://host:port[,host:port]``.

    The Kafka-only fields below are ignored by the in-process bus.
    """

    url: str = "memory://"
    client_id: str = "memgrid"
    dead_letter_topic: str = "memgrid.deadletter"
    max_delivery_attempts: int = Field(default=5, ge=1, le=100)
    retry_backoff_s: float = Field(
        default=0.1, ge=0, le=60, description="first pause between handler retries; doubles"
    )
    replication_factor: int = Field(
        default=-1, ge=-1, le=32, description="for topics memgrid creates; -1 = broker default"
    )
    default_partitions: int = Field(
        default=3, ge=1, le=1000, description="for topics used but not declared in shared.topics"
    )
    publish_timeout_s: float = Field(
        default=15.0, gt=0, description="how long publish waits for the broker's ack"
    )
    session_timeout_s: float = Field(
        default=10.0, ge=1, le=300, description="a consumer silent this long leaves its group"
    )
    join_timeout_s: float = Field(
        default=30.0, gt=0, description="how long subscribe waits for its first partitions"
    )
    max_poll_interval_s: float = Field(
        default=300.0,
        ge=1,
        description="longest one handler call may take before Kafka hands its partitions "
        "to another member (max.poll.interval.ms); the trainer's handler trains for minutes",
    )

    @field_validator("replication_factor")
    @classmethod
    def _replicas(cls, v: int) -> int:
        if v == 0:
            raise ValueError("must be -1 (broker default) or at least 1")
        return v


class EmbedderSettings(SettingsGroup):
    """Text embeddings: all-MiniLM-L6-v2 from PyPI, as int8 ONNX (``minilm-int8``,
    default: several times faster per query on a CPU for about one point of LoCoMo
    recall, see docs/benchmarks.md) or on torch (``minilm``); ``hashing`` is a
    dependency-free feature-hashing embedder for unit tests."""

    backend: str = "minilm-int8"
    batch_size: int = Field(default=64, ge=1, le=4096)
    device: str = "cpu"
    threads: int = Field(default=0, ge=0, le=256, description="0 = torch default")


class SearchSettings(SettingsGroup):
    """Hybrid retrieval: how dense, keyword and time rankings are fused (docs/retrieval.md)."""

    fusion: Literal["zscore", "minmax", "rrf"] = "zscore"
    dense_weight: float = Field(default=1.0, ge=0.0)
    keyword_weight: float = Field(default=1.0, ge=0.0)
    time_weight: float = Field(default=0.5, ge=0.0)
    rrf_k: int = Field(default=60, ge=1)
    candidates: int = Field(default=100, ge=10, le=2000)
    context_window: int = Field(
        default=0,
        ge=0,
        le=5,
        description="preceding messages folded into a message's embedding (0: measured best)",
    )
    max_top_k: int = Field(default=100, ge=1, le=1000)


class LimitSettings(SettingsGroup):
    """Request size limits. Over them the API answers 413."""

    max_body_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_text_chars: int = Field(default=32_000, ge=16)
    max_messages: int = Field(default=10_000, ge=1)
    max_query_chars: int = Field(default=4_000, ge=16)
    max_namespaces_per_search: int = Field(default=50, ge=1)
    max_metadata_bytes: int = Field(default=16 * 1024, ge=64)
    max_tags: int = Field(default=64, ge=1)
    # Per API key (per client address without one): 429 beyond it.
    rate_limit_enabled: bool = True
    rate_limit: str = Field(
        default="100/second;5000/minute",
        # What `limits.parse_many` accepts, so a typo fails at startup as a settings error.
        pattern=r"^\s*\d+\s*(?:/|per)\s*(?:\d+\s*)?(?:second|minute|hour|day|month|year)s?\s*"
        r"(?:[;,|]\s*\d+\s*(?:/|per)\s*(?:\d+\s*)?(?:second|minute|hour|day|month|year)s?\s*)*$",
        description="`limits` notation, windows separated by `;` (services/interface/ratelimit.py)",
    )


class TelemetrySettings(SettingsGroup):
    """Traces, logs and metrics (docs/observability.md).

    Tracing exporter: ``none`` (default), ``console``, ``otlp`` (to
    ``otlp_endpoint``, OTLP over HTTP), ``memory`` (tests, one process) or
    ``file`` (one JSON line per finished span, appended to a file per process
    under ``spans_dir``: tests that span several processes read them)."""

    exporter: Literal["none", "console", "otlp", "memory", "file"] = "none"
    otlp_endpoint: str = "http://127.0.0.1:4318/v1/traces"
    sample_ratio: float = Field(
        default=1.0,
        ge=0.0,
        le=1.0,
        description="fraction of new traces recorded; a caller's or producer's sampling"
        " decision (the traceparent's flag) is always followed, so a trace is whole or absent",
    )
    service_name: str = "memgrid"
    spans_dir: Path | None = Field(
        default=None, description="the directory exporter=file writes to (required by it)"
    )
    log_format: Literal["text", "json"] = "text"
    lag_interval_s: float = Field(
        default=15.0, gt=0, description="how often consumers sample their lag (metrics)"
    )


class ExtractorSettings(SettingsGroup):
    """MemReader's optional LLM extractor (OpenAI-compatible). Off by default."""

    backend: Literal["none", "openai"] = "none"
    base_url: str = "http://127.0.0.1:8000/v1"
    model: str = "gpt-4o-mini"
    api_key: SecretStr = SecretStr("")
    timeout_s: float = Field(default=30.0, gt=0)


class VaultClientSettings(SettingsGroup):
    """How the interface reaches the vault: in process (embedded) or over HTTP."""

    url: str = "inproc://"
    timeout_s: float = Field(default=30.0, gt=0)
    service_token: SecretStr | None = Field(
        default=None, description="shared secret the vault's internal API requires, if set"
    )


class Settings(BaseSettings):
    """Root of the tree. Build it once per process and pass it down."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=NESTED,
        extra="forbid",
        validate_default=True,
    )

    mode: Literal["embedded", "distributed"] = "embedded"
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=1, le=65535)
    data_dir: Path = Path(".memgrid")
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "memgrid",
        description="derived artefacts shared across data dirs (converted models)",
    )
    admin_key: SecretStr | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    graph: GraphSettings = GraphSettings()
    blob: BlobSettings = BlobSettings()
    bus: BusSettings = BusSettings()
    embedder: EmbedderSettings = EmbedderSettings()
    search: SearchSettings = SearchSettings()
    limits: LimitSettings = LimitSettings()
    telemetry: TelemetrySettings = TelemetrySettings()
    extractor: ExtractorSettings = ExtractorSettings()
    vault: VaultClientSettings = VaultClientSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    governance: GovernanceSettings = GovernanceSettings()
    compliance: ComplianceSettings = ComplianceSettings()
    inference: InferenceSettings = InferenceSettings()
    trainer: TrainerSettings = TrainerSettings()

    @model_validator(mode="after")
    def _derive_paths(self) -> Settings:
        if not self.graph.url:
            self.graph.url = f"sqlite:///{(self.data_dir / 'graph.db').as_posix()}"
        if not self.blob.url:
            self.blob.url = f"file://{(self.data_dir / 'blobs').resolve().as_posix()}"
        return self


def _known_env_names(model: type[BaseModel], prefix: str) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        full = prefix + name.upper()
        names.add(full)
        ann = info.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            names |= _known_env_names(ann, full + NESTED)
    return names


def unknown_env_settings(environ: dict[str, str] | None = None) -> list[str]:
    """``MEMGRID_*`` variables that match no setting, each with a suggestion if one is close."""
    env = dict(os.environ if environ is None else environ)
    known = _known_env_names(Settings, ENV_PREFIX)
    problems = []
    for key in sorted(k for k in env if k.upper().startswith(ENV_PREFIX)):
        if key.upper() in known:
            continue
        close = difflib.get_close_matches(key.upper(), sorted(known), n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"{key}{hint}")
    return problems


def load_settings(**overrides: object) -> Settings:
    """Reads the environment once, refusing unknown names. Raises ConfigError."""
    unknown = unknown_env_settings()
    if unknown:
        raise ConfigError("unknown memgrid settings: " + ", ".join(unknown))
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        lines = [
            f"  {ENV_PREFIX}{NESTED.join(str(p).upper() for p in err['loc'])}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError("invalid memgrid settings:\n" + "\n".join(lines)) from exc
