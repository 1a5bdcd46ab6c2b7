"""IMDSv2 as the host agent reads it: a session token first, then metadata; a rotated token is renewed once."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from host_agent.adapters.imds import InstanceMetadata
from host_agent.errors import InstanceMetadataError
from host_agent.fakes.imds import FakeImds


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    server = FakeImds("i-0abc").start()
    yield server
    server.stop()


def test_a_rotated_token_is_fetched_again_and_the_read_succeeds(imds: FakeImds) -> None:
    metadata = InstanceMetadata(imds.url)
    assert metadata.instance_id() == "i-0abc"
    imds.rotate_token()  # the service no longer accepts the cached token (401)
    assert metadata.instance_id() == "i-0abc"
    assert metadata.spot_instance_action() is None  # no notice is a 404, not an error
    imds.post_spot_notice("terminate")
    assert metadata.spot_instance_action() == {"action": "terminate", "time": "2026-11-27T16:00:00Z"}


def test_an_unreachable_service_is_a_domain_error() -> None:
    with pytest.raises(InstanceMetadataError, match="token"):
        InstanceMetadata("http://127.0.0.1:9", timeout_s=0.5).instance_id()


def test_the_purchase_option_is_read_from_the_instance_life_cycle(imds: FakeImds) -> None:
    metadata = InstanceMetadata(imds.url)
    assert metadata.purchase_option() == "OnDemand"
    imds.life_cycle = "spot"
    assert metadata.purchase_option() == "Spot"
