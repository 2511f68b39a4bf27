"""REST endpoints for items: import jobs, item list, split and export. Thin: services decide."""

from __future__ import annotations

from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_field
from rest_framework import permissions, serializers, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.models import ImportJob, Item, Project
from labeling.permissions import ProjectActionPermission
from labeling.selectors.imports import rejection_groups
from labeling.selectors.items import EXPORT_FORMATS, export_lines, import_job_get, import_job_list, item_list
from labeling.services.import_review import HELD_ACTIONS, held_action
from labeling.services.imports import start_import
from labeling.services.splits import assign_splits
from sceneclf_site.parsers import StrictFormParser, StrictMultiPartParser

PERMISSIONS = [permissions.IsAuthenticated, ProjectActionPermission]


class RejectionGroupSerializer(serializers.Serializer):
    code = serializers.CharField()
    label = serializers.CharField(help_text="The unknown label, for code unknown_label; else empty.")
    count = serializers.IntegerField()
    lines = serializers.ListField(child=serializers.IntegerField(), help_text="The first few line numbers.")
    held = serializers.DictField(child=serializers.IntegerField(), help_text="Held lines by status.")


class ImportJobSerializer(serializers.ModelSerializer):
    progress = serializers.FloatField(read_only=True)
    rejections = serializers.ListField(child=serializers.DictField(), read_only=True)
    rejection_groups = serializers.SerializerMethodField()

    @extend_schema_field(RejectionGroupSerializer(many=True))
    def get_rejection_groups(self, job: ImportJob) -> list[dict]:
        return RejectionGroupSerializer(rejection_groups(job), many=True).data if job.rejections else []

    class Meta:
        model = ImportJob
        fields = [
            "id", "status", "file_name", "file_format", "encoding", "fallback_aliases", "source",
            "total_lines", "processed_lines", "progress",
            "created_count", "duplicate_count", "conflict_count", "rejected_count", "labeled_count", "rejections",
            "rejection_groups", "error",
            "created_at", "finished_at",
        ]  # fmt: skip
        read_only_fields = fields


class ImportUploadSerializer(serializers.Serializer):
    file = serializers.FileField()
    source = serializers.CharField(max_length=100, required=False, allow_blank=True, default="")
    encoding = serializers.CharField(
        max_length=40, required=False, allow_blank=True, default="", help_text="e.g. gb18030, big5; detected if empty"
    )
    fallback_alias = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        default=list,
        help_text="Dataset labels meaning the fallback label (e.g. other, oos); 其他 always does. Repeat the field.",
    )


@extend_schema(tags=["items"])
class ImportListCreateApi(APIView):
    permission_classes = PERMISSIONS
    project_action = "manage"
    project_read_action = "view"
    parser_classes = [StrictMultiPartParser, StrictFormParser]

    @extend_schema(responses=ImportJobSerializer(many=True), summary="Import jobs, newest first")
    def get(self, request: Request, slug: str) -> Response:
        jobs = import_job_list(self.project)[:50]
        return Response(ImportJobSerializer(jobs, many=True).data)

    @extend_schema(
        request={"multipart/form-data": ImportUploadSerializer},
        responses={202: ImportJobSerializer},
        summary="Upload a file to import items",
    )
    def post(self, request: Request, slug: str) -> Response:
        upload = ImportUploadSerializer(data=request.data)
        upload.is_valid(raise_exception=True)
        job = start_import(
            project=self.project,
            content=upload.validated_data["file"],
            file_name=upload.validated_data["file"].name,
            source=upload.validated_data["source"],
            created_by=request.user,
            encoding=upload.validated_data["encoding"],
            fallback_aliases=upload.validated_data["fallback_alias"],
        )
        return Response(ImportJobSerializer(job).data, status=status.HTTP_202_ACCEPTED)


@extend_schema(tags=["items"])
class ImportDetailApi(APIView):
    permission_classes = PERMISSIONS
    project_action = "view"

    @extend_schema(responses=ImportJobSerializer, summary="One import job and its progress")
    def get(self, request: Request, slug: str, job_id: int) -> Response:
        return Response(ImportJobSerializer(import_job_get(self.project, job_id)).data)


class HeldActionSerializer(serializers.Serializer):
    action = serializers.ChoiceField(choices=HELD_ACTIONS)
    labels = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, default=list, help_text="Not for rerun."
    )


class HeldOutcomeSerializer(serializers.Serializer):
    lines = serializers.IntegerField()
    created = serializers.IntegerField()
    labeled = serializers.IntegerField()
    conflicts = serializers.IntegerField()
    still_held = serializers.IntegerField()
    labels_added = serializers.ListField(child=serializers.CharField())


@extend_schema(tags=["items"])
class ImportHeldApi(APIView):
    permission_classes = PERMISSIONS
    project_action = "manage"

    @extend_schema(
        request=HeldActionSerializer,
        responses=HeldOutcomeSerializer,
        summary="Decide on lines held for an unknown label",
        description=(
            "add_to_draft: the labels join the taxonomy draft; rerun: held lines whose label the latest published "
            "taxonomy now has are imported; without_label: the texts become items without gold; reject: the lines "
            "are dropped and their texts erased."
        ),
    )
    def post(self, request: Request, slug: str, job_id: int) -> Response:
        body = HeldActionSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        outcome = held_action(
            job=import_job_get(self.project, job_id),
            action=body.validated_data["action"],
            labels=body.validated_data["labels"],
        )
        return Response(HeldOutcomeSerializer(outcome).data)


class ItemSerializer(serializers.ModelSerializer):
    label = serializers.CharField(source="gold.label_key", default=None, read_only=True)
    method = serializers.CharField(source="gold.method", default=None, read_only=True)

    class Meta:
        model = Item
        fields = ["id", "external_id", "text", "label", "method", "split", "source", "metadata", "created_at"]
        read_only_fields = fields


class ItemFilterSerializer(serializers.Serializer):
    q = serializers.CharField(required=False, allow_blank=True, default="")
    split = serializers.ChoiceField(choices=["train", "val", "test", "unassigned"], required=False)
    label = serializers.CharField(required=False, allow_blank=True, default="")
    has_gold = serializers.BooleanField(required=False, allow_null=True, default=None)


class ItemPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500


@extend_schema(tags=["items"])
class ItemListApi(APIView):
    permission_classes = PERMISSIONS
    project_action = "view"
    pagination_class = ItemPagination  # also tells the schema that the list comes in pages

    @extend_schema(
        parameters=[ItemFilterSerializer],
        responses=ItemSerializer(many=True),
        summary="Items, filtered and paged",
    )
    def get(self, request: Request, slug: str) -> Response:
        filters = ItemFilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        data = filters.validated_data
        split = data.get("split")
        items = item_list(
            self.project,
            query=data["q"],
            split="" if split == "unassigned" else split,
            label=data["label"],
            has_gold=data["has_gold"] if "has_gold" in request.query_params else None,
        )
        paginator = self.pagination_class()
        page = paginator.paginate_queryset(items, request, view=self)
        return paginator.get_paginated_response(ItemSerializer(page, many=True).data)


class SplitRequestSerializer(serializers.Serializer):
    """Shares for items that get a split from now on (a share not given keeps its value). Items that have
    a split keep it: this never moves an item between train, val and test."""

    train = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    val = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    test = serializers.FloatField(min_value=0.0, max_value=1.0, required=False)
    seed = serializers.IntegerField(default=0)


class SplitResultSerializer(serializers.Serializer):
    counts = serializers.DictField(child=serializers.IntegerField())
    per_label = serializers.DictField(child=serializers.DictField(child=serializers.IntegerField()))
    groups = serializers.IntegerField(help_text="near-duplicate groups among the newly assigned items")
    assigned = serializers.IntegerField(help_text="gold-labelled items that got a split in this call")


@extend_schema(tags=["items"])
class SplitApi(APIView):
    permission_classes = PERMISSIONS
    project_action = "manage"

    @extend_schema(
        request=SplitRequestSerializer,
        responses=SplitResultSerializer,
        summary="Assign train/validation/test splits",
    )
    def post(self, request: Request, slug: str) -> Response:
        params = SplitRequestSerializer(data=request.data)
        params.is_valid(raise_exception=True)
        result = assign_splits(project=self.project, actor=request.user, **params.validated_data)  # type: ignore[attr-defined]
        body = {"counts": result.counts, "per_label": result.per_label, "groups": result.groups}
        return Response({**body, "assigned": result.assigned})


@extend_schema(tags=["items"])
class ExportApi(APIView):
    """Items with their gold labels as JSONL or CSV (`?fmt=jsonl|csv`, `?only_gold=1`)."""

    permission_classes = PERMISSIONS
    project_action = "manage"

    @extend_schema(
        summary="Download items with their gold labels",
        parameters=[
            OpenApiParameter("fmt", str, enum=list(EXPORT_FORMATS), description="jsonl (default) or csv"),
            OpenApiParameter("only_gold", bool, description="only items with a gold label"),
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiResponse(OpenApiTypes.STR, description="One JSON object a line"),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR, description="A header row, then one item a row"),
        },
    )
    def get(self, request: Request, slug: str) -> StreamingHttpResponse:
        fmt = request.query_params.get("fmt", "jsonl")
        only_gold = request.query_params.get("only_gold", "").lower() in {"1", "true", "yes"}
        return export_response(self.project, fmt, only_gold=only_gold)


def export_response(project: Project, fmt: str, *, only_gold: bool = False) -> StreamingHttpResponse:
    """A streamed download; shared by the API and the items page."""
    lines = export_lines(project, fmt, only_gold=only_gold)
    content_type = "application/x-ndjson" if fmt == "jsonl" else "text/csv"
    response = StreamingHttpResponse(lines, content_type=f"{content_type}; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{project.slug}-items.{fmt}"'
    return response
