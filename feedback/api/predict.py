"""POST /api/v1/projects/<slug>/predict — for project API tokens and member sessions."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from feedback.services.predict import parse_predict_request, predict_for_project
from labeling.permissions import ProjectActionPermission
from modeling.engine.evaluation.calibration import ABSTAIN_REASONS
from sceneclf_site.throttling import OneReadThrottling

_STAGE = inline_serializer(
    "PredictionStage",
    {
        "stage": serializers.ChoiceField(choices=["primary", "recheck"]),
        "model_version": serializers.CharField(),
        "label": serializers.CharField(help_text="The label this stage ranked first."),
        "confidence": serializers.FloatField(help_text="This stage's calibrated probability of its label."),
        "ms": serializers.FloatField(help_text="Model time of this stage for the text, in milliseconds."),
    },
)


@extend_schema_field(
    {
        "oneOf": [{"type": "boolean"}, {"type": "string", "enum": ["reason"]}],
        "default": False,
        "description": 'true: the nearest labelled examples; "reason": also a generated sentence for texts a '
        "decoder version scored.",
    }
)
class ExplainField(serializers.JSONField):
    pass


_PREDICTION = inline_serializer(
    "Prediction",
    {
        "label": serializers.CharField(help_text="The answer: the top label, or the fallback (其他) when abstained."),
        "confidence": serializers.FloatField(
            help_text="Calibrated probability of `label` (when abstained: of the fallback label)."
        ),
        "top_label": serializers.CharField(help_text="The label the model found most likely."),
        "top_confidence": serializers.FloatField(help_text="Calibrated probability of `top_label`."),
        "topk": serializers.ListField(child=serializers.DictField()),
        "abstained": serializers.BooleanField(),
        "abstain_reason": serializers.ChoiceField(
            choices=list(ABSTAIN_REASONS),
            allow_null=True,
            help_text="Why the model abstained (null when it answered): below_threshold (top probability under "
            "the threshold), out_of_scope (the text lies far from all training texts), label_retired (the top "
            "label is not in the latest published taxonomy), recheck_disagreed (re-checked, still below the "
            "threshold, and the re-check's top label differs from the published version's).",
        ),
        "model_version": serializers.CharField(),
        "taxonomy_version": serializers.IntegerField(help_text="The taxonomy version the model was trained on."),
        "request_id": serializers.UUIDField(),
        "stage": serializers.ChoiceField(
            choices=["primary", "recheck"],
            help_text="recheck when the project's cascade re-scored the text with its re-check version.",
        ),
        "stages": serializers.ListField(child=_STAGE, help_text="Each stage that scored the text, in order."),
        "explain": serializers.DictField(
            required=False,
            help_text='With explain: `neighbours`; with explain "reason" also `reason` (null when no decoder '
            "scored the text).",
        ),
    },
)


@extend_schema(tags=["predict"])
class PredictView(OneReadThrottling, APIView):
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
                "explain": ExplainField(required=False),
            },
        ),
        responses={200: _PREDICTION},
        examples=[
            OpenApiExample("one text", value={"text": "付款成功了但订单显示未支付", "k": 3}, request_only=True),
            OpenApiExample(
                "one prediction",
                value={
                    "label": "支付",
                    "confidence": 0.91,
                    "top_label": "支付",
                    "top_confidence": 0.91,
                    "topk": [
                        {"label": "支付", "probability": 0.91},
                        {"label": "售后", "probability": 0.05},
                        {"label": "其他", "probability": 0.02},
                    ],
                    "abstained": False,
                    "abstain_reason": None,
                    "model_version": "demo@v1",
                    "taxonomy_version": 1,
                    "request_id": "3f2b6c1e-8d4a-4c1b-9a57-2e0f6d9b7c10",
                    "stage": "primary",
                    "stages": [
                        {
                            "stage": "primary",
                            "model_version": "demo@v1",
                            "label": "支付",
                            "confidence": 0.91,
                            "ms": 14.2,
                        }
                    ],
                },
                response_only=True,
                status_codes=["200"],
            ),
        ],
        summary="Classify one text (or a batch in `texts`)",
    )
    def post(self, request: Request, slug: str) -> Response:
        predict_request = parse_predict_request(request.data)
        token = getattr(request.user, "api_token", None)
        return Response(predict_for_project(project=self.project, request=predict_request, token=token))
