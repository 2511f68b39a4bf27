from django.urls import path

from labeling.api import projects, taxonomy

app_name = "labeling_api"

P = "projects/<slug:slug>"
T = f"{P}/taxonomy"

urlpatterns = [
    # Projects, members, tokens
    path("projects", projects.ProjectListCreateApi.as_view(), name="project_list"),
    path(P, projects.ProjectDetailApi.as_view(), name="project_detail"),
    path(f"{P}/members", projects.MemberListCreateApi.as_view(), name="member_list"),
    path(f"{P}/members/<int:membership_id>", projects.MemberDetailApi.as_view(), name="member_detail"),
    path(f"{P}/tokens", projects.TokenListCreateApi.as_view(), name="token_list"),
    path(f"{P}/tokens/<int:token_id>", projects.TokenDetailApi.as_view(), name="token_detail"),
    path(f"{P}/whoami", projects.WhoamiApi.as_view(), name="whoami"),
    # Taxonomy
    path(f"{T}/versions", taxonomy.VersionListApi.as_view(), name="taxonomy_versions"),
    path(f"{T}/versions/<int:number>", taxonomy.VersionDetailApi.as_view(), name="taxonomy_version"),
    path(f"{T}/versions/<int:number>/export", taxonomy.ExportApi.as_view(), name="taxonomy_export"),
    path(f"{T}/draft/labels", taxonomy.DraftLabelListApi.as_view(), name="taxonomy_draft_labels"),
    path(f"{T}/draft/labels/<path:key>", taxonomy.DraftLabelDetailApi.as_view(), name="taxonomy_draft_label"),
    path(f"{T}/draft/reorder", taxonomy.DraftReorderApi.as_view(), name="taxonomy_draft_reorder"),
    path(f"{T}/draft/publish", taxonomy.DraftPublishApi.as_view(), name="taxonomy_draft_publish"),
    path(f"{T}/diff", taxonomy.DiffApi.as_view(), name="taxonomy_diff"),
    path(f"{T}/import", taxonomy.ImportApi.as_view(), name="taxonomy_import"),
]

# Items: import jobs, list, split, export
from labeling.api import history as history_api  # noqa: E402
from labeling.api import items as items_api  # noqa: E402

urlpatterns += [
    path(f"{P}/imports", items_api.ImportListCreateApi.as_view(), name="import_list"),
    path(f"{P}/imports/<int:job_id>", items_api.ImportDetailApi.as_view(), name="import_detail"),
    path(f"{P}/imports/<int:job_id>/held", items_api.ImportHeldApi.as_view(), name="import_held"),
    path(f"{P}/items", items_api.ItemListApi.as_view(), name="item_list"),
    path(f"{P}/items/<int:item_id>/history", history_api.ItemHistoryApi.as_view(), name="item_history"),
    path(f"{P}/split", items_api.SplitApi.as_view(), name="item_split"),
    path(f"{P}/export", items_api.ExportApi.as_view(), name="item_export"),
]

# Workspace, adjudication, review queue, agreement
from labeling.api import workspace as workspace_api  # noqa: E402

urlpatterns += [
    path(f"{P}/workspace/next", workspace_api.NextItemApi.as_view(), name="workspace_next"),
    path(f"{P}/workspace/skip", workspace_api.SkipApi.as_view(), name="workspace_skip"),
    path(f"{P}/workspace/undo", workspace_api.UndoApi.as_view(), name="workspace_undo"),
    path(f"{P}/workspace/settings", workspace_api.WorkspaceSettingsApi.as_view(), name="workspace_settings"),
    path(f"{P}/annotations", workspace_api.AnnotationCreateApi.as_view(), name="annotation_create"),
    path(f"{P}/adjudication", workspace_api.AdjudicationApi.as_view(), name="adjudication"),
    path(f"{P}/review-tasks", workspace_api.ReviewTaskListApi.as_view(), name="review_tasks"),
    path(
        f"{P}/review-tasks/<int:task_id>/resolve", workspace_api.ReviewTaskResolveApi.as_view(), name="review_resolve"
    ),
    path(f"{P}/agreement", workspace_api.AgreementApi.as_view(), name="agreement"),
]
