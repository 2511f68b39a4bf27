from django.urls import path

from modeling.api import views

app_name = "modeling_api"
urlpatterns: list = [
    path("routes", views.RouteListView.as_view(), name="route_list"),
    path("projects/<slug:slug>/training-runs", views.TrainingRunListView.as_view(), name="run_list"),
    path("projects/<slug:slug>/training-runs/<int:run_id>", views.TrainingRunDetailView.as_view(), name="run_detail"),
    path(
        "projects/<slug:slug>/training-runs/<int:run_id>/cancel",
        views.TrainingRunCancelView.as_view(),
        name="run_cancel",
    ),
    path("projects/<slug:slug>/models", views.ModelVersionListView.as_view(), name="version_list"),
    path("projects/<slug:slug>/cascade", views.CascadeSettingsView.as_view(), name="cascade_settings"),
    path("projects/<slug:slug>/aliases", views.AliasListView.as_view(), name="alias_list"),
    path("projects/<slug:slug>/aliases/challenger/share", views.ChallengerShareView.as_view(), name="challenger_share"),
    path("projects/<slug:slug>/aliases/<str:alias>", views.AliasDetailView.as_view(), name="alias_detail"),
    path("projects/<slug:slug>/release-rule", views.ReleaseRuleView.as_view(), name="release_rule"),
    path("projects/<slug:slug>/models/rollback", views.ModelRollbackView.as_view(), name="rollback"),
    path("projects/<slug:slug>/models/<int:number>", views.ModelVersionDetailView.as_view(), name="version_detail"),
    path(
        "projects/<slug:slug>/models/<int:number>/publish",
        views.ModelVersionPublishView.as_view(),
        name="version_publish",
    ),
    path(
        "projects/<slug:slug>/models/<int:number>/archive",
        views.ModelVersionArchiveView.as_view(),
        name="version_archive",
    ),
]
