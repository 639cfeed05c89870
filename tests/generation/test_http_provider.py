"""HttpModelProvider against the model API stand-in, both talking real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import io
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw

from credit_app.generation.base import GenerationError, GenerationRequest
from credit_app.generation.features import FEATURE_KEYS
from credit_app.generation.http_provider import HttpModelProvider
from credit_app.testing.model_stand_in import (
    DEFAULT_VERSIONS,
    StandInState,
    create_stand_in_app,
    get_state,
    serve_stand_in,
)

pytestmark = pytest.mark.no_db  # no database, no app

TOKEN = "s3cret-test-token"


@dataclass
class StandIn:
    url: str
    state: StandInState


@pytest.fixture
def stand_in() -> Iterator[StandIn]:
    app = create_stand_in_app(token=TOKEN, polls_until_done=2)
    with serve_stand_in(app) as url:
        yield StandIn(url, get_state(app))


@pytest.fixture
def make_provider(stand_in: StandIn) -> Iterator[Callable[..., HttpModelProvider]]:
    providers: list[HttpModelProvider] = []

    def factory(**overrides) -> HttpModelProvider:
        arguments = {
            "base_url": stand_in.url,
            "api_token": TOKEN,
            "model_versions": DEFAULT_VERSIONS,
            "timeout_seconds": 5,
            "poll_interval": 0.01,
            "retry_backoff": 0.01,
            **overrides,
        }
        provider = HttpModelProvider(**arguments)
        providers.append(provider)
        return provider

    yield factory
    for provider in providers:
        provider.close()


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    """A small colourful PNG standing in for the user's upload."""
    image = Image.new("RGB", (64, 48))
    image.putdata([(x * 4 + 1, y * 5 + 3, (x * y) % 251) for y in range(48) for x in range(64)])
    ImageDraw.Draw(image).ellipse((20, 10, 44, 38), fill=(201, 77, 33))
    path = tmp_path / "upload.png"
    image.save(path)
    return path


def make_request(photo: Path, feature: str = "interior", **options) -> GenerationRequest:
    defaults = {"room_type": "living_room", "style": "japandi", "prompt": "warm wood"}
    chosen = {**defaults, **options} if feature in ("interior", "sketch", "exterior") else options
    return GenerationRequest(
        generation_id="gen-123",
        feature=feature,
        input_path=photo,
        output_dir=photo.parent / "out",
        options=chosen,
        seed=7,
    )


def only_prediction(state: StandInState):
    assert len(state.predictions) == 1
    return next(iter(state.predictions.values()))


def decode_data_uri(uri: str) -> tuple[str, bytes]:
    header, _, payload = uri.partition(",")
    return header, base64.b64decode(payload)


class TestSuccess:
    def test_output_is_derived_from_the_input_and_saved(self, stand_in, make_provider, photo):
        result = make_provider().generate(make_request(photo))

        assert result.output_path == photo.parent / "out" / "gen-123.png"
        assert result.media_type == "image/png"
        assert (result.width, result.height) == (64, 48)
        with Image.open(photo) as original, Image.open(result.output_path) as output:
            output.load()
            assert output.size == original.size
            assert ImageChops.difference(original.convert("RGB"), output).getbbox() is not None
        assert sorted(path.name for path in result.output_path.parent.iterdir()) == ["gen-123.png"]

    def test_sends_the_feature_version_the_image_and_the_options(
        self, stand_in, make_provider, photo
    ):
        make_provider().generate(make_request(photo, "sketch"))

        prediction = only_prediction(stand_in.state)
        assert prediction.version == DEFAULT_VERSIONS["sketch"]
        assert prediction.auth_scheme == "Bearer"
        assert prediction.polls >= 2
        header, data = decode_data_uri(prediction.input["image"])
        assert header == "data:image/png;base64"
        assert data == photo.read_bytes()
        assert {key: prediction.input[key] for key in ("prompt", "style", "room_type", "seed")} == {
            "prompt": "warm wood",
            "style": "japandi",
            "room_type": "living_room",
            "seed": 7,
        }
        assert stand_in.state.create_statuses == [201]

    def test_remove_sends_a_mask_image_and_only_the_marked_area_changes(
        self, stand_in, make_provider, photo
    ):
        mask = {"x": 0.25, "y": 0.25, "w": 0.5, "h": 0.5}
        result = make_provider().generate(make_request(photo, "remove", mask=mask))

        _, mask_png = decode_data_uri(only_prediction(stand_in.state).input["mask"])
        with Image.open(io.BytesIO(mask_png)) as sent:
            assert sent.size == (64, 48)
            assert sent.getbbox() == (16, 12, 48, 36)
        with Image.open(photo) as original, Image.open(result.output_path) as output:
            changed = ImageChops.difference(original.convert("RGB"), output.convert("RGB"))
            left, top, right, bottom = changed.getbbox()
            assert (left, top) >= (16, 12) and (right, bottom) <= (48, 36)

    def test_video_comes_back_as_an_animation(self, stand_in, make_provider, photo):
        result = make_provider().generate(make_request(photo, "video", motion="pan_left"))

        assert result.output_path.name == "gen-123.gif"
        assert result.media_type == "image/gif"
        with Image.open(result.output_path) as output:
            assert output.n_frames > 1
        assert only_prediction(stand_in.state).input["motion"] == "pan_left"

    def test_a_503_on_create_is_retried(self, stand_in, make_provider, photo):
        result = make_provider().generate(make_request(photo, prompt="cosy [flaky]"))

        assert result.output_path.exists()
        assert stand_in.state.create_statuses == [503, 201]

    def test_from_env_config_builds_a_working_provider(self, stand_in, photo):
        config = {
            "MODEL_API_URL": stand_in.url,
            "MODEL_API_TOKEN": TOKEN,
            "MODEL_API_POLL_INTERVAL": "0.01",
        }
        config |= {
            f"MODEL_VERSION_{key.upper()}": version for key, version in DEFAULT_VERSIONS.items()
        }
        with HttpModelProvider.from_env_config(config) as provider:
            assert provider.poll_interval == 0.01
            result = provider.generate(make_request(photo, "exterior", style="tropical"))
        assert result.output_path.exists()
        assert only_prediction(stand_in.state).version == DEFAULT_VERSIONS["exterior"]


class TestFailures:
    def test_a_bad_token_is_not_retried(self, stand_in, make_provider, photo):
        with pytest.raises(GenerationError) as caught:
            make_provider(api_token="wrong").generate(make_request(photo))

        assert not caught.value.retryable
        assert "wrong" not in caught.value.message
        assert stand_in.state.create_statuses == [401]

    def test_a_failed_prediction_gives_a_sanitized_message(self, stand_in, make_provider, photo):
        with pytest.raises(GenerationError) as caught:
            make_provider().generate(make_request(photo, prompt="[fail] please"))

        assert caught.value.message == "The model could not process this image."
        assert not caught.value.retryable
        assert only_prediction(stand_in.state).status == "failed"
        assert not list((photo.parent / "out").glob("*"))

    @pytest.mark.parametrize(
        ("raw", "message", "retryable"),
        [
            (
                "NSFW content detected. Try running it again, or try a different prompt.",
                "The model's safety filter blocked this image.",
                False,
            ),
            (
                "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 39.59 GiB total)",
                "The model ran out of resources on this image. Please try again.",
                True,
            ),
        ],
    )
    def test_known_failures_get_their_own_summary(
        self, stand_in, make_provider, photo, raw, message, retryable
    ):
        stand_in.state.failure_error = raw
        with pytest.raises(GenerationError) as caught:
            make_provider().generate(make_request(photo, prompt="[fail]"))

        assert (caught.value.message, caught.value.retryable) == (message, retryable)

    def test_a_slow_prediction_times_out_and_is_cancelled(self, stand_in, make_provider, photo):
        started = time.monotonic()
        with pytest.raises(GenerationError) as caught:
            make_provider(timeout_seconds=0.3, poll_interval=0.02).generate(
                make_request(photo, prompt="[slow]")
            )

        assert time.monotonic() - started < 2
        assert caught.value.message.startswith("The model took too long")
        assert caught.value.retryable
        prediction = only_prediction(stand_in.state)
        assert stand_in.state.cancel_requests == [prediction.id]
        assert prediction.status == "canceled"

    def test_a_service_that_keeps_failing_gives_a_retryable_error(
        self, stand_in, make_provider, photo
    ):
        stand_in.state.fail_next_creates = 10
        with pytest.raises(GenerationError) as caught:
            make_provider(max_retries=3).generate(make_request(photo))

        assert caught.value.retryable
        assert stand_in.state.create_statuses == [503] * 4

    def test_an_unreachable_service_gives_a_retryable_error(self, make_provider, photo):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        provider = make_provider(base_url=f"http://127.0.0.1:{port}", max_retries=2)
        with pytest.raises(GenerationError) as caught:
            provider.generate(make_request(photo))

        assert caught.value.retryable

    def test_a_version_unknown_to_the_service_is_not_retried(self, stand_in, make_provider, photo):
        provider = make_provider(model_versions={"interior": "0" * 64})
        with pytest.raises(GenerationError) as caught:
            provider.generate(make_request(photo))

        assert not caught.value.retryable
        assert stand_in.state.create_statuses == [422]

    def test_a_feature_without_a_version_says_so(self, stand_in, make_provider, photo):
        provider = make_provider(model_versions={"interior": DEFAULT_VERSIONS["interior"]})
        with pytest.raises(GenerationError, match="'video' feature has no model") as caught:
            provider.generate(make_request(photo, "video", motion="zoom_in"))

        assert not caught.value.retryable
        assert stand_in.state.create_statuses == []

    def test_an_oversized_output_is_refused_and_not_kept(self, stand_in, make_provider, photo):
        with pytest.raises(GenerationError, match="too large"):
            make_provider(max_output_bytes=100).generate(make_request(photo))

        assert not list((photo.parent / "out").glob("*"))


class TestConfiguration:
    def test_from_env_config_names_every_missing_key(self):
        config = {
            "MODEL_API_URL": "https://api.replicate.com",
            "MODEL_API_TOKEN": "",
            "MODEL_VERSION_INTERIOR": "abc",
        }
        with pytest.raises(ValueError) as caught:
            HttpModelProvider.from_env_config(config)

        text = str(caught.value)
        assert "MODEL_API_TOKEN" in text
        assert "MODEL_API_URL" not in text
        assert "MODEL_VERSION_INTERIOR" not in text
        for feature in FEATURE_KEYS[1:]:
            assert f"MODEL_VERSION_{feature.upper()}" in text

    def test_from_env_config_can_require_fewer_features(self):
        config = {
            "MODEL_API_URL": "https://api.replicate.com",
            "MODEL_API_TOKEN": "t",
            "MODEL_VERSION_INTERIOR": "abc",
        }
        with HttpModelProvider.from_env_config(config, required_features=["interior"]) as p:
            assert p.model_versions == {"interior": "abc"}

    def test_from_env_config_rejects_a_non_numeric_timeout(self):
        config = {
            "MODEL_API_URL": "https://x.example",
            "MODEL_API_TOKEN": "t",
            "MODEL_API_TIMEOUT_SECONDS": "soon",
        }
        with pytest.raises(ValueError, match="MODEL_API_TIMEOUT_SECONDS"):
            HttpModelProvider.from_env_config(config, required_features=())

    def test_an_unknown_feature_name_is_rejected(self):
        with pytest.raises(ValueError, match="interiour"):
            HttpModelProvider("https://x.example", "t", {"interiour": "abc"})
