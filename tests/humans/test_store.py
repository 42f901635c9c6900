"""The `human_actions` claims on SQLite and PostgreSQL: what makes webhook + polling count once."""

from __future__ import annotations

import uuid

from sharedctx.store.base import Store


def test_a_claim_is_taken_once_linked_and_released(store: Store) -> None:
    key = uuid.uuid4().hex  # PostgreSQL tables are shared across the session's tests
    assert store.claim_action("github", key, None) is True
    assert store.claim_action("github", key, None) is False
    assert store.claim_action("jira", key, None) is True  # scopes are separate
    assert store.action_entry("github", key) is None
    store.link_action("github", key, "01ENTRY")
    assert store.action_entry("github", key) == "01ENTRY"
    store.release_action("github", key)
    assert store.action_entry("github", key) is None
    assert store.claim_action("github", key, None) is True  # released: the next delivery or poll takes it
