"""REST endpoints for projects, members and API tokens. Thin: serializers check shapes, services decide."""

from __future__ import annotations

from django.utils.translation import gettext
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import permissions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from labeling.authentication import creator_vouches
from labeling.models import ApiToken, Membership, Project, Role
from labeling.permissions import CanCreateProjects, ProjectActionPermission
from labeling.selectors.projects import members_of, projects_for_user, roles_of, tokens_of
from labeling.services.projects import (
    SETTINGS_FIELDS,
    add_member_by_username,
    create_api_token,
    create_project,
    remove_membership,
    revoke_api_token,
    update_project_settings,
)
from sceneclf_site.api_errors import ServiceError


class IsPersonUser(permissions.BasePermission):
    """Token clients may only predict; everything else needs a logged-in person."""

    message = "API tokens may only be used for predictions."

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        return getattr(request.user, "api_token", None) is None


PERSON = [permissions.IsAuthenticated, IsPersonUser, ProjectActionPermission]


class ProjectSerializer(serializers.ModelSerializer):
    roles = serializers.SerializerMethodField()

    class Meta:
        model = Project
        # The webhook URL often carries a secret: set through the API or the settings page, never read back here.
        fields = ["slug", "language", "created_at", *(f for f in SETTINGS_FIELDS if f != "alert_webhook_url"), "roles"]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField(), help_text="owner / annotator / reviewer"))
    def get_roles(self, project: Project) -> list[str]:
        return roles_of(self.context["request"].user, project)


class ProjectCreateSerializer(serializers.Serializer):
    slug = serializers.CharField(max_length=64)
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class ProjectUpdateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = list(SETTINGS_FIELDS)
        extra_kwargs = {name: {"required": False} for name in SETTINGS_FIELDS}


@extend_schema(tags=["projects"])
class ProjectListCreateApi(APIView):
    permission_classes = [*PERSON, CanCreateProjects]

    @extend_schema(responses=ProjectSerializer(many=True), summary="Projects you are a member of")
    def get(self, request: Request) -> Response:
        projects = projects_for_user(request.user)
        return Response(ProjectSerializer(projects, many=True, context={"request": request}).data)

    @extend_schema(request=ProjectCreateSerializer, responses={201: ProjectSerializer}, summary="Create a project")
    def post(self, request: Request) -> Response:
        data = ProjectCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        project = create_project(owner=request.user, **data.validated_data)
        return Response(ProjectSerializer(project, context={"request": request}).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["projects"])
class ProjectDetailApi(APIView):
    permission_classes = PERSON
    project_action = "manage"
    project_read_action = "view"

    @extend_schema(responses=ProjectSerializer, summary="A project and its settings")
    def get(self, request: Request, slug: str) -> Response:
        return Response(ProjectSerializer(self.project, context={"request": request}).data)

    @extend_schema(request=ProjectUpdateSerializer, responses=ProjectSerializer, summary="Change project settings")
    def patch(self, request: Request, slug: str) -> Response:
        data = ProjectUpdateSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        unknown = sorted(set(request.data) - set(data.fields))
        if unknown:  # a silently ignored field would look like a successful change
            raise ServiceError(
                gettext("Unknown or read-only project field(s): %(value)s.") % {"value": ", ".join(unknown)},
                code="unknown_field",
            )
        project = update_project_settings(project=self.project, **data.validated_data)
        return Response(ProjectSerializer(project, context={"request": request}).data)


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "username", "role", "created_at"]
        read_only_fields = fields


class MemberAddSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    role = serializers.ChoiceField(choices=Role.choices)


@extend_schema(tags=["projects"])
class MemberListCreateApi(APIView):
    permission_classes = PERSON
    project_action = "manage"

    @extend_schema(responses=MembershipSerializer(many=True), summary="Members and their roles (owners)")
    def get(self, request: Request, slug: str) -> Response:
        return Response(MembershipSerializer(members_of(self.project), many=True).data)

    @extend_schema(request=MemberAddSerializer, responses={201: MembershipSerializer}, summary="Add a member")
    def post(self, request: Request, slug: str) -> Response:
        data = MemberAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        membership = add_member_by_username(project=self.project, **data.validated_data)
        return Response(MembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


@extend_schema(tags=["projects"])
class MemberDetailApi(APIView):
    permission_classes = PERSON
    project_action = "manage"

    @extend_schema(responses={204: None}, summary="Remove a membership (one role of one user)")
    def delete(self, request: Request, slug: str, membership_id: int) -> Response:
        remove_membership(project=self.project, membership_id=membership_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiTokenSerializer(serializers.ModelSerializer):
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True, default=None)
    is_active = serializers.BooleanField(read_only=True)
    usable = serializers.SerializerMethodField(
        help_text="Not revoked, and its creator is still an active owner (else the token answers 401)."
    )

    class Meta:
        model = ApiToken
        fields = [
            "id", "name", "prefix", "created_by", "created_at", "last_used_at", "revoked_at", "is_active", "usable",
        ]  # fmt: skip
        read_only_fields = fields

    def get_usable(self, token: ApiToken) -> bool:
        return token.is_active and creator_vouches(token)


class TokenCreateSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)


class IssuedTokenSerializer(serializers.Serializer):
    token = ApiTokenSerializer()
    secret = serializers.CharField(
        help_text="Shown once: only a hash is stored. Send it as `Authorization: Token ...`."
    )


@extend_schema(tags=["projects"])
class TokenListCreateApi(APIView):
    permission_classes = PERSON
    project_action = "manage"

    @extend_schema(responses=ApiTokenSerializer(many=True), summary="API tokens of the project (owners)")
    def get(self, request: Request, slug: str) -> Response:
        return Response(ApiTokenSerializer(tokens_of(self.project), many=True).data)

    @extend_schema(request=TokenCreateSerializer, responses={201: IssuedTokenSerializer}, summary="Create a token")
    def post(self, request: Request, slug: str) -> Response:
        data = TokenCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        issued = create_api_token(project=self.project, name=data.validated_data["name"], created_by=request.user)
        body = {"token": ApiTokenSerializer(issued.token).data, "secret": issued.secret}
        return Response(body, status=status.HTTP_201_CREATED)


@extend_schema(tags=["projects"])
class TokenDetailApi(APIView):
    permission_classes = PERSON
    project_action = "manage"

    @extend_schema(responses={200: ApiTokenSerializer}, summary="Revoke a token (effective on its next request)")
    def delete(self, request: Request, slug: str, token_id: int) -> Response:
        return Response(ApiTokenSerializer(revoke_api_token(project=self.project, token_id=token_id)).data)


class WhoamiSerializer(serializers.Serializer):
    project = serializers.SlugField()
    auth = serializers.ChoiceField(choices=[("token", "API token"), ("session", "Logged-in user")])
    token_prefix = serializers.CharField(allow_null=True)


@extend_schema(tags=["projects"])
class WhoamiApi(APIView):
    """Lets a predict client check its token: 401 when revoked/unknown, 404 for another project."""

    permission_classes = [permissions.IsAuthenticated, ProjectActionPermission]
    project_action = "predict"

    @extend_schema(responses=WhoamiSerializer, summary="Check credentials for predicting in this project")
    def get(self, request: Request, slug: str) -> Response:
        token = getattr(request.user, "api_token", None)
        body = {
            "project": self.project.slug,
            "auth": "token" if token is not None else "session",
            "token_prefix": token.prefix if token is not None else None,
        }
        return Response(body)
