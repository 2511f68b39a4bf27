"""Thin DRF serializers for training runs and model versions."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from modeling.models import DEFAULT_ROUTE, Alias, CascadeSettings, ModelVersion, ReleaseRule, TrainingRun, VersionEvent
from modeling.selectors.aliases import alias_of


def route_params_schema() -> dict[str, Any]:
    """One JSON schema per registered route (its Params), so the OpenAPI document lists every parameter."""
    from modeling.engine.routes import route_names
    from modeling.engine.routes.catalogue import params_schema

    options = []
    for name in route_names():
        schema = openapi_30(params_schema(name))
        schema.pop("additionalProperties", None)  # a run's params also carry calibration and run keys
        schema["title"] = f"{name} params"
        options.append(schema)
    return {
        "type": "object",
        "description": "The chosen route's parameters (see GET /api/v1/routes), plus calibration keys such as "
        "abstain_target_kind and budget_minutes. An unknown key is a 400 that names it.",
        "anyOf": options,
    }


def openapi_30(node: Any) -> Any:
    """Pydantic writes JSON Schema 2020-12; OpenAPI 3.0 spells null as ``nullable`` and exclusive bounds as
    booleans beside ``minimum`` / ``maximum``."""
    if isinstance(node, list):
        return [openapi_30(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: openapi_30(value) for key, value in node.items()}
    options = out.get("anyOf")
    if isinstance(options, list) and {"type": "null"} in options:
        options = [option for option in options if option != {"type": "null"}]
        out["nullable"] = True
        if len(options) == 1:
            del out["anyOf"]
            out.update(options[0])
        else:
            out["anyOf"] = options
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), int | float) and not isinstance(out.get(bound), bool):
            out[plain], out[bound] = out[bound], True
    if "const" in out:
        out["enum"] = [out.pop("const")]
    return out


@extend_schema_field(route_params_schema())
class RouteParamsField(serializers.DictField):
    pass


class TrainingRunSerializer(serializers.ModelSerializer):
    model_version = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "id", "route", "params", "status", "stage", "progress", "eta_seconds", "log", "error", "timings", "task_id",
            "cancel_requested", "trigger", "created_at", "started_at", "finished_at", "heartbeat_at", "model_version",
        ]  # fmt: skip
        read_only_fields = fields

    def get_model_version(self, run: TrainingRun) -> int | None:
        version = getattr(run, "model_version", None)
        return version.number if version is not None else None


class TrainingRunCreateSerializer(serializers.Serializer):
    route = serializers.CharField(default=DEFAULT_ROUTE, help_text="A registered route; see GET /api/v1/routes.")
    params = RouteParamsField(required=False, default=dict)
    auto_publish = serializers.BooleanField(required=False, default=False)


class ModelVersionSerializer(serializers.ModelSerializer):
    ref = serializers.CharField(read_only=True)
    taxonomy_version = serializers.IntegerField(source="taxonomy.number", read_only=True)
    run = serializers.PrimaryKeyRelatedField(read_only=True)
    training_items = serializers.SerializerMethodField()
    alias = serializers.SerializerMethodField(help_text="champion, challenger, shadow or null")

    class Meta:
        model = ModelVersion
        fields = [
            "number", "ref", "status", "alias", "route", "backbone_name", "backbone_fingerprint", "taxonomy_version",
            "label_keys", "metrics", "gate", "temperature", "threshold", "class_thresholds", "manifest", "run",
            "training_items", "created_at", "published_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(serializers.ChoiceField(choices=Alias.values, allow_null=True))
    def get_alias(self, version: ModelVersion) -> str | None:
        return alias_of(version)

    def get_training_items(self, version: ModelVersion) -> int:
        return len(version.training_snapshot or [])


class RouteParamSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    default = serializers.JSONField(allow_null=True)
    description = serializers.CharField()
    choices = serializers.ListField(child=serializers.JSONField(), required=False)
    min = serializers.FloatField(required=False)
    max = serializers.FloatField(required=False)
    min_exclusive = serializers.FloatField(required=False)
    max_exclusive = serializers.FloatField(required=False)


class RouteSerializer(serializers.Serializer):
    name = serializers.CharField()
    title = serializers.CharField()
    help = serializers.CharField()
    needs_training = serializers.BooleanField()
    params = RouteParamSerializer(many=True)


class CascadeSettingsSerializer(serializers.Serializer):
    enabled = serializers.BooleanField(required=False, help_text="Re-check uncertain texts at predict time.")
    recheck_version = serializers.IntegerField(
        required=False,
        allow_null=True,
        min_value=1,
        help_text="Number of the model version that re-checks (route lora, prefix or zero_shot); null for none.",
    )
    tau_recheck = serializers.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="Texts whose calibrated top probability is below this are re-checked (above 0, at most 1).",
    )
    max_share = serializers.FloatField(
        required=False,
        min_value=0.0,
        max_value=1.0,
        help_text="At most this share of a process's texts in the window is re-checked.",
    )
    window_seconds = serializers.IntegerField(
        required=False, min_value=1, max_value=3600, help_text="Length of the sliding window of the cap."
    )
    combine_rule = serializers.ChoiceField(
        required=False,
        choices=CascadeSettings.Combine.values,
        help_text="How the two calibrated distributions are combined.",
    )
    updated_at = serializers.DateTimeField(read_only=True)


class AliasSetSerializer(serializers.Serializer):
    version = serializers.IntegerField(min_value=1, help_text="The version number that takes the alias.")
    share = serializers.FloatField(
        required=False, help_text="challenger only: its share of the traffic (default: the first share step)."
    )
    reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=500)


class AliasRemoveSerializer(serializers.Serializer):
    reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=500)


class ShareSerializer(serializers.Serializer):
    share = serializers.FloatField(help_text="The challenger's share of the traffic, above 0 and at most 1.")
    reason = serializers.CharField(required=False, default="", allow_blank=True, max_length=500)


class ReleaseRuleSerializer(serializers.ModelSerializer):
    class Meta:
        model = ReleaseRule
        fields = [
            "challenger_share", "share_steps", "auto_decide", "min_labelled", "max_f1_drop", "max_abstain_increase",
            "max_latency_ratio", "retrain_alias", "updated_at",
        ]  # fmt: skip
        read_only_fields = ["challenger_share", "updated_at"]
        extra_kwargs = {name: {"required": False} for name in fields}


class VersionEventSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)
    actor = serializers.CharField(source="actor.username", read_only=True, default=None, allow_null=True)

    class Meta:
        model = VersionEvent
        fields = ["id", "version", "kind", "alias", "share", "actor", "rule", "reason", "figures", "created_at"]
        read_only_fields = fields


class AliasesSerializer(serializers.Serializer):
    champion = serializers.IntegerField(allow_null=True, help_text="Version number, or null.")
    challenger = serializers.IntegerField(allow_null=True)
    shadow = serializers.IntegerField(allow_null=True)
    challenger_share = serializers.FloatField()
    rule = ReleaseRuleSerializer()
    events = VersionEventSerializer(many=True)
