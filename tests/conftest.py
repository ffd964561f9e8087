from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from hypothesis import settings

from skylift.kit import sealing
from skylift_testkit import Server, running_server

# The suite runs on small machines shared with other work: a property example that takes a while once
# (the process was not scheduled) is not a failure. Hypothesis's 200 ms deadline per example made it one.
settings.register_profile("shared-machine", deadline=None)
settings.load_profile("shared-machine")


@pytest.fixture(scope="session", autouse=True)
def credentials_keyring() -> sealing.Keyring:
    """Tests that work on the database in-process seal credentials as the server does."""
    keyring = sealing.Keyring([sealing.new_key()])
    sealing.use(keyring)
    return keyring


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real Skylift process shared by the end-to-end tests; each test makes its own product."""
    with running_server(tmp_path_factory.mktemp("skylift") / "data") as running:
        yield running


@pytest.fixture
def api(server: Server) -> Iterator[httpx.Client]:
    with server.api() as client:
        yield client
