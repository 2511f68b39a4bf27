"""POST /api/v1/projects/<slug>/feedback — corrections, outcomes and comments on served predictions."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.services.feedback import ACCEPTED, Status, parse_feedback_body, submit_feedback
from labeling.permissions import ProjectActionPermission

_STATUSES = [
    Status.STORED,
    Status.DUPLICATE,
    Status.UNKNOWN_REQUEST,
    Status.OTHER_PROJECT,
    Status.UNKNOWN_LABEL,
    Status.INVALID,
]

_ITEM = inline_serializer(
    "FeedbackItem",
    {
        "request_id": serializers.UUIDField(help_text="The request_id of a predict response."),
        "correct_label": serializers.CharField(required=False, help_text="A label key of the published taxonomy."),
        "outcome": serializers.JSONField(
            required=False, help_text='A key ("rerouted") or {"key": "rerouted", "value": "物流"}.'
        ),
        "comment": serializers.CharField(required=False, help_text="Free text; stored PII-masked."),
    },
)
_RESULT = inline_serializer(
    "FeedbackResult",
    {
        "index": serializers.IntegerField(),
        "request_id": serializers.CharField(allow_null=True),
        "status": serializers.ChoiceField(choices=_STATUSES),
        "message": serializers.CharField(),
        "feedback_id": serializers.IntegerField(allow_null=True),
        "review_task_id": serializers.IntegerField(allow_null=True),
    },
)


@extend_schema(tags=["predict"])
class FeedbackView(APIView):
    permission_classes = [IsAuthenticated, ProjectActionPermission]
    # The predict clients' token, and the predict throttle budget.
    project_action = "predict"

    @extend_schema(
        request=_ITEM,
        responses={
            200: inline_serializer(
                "FeedbackResults",
                {"results": serializers.ListField(child=_RESULT), "stored": serializers.IntegerField()},
            )
        },
        examples=[
            OpenApiExample(
                "a correction",
                value={"request_id": "3f2b6c1e-8d4a-4c1b-9a57-2e0f6d9b7c10", "correct_label": "物流"},
                request_only=True,
            ),
            OpenApiExample(
                "a batch",
                value={
                    "items": [
                        {
                            "request_id": "3f2b6c1e-8d4a-4c1b-9a57-2e0f6d9b7c10",
                            "outcome": {"key": "rerouted", "value": "物流"},
                        },
                        {"request_id": "0b7d9c2a-1e3f-4a5b-8c6d-7e8f9a0b1c2d", "comment": "客户说分错了"},
                    ]
                },
                request_only=True,
            ),
        ],
        summary="Send feedback on predictions (one item, a list, or {'items': [...]})",
    )
    def post(self, request: Request, slug: str) -> Response:
        items, single = parse_feedback_body(request.data)
        token = getattr(request.user, "api_token", None)
        results = submit_feedback(project=self.project, items=items, token=token)  # type: ignore[attr-defined]
        body = {
            "results": [result.as_dict() for result in results],
            "stored": sum(result.status == Status.STORED for result in results),
        }
        if single and results[0].status not in ACCEPTED:
            return Response(_single_error(results[0]), status=_single_status(results[0].status))
        return Response(body)


def _single_status(status: str) -> int:
    return 404 if status in {Status.UNKNOWN_REQUEST, Status.OTHER_PROJECT} else 400


def _single_error(result: object) -> dict:
    """One item that was not stored answers the API's error envelope, its status as the code."""
    as_dict = result.as_dict()  # type: ignore[attr-defined]
    return {"error": {"code": as_dict["status"], "message": as_dict["message"], "details": as_dict}}
