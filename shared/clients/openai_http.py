"""An HTTP client for an OpenAI-compatible server (chat/completions and friends).

Inference's remote backend and the trainer's LLM generator both talk to one;
the base URL, the optional bearer key and the timeout are set up the same way.
"""

from __future__ import annotations

import httpx


def openai_client(base_url: str, api_key: str, timeout_s: float) -> httpx.Client:
    """A client rooted at ``base_url`` (e.g. ``http://host:8000/v1``); no
    Authorization header when ``api_key`` is empty (local servers)."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    return httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)
