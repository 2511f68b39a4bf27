"""Text normalisation and hashing. Items are de-duplicated by the hash of their normalised, masked text."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")
# Placeholders like <PHONE> must not make two texts differ only by which PII they hid.
_PLACEHOLDER = re.compile(r"<[A-Z_]+>")


def normalize_text(text: str) -> str:
    """NFKC folds full-width letters/digits to half width; whitespace runs become one space."""
    folded = unicodedata.normalize("NFKC", text)
    return _WHITESPACE.sub(" ", folded).strip()


def text_hash(normalized_text: str) -> str:
    """sha256 hex digest; callers pass the normalised *masked* text so raw PII never reaches the hash."""
    return hashlib.sha256(normalized_text.encode("utf-8")).hexdigest()


def near_duplicate_key(normalized_text: str) -> str:
    """A coarse key that maps near-duplicates together: lower case, no placeholders, digits,
    punctuation, symbols or spaces. "订单123还没到!!" and "订单 456 还没到" share a key."""
    without_placeholders = _PLACEHOLDER.sub("", normalized_text).lower()
    key = "".join(ch for ch in without_placeholders if unicodedata.category(ch)[0] in {"L", "M"})
    # Texts of only digits/emoji keep their own identity instead of all sharing the empty key.
    return key or normalized_text


def near_duplicate_group(normalized_text: str) -> str:
    """sha256 of `near_duplicate_key`: stored on the item, so near-duplicates are found with one query."""
    return text_hash(near_duplicate_key(normalized_text))
