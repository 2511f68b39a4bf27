"""Taxonomy: draft editing rules, publishing, immutability, diff, YAML/JSON round trip, gold re-check."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.urls import reverse

from labeling.models import GoldLabel, Item, Label, TaxonomyVersion
from labeling.selectors.taxonomy import current_draft, diff_versions, label_tree, version_document
from labeling.services.taxonomy import (
    FALLBACK_KEY,
    add_edge_case,
    add_label,
    create_draft,
    delete_label,
    discard_draft,
    get_or_create_draft,
    import_taxonomy,
    move_label,
    publish_draft,
    reorder_labels,
    update_label,
)
from labeling.taxonomy_io import dump_document
from sceneclf_site.api_errors import ConflictError, ServiceError
from tests.labeling.conftest import publish_scenes

API = "/api/v1/projects/alpha/taxonomy"


def _gold(project, taxonomy, key: str, n: int) -> GoldLabel:  # type: ignore[no-untyped-def]
    text = f"synthetic text {key} {n}"
    item = Item.objects.create(project=project, text=text, normalized_text=text, text_hash=f"{key}-{n}")
    return GoldLabel.objects.create(item=item, label_key=key, taxonomy=taxonomy, method=GoldLabel.Method.SINGLE)


# --- Draft rules ---------------------------------------------------------------------------------


def test_new_project_has_a_draft_with_exactly_the_fallback(project):
    draft = current_draft(project)
    assert draft.status == TaxonomyVersion.Status.DRAFT
    assert list(draft.labels.values_list("key", "is_fallback")) == [(FALLBACK_KEY, True)]


def test_duplicate_hotkey_is_refused_naming_field_and_labels(project):
    draft = current_draft(project)
    add_label(draft=draft, data={"key": "旅行", "name": "旅行", "hotkey": "1"})
    with pytest.raises(ServiceError) as exc:
        add_label(draft=draft, data={"key": "支付", "name": "支付", "hotkey": "1"})
    assert "hotkey" in exc.value.message and "'旅行'" in exc.value.message and "'支付'" in exc.value.message
    assert not draft.labels.filter(key="支付").exists()


def test_hierarchy_is_at_most_two_levels_and_parents_must_exist(project):
    draft = current_draft(project)
    add_label(draft=draft, data={"key": "物流", "name": "物流"})
    add_label(draft=draft, data={"key": "物流-延误", "name": "延误", "parent": "物流"})
    with pytest.raises(ServiceError, match="at most 2 levels"):
        add_label(draft=draft, data={"key": "物流-延误-国际", "name": "国际", "parent": "物流-延误"})
    with pytest.raises(ServiceError, match="not in this version"):
        add_label(draft=draft, data={"key": "x", "name": "x", "parent": "nowhere"})
    assert draft.labels.get(key="物流-延误").parent.key == "物流"


def test_fallback_cannot_be_deleted_duplicated_or_cleared(project):
    draft = current_draft(project)
    add_label(draft=draft, data={"key": "支付", "name": "支付"})
    with pytest.raises(ServiceError, match="fallback"):
        delete_label(draft=draft, key=FALLBACK_KEY)
    with pytest.raises(ServiceError, match="fallback"):
        add_label(draft=draft, data={"key": "other", "name": "other", "is_fallback": True})
    with pytest.raises(ServiceError, match="cannot be cleared"):
        update_label(draft=draft, key=FALLBACK_KEY, data={"is_fallback": False})
    assert list(draft.labels.filter(is_fallback=True).values_list("key", flat=True)) == [FALLBACK_KEY]


def test_marking_another_label_as_fallback_moves_the_flag(project):
    draft = current_draft(project)
    add_label(draft=draft, data={"key": "other", "name": "Other"})
    update_label(draft=draft, key="other", data={"is_fallback": True})
    assert list(draft.labels.filter(is_fallback=True).values_list("key", flat=True)) == ["other"]


def test_database_allows_at_most_one_fallback(project):
    draft = current_draft(project)
    with pytest.raises(IntegrityError), transaction.atomic():
        Label.objects.create(taxonomy=draft, key="second", name="second", is_fallback=True)


def test_reorder_sets_order_and_requires_every_key(project):
    draft = current_draft(project)
    add_label(draft=draft, data={"key": "a", "name": "A"})
    add_label(draft=draft, data={"key": "b", "name": "B"})
    reorder_labels(draft=draft, keys=["b", FALLBACK_KEY, "a"])
    assert list(draft.labels.order_by("order").values_list("key", flat=True)) == ["b", FALLBACK_KEY, "a"]
    with pytest.raises(ServiceError, match="missing"):
        reorder_labels(draft=draft, keys=["a", "b"])


def test_renaming_a_parent_keeps_its_children(project):
    draft = current_draft(project)
    add_label(draft=draft, data={"key": "pay", "name": "支付"})
    add_label(draft=draft, data={"key": "pay-fail", "name": "失败", "parent": "pay"})
    update_label(draft=draft, key="pay", data={"key": "payment"})
    assert draft.labels.get(key="pay-fail").parent.key == "payment"


# --- Publishing and immutability ------------------------------------------------------------------


@pytest.mark.smoke
def test_published_version_refuses_edits_in_services_and_model_layer(project, published):
    assert published.published_at is not None
    with pytest.raises(ConflictError):
        add_label(draft=published, data={"key": "new", "name": "new"})
    with pytest.raises(ConflictError):
        update_label(draft=published, key="旅行", data={"name": "changed"})
    with pytest.raises(ConflictError):
        delete_label(draft=published, key="旅行")
    label = published.labels.get(key="旅行")
    label.name = "changed"
    with pytest.raises(ValidationError):
        label.save()
    with pytest.raises(ValidationError):
        label.delete()
    published.status = TaxonomyVersion.Status.DRAFT
    with pytest.raises(ValidationError):
        published.save()
    assert TaxonomyVersion.objects.get(pk=published.pk).status == TaxonomyVersion.Status.PUBLISHED
    assert Label.objects.get(pk=label.pk).name == "旅行"


def test_publishing_needs_a_label_besides_the_fallback(project):
    with pytest.raises(ServiceError, match="besides the fallback"):
        publish_draft(draft=current_draft(project))
    assert current_draft(project) is not None


def test_only_one_draft_at_a_time_and_new_draft_copies_published(project, published):
    draft = create_draft(project=project)
    assert draft.number == published.number + 1
    with pytest.raises(ConflictError):
        create_draft(project=project)
    assert version_document(draft)["labels"] == version_document(published)["labels"]
    assert get_or_create_draft(project=project) == draft


def test_add_edge_case_creates_the_draft_when_needed(project, published):
    label = add_edge_case(project=project, label_key="支付", text="退款到账慢算支付还是售后")
    draft = current_draft(project)
    assert label.taxonomy == draft and draft.number == published.number + 1
    assert label.edge_cases == ["退款到账慢算支付还是售后"]
    assert published.labels.get(key="支付").edge_cases == []


# --- Diff -------------------------------------------------------------------------------------------


def test_diff_reports_added_removed_and_changed_fields(project, published):
    draft = create_draft(project=project)
    add_label(draft=draft, data={"key": "售后", "name": "售后", "hotkey": "4"})
    delete_label(draft=draft, key="物流")
    update_label(draft=draft, key="支付", data={"definition": "付款相关", "examples": ["付款一直失败", "扣款两次"]})
    diff = diff_versions(published, draft)
    assert [s.key for s in diff.added] == ["售后"]
    assert [s.key for s in diff.removed] == ["物流"]
    assert [c.key for c in diff.changed] == ["支付"]
    assert diff.changed[0].changes == {
        "definition": {"from": "", "to": "付款相关"},
        "examples": {"from": ["付款一直失败"], "to": ["付款一直失败", "扣款两次"]},
    }


# --- Gold labels on removal or split ---------------------------------------------------------------


def test_publishing_a_removal_or_split_marks_gold_labels_for_recheck(project, published):
    kept = _gold(project, published, "旅行", 1)
    removed = _gold(project, published, "支付", 1)
    split = _gold(project, published, "物流", 1)
    draft = create_draft(project=project)
    delete_label(draft=draft, key="支付")
    add_label(draft=draft, data={"key": "物流-延误", "name": "延误", "parent": "物流"})
    add_label(draft=draft, data={"key": "物流-丢件", "name": "丢件", "parent": "物流"})
    result = publish_draft(draft=draft)
    assert result.rechecked_gold == 2
    for gold in (kept, removed, split):
        gold.refresh_from_db()
    assert not kept.needs_recheck
    assert (
        removed.needs_recheck and "removed" in removed.recheck_reason and f"v{draft.number}" in removed.recheck_reason
    )
    assert split.needs_recheck and "物流-延误" in split.recheck_reason and "Split" in split.recheck_reason


def test_removed_label_whose_examples_moved_says_where(project, published):
    gold = _gold(project, published, "物流", 2)
    draft = create_draft(project=project)
    delete_label(draft=draft, key="物流")
    add_label(draft=draft, data={"key": "快递", "name": "快递", "examples": ["快递三天没更新"]})
    publish_draft(draft=draft)
    gold.refresh_from_db()
    assert gold.needs_recheck and "moved to 快递" in gold.recheck_reason


def test_gold_with_a_key_unknown_to_the_new_version_is_marked(project, published):
    stray = _gold(project, published, "legacy-key", 1)
    draft = create_draft(project=project)
    update_label(draft=draft, key="旅行", data={"definition": "出行"})
    publish_draft(draft=draft)
    stray.refresh_from_db()
    assert stray.needs_recheck and stray.recheck_reason == f"Label not in taxonomy v{draft.number}."


# --- Export / import ---------------------------------------------------------------------------------


def _rich_taxonomy(project):  # type: ignore[no-untyped-def]
    return publish_scenes(
        project,
        [
            {
                "key": "支付",
                "name": "支付",
                "hotkey": "1",
                "definition": "付款、扣款、支付方式相关\n含多行",
                "decision_rules": "提到钱没付出去 → 支付",
                "examples": ["付款一直失败", "微信支付: 扣款两次?"],
                "counter_examples": ["退款什么时候到"],
                "edge_cases": ["优惠券无法使用"],
            },
            {"key": "支付-失败", "name": "支付失败", "parent": "支付", "hotkey": "2", "order": 5},
            {"key": "travel", "name": "Travel 'quoted' \"name\"", "hotkey": "t", "examples": ["yes", "null", "1"]},
        ],
    )


@pytest.mark.parametrize("fmt", ["yaml", "json"])
def test_export_import_round_trip_is_lossless(project, fmt):
    version = _rich_taxonomy(project)
    exported = dump_document(version_document(version), fmt)
    draft = import_taxonomy(project=project, text=exported, fmt=fmt)
    assert draft.status == TaxonomyVersion.Status.DRAFT and draft.number == version.number + 1
    assert version_document(draft)["labels"] == version_document(version)["labels"]
    assert diff_versions(version, draft).is_empty


def test_import_errors_name_label_and_field_and_import_nothing(project, published):
    document = yaml.safe_load(dump_document(version_document(published), "yaml"))
    document["labels"][0]["hotkey"] = "ab"
    document["labels"][1]["examples"] = "not a list"
    document["labels"].append({"name": "no key"})
    versions_before = TaxonomyVersion.objects.count()
    labels_before = Label.objects.count()
    with pytest.raises(ServiceError) as exc:
        import_taxonomy(project=project, text=json.dumps(document, ensure_ascii=False), fmt="json")
    problems = exc.value.details["problems"]
    assert any("label '旅行'" in p and "hotkey" in p for p in problems)
    assert any("label '支付'" in p and "examples" in p for p in problems)
    assert any("label #5" in p and "'key' is required" in p for p in problems)
    assert (TaxonomyVersion.objects.count(), Label.objects.count()) == (versions_before, labels_before)


def test_import_without_a_fallback_is_refused(project, published):
    document = version_document(published)
    document["labels"] = [label for label in document["labels"] if not label["is_fallback"]]
    with pytest.raises(ServiceError, match="exactly one label must be the fallback"):
        import_taxonomy(project=project, text=json.dumps(document), fmt="json")


def test_import_refuses_broken_yaml_with_position(project):
    with pytest.raises(ServiceError, match=r"Not valid YAML at line 3, column 1"):
        import_taxonomy(project=project, text="labels:\n  - key: [unclosed\n", fmt="yaml")
    assert TaxonomyVersion.objects.filter(project=project).count() == 1


def test_import_over_an_open_draft_needs_replace(project):
    draft = current_draft(project)
    text = json.dumps({"labels": [{"key": "a", "name": "A"}, {"key": "o", "name": "O", "is_fallback": True}]})
    with pytest.raises(ConflictError):
        import_taxonomy(project=project, text=text, fmt="json")
    replaced = import_taxonomy(project=project, text=text, fmt="json", replace_draft=True)
    assert replaced.pk == draft.pk
    assert sorted(replaced.labels.values_list("key", flat=True)) == ["a", "o"]


# --- REST ----------------------------------------------------------------------------------------------


def test_api_draft_lifecycle(owner_api, project):
    r = owner_api.post(f"{API}/draft/labels", {"key": "支付", "name": "支付", "hotkey": "1"}, format="json")
    assert r.status_code == 201, r.json()
    r = owner_api.post(f"{API}/draft/labels", {"key": "物流", "name": "物流", "hotkey": "1"}, format="json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_taxonomy"
    r = owner_api.post(f"{API}/draft/labels", {"key": "物流", "name": "物流", "hotkey": "2"}, format="json")
    assert r.status_code == 201
    r = owner_api.patch(f"{API}/draft/labels/物流", {"examples": ["快递丢了"]}, format="json")
    assert r.json()["examples"] == ["快递丢了"]
    r = owner_api.post(f"{API}/draft/reorder", {"keys": ["物流", "支付", FALLBACK_KEY]}, format="json")
    assert [label["key"] for label in r.json()] == ["物流", "支付", FALLBACK_KEY]
    r = owner_api.post(f"{API}/draft/publish", {"notes": "first"}, format="json")
    assert r.status_code == 200 and r.json()["version"]["status"] == "published"
    assert owner_api.post(f"{API}/draft/labels", {"key": "x", "name": "x"}, format="json").status_code == 404
    r = owner_api.post(f"{API}/versions")
    assert r.status_code == 201 and r.json()["number"] == 2
    assert owner_api.delete(f"{API}/draft/labels/支付").status_code == 204
    r = owner_api.get(f"{API}/diff", {"a": 1, "b": 2})
    assert [s["key"] for s in r.json()["removed"]] == ["支付"] and r.json()["added"] == []
    assert owner_api.get(f"{API}/diff", {"a": "x", "b": 2}).status_code == 400
    assert owner_api.delete(f"{API}/versions/1").status_code == 409
    assert owner_api.delete(f"{API}/versions/2").status_code == 204
    assert [v["number"] for v in owner_api.get(f"{API}/versions").json()] == [1]


def test_api_export_and_import_files(owner_api, project, published):
    r = owner_api.get(f"{API}/versions/{published.number}/export", {"as": "json"})
    assert r.status_code == 200 and "attachment" in r["Content-Disposition"]
    exported = r.content
    r = owner_api.get(f"{API}/versions/{published.number}/export")
    assert r["Content-Type"].startswith("application/yaml") and "旅行" in r.content.decode()
    upload = SimpleUploadedFile("taxonomy.json", exported, content_type="application/json")
    r = owner_api.post(f"{API}/import", {"file": upload}, format="multipart")
    assert r.status_code == 201, r.json()
    assert [label["key"] for label in r.json()["labels"]] == [label.key for label in published.labels.all()]
    bad = SimpleUploadedFile("t.yaml", b"labels: 3\n")
    r = owner_api.post(f"{API}/import", {"file": bad, "replace_draft": "true"}, format="multipart")
    assert r.status_code == 400 and "labels" in r.json()["error"]["message"]


# --- Pages -----------------------------------------------------------------------------------------------


def test_owner_edits_and_publishes_in_the_browser(owner_page, project):
    base = f"/projects/{project.slug}/taxonomy"
    r = owner_page.post(
        f"{base}/draft/labels/new/",
        {"key": "支付", "name": "支付", "hotkey": "1", "examples": "付款失败\n\n扣款两次\n", "order": "0"},
    )
    assert r.status_code == 302
    label = current_draft(project).labels.get(key="支付")
    assert label.examples == ["付款失败", "扣款两次"]
    r = owner_page.post(f"{base}/draft/labels/new/", {"key": "物流", "name": "物流", "hotkey": "1"})
    assert r.status_code == 200 and "hotkey" in r.content.decode()
    r = owner_page.post(f"{base}/draft/labels/支付/edit/", {"key": "支付", "name": "支付方式", "edge_cases": "a\nb"})
    assert r.status_code == 302 and current_draft(project).labels.get(key="支付").edge_cases == ["a", "b"]
    r = owner_page.post(f"{base}/draft/labels/支付/move/", {"direction": "down"}, HTTP_HX_REQUEST="true")
    assert r.status_code == 200 and 'id="label-table"' in r.content.decode()
    number = current_draft(project).number
    assert owner_page.get(f"{base}/draft/publish/").status_code == 200
    r = owner_page.post(f"{base}/draft/publish/", {"notes": "v1"})
    assert r.status_code == 302 and current_draft(project) is None
    assert TaxonomyVersion.objects.get(project=project, number=number).is_published
    page = owner_page.get(reverse("labeling:taxonomy_version", args=[project.slug, number])).content.decode()
    assert "支付方式" in page and "draft/publish/" not in page and "/edit/" not in page
    r = owner_page.get(reverse("labeling:taxonomy_export", args=[project.slug, number, "yaml"]))
    assert r.status_code == 200 and "支付方式" in r.content.decode()


def test_import_page_shows_problems_and_diff_page_renders(owner_page, project, published):
    bad = SimpleUploadedFile("t.json", json.dumps({"labels": [{"key": "a?b"}]}).encode())
    r = owner_page.post(f"/projects/{project.slug}/taxonomy/import/", {"file": bad})
    assert r.status_code == 400 and "nor contain any of" in r.content.decode()
    draft = create_draft(project=project)
    update_label(draft=draft, key="支付", data={"name": "付款"})
    r = owner_page.get(f"/projects/{project.slug}/taxonomy/diff/", {"a": published.number, "b": draft.number})
    assert r.status_code == 200 and "diff-changed" in r.content.decode() and "付<ins>款</ins>" in r.content.decode()


def test_discarding_a_draft_that_gold_labels_refer_to_is_refused_and_loses_nothing(project):
    draft = current_draft(project)
    add_label(draft=draft, data={"key": "支付", "name": "支付"})
    _gold(project, draft, "支付", 1)
    with pytest.raises(ConflictError):
        discard_draft(draft=draft)
    assert sorted(current_draft(project).labels.values_list("key", flat=True)) == sorted(["支付", FALLBACK_KEY])


def test_move_label_swaps_with_its_sibling_not_its_child(project):
    draft = current_draft(project)
    add_label(draft=draft, data={"key": "a", "name": "A"})
    add_label(draft=draft, data={"key": "a-1", "name": "A1", "parent": "a"})
    add_label(draft=draft, data={"key": "b", "name": "B"})
    move_label(draft=draft, key="a", offset=1)
    tops = [label.key for label, _children in label_tree(draft)]
    assert tops == ["b", "a", FALLBACK_KEY]
    move_label(draft=draft, key="a-1", offset=-1)  # only child: stays put
    assert [c.key for label, children in label_tree(draft) for c in children] == ["a-1"]


def test_diff_rows_for_pages_show_zero_lists_and_flags(project, published):
    draft = create_draft(project=project)
    update_label(draft=draft, key="旅行", data={"order": 0, "examples": ["改签", "退票"]})
    update_label(draft=draft, key="支付", data={"is_fallback": True, "order": 0})
    rows = {c.key: dict((f, (a, b)) for f, a, b in c.rows) for c in diff_versions(published, draft).changed}
    assert rows["旅行"]["examples"] == ("机票改签怎么收费", "改签\n退票")
    assert rows["支付"]["is_fallback"] == ("no", "yes") and rows["支付"]["order"] == ("1", "0")
    assert rows[FALLBACK_KEY]["is_fallback"] == ("yes", "no")
