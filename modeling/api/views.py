"""REST endpoints of training: the routes, training runs and model versions. Thin: each calls a selector or
service."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.permissions import ProjectActionPermission
from modeling.api.serializers import (
    AliasesSerializer,
    AliasRemoveSerializer,
    AliasSetSerializer,
    CascadeSettingsSerializer,
    ModelVersionSerializer,
    ReleaseRuleSerializer,
    RouteSerializer,
    ShareSerializer,
    TrainingRunCreateSerializer,
    TrainingRunSerializer,
    VersionEventSerializer,
)
from modeling.selectors import aliases as alias_selectors
from modeling.selectors import models as selectors
from modeling.services import aliases, cascade, training, versions


@extend_schema(tags=["models"])
class ProjectView(APIView):
    permission_classes = [ProjectActionPermission]
    project_action = "manage"
    project_read_action = "view"


class TrainingRunListView(ProjectView):
    @extend_schema(responses=TrainingRunSerializer(many=True), summary="Training runs, newest first")
    def get(self, request: Request, slug: str) -> Response:
        training.sweep_stale_runs(project=self.project)
        return Response(TrainingRunSerializer(selectors.run_list(self.project), many=True).data)

    @extend_schema(
        request=TrainingRunCreateSerializer,
        responses={202: TrainingRunSerializer},
        summary="Start a training run",
    )
    def post(self, request: Request, slug: str) -> Response:
        body = TrainingRunCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = training.start_training_run(project=self.project, user=request.user, **body.validated_data)
        return Response(TrainingRunSerializer(run).data, status=status.HTTP_202_ACCEPTED)


class TrainingRunDetailView(ProjectView):
    @extend_schema(responses=TrainingRunSerializer, summary="One training run and its progress")
    def get(self, request: Request, slug: str, run_id: int) -> Response:
        training.sweep_stale_runs(project=self.project)
        return Response(TrainingRunSerializer(selectors.run_get(self.project, run_id)).data)


class TrainingRunCancelView(ProjectView):
    @extend_schema(request=None, responses=TrainingRunSerializer, summary="Cancel a training run")
    def post(self, request: Request, slug: str, run_id: int) -> Response:
        run = training.cancel_training_run(run=selectors.run_get(self.project, run_id))
        return Response(TrainingRunSerializer(run).data)


class ModelVersionListView(ProjectView):
    @extend_schema(responses=ModelVersionSerializer(many=True), summary="Model versions of the project")
    def get(self, request: Request, slug: str) -> Response:
        return Response(ModelVersionSerializer(selectors.version_list(self.project), many=True).data)


class ModelVersionDetailView(ProjectView):
    @extend_schema(responses=ModelVersionSerializer, summary="One model version with its metrics")
    def get(self, request: Request, slug: str, number: int) -> Response:
        return Response(ModelVersionSerializer(selectors.version_get(self.project, number)).data)


class ModelVersionPublishView(ProjectView):
    @extend_schema(request=None, responses=ModelVersionSerializer, summary="Make a model version the champion")
    def post(self, request: Request, slug: str, number: int) -> Response:
        version = versions.publish_model_version(version=selectors.version_get(self.project, number), user=request.user)
        return Response(ModelVersionSerializer(version).data)


class ModelVersionArchiveView(ProjectView):
    @extend_schema(request=None, responses=ModelVersionSerializer, summary="Archive a model version")
    def post(self, request: Request, slug: str, number: int) -> Response:
        version = versions.archive_model_version(version=selectors.version_get(self.project, number))
        return Response(ModelVersionSerializer(version).data)


class ModelRollbackView(ProjectView):
    @extend_schema(
        request=None,
        responses=ModelVersionSerializer,
        summary="Roll the champion back to the previous champion",
    )
    def post(self, request: Request, slug: str) -> Response:
        version = versions.rollback_model(project=self.project, user=request.user)
        return Response(ModelVersionSerializer(version).data)


class CascadeSettingsView(ProjectView):
    project_read_action = "manage"

    @extend_schema(responses=CascadeSettingsSerializer, summary="The cascade settings of the project")
    def get(self, request: Request, slug: str) -> Response:
        return Response(CascadeSettingsSerializer(cascade.cascade_settings_values(self.project)).data)

    @extend_schema(
        request=CascadeSettingsSerializer,
        responses=CascadeSettingsSerializer,
        summary="Change the cascade settings (fields left out keep their value)",
    )
    def patch(self, request: Request, slug: str) -> Response:
        body = CascadeSettingsSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        values = {**cascade.cascade_settings_values(self.project), **body.validated_data}
        values.pop("updated_at", None)
        number = values.pop("recheck_version")
        cascade.update_cascade_settings(
            project=self.project, user=request.user, recheck_version_number=number, **values
        )
        return Response(CascadeSettingsSerializer(cascade.cascade_settings_values(self.project)).data)


def aliases_body(project: Any) -> dict[str, Any]:
    held = alias_selectors.alias_map(project)
    rule = aliases.release_rule_for(project)
    return {
        **{name: (version.number if version else None) for name, version in held.items()},
        "challenger_share": rule.challenger_share if held["challenger"] else 0.0,
        "rule": ReleaseRuleSerializer(rule).data,
        "events": VersionEventSerializer(alias_selectors.version_events(project, limit=50), many=True).data,
    }


class AliasListView(ProjectView):
    @extend_schema(responses=AliasesSerializer, summary="Champion, challenger, shadow, the rule and the history")
    def get(self, request: Request, slug: str) -> Response:
        return Response(aliases_body(self.project))


class AliasDetailView(ProjectView):
    @extend_schema(request=AliasSetSerializer, responses=AliasesSerializer, summary="Point an alias at a version")
    def put(self, request: Request, slug: str, alias: str) -> Response:
        body = AliasSetSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        aliases.set_alias(
            version=selectors.version_get(self.project, body.validated_data["version"]),
            alias=aliases.check_alias_name(alias),
            user=request.user,
            share=body.validated_data.get("share"),
            reason=body.validated_data["reason"],
        )
        return Response(aliases_body(self.project))

    @extend_schema(
        request=AliasRemoveSerializer, responses=AliasesSerializer, summary="Remove the challenger or shadow"
    )
    def delete(self, request: Request, slug: str, alias: str) -> Response:
        body = AliasRemoveSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        aliases.remove_alias(project=self.project, alias=alias, user=request.user, reason=body.validated_data["reason"])
        return Response(aliases_body(self.project))


class ChallengerShareView(ProjectView):
    @extend_schema(request=ShareSerializer, responses=AliasesSerializer, summary="Set the challenger's share")
    def put(self, request: Request, slug: str) -> Response:
        body = ShareSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        aliases.set_challenger_share(
            project=self.project,
            share=body.validated_data["share"],
            user=request.user,
            reason=body.validated_data["reason"],
        )
        return Response(aliases_body(self.project))


class ReleaseRuleView(ProjectView):
    @extend_schema(responses=ReleaseRuleSerializer, summary="The promotion and rollback rule")
    def get(self, request: Request, slug: str) -> Response:
        return Response(ReleaseRuleSerializer(aliases.release_rule_for(self.project)).data)

    @extend_schema(request=ReleaseRuleSerializer, responses=ReleaseRuleSerializer, summary="Change the rule")
    def patch(self, request: Request, slug: str) -> Response:
        body = ReleaseRuleSerializer(data=request.data, partial=True)
        body.is_valid(raise_exception=True)
        rule = aliases.update_release_rule(project=self.project, **body.validated_data)
        return Response(ReleaseRuleSerializer(rule).data)


@extend_schema(tags=["models"])
class RouteListView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses=RouteSerializer(many=True), summary="The training routes and their parameters")
    def get(self, request: Request) -> Response:
        from modeling.engine.routes.catalogue import describe_routes

        return Response(RouteSerializer(describe_routes(), many=True).data)
