"""REST endpoints for taxonomy versions: read any version, edit the draft, publish, diff, export, import."""

from __future__ import annotations

from dataclasses import asdict

from django.http import HttpResponse
from django.utils.translation import gettext
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.api.projects import PERSON
from labeling.models import Label, TaxonomyVersion
from labeling.selectors.taxonomy import (
    current_draft,
    diff_versions,
    get_label,
    get_version,
    labels_of,
    list_versions,
    version_document,
)
from labeling.services.taxonomy import (
    add_label,
    create_draft,
    delete_label,
    discard_draft,
    import_taxonomy,
    publish_draft,
    reorder_labels,
    update_label,
)
from labeling.taxonomy_io import FORMATS, LABEL_FIELDS, dump_document, guess_format
from sceneclf_site.api_errors import NotFoundError, ServiceError
from sceneclf_site.parsers import StrictFormParser, StrictMultiPartParser

MAX_IMPORT_BYTES = 2 * 1024 * 1024
EXPORT_CONTENT_TYPES = {"yaml": "application/yaml; charset=utf-8", "json": "application/json; charset=utf-8"}


class LabelSerializer(serializers.ModelSerializer):
    parent = serializers.CharField(source="parent.key", allow_null=True, default=None, read_only=True)

    class Meta:
        model = Label
        fields = list(LABEL_FIELDS)
        read_only_fields = fields


class LabelWriteSerializer(serializers.Serializer):
    """Field shapes only; the taxonomy service checks the rules (unique hotkeys, one fallback, depth...)."""

    key = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=100, required=False)
    parent = serializers.CharField(max_length=64, required=False, allow_null=True, allow_blank=True)
    definition = serializers.CharField(required=False, allow_blank=True)
    decision_rules = serializers.CharField(required=False, allow_blank=True)
    examples = serializers.ListField(child=serializers.CharField(), required=False)
    counter_examples = serializers.ListField(child=serializers.CharField(), required=False)
    edge_cases = serializers.ListField(child=serializers.CharField(), required=False)
    hotkey = serializers.CharField(max_length=1, required=False, allow_blank=True)
    order = serializers.IntegerField(min_value=0, required=False)
    is_fallback = serializers.BooleanField(required=False)


class VersionSerializer(serializers.ModelSerializer):
    class Meta:
        model = TaxonomyVersion
        fields = ["number", "status", "notes", "created_at", "published_at"]
        read_only_fields = fields


class VersionDetailSerializer(VersionSerializer):
    labels = serializers.SerializerMethodField()

    class Meta(VersionSerializer.Meta):
        fields = [*VersionSerializer.Meta.fields, "labels"]
        read_only_fields = fields

    @extend_schema_field(LabelSerializer(many=True))
    def get_labels(self, version: TaxonomyVersion) -> list[dict]:
        return LabelSerializer(labels_of(version), many=True).data


class LabelSpecSerializer(serializers.Serializer):
    key = serializers.CharField()
    name = serializers.CharField()
    parent = serializers.CharField(allow_null=True)
    definition = serializers.CharField()
    decision_rules = serializers.CharField()
    examples = serializers.ListField(child=serializers.CharField())
    counter_examples = serializers.ListField(child=serializers.CharField())
    edge_cases = serializers.ListField(child=serializers.CharField())
    hotkey = serializers.CharField()
    order = serializers.IntegerField()
    is_fallback = serializers.BooleanField()


class TaxonomyDocumentSerializer(serializers.Serializer):
    """The exported file (taxonomy_io.build_document); YAML carries the same fields."""

    format = serializers.CharField()
    format_version = serializers.IntegerField()
    project = serializers.CharField()
    version = serializers.IntegerField()
    status = serializers.CharField()
    notes = serializers.CharField(allow_blank=True)
    labels = LabelSpecSerializer(many=True)


class LabelChangeSerializer(serializers.Serializer):
    key = serializers.CharField()
    changes = serializers.DictField(
        child=inline_serializer("FieldChange", {"from": serializers.JSONField(), "to": serializers.JSONField()}),
        help_text="Per changed field: its value in the base version and in the target version.",
    )


class DiffSerializer(serializers.Serializer):
    base = serializers.IntegerField()
    target = serializers.IntegerField()
    added = LabelSpecSerializer(many=True)
    removed = LabelSpecSerializer(many=True)
    changed = LabelChangeSerializer(many=True)


def _draft_of(view: APIView) -> TaxonomyVersion:
    draft = current_draft(view.project)
    if draft is None:
        raise NotFoundError(gettext("This project has no taxonomy draft; create one first."), code="no_draft")
    return draft


@extend_schema(tags=["taxonomy"])
class VersionListApi(APIView):
    permission_classes = PERSON
    project_action = "edit_taxonomy"
    project_read_action = "view"

    @extend_schema(responses=VersionSerializer(many=True), summary="Taxonomy versions, newest first")
    def get(self, request: Request, slug: str) -> Response:
        return Response(VersionSerializer(list_versions(self.project), many=True).data)

    @extend_schema(request=None, responses={201: VersionDetailSerializer}, summary="New draft from latest published")
    def post(self, request: Request, slug: str) -> Response:
        draft = create_draft(project=self.project)
        return Response(VersionDetailSerializer(draft).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["taxonomy"])
class VersionDetailApi(APIView):
    permission_classes = PERSON
    project_action = "edit_taxonomy"
    project_read_action = "view"

    @extend_schema(responses=VersionDetailSerializer, summary="One taxonomy version with its labels")
    def get(self, request: Request, slug: str, number: int) -> Response:
        return Response(VersionDetailSerializer(get_version(self.project, number)).data)

    @extend_schema(responses={204: None}, summary="Discard the draft (published versions cannot be deleted)")
    def delete(self, request: Request, slug: str, number: int) -> Response:
        discard_draft(draft=get_version(self.project, number))
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema(tags=["taxonomy"])
class DraftLabelListApi(APIView):
    permission_classes = PERSON
    project_action = "edit_taxonomy"
    project_read_action = "view"

    @extend_schema(responses=LabelSerializer(many=True), summary="Labels of the draft")
    def get(self, request: Request, slug: str) -> Response:
        return Response(LabelSerializer(labels_of(_draft_of(self)), many=True).data)

    @extend_schema(request=LabelWriteSerializer, responses={201: LabelSerializer}, summary="Add a label to the draft")
    def post(self, request: Request, slug: str) -> Response:
        data = LabelWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        label = add_label(draft=_draft_of(self), data=data.validated_data)
        return Response(LabelSerializer(label).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["taxonomy"])
class DraftLabelDetailApi(APIView):
    permission_classes = PERSON
    project_action = "edit_taxonomy"
    project_read_action = "view"

    @extend_schema(responses=LabelSerializer, summary="One label of the draft")
    def get(self, request: Request, slug: str, key: str) -> Response:
        return Response(LabelSerializer(get_label(_draft_of(self), key)).data)

    @extend_schema(request=LabelWriteSerializer, responses=LabelSerializer, summary="Change fields of a draft label")
    def patch(self, request: Request, slug: str, key: str) -> Response:
        data = LabelWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        label = update_label(draft=_draft_of(self), key=key, data=data.validated_data)
        return Response(LabelSerializer(label).data)

    @extend_schema(responses={204: None}, summary="Delete a draft label (not the fallback)")
    def delete(self, request: Request, slug: str, key: str) -> Response:
        delete_label(draft=_draft_of(self), key=key)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ReorderSerializer(serializers.Serializer):
    keys = serializers.ListField(child=serializers.CharField(), help_text="Every label key of the draft, in order.")


@extend_schema(tags=["taxonomy"])
class DraftReorderApi(APIView):
    permission_classes = PERSON
    project_action = "edit_taxonomy"

    @extend_schema(request=ReorderSerializer, responses=LabelSerializer(many=True), summary="Reorder draft labels")
    def post(self, request: Request, slug: str) -> Response:
        data = ReorderSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        draft = _draft_of(self)
        reorder_labels(draft=draft, keys=data.validated_data["keys"])
        return Response(LabelSerializer(labels_of(draft), many=True).data)


class PublishSerializer(serializers.Serializer):
    notes = serializers.CharField(required=False, allow_blank=True)


class PublishResultSerializer(serializers.Serializer):
    version = VersionDetailSerializer()
    rechecked_gold = serializers.IntegerField(help_text="Gold labels marked for re-check by this publish.")


@extend_schema(tags=["taxonomy"])
class DraftPublishApi(APIView):
    permission_classes = PERSON
    project_action = "edit_taxonomy"

    @extend_schema(request=PublishSerializer, responses=PublishResultSerializer, summary="Publish the draft")
    def post(self, request: Request, slug: str) -> Response:
        data = PublishSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = publish_draft(draft=_draft_of(self), notes=data.validated_data.get("notes"))
        return Response(
            {"version": VersionDetailSerializer(result.version).data, "rechecked_gold": result.rechecked_gold}
        )


@extend_schema(tags=["taxonomy"])
class DiffApi(APIView):
    permission_classes = PERSON
    project_action = "view"

    @extend_schema(
        parameters=[
            OpenApiParameter("a", int, required=True, description="Base version number"),
            OpenApiParameter("b", int, required=True, description="Target version number"),
        ],
        responses=DiffSerializer,
        summary="Added, removed and changed labels from version a to version b",
    )
    def get(self, request: Request, slug: str) -> Response:
        numbers = []
        for name in ("a", "b"):
            raw = request.query_params.get(name, "")
            if not raw.isdigit():
                raise ServiceError(
                    gettext("Query parameter '%(name)s' must be a version number.") % {"name": name},
                    code="invalid_parameter",
                )
            numbers.append(int(raw))
        diff = diff_versions(get_version(self.project, numbers[0]), get_version(self.project, numbers[1]))
        return Response(DiffSerializer(asdict(diff)).data)


@extend_schema(tags=["taxonomy"])
class ExportApi(APIView):
    permission_classes = PERSON
    project_action = "view"

    @extend_schema(
        parameters=[OpenApiParameter("as", str, enum=list(FORMATS), description="File format (default yaml)")],
        responses={
            (200, "application/yaml"): TaxonomyDocumentSerializer,
            (200, "application/json"): TaxonomyDocumentSerializer,
        },
        summary="Download a version as YAML or JSON",
    )
    def get(self, request: Request, slug: str, number: int) -> HttpResponse:
        return export_response(get_version(self.project, number), request.query_params.get("as", "yaml"))


def export_response(version: TaxonomyVersion, fmt: str) -> HttpResponse:
    """The file download shared by the API and the taxonomy page."""
    if fmt not in FORMATS:
        raise ServiceError(
            gettext("Unknown export format '%(fmt)s'. Use one of: %(value)s.")
            % {"fmt": fmt, "value": ", ".join(FORMATS)}
        )
    body = dump_document(version_document(version), fmt)
    response = HttpResponse(body, content_type=EXPORT_CONTENT_TYPES[fmt])
    filename = f"{version.project.slug}-taxonomy-v{version.number}.{fmt}"
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


def read_upload(upload) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """An uploaded taxonomy file → (text, format); refuses big or non-UTF-8 files with a clear error."""
    if upload is None:
        raise ServiceError(gettext("Choose a YAML or JSON file to import."), code="no_file")
    if upload.size > MAX_IMPORT_BYTES:
        raise ServiceError(
            gettext("The file is larger than %(value)s KB.") % {"value": MAX_IMPORT_BYTES // 1024},
            code="file_too_large",
        )
    try:
        text = upload.read().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ServiceError(gettext("The file must be UTF-8 text."), code="bad_encoding") from exc
    return text, guess_format(upload.name or "", text)


@extend_schema(tags=["taxonomy"])
class ImportApi(APIView):
    permission_classes = PERSON
    project_action = "edit_taxonomy"
    parser_classes = [StrictMultiPartParser, StrictFormParser]

    @extend_schema(
        request={
            "multipart/form-data": inline_serializer(
                "TaxonomyImport",
                {
                    "file": serializers.FileField(help_text="A YAML (.yaml/.yml) or JSON (.json) taxonomy document"),
                    "replace_draft": serializers.BooleanField(required=False, default=False),
                },
            )
        },
        responses={201: VersionDetailSerializer},
        summary="Import a YAML/JSON document as a new draft",
    )
    def post(self, request: Request, slug: str) -> Response:
        text, fmt = read_upload(request.FILES.get("file"))
        replace = str(request.data.get("replace_draft", "")).lower() in {"1", "true", "on", "yes"}
        draft = import_taxonomy(project=self.project, text=text, fmt=fmt, replace_draft=replace)
        return Response(VersionDetailSerializer(draft).data, status=status.HTTP_201_CREATED)
