"""Fixtures of the test-link unit tests."""

import pytest
from unit.testlink.testlink_fakes import World, build_world


@pytest.fixture
def world() -> World:
    """GIVEN the affiliate 1234567 (two postbacks, a test link) and empty runs, queue and delivery log."""
    return build_world()
