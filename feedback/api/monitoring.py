"""GET /api/v1/projects/<slug>/monitoring — the dashboard's figures as JSON (members)."""

from __future__ import annotations

from django.utils.translation import gettext
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.selectors.monitoring import MAX_DAYS, dashboard
from labeling.permissions import ProjectActionPermission
from sceneclf_site.api_errors import ServiceError


def parse_days(raw: str | None, default: int = 14) -> int:
    if raw in (None, ""):
        return default
    try:
        days = int(raw)
    except ValueError:
        days = 0
    if not 1 <= days <= MAX_DAYS:
        raise ServiceError(
            gettext("'days' must be an integer from 1 to %(max_days)s.") % {"max_days": MAX_DAYS},
            code="invalid_parameter",
            details={"days": raw},
        )
    return days


@extend_schema(tags=["predict"])
class MonitoringView(APIView):
    permission_classes = [IsAuthenticated, ProjectActionPermission]
    project_action = "view"

    @extend_schema(
        parameters=[
            OpenApiParameter("days", int, required=False, description="Window in local days (1-90, default 14).")
        ],
        responses={200: dict},
        summary="Production figures per version and day, per label, drift checks and alerts",
    )
    def get(self, request: Request, slug: str) -> Response:
        days = parse_days(request.query_params.get("days"))
        return Response(dashboard(self.project, days=days))  # type: ignore[attr-defined]
