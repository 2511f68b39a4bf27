"""A browser sends textarea line breaks as CRLF: saving a label must not turn untouched text into a change."""

from __future__ import annotations

from labeling.selectors.taxonomy import current_draft, diff_versions, version_document
from labeling.services.taxonomy import add_label, create_draft, publish_draft, update_draft_notes
from labeling.taxonomy_io import dump_document

DEFINITION = "第一行\n第二行"
RULES = "先看支付\n再看物流"


def test_saving_an_untouched_multiline_label_in_the_browser_changes_nothing(owner_page, project):
    draft = current_draft(project)
    add_label(draft=draft, data={"key": "支付", "name": "支付", "definition": DEFINITION, "decision_rules": RULES})
    published = publish_draft(draft=draft).version
    draft = create_draft(project=project)
    form = {
        "key": "支付",
        "name": "支付",
        "definition": DEFINITION.replace("\n", "\r\n"),
        "decision_rules": RULES.replace("\n", "\r\n"),
        "examples": "付款失败\r\n扣款两次",
    }
    r = owner_page.post(f"/projects/{project.slug}/taxonomy/draft/labels/支付/edit/", form)
    assert r.status_code == 302
    label = draft.labels.get(key="支付")
    assert (label.definition, label.decision_rules, label.examples) == (DEFINITION, RULES, ["付款失败", "扣款两次"])
    changed = {c.key: [row[0] for row in c.rows] for c in diff_versions(published, draft).changed}
    assert changed == {"支付": ["examples"]}
    assert "\r" not in dump_document(version_document(draft), "yaml")


def test_draft_notes_are_stored_with_unix_line_breaks(project):
    draft = update_draft_notes(draft=current_draft(project), notes="a\r\nb\rc")
    assert draft.notes == "a\nb\nc"
