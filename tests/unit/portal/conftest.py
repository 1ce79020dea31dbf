"""The portal's unit tests: its service over in-memory fakes (portal_support)."""

from __future__ import annotations

import pytest
from unit.portal.portal_support import Portal, build_portal


@pytest.fixture
def portal() -> Portal:
    return build_portal()
