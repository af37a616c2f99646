"""A registered key is redacted whole even when a prefix of it is registered too (another
client's shorter key): no tail of it is left in a message."""

from __future__ import annotations

from llm_async.errors import redact, register_secret


def test_a_key_is_redacted_whole_when_its_prefix_is_also_a_secret() -> None:
    register_secret("zz-prefix")
    register_secret("zz-prefix-and-the-rest-of-a-long-key")
    assert redact("auth failed for zz-prefix-and-the-rest-of-a-long-key") == "auth failed for ***"
    assert redact("and zz-prefix alone") == "and *** alone"
