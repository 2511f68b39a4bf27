"""Writes for items: every text enters through `prepare_text`, so masking, normalisation and hashing are
the same for imports, the demo and texts the predict side turns into review items."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils.translation import gettext

from labeling.models import Item, Project
from labeling.pii import mask_pii
from labeling.text import near_duplicate_group, normalize_text, text_hash
from sceneclf_site.api_errors import ServiceError


@dataclass(frozen=True)
class PreparedText:
    text: str  # masked, as shown to annotators
    raw_text: str  # unmasked; empty unless the project keeps raw text
    normalized_text: str
    text_hash: str


def prepare_text(project: Project, raw: str) -> PreparedText:
    """Mask PII, then normalise and hash. Raises ServiceError for an empty or over-long text."""
    stripped = raw.strip()
    length = len(normalize_text(stripped))
    if length == 0:
        raise ServiceError(gettext("The text is empty."), code="empty_text")
    if length > project.max_text_chars:
        raise ServiceError(
            gettext("The text has %(length)s characters; this project's limit is %(max_text_chars)s.")
            % {"length": length, "max_text_chars": project.max_text_chars},
            code="text_too_long",
            details={"length": length, "limit": project.max_text_chars},
        )
    masked = mask_pii(stripped)
    # NFKC can reveal digits the first pass could not see (e.g. circled or styled digits): mask again.
    normalized = mask_pii(normalize_text(masked))
    if normalized != normalize_text(masked):
        masked = normalized
    return PreparedText(
        text=masked,
        raw_text=stripped if project.keep_raw_text else "",
        normalized_text=normalized,
        text_hash=text_hash(normalized),
    )


def item_from_prepared(
    project: Project, prepared: PreparedText, *, source: str = "", external_id: str = "", metadata: Any = None
) -> Item:
    """An unsaved Item (for bulk_create)."""
    return Item(
        project=project,
        text=prepared.text,
        raw_text=prepared.raw_text,
        normalized_text=prepared.normalized_text,
        text_hash=prepared.text_hash,
        group_key=near_duplicate_group(prepared.normalized_text),
        source=source[:100],
        external_id=external_id[:200],
        metadata=metadata or {},
    )


def get_or_create_item(
    *, project: Project, text: str, source: str = "", external_id: str = "", metadata: dict | None = None
) -> tuple[Item, bool]:
    """The item for this text (same masked, normalised text → same item), created if new.
    For single texts, e.g. a prediction that goes to the review queue."""
    prepared = prepare_text(project, text)
    existing = Item.objects.filter(project=project, text_hash=prepared.text_hash).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            item = item_from_prepared(project, prepared, source=source, external_id=external_id, metadata=metadata)
            item.save()
            return item, True
    except IntegrityError:
        # Another request stored the same text a moment ago.
        return Item.objects.get(project=project, text_hash=prepared.text_hash), False
