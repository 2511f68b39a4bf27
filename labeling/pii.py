"""PII masking applied before any user text is stored or logged.

Order matters: e-mails first, then order numbers (recognised by their keyword, so a Luhn-valid order number
is still an order number), then ID cards and bank cards (checksums keep long order numbers and prices from
being eaten), and phone numbers last. Full-width digits, letters and +@#- are folded to half width first
(one character for one, Chinese punctuation untouched), so "１３８…" is caught too.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from django.utils.crypto import salted_hmac
from stdnum import luhn
from stdnum.cn import ric

PHONE = "<PHONE>"
EMAIL = "<EMAIL>"
ID_CARD = "<ID_CARD>"
BANK_CARD = "<BANK_CARD>"
ORDER_ID = "<ORDER_ID>"

_EMAIL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._%+-]*[@＠][A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")

# 订单号：2023…, 单号 SF1234…, order #A12345, order no. 98765432. The id must hold at least five digits, so
# "订单 3 件" or "order 2 items" stay as they are.
_ORDER = re.compile(
    r"(?P<kw>(?:订单|运单|快递单|物流单|退款单|售后单|单)(?:编号|号码|号|ID|id)?|order(?:\s*(?:no\.?|number|id|num))?)"
    r"(?P<sep>[\s:：#＃=]*(?:是|为|:|：)?[\s:：#＃]*)"
    r"(?P<id>(?=[A-Za-z\d-]*(?:\d[A-Za-z-]*){5})[A-Za-z]{0,4}\d[A-Za-z\d-]{4,39})(?![A-Za-z\d])",
    re.IGNORECASE,
)

_ID_CARD = re.compile(r"(?<![A-Za-z\d])\d{17}[\dXx](?![A-Za-z\d])", re.ASCII)

# 13-19 digits, either plain or in groups of four separated by a space or dash.
_BANK_CARD = re.compile(r"(?<![\d-])(?:\d{4}[ -]){2,4}\d{1,4}(?![\d-])|(?<![\d.])\d{13,19}(?![\d.])", re.ASCII)

_PHONE_PATTERNS = [
    # Chinese mobile: optional +86 / 0086 / 86, then 1[3-9]x xxxx xxxx with optional separators.
    re.compile(r"(?<![\d+])(?:(?:\+|＋|00)?86[\s-]?)?1[3-9]\d[\s-]?\d{4}[\s-]?\d{4}(?!\d)", re.ASCII),
    # International: +CC followed by 7-12 digits in groups.
    re.compile(
        r"(?:\+|＋|(?<!\d)00)[1-9]\d{0,2}[\s-]?(?:\(\d{1,4}\)[\s-]?)?\d{2,4}(?:[\s-]?\d{2,4}){1,3}(?![\d-])", re.ASCII
    ),
    # Chinese landline: 0 + 2-3 digit area code, then 7-8 digits: 010-12345678, (0755) 1234567.
    re.compile(r"(?<![\d.])(?:\(0\d{2,3}\)|0\d{2,3})[\s-]?\d{7,8}(?![\d-])", re.ASCII),
    # North American: (415) 555-0132, 415-555-0132. Not 400-/800- service hotlines, which are no one's PII.
    re.compile(r"(?<!\d)(?!400-|800-)(?:\(\d{3}\)\s?|\d{3}-)\d{3}-\d{4}(?![\d-])", re.ASCII),
]


_FULL_WIDTH_FOLD = str.maketrans(
    {chr(code): chr(code - 0xFEE0) for code in [*range(0xFF10, 0xFF1A), *range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)]}
    | {"＋": "+", "＠": "@", "＃": "#", "－": "-"}
)


def _is_id_card(value: str) -> bool:
    return ric.is_valid(value.upper())


def _is_bank_card(value: str) -> bool:
    digits = "".join(ch for ch in value if ch.isascii() and ch.isdigit())
    return 13 <= len(digits) <= 19 and luhn.is_valid(digits)


def _sub(pattern: re.Pattern[str], placeholder: str, text: str, accept: Callable[[str], bool] | None = None) -> str:
    def replace(match: re.Match[str]) -> str:
        if accept is not None and not accept(match.group(0)):
            return match.group(0)
        return placeholder

    return pattern.sub(replace, text)


def _sub_order(text: str) -> str:
    # Keep the keyword ("订单号：") so the text still reads naturally; only the id itself is hidden.
    return _ORDER.sub(lambda m: f"{m.group('kw')}{m.group('sep')}{ORDER_ID}", text)


def mask_pii(text: str) -> str:
    """Replace phone numbers, e-mails, Chinese ID-card numbers, bank-card numbers and order numbers by
    `<PHONE>`, `<EMAIL>`, `<ID_CARD>`, `<BANK_CARD>`, `<ORDER_ID>`. Prices, dates and short numbers stay."""
    text = text.translate(_FULL_WIDTH_FOLD)
    text = _sub(_EMAIL, EMAIL, text)
    text = _sub_order(text)
    text = _sub(_ID_CARD, ID_CARD, text, _is_id_card)
    text = _sub(_BANK_CARD, BANK_CARD, text, _is_bank_card)
    for pattern in _PHONE_PATTERNS:
        text = _sub(pattern, PHONE, text)
    return text


PLACEHOLDERS = (PHONE, EMAIL, ID_CARD, BANK_CARD, ORDER_ID)


def contains_pii_placeholder(text: str) -> bool:
    return any(token in text for token in PLACEHOLDERS)


# --- PII in fields other than the text ----------------------------------------------------------------------

MASK = "mask"
HASH = "hash"
FIELD_MODES = (MASK, HASH)
HASH_PREFIX = "<HASH:"


def hash_value(value: str) -> str:
    """A keyed hash (HMAC with the deployment's SECRET_KEY): equal values stay equal, so ids still join, but a
    phone number cannot be recovered by hashing every possible number."""
    return f"{HASH_PREFIX}{salted_hmac('sceneclf.pii-field', value).hexdigest()[:24]}>"


def protect_value(value: str, mode: str = MASK) -> str:
    """An id, a session id or a metadata value as it may be stored: PII found by the text patterns is masked
    (`user-13812345678` → `user-<PHONE>`), or with mode `hash` the whole value becomes its keyed hash."""
    masked = mask_pii(value)
    if masked == value.translate(_FULL_WIDTH_FOLD):
        return value  # nothing personal found: keep the value exactly as sent
    return hash_value(value) if mode == HASH else masked


def protect_data(value: object, mode: str = MASK) -> object:
    """`protect_value` on every string and number of a JSON-like value (keys too: a phone number can be a key).
    Numbers are checked as their digits, since 13812345678 is as personal as "13812345678"."""
    if isinstance(value, str):
        return protect_value(value, mode)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        protected = protect_value(str(value), mode)
        return value if protected == str(value) else protected
    if isinstance(value, dict):
        return {protect_value(str(key), mode): protect_data(item, mode) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [protect_data(item, mode) for item in value]
    return value
