from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from sceneclf_site.health import health

api_v1 = [
    path("health", health, name="health"),
    path("", include("labeling.api.urls")),
    path("", include("modeling.api.urls")),
    path("", include("feedback.api.urls")),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("redoc", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="labeling:project_list", permanent=False)),
    path("accounts/login/", auth_views.LoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("", include("labeling.urls")),
    path("", include("modeling.urls")),
    path("", include("feedback.urls")),
]

# Under /api/ these answer the JSON error envelope; pages keep Django's pages.
handler400 = "sceneclf_site.api_errors.bad_request"
handler404 = "sceneclf_site.api_errors.page_not_found"
handler500 = "sceneclf_site.api_errors.server_error"
