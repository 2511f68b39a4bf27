"""POST /api/v1/projects/<slug>/predict — for project API tokens and member sessions."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.services.predict import parse_predict_request, predict_for_project
from labeling.permissions import ProjectActionPermission

_PREDICTION = inline_serializer(
    "Prediction",
    {
        "label": serializers.CharField(),
        "confidence": serializers.FloatField(),
        "topk": serializers.ListField(child=serializers.DictField()),
        "abstained": serializers.BooleanField(),
        "model_version": serializers.CharField(),
        "request_id": serializers.UUIDField(),
        "explain": serializers.DictField(required=False),
    },
)


class PredictView(APIView):
    # Authentication first: an anonymous client gets 401 (with the Token challenge), not the members-only 404.
    permission_classes = [IsAuthenticated, ProjectActionPermission]
    project_action = "predict"

    @extend_schema(
        request=inline_serializer(
            "PredictRequest",
            {
                "text": serializers.CharField(required=False),
                "texts": serializers.ListField(child=serializers.CharField(), required=False),
                "k": serializers.IntegerField(required=False, default=3),
                "session_id": serializers.CharField(required=False),
                "explain": serializers.BooleanField(required=False, default=False),
            },
        ),
        responses={200: _PREDICTION},
        examples=[OpenApiExample("one text", value={"text": "付款成功了但订单显示未支付", "k": 3})],
    )
    def post(self, request: Request, slug: str) -> Response:
        predict_request = parse_predict_request(request.data)
        token = getattr(request.user, "api_token", None)
        return Response(predict_for_project(project=self.project, request=predict_request, token=token))
