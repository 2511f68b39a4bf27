"""REST endpoint of one item's provenance: its gold label, annotations, open conflicts and history."""

from __future__ import annotations

from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.api.workspace import CurrentGoldSerializer, GoldConflictOutSerializer
from labeling.models import Annotation, ItemEvent
from labeling.permissions import ProjectActionPermission
from labeling.selectors.history import gold_provenance, item_annotations, item_get, item_history, open_conflicts
from sceneclf_site.api_errors import NotFoundError


class ItemAnnotationOutSerializer(serializers.ModelSerializer):
    annotator = serializers.CharField(source="annotator.username")
    taxonomy_version = serializers.IntegerField(source="taxonomy.number")

    class Meta:
        model = Annotation
        fields = ["annotator", "label_key", "taxonomy_version", "time_ms", "created_at"]
        read_only_fields = fields


class ItemEventOutSerializer(serializers.ModelSerializer):
    kind = serializers.CharField(
        help_text="annotated | annotation_undone | gold_derived | gold_removed | imported | reviewed | "
        "review_conflict | overridden | adjudicated | rechecked | split_assigned"
    )
    actor = serializers.CharField(source="actor.username", default=None, allow_null=True)

    class Meta:
        model = ItemEvent
        fields = ["id", "kind", "actor", "label_before", "label_after", "reason", "detail", "created_at"]
        read_only_fields = fields


class ItemHistoryItemSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField(help_text="as stored, after PII masking")
    split = serializers.CharField(help_text="train | val | test, or empty")
    source = serializers.CharField()
    external_id = serializers.CharField()


class ItemHistoryOutSerializer(serializers.Serializer):
    item = ItemHistoryItemSerializer()
    gold = CurrentGoldSerializer(allow_null=True)
    annotations = ItemAnnotationOutSerializer(many=True)
    open_conflicts = GoldConflictOutSerializer(many=True)
    history = ItemEventOutSerializer(many=True)


@extend_schema(tags=["items"])
class ItemHistoryApi(APIView):
    """Reviewers and owners only: annotators would see each other's labels."""

    permission_classes = [permissions.IsAuthenticated, ProjectActionPermission]
    project_action = "review"

    @extend_schema(responses=ItemHistoryOutSerializer, summary="Change history of one item")
    def get(self, request: Request, slug: str, item_id: int) -> Response:
        item = item_get(self.project, item_id)  # type: ignore[attr-defined]
        if item is None:
            raise NotFoundError(gettext("No item %(item_id)s in this project.") % {"item_id": item_id})
        provenance = gold_provenance(item)
        body = {
            "item": item,
            "gold": provenance.as_dict() if provenance else None,
            "annotations": item_annotations(item),
            "open_conflicts": open_conflicts(item),
            "history": item_history(item),
        }
        return Response(ItemHistoryOutSerializer(body).data)
