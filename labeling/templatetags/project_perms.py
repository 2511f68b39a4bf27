"""`{% project_can project "manage" as can_manage %}`: the same rule the views apply, for showing links."""

from __future__ import annotations

from django import template

from labeling.models import Project
from labeling.permissions import can

register = template.Library()


@register.simple_tag(takes_context=True)
def project_can(context: template.Context, project: Project, action: str) -> bool:
    request = context.get("request")
    user = getattr(request, "user", None) or context.get("user")
    return bool(user is not None and project is not None and can(user, project, action))
