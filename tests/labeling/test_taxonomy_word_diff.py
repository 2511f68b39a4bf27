"""The taxonomy diff marks the words (for Chinese, the characters) that changed, not whole fields."""

from django.test import Client
from django.urls import reverse

from labeling.selectors.taxonomy import Segment, word_diff
from labeling.services.taxonomy import get_or_create_draft, publish_draft, update_label
from tests.labeling.conftest import publish_scenes


def changed(segments: list[Segment]) -> list[str]:
    return [segment.text for segment in segments if segment.changed]


def test_english_words_change_one_by_one():
    old, new = word_diff("Refunds that never reached the card", "Refunds that never reached the bank account")
    assert changed(old) == ["card"] and changed(new) == ["bank account"]
    assert "".join(s.text for s in old) == "Refunds that never reached the card"


def test_chinese_changes_by_character():
    old, new = word_diff("付款、扣款、退款到账相关。", "付款、扣款、退款没到账相关。")
    assert changed(old) == [] and changed(new) == ["没"]
    old, new = word_diff("快递配送", "物流配送")
    assert changed(old) == ["快递"] and changed(new) == ["物流"]


def test_identical_text_has_no_marks():
    old, new = word_diff("同样的定义 same", "同样的定义 same")
    assert changed(old) == changed(new) == [] and len(old) == 1


def test_diff_page_marks_only_the_changed_words(project, owner):
    publish_scenes(project)
    draft = get_or_create_draft(project=project)
    update_label(draft=draft, key="支付", data={"definition": "付款失败或者重复扣款"})
    update_label(draft=draft, key="旅行", data={"examples": ["机票改签怎么收费", "酒店退订"]})
    publish_draft(draft=draft)
    update = get_or_create_draft(project=project)
    update_label(draft=update, key="支付", data={"definition": "付款失败或者多次扣款"})
    update_label(draft=update, key="旅行", data={"examples": ["机票改签怎么收费", "酒店退订要多久"]})
    publish_draft(draft=update)
    client = Client()
    client.force_login(owner)
    html = client.get(reverse("labeling:taxonomy_diff", args=[project.slug]) + "?a=2&b=3").content.decode()
    assert "<del>重复</del>" in html and "<ins>多次</ins>" in html
    assert "<ins>要多久</ins>" in html and "<del>机票" not in html
