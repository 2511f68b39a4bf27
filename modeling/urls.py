from django.urls import path

from modeling.views import models_page, similar

app_name = "modeling"

P = "projects/<slug:slug>/models"

urlpatterns: list = [
    path(f"{P}/", models_page.model_page, name="model_page"),
    path(f"{P}/runs/", models_page.runs_partial, name="runs_partial"),
    path(f"{P}/train/", models_page.train, name="train"),
    path(f"{P}/extract/", models_page.extract, name="extract"),
    path(f"{P}/runs/<int:run_id>/cancel/", models_page.cancel, name="run_cancel"),
    path(f"{P}/rollback/", models_page.rollback, name="rollback"),
    path(f"{P}/gate/", models_page.gate, name="gate"),
    path(f"{P}/cascade/", models_page.cascade_settings, name="cascade"),
    path(f"{P}/aliases/remove/", models_page.remove_alias, name="alias_remove"),
    path(f"{P}/aliases/share/", models_page.challenger_share, name="challenger_share"),
    path(f"{P}/release-rule/", models_page.release_rule, name="release_rule"),
    path(f"{P}/v<int:number>/alias/", models_page.set_alias, name="alias_set"),
    path(f"{P}/v<int:number>/", models_page.version_page, name="version"),
    path(f"{P}/v<int:number>/publish/", models_page.publish, name="publish"),
    path(f"{P}/v<int:number>/archive/", models_page.archive, name="archive"),
    path(f"{P}/v<int:number>/items/", models_page.version_items, name="version_items"),
    path(f"{P}/v<int:number>/score-items/", models_page.score_items, name="score_items"),
    path(f"{P}/compare/", models_page.compare_page, name="compare"),
    path("projects/<slug:slug>/items/<int:item_id>/similar/", similar.item_similar, name="item_similar"),
]
from modeling.views.active_learning import urls as active_learning_urls  # noqa: E402  (appended: AL page)

urlpatterns += active_learning_urls
