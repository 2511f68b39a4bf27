"""`{{ value|gold_method_label }}`: a gold method stored in an event's detail, shown in the page's language."""

from __future__ import annotations

from django import template

from labeling.models import GoldLabel

register = template.Library()


@register.filter
def gold_method_label(value: str) -> str:
    return str(GoldLabel.Method(value).label) if value in GoldLabel.Method.values else value
