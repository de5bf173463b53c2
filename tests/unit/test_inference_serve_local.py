"""The Ray Serve deployment in Serve's local testing mode (no Ray cluster): the
options built from settings, and a chat through the deployment handle."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.inference.chat import ChatEngine
from services.inference.serve import build_application, deployment_options
from shared.settings import InferenceServeSettings, Settings
from tests.inference_fakes import FakeBackend

pytestmark = pytest.mark.unit


def fake_engine(settings: Settings) -> ChatEngine:
    return ChatEngine(settings.inference, FakeBackend(), None)


def test_deployment_options_from_settings() -> None:
    fixed = deployment_options(InferenceServeSettings(num_replicas=3, num_cpus=2, num_gpus=0.5))
    assert fixed["num_replicas"] == 3 and "autoscaling_config" not in fixed
    assert fixed["ray_actor_options"] == {"num_cpus": 2.0, "num_gpus": 0.5}
    auto = deployment_options(InferenceServeSettings(min_replicas=1, max_replicas=4))
    assert "num_replicas" not in auto
    assert auto["autoscaling_config"]["max_replicas"] == 4
    assert auto["autoscaling_config"]["min_replicas"] == 1


def test_local_testing_mode_chat(tmp_path: Path) -> None:
    from ray import serve

    settings = Settings(data_dir=tmp_path)
    # No serve.shutdown() afterwards: in local testing mode there is nothing to
    # shut down, and shutdown() would start a Ray instance to find that out (9 s).
    handle = serve.run(build_application(settings, fake_engine), _local_testing_mode=True)
    out = handle.complete.remote(
        None, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}
    ).result()
    assert out["object"] == "chat.completion"
    assert out["usage"]["completion_tokens"] == 3
    assert out["model"] == "fake-model"
