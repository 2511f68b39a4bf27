"""Django admin for support work. Token hashes are read-only and secrets are never shown (none are stored)."""

from __future__ import annotations

from django.contrib import admin

from labeling.models import (
    ApiToken,
    GoldLabel,
    ImportJob,
    Item,
    Label,
    Membership,
    Project,
    ReviewTask,
    TaxonomyVersion,
)


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "language", "keep_raw_text", "overlap_k", "created_at"]
    search_fields = ["slug", "name"]
    inlines = [MembershipInline]


class LabelInline(admin.TabularInline):
    model = Label
    extra = 0
    fields = ["key", "name", "parent", "hotkey", "order", "is_fallback"]
    fk_name = "taxonomy"


@admin.register(TaxonomyVersion)
class TaxonomyVersionAdmin(admin.ModelAdmin):
    list_display = ["project", "number", "status", "published_at"]
    list_filter = ["status", "project"]
    inlines = [LabelInline]

    def has_change_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        # Published versions are immutable everywhere, the admin included.
        return super().has_change_permission(request, obj) and not (obj and obj.is_published)


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    list_display = ["name", "project", "prefix", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["project"]
    readonly_fields = ["prefix", "token_hash", "created_at", "last_used_at"]


@admin.register(Item)
class ItemAdmin(admin.ModelAdmin):
    list_display = ["id", "project", "source", "split", "created_at"]
    list_filter = ["project", "split"]
    search_fields = ["text", "external_id"]


@admin.register(GoldLabel)
class GoldLabelAdmin(admin.ModelAdmin):
    list_display = ["item", "label_key", "method", "needs_recheck", "updated_at"]
    list_filter = ["method", "needs_recheck"]
    raw_id_fields = ["item"]


admin.site.register(ImportJob)
admin.site.register(ReviewTask)
