import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "shared"))

from lightweb_testlib import node  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(name="host", scope="module")
def fixture_host(_testinfra_host):
    """testinfra's host for each test, reached the way node() reaches it."""
    return node(_testinfra_host.backend.get_hostname())
