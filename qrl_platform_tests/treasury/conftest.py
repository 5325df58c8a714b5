"""Fixtures of the treasury tests: the fake MEXC server."""

import pytest

from qrl_platform_tests.treasury.fake_mexc import FakeMexc


@pytest.fixture
def fake():
    """A local MEXC Spot v3 that checks signatures; distinctive credentials so leak scans can find them."""
    with FakeMexc(api_key="mx0vglTESTKEYtestkey", api_secret="TESTSECRET9f8e7d6c5b4a") as server:
        yield server
