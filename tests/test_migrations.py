import pytest
from django.core.management import call_command


@pytest.mark.smoke
def test_models_and_migrations_agree(db):
    # Fails when a model changed without a migration: `make run` would then crash on a fresh clone.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


@pytest.mark.smoke
def test_openapi_schema_generates_without_warnings(capsys):
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")
