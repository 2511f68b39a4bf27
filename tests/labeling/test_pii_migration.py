"""Migration 0002 masks ids and metadata that were imported before they were masked."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE, AFTER = ("labeling", "0001_initial"), ("labeling", "0002_input_pii_settings")


@pytest.fixture
def back_to_latest_afterwards():
    yield
    # The test walks labeling back to 0001: leave every app at its leaf again, or later tests miss columns.
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_existing_ids_and_metadata_are_masked_on_migrate(back_to_latest_afterwards):
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    old = executor.loader.project_state([BEFORE]).apps
    project = old.get_model("labeling", "Project").objects.create(slug="old", name="Old", max_text_chars=2000)
    item = old.get_model("labeling", "Item").objects.create(
        project=project, text="t", normalized_text="t", text_hash="h" * 64, external_id="user-13812345678",
        metadata={"contact": "13912345678 / a.b@example.com", "channel": "app"},
    )  # fmt: skip
    job = old.get_model("labeling", "ImportJob").objects.create(
        project=project, file_path="/nowhere", file_name="13712345678.csv", file_format="csv", source="crm"
    )

    executor = MigrationExecutor(connection)
    executor.migrate([AFTER])
    new = executor.loader.project_state([AFTER]).apps
    item = new.get_model("labeling", "Item").objects.get(pk=item.pk)
    assert item.external_id == "user-<PHONE>"
    assert item.metadata == {"contact": "<PHONE> / <EMAIL>", "channel": "app"}
    assert new.get_model("labeling", "ImportJob").objects.get(pk=job.pk).file_name == "<PHONE>.csv"
