"""An event without a person (an import by a script, a system sweep) has actor null, and the schema says so."""

from __future__ import annotations

import pytest
from drf_spectacular.generators import SchemaGenerator


@pytest.mark.smoke
def test_item_event_actor_is_nullable_in_the_schema():
    schema = SchemaGenerator().get_schema(request=None, public=True)
    actor = schema["components"]["schemas"]["ItemEventOut"]["properties"]["actor"]
    assert actor.get("nullable") is True, actor
