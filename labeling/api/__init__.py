"""REST API of the labeling app. Importing this package registers the OpenAPI description of project tokens."""

from __future__ import annotations

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ProjectTokenScheme(OpenApiAuthenticationExtension):
    """Documents `Authorization: Token sc_...` (labeling.authentication) so the schema has no unknown auth."""

    target_class = "labeling.authentication.ProjectTokenAuthentication"
    name = "projectToken"

    def get_security_requirement(self, auto_schema):  # type: ignore[no-untyped-def]
        # Every view runs the token authenticator, but only predict endpoints let a token through.
        if getattr(auto_schema.view, "project_action", None) != "predict":
            return None
        return {self.name: []}

    def get_security_definition(self, auto_schema):  # type: ignore[no-untyped-def]
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "A project API token, sent as `Token sc_...`. Tokens may only call predict endpoints.",
        }
