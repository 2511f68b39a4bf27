from django.urls import path

from labeling.views import projects, taxonomy

app_name = "labeling"

P = "projects/<slug:slug>"
T = f"{P}/taxonomy"

urlpatterns = [
    # Projects, members, tokens, settings
    path("projects/", projects.project_list, name="project_list"),
    path(f"{P}/", projects.project_detail, name="project_detail"),
    path(f"{P}/members/", projects.members, name="members"),
    path(f"{P}/members/<int:membership_id>/remove/", projects.member_remove, name="member_remove"),
    path(f"{P}/members/invite/", projects.member_invite, name="member_invite"),
    path(f"{P}/members/create/", projects.member_create, name="member_create"),
    path("invite/<str:secret>/", projects.invite_accept, name="invite_accept"),
    path(f"{P}/tokens/", projects.tokens, name="tokens"),
    path(f"{P}/tokens/<int:token_id>/revoke/", projects.token_revoke, name="token_revoke"),
    path(f"{P}/settings/", projects.project_settings, name="project_settings"),
    # Taxonomy
    path(f"{T}/", taxonomy.taxonomy_index, name="taxonomy"),
    path(f"{T}/v<int:number>/", taxonomy.version_detail, name="taxonomy_version"),
    path(f"{T}/v<int:number>/export.<str:fmt>", taxonomy.version_export, name="taxonomy_export"),
    path(f"{T}/diff/", taxonomy.version_diff, name="taxonomy_diff"),
    path(f"{T}/import/", taxonomy.taxonomy_import, name="taxonomy_import"),
    path(f"{T}/draft/new/", taxonomy.draft_create, name="taxonomy_draft_create"),
    path(f"{T}/draft/discard/", taxonomy.draft_discard, name="taxonomy_draft_discard"),
    path(f"{T}/draft/publish/", taxonomy.draft_publish, name="taxonomy_publish"),
    path(f"{T}/draft/labels/new/", taxonomy.label_create, name="taxonomy_label_create"),
    path(f"{T}/draft/labels/<path:key>/edit/", taxonomy.label_edit, name="taxonomy_label_edit"),
    path(f"{T}/draft/labels/<path:key>/delete/", taxonomy.label_delete, name="taxonomy_label_delete"),
    path(f"{T}/draft/labels/<path:key>/move/", taxonomy.label_move, name="taxonomy_label_move"),
]

# Items: list, import (htmx progress), split, export
from labeling.views import browser as browser_views  # noqa: E402
from labeling.views import imports as imports_views  # noqa: E402
from labeling.views import items as items_views  # noqa: E402

urlpatterns += [
    path(f"{P}/items/", browser_views.item_browser_page, name="items"),
    path(f"{P}/items/bulk/", browser_views.bulk_action, name="items_bulk"),
    path(f"{P}/items/views/", browser_views.saved_view_save, name="saved_view_save"),
    path(f"{P}/items/views/<int:view_id>/delete/", browser_views.saved_view_delete, name="saved_view_delete"),
    path(f"{P}/items/<int:item_id>/", items_views.item_detail_page, name="item_detail"),
    path(f"{P}/items/import/", items_views.import_page, name="item_import"),
    path(f"{P}/items/imports/<int:job_id>/", imports_views.import_job_page, name="import_job"),
    path(f"{P}/items/imports/<int:job_id>/progress/", imports_views.import_job_progress, name="import_job_progress"),
    path(f"{P}/items/imports/<int:job_id>/held/", imports_views.import_held_action, name="import_held_action"),
    path(f"{P}/items/split/", items_views.split_action, name="item_split"),
    path(f"{P}/items/export/", items_views.export_download, name="item_export"),
]

# Workspace, adjudication, review queue, agreement
from labeling.views import agreement as agreement_views  # noqa: E402
from labeling.views import annotators as annotators_views  # noqa: E402
from labeling.views import review as review_views  # noqa: E402
from labeling.views import workspace as workspace_views  # noqa: E402

urlpatterns += [
    path(f"{P}/workspace/", workspace_views.workspace_page, name="workspace"),
    path(f"{P}/workspace/panel/", workspace_views.workspace_panel, name="workspace_panel"),
    path(f"{P}/workspace/submit/", workspace_views.workspace_submit, name="workspace_submit"),
    path(f"{P}/workspace/skip/", workspace_views.workspace_skip, name="workspace_skip"),
    path(f"{P}/workspace/undo/", workspace_views.workspace_undo, name="workspace_undo"),
    path(f"{P}/workspace/settings/", workspace_views.workspace_settings_page, name="workspace_settings"),
    path(f"{P}/adjudication/", review_views.adjudication_page, name="adjudication"),
    path(f"{P}/adjudication/<int:item_id>/", review_views.adjudicate_item, name="adjudicate_item"),
    path(f"{P}/review/", review_views.review_queue_page, name="review"),
    path(f"{P}/review/<int:task_id>/", review_views.review_task_page, name="review_task"),
    path(f"{P}/review/recheck/", review_views.recheck_bulk, name="recheck_bulk"),
    path(f"{P}/agreement/", agreement_views.agreement_page, name="agreement"),
    path(f"{P}/agreement/recompute/", agreement_views.agreement_recompute, name="agreement_recompute"),
    path(f"{P}/agreement/edge-case/", agreement_views.agreement_edge_case, name="agreement_edge_case"),
    path(f"{P}/agreement/queue-review/", agreement_views.agreement_queue_review, name="agreement_queue_review"),
    path(f"{P}/annotators/", annotators_views.annotators_page, name="annotators"),
    path(f"{P}/annotators/check-items/", annotators_views.check_items_action, name="check_items_action"),
    path(f"{P}/annotators/check-rate/", annotators_views.check_item_rate, name="check_item_rate"),
]
