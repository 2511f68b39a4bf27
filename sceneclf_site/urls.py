from csp.decorators import csp_replace
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from sceneclf_site.health import health
from sceneclf_site.metrics import metrics_view

# Swagger UI and ReDoc (served from this server) style themselves with inline <style> and run ReDoc's search in
# a blob: worker; their scripts stay external files (the split Swagger view serves its init script as a file).
_docs_csp = csp_replace({"style-src-elem": ["'self'", "'unsafe-inline'"], "worker-src": ["'self'", "blob:"]})

api_v1 = [
    path("health", health, name="health"),
    path("", include("labeling.api.urls")),
    path("", include("modeling.api.urls")),
    path("", include("feedback.api.urls")),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", _docs_csp(SpectacularSwaggerSplitView.as_view(url_name="schema")), name="api-docs"),
    path("redoc", _docs_csp(SpectacularRedocView.as_view(url_name="schema")), name="api-redoc"),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="labeling:project_list", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("metrics", metrics_view, name="metrics"),
    path("", include("labeling.urls")),
    path("", include("modeling.urls")),
    path("", include("feedback.urls")),
]

# Under /api/ these answer the JSON error envelope; pages keep Django's pages.
handler400 = "sceneclf_site.api_errors.bad_request"
handler404 = "sceneclf_site.api_errors.page_not_found"
handler500 = "sceneclf_site.api_errors.server_error"
