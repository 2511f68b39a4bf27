"""REST endpoints of the labeling workspace, adjudication, review queue and agreement. Thin: serializers
check shapes, services decide."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.models import AgreementReport, ItemSuggestion, ReviewTask, WorkspaceSettings
from labeling.permissions import ProjectActionPermission
from labeling.selectors.agreement import latest_reports
from labeling.selectors.history import gold_provenance_for
from labeling.selectors.review import adjudication_queue, open_review_tasks
from labeling.selectors.workspace import annotator_progress, workspace_labels, workspace_settings
from labeling.services.adjudication import adjudicate
from labeling.services.gold import latest_published
from labeling.services.review import resolve_review_task
from labeling.services.workspace import (
    next_assignment,
    skip_item,
    submit_annotation,
    undo_last,
    update_workspace_settings,
)

MEMBER = [permissions.IsAuthenticated, ProjectActionPermission]


class LabelOutSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    hotkey = serializers.CharField()
    definition = serializers.CharField()
    decision_rules = serializers.CharField()
    is_fallback = serializers.BooleanField()


class ItemOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    text = serializers.CharField()


class SuggestionOutSerializer(serializers.ModelSerializer):
    zero_shot = serializers.BooleanField(
        source="is_zero_shot", read_only=True, help_text="From the taxonomy alone, before the first trained model."
    )

    class Meta:
        model = ItemSuggestion
        fields = ["label_key", "confidence", "topk", "model_ref", "zero_shot"]


class ProgressOutSerializer(serializers.Serializer):
    total = serializers.IntegerField()
    today = serializers.IntegerField()
    remaining = serializers.IntegerField()


class NextItemOutSerializer(serializers.Serializer):
    item = ItemOutSerializer(allow_null=True)
    taxonomy_version = serializers.IntegerField(allow_null=True)
    labels = LabelOutSerializer(many=True)
    suggestion = SuggestionOutSerializer(allow_null=True)
    progress = ProgressOutSerializer()


@extend_schema(tags=["workspace"])
class NextItemApi(APIView):
    """The annotator's current item, or the next one from the queue (claims a slot)."""

    permission_classes = MEMBER
    project_action = "annotate"

    @extend_schema(responses=NextItemOutSerializer, summary="The next item to label")
    def get(self, request: Request, slug: str) -> Response:
        project = self.project  # type: ignore[attr-defined]
        taxonomy = latest_published(project)
        assignment = next_assignment(project=project, annotator=request.user) if taxonomy else None
        suggestion = None
        if assignment is not None and project.show_model_suggestion:
            suggestion = ItemSuggestion.objects.filter(item_id=assignment.item_id).first()
        body = {
            "item": {"id": assignment.item_id, "text": assignment.item.text} if assignment else None,
            "taxonomy_version": taxonomy.number if taxonomy else None,
            "labels": [vars(label) for label in workspace_labels(taxonomy)] if taxonomy else [],
            "suggestion": suggestion,
            "progress": vars(annotator_progress(project, request.user)),
        }
        return Response(NextItemOutSerializer(body).data)


class AnnotationInSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    label = serializers.CharField(max_length=64)
    time_ms = serializers.IntegerField(min_value=0, help_text="Display-to-submit time; capped at 10 minutes.")
    client_key = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text="Idempotency key (or send the `Idempotency-Key` header): a retry with the same key returns "
        "the stored annotation with 200.",
    )


class AnnotationOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    item_id = serializers.IntegerField()
    label = serializers.CharField(source="label_key")
    taxonomy_version = serializers.IntegerField(source="taxonomy.number")
    time_ms = serializers.IntegerField()
    created_at = serializers.DateTimeField()


@extend_schema(tags=["workspace"])
class AnnotationCreateApi(APIView):
    permission_classes = MEMBER
    project_action = "annotate"

    @extend_schema(
        summary="Submit a label for an item",
        request=AnnotationInSerializer,
        parameters=[OpenApiParameter("Idempotency-Key", str, OpenApiParameter.HEADER, required=False)],
        responses={201: AnnotationOutSerializer, 200: AnnotationOutSerializer},
        description="201 when stored; 200 with the stored annotation when this is a retry of a stored "
        "submission (same idempotency key, or the same item and label).",
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(AnnotationInSerializer, request.data)
        submission = submit_annotation(
            project=self.project,  # type: ignore[attr-defined]
            annotator=request.user,
            item_id=data["item_id"],
            label_key=data["label"],
            time_ms=data["time_ms"],
            client_key=request.headers.get("Idempotency-Key") or data["client_key"],
        )
        code = status.HTTP_201_CREATED if submission.created else status.HTTP_200_OK
        return Response(AnnotationOutSerializer(submission.annotation).data, status=code)


class SkipInSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    reason = serializers.CharField(max_length=200)


class ItemRefSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()


@extend_schema(tags=["workspace"])
class SkipApi(APIView):
    permission_classes = MEMBER
    project_action = "annotate"

    @extend_schema(request=SkipInSerializer, responses={201: ItemRefSerializer}, summary="Skip an item")
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(SkipInSerializer, request.data)
        skip = skip_item(
            project=self.project,  # type: ignore[attr-defined]
            annotator=request.user,
            item_id=data["item_id"],
            reason=data["reason"],
        )
        return Response({"item_id": skip.item_id}, status=status.HTTP_201_CREATED)


@extend_schema(tags=["workspace"])
class UndoApi(APIView):
    permission_classes = MEMBER
    project_action = "annotate"

    @extend_schema(request=None, responses=ItemRefSerializer, summary="Undo your last annotation or skip")
    def post(self, request: Request, slug: str) -> Response:
        item = undo_last(project=self.project, annotator=request.user)  # type: ignore[attr-defined]
        return Response({"item_id": item.pk})


class GoldAnnotatorSerializer(serializers.Serializer):
    username = serializers.CharField()
    label = serializers.CharField()


class CurrentGoldSerializer(serializers.Serializer):
    """The item's gold label as it stands: how it was made (method) and by whom."""

    label = serializers.CharField()
    method = serializers.CharField(help_text="imported | single | unanimous | majority | adjudicated | review")
    decided_by = serializers.CharField(allow_null=True, help_text="reviewer, adjudicator or importer")
    annotators = GoldAnnotatorSerializer(many=True, help_text="the annotations derived gold came from")
    taxonomy_version = serializers.IntegerField()
    updated_at = serializers.CharField(allow_null=True)
    needs_recheck = serializers.BooleanField()
    recheck_reason = serializers.CharField()


class GoldConflictOutSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    gold_label = serializers.CharField()
    proposed_label = serializers.CharField()
    proposed_by = serializers.CharField(source="proposed_by.username", default=None)
    review_task_id = serializers.IntegerField(allow_null=True)
    comment = serializers.CharField()
    created_at = serializers.DateTimeField()


class AdjudicationEntrySerializer(serializers.Serializer):
    item = ItemOutSerializer()
    labels = serializers.ListField(child=serializers.CharField())
    suggestion = serializers.CharField(allow_null=True)
    gold = CurrentGoldSerializer(allow_null=True, help_text="set when a review decision disputes this gold")
    conflicts = GoldConflictOutSerializer(many=True)


class AdjudicateInSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    label = serializers.CharField(max_length=64)
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class GoldOutSerializer(serializers.Serializer):
    item_id = serializers.IntegerField()
    label = serializers.CharField(source="label_key")
    method = serializers.CharField()
    taxonomy_version = serializers.IntegerField(source="taxonomy.number")


@extend_schema(tags=["review"])
class AdjudicationApi(APIView):
    permission_classes = MEMBER
    project_action = "adjudicate"

    @extend_schema(responses=AdjudicationEntrySerializer(many=True), summary="Items whose annotators disagree")
    def get(self, request: Request, slug: str) -> Response:
        entries = adjudication_queue(self.project, limit=200)  # type: ignore[attr-defined]
        body = [
            {
                "item": {"id": e.item.pk, "text": e.item.text},
                "labels": e.labels,
                "suggestion": e.suggestion,
                "gold": e.gold.as_dict() if e.gold else None,
                "conflicts": e.conflicts,
            }
            for e in entries
        ]
        return Response(AdjudicationEntrySerializer(body, many=True).data)

    @extend_schema(
        request=AdjudicateInSerializer,
        responses={201: GoldOutSerializer},
        summary="Decide the gold label of a disputed item",
    )
    def post(self, request: Request, slug: str) -> Response:
        data = _valid(AdjudicateInSerializer, request.data)
        gold = adjudicate(
            project=self.project,  # type: ignore[attr-defined]
            item_id=data["item_id"],
            label_key=data["label"],
            decided_by=request.user,
            reason=data["reason"],
        )
        return Response(GoldOutSerializer(gold).data, status=status.HTTP_201_CREATED)


class ReviewTaskSerializer(serializers.ModelSerializer):
    """Pass the items' provenance as context["gold"] ({item_id: GoldProvenance}, see `gold_provenance_for`)."""

    text = serializers.CharField(source="item.text", read_only=True)
    gold = serializers.SerializerMethodField(help_text="the item's current gold label, or null")
    # Plain strings in the schema: the choice sets are documented on the model, and several models name a
    # field `status`, which would make drf-spectacular invent enum names.
    kind = serializers.CharField(
        read_only=True, help_text="abstained | low_confidence | label_issue | conflict | feedback"
    )
    status = serializers.CharField(read_only=True, help_text="open | resolved")
    resolution = serializers.CharField(
        read_only=True, help_text="confirmed | corrected | out_of_scope | adjudication (sent there), or empty"
    )

    class Meta:
        model = ReviewTask
        fields = [
            "id",
            "item_id",
            "text",
            "gold",
            "kind",
            "suggested_label",
            "confidence",
            "topk",
            "neighbours",
            "model_version_ref",
            "risk",
            "source_ref",
            "status",
            "resolution",
            "resolved_label",
            "comment",
            "created_at",
            "resolved_at",
        ]
        read_only_fields = fields

    @extend_schema_field(CurrentGoldSerializer(allow_null=True))
    def get_gold(self, task: ReviewTask) -> dict[str, Any] | None:
        provenance = self.context.get("gold", {}).get(task.item_id)
        return provenance.as_dict() if provenance else None


class ReviewTaskFilterSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=ReviewTask.Kind.values, required=False, allow_blank=True)


@extend_schema(tags=["review"])
class ReviewTaskListApi(APIView):
    permission_classes = MEMBER
    project_action = "review"

    @extend_schema(
        summary="Open review tasks",
        parameters=[OpenApiParameter("kind", str, enum=ReviewTask.Kind.values, required=False)],
        responses=ReviewTaskSerializer(many=True),
    )
    def get(self, request: Request, slug: str) -> Response:
        kind = _valid(ReviewTaskFilterSerializer, request.query_params).get("kind") or None
        tasks = list(open_review_tasks(self.project, kind)[:200])  # type: ignore[attr-defined]
        gold = gold_provenance_for(task.item_id for task in tasks)
        return Response(ReviewTaskSerializer(tasks, many=True, context={"gold": gold}).data)


class ResolveInSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=["confirm", "correct", "out_of_scope"])
    label = serializers.CharField(max_length=64, required=False, allow_blank=True, default="")
    comment = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")
    override = serializers.BooleanField(
        required=False, default=False, help_text="replace a differing gold label instead of sending it to adjudication"
    )
    reason = serializers.CharField(
        max_length=2000, required=False, allow_blank=True, default="", help_text="required with override"
    )


class ResolveOutSerializer(ReviewTaskSerializer):
    outcome = serializers.SerializerMethodField(
        help_text="gold_set | gold_confirmed | rechecked | overridden | sent_to_adjudication"
    )
    conflict_id = serializers.SerializerMethodField()

    class Meta(ReviewTaskSerializer.Meta):
        fields = [*ReviewTaskSerializer.Meta.fields, "outcome", "conflict_id"]
        read_only_fields = fields

    def get_outcome(self, task: ReviewTask) -> str:
        return self.context["outcome"].outcome

    def get_conflict_id(self, task: ReviewTask) -> int | None:
        conflict = self.context["outcome"].conflict
        return conflict.pk if conflict else None


@extend_schema(tags=["review"])
class ReviewTaskResolveApi(APIView):
    permission_classes = MEMBER
    project_action = "review"

    @extend_schema(request=ResolveInSerializer, responses=ResolveOutSerializer, summary="Resolve a review task")
    def post(self, request: Request, slug: str, task_id: int) -> Response:
        data = _valid(ResolveInSerializer, request.data)
        outcome = resolve_review_task(
            project=self.project,  # type: ignore[attr-defined]
            task_id=task_id,
            resolved_by=request.user,
            action=data["action"],
            label_key=data["label"],
            comment=data["comment"],
            override=data["override"],
            reason=data["reason"],
        )
        context = {"outcome": outcome, "gold": gold_provenance_for([outcome.task.item_id])}
        return Response(ResolveOutSerializer(outcome.task, context=context).data)


class AgreementReportSerializer(serializers.ModelSerializer):
    taxonomy_version = serializers.IntegerField(source="taxonomy.number")
    flagged_labels = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = AgreementReport
        fields = [
            "id",
            "taxonomy_version",
            "created_at",
            "annotation_count",
            "n_items",
            "n_annotators",
            "fleiss_kappa",
            "krippendorff_alpha",
            "threshold",
            "pairs",
            "per_label",
            "confusion",
            "disagreements",
            "flagged_labels",
        ]
        read_only_fields = fields


@extend_schema(tags=["review"])
class AgreementApi(APIView):
    """The newest agreement report of each taxonomy version."""

    permission_classes = MEMBER
    project_action = "review"

    @extend_schema(responses=AgreementReportSerializer(many=True), summary="Agreement between annotators")
    def get(self, request: Request, slug: str) -> Response:
        return Response(AgreementReportSerializer(latest_reports(self.project), many=True).data)  # type: ignore[attr-defined]


class WorkspaceSettingsSerializer(serializers.ModelSerializer):
    class Meta:
        model = WorkspaceSettings
        fields = ["assignment_ttl_minutes", "accept_majority", "agreement_batch_size"]
        extra_kwargs = {name: {"required": False} for name in fields}


@extend_schema(tags=["workspace"])
class WorkspaceSettingsApi(APIView):
    permission_classes = MEMBER
    project_action = "manage"

    @extend_schema(responses=WorkspaceSettingsSerializer, summary="Workspace settings of the project")
    def get(self, request: Request, slug: str) -> Response:
        return Response(WorkspaceSettingsSerializer(workspace_settings(self.project)).data)  # type: ignore[attr-defined]

    @extend_schema(
        request=WorkspaceSettingsSerializer,
        responses=WorkspaceSettingsSerializer,
        summary="Change workspace settings",
    )
    def patch(self, request: Request, slug: str) -> Response:
        data = _valid(WorkspaceSettingsSerializer, request.data)
        row = update_workspace_settings(project=self.project, **data)  # type: ignore[attr-defined]
        return Response(WorkspaceSettingsSerializer(row).data)


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)
