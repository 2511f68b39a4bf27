"""Every page speaks one language: the zh-hans catalogue is complete and no English UI word is left on a
Chinese page, while the English pages keep rendering."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from labeling.models import Annotation, GoldLabel, Role
from labeling.services.agreement import compute_agreement
from labeling.services.imports import run_import, start_import
from labeling.services.projects import add_member, create_project
from labeling.services.review import create_review_task
from modeling.models import ModelVersion, TrainingRun
from tests.workspace.factories import make_items, publish_scenes

pytestmark = pytest.mark.django_db

PO_FILE = Path(settings.BASE_DIR) / "locale" / "zh_Hans" / "LC_MESSAGES" / "django.po"

# Product names, formats, metric names, key names and test-data names that stay as they are in a Chinese UI.
ALLOWED_WORDS = """
    sceneclf api json yaml yml csv jsonl xlsx tsv macro ece train val test token tokens htmx http https url tfidf idf
    lora utf pii id ids bearer authorization alpha owner annotator reviewer annotator2 e5 qwen encoder_ft zero_shot
    prefix probe kappa krippendorff cohen fleiss ctrl shift esc enter tab space cleanlab oos
    swagger openapi redoc cpu gpu ram max min auc aurc mcc iou acc in_scope_acc python django
    text label phone hub
    english
    travel payment logistics account
    vectors
"""
ALLOWED = set(ALLOWED_WORDS.split())
# text/label: import-format keys; phone: the <PHONE> mask; hub: a Hugging Face hub id; English: the language
# menu names each language in itself; travel ... account: label names of the test taxonomy (data, not UI);
# vectors: the tests' own route (tests/engine/vector_route.py), listed once a test has registered it.


def po_entries() -> list[dict]:
    """The catalogue's live entries as {msgid, msgstrs, fuzzy}; a small reader, the format is line based."""
    entries, current, field = [], None, None
    for line in [*PO_FILE.read_text(encoding="utf-8").splitlines(), ""]:
        if line.startswith("#~"):
            continue
        if not line.strip():
            if current is not None:
                entries.append(current)
            current, field = None, None
            continue
        current = current or {"msgid": "", "msgstrs": {}, "fuzzy": False}
        if line.startswith("#,"):
            current["fuzzy"] = current["fuzzy"] or "fuzzy" in line
        elif line.startswith("#"):
            continue
        elif line.startswith('"'):
            value = line[1:-1]
            if field == "msgid":
                current["msgid"] += value
            elif field is not None:
                current["msgstrs"][field] += value
        else:
            keyword, _, value = line.partition(" ")
            field = "msgid" if keyword == "msgid" else (keyword if keyword.startswith("msgstr") else "skip")
            if field == "msgid":
                current["msgid"] = value[1:-1]
            elif field != "skip":
                current["msgstrs"][field] = value[1:-1]
            else:
                field = None
    return [entry for entry in entries if entry["msgid"]]


def test_every_msgid_has_a_checked_translation():
    missing = [
        entry["msgid"]
        for entry in po_entries()
        if entry["fuzzy"] or not entry["msgstrs"] or not all(entry["msgstrs"].values())
    ]
    assert po_entries() and missing == []


def visible_words(html: str) -> set[str]:
    html = re.sub(r"(?is)<(script|style|svg)\b.*?</\1>", " ", html)  # plots are pictures, checked elsewhere
    html = re.sub(r"(?s)<!--.*?-->", " ", html)
    text = re.sub(r"(?s)<[^>]+>", " ", html)
    text = re.sub(r"&[a-z]+;|&#\d+;", " ", text)
    text = re.sub(r"\S+@\S+|https?://\S+|/\S*", " ", text)  # addresses and paths
    return {word for word in re.findall(r"(?<![\w.-])[A-Za-z][A-Za-z_]{2,}(?![\w-])", text)}


def english_words(html: str) -> set[str]:
    # The error pages are bilingual on purpose (they must read right even when the locale machinery fails):
    # their English section is marked lang="en" and is not part of the Chinese UI.
    html = re.sub(r'(?s)<section class="card" lang="en">.*?</section>', " ", html)
    return {word for word in visible_words(html) if word.lower() not in ALLOWED}


@pytest.fixture
def world(owner, annotator, reviewer):
    with translation.override("zh-hans"):  # a Chinese deployment: its fallback label is described in Chinese
        project = create_project(slug="alpha", name="Alpha", owner=owner)
    add_member(project=project, user=annotator, role=Role.ANNOTATOR)
    add_member(project=project, user=reviewer, role=Role.REVIEWER)
    taxonomy = publish_scenes(project)
    items = make_items(project, texts=["酒店订好了却说没有房间", "付款成功但是订单显示未支付", "快递三天了还没到"])
    Annotation.objects.create(item=items[0], annotator=annotator, label_key="旅行", taxonomy=taxonomy, time_ms=5)
    Annotation.objects.create(item=items[0], annotator=owner, label_key="支付", taxonomy=taxonomy, time_ms=5)
    GoldLabel.objects.create(item=items[1], label_key="支付", method=GoldLabel.Method.SINGLE, taxonomy=taxonomy)
    task = create_review_task(
        project=project, item=items[2], kind="abstained", topk=[{"label": "物流", "probability": 0.4}]
    )
    run = TrainingRun.objects.create(project=project, status=TrainingRun.Status.SUCCEEDED, created_by=owner)
    ModelVersion.objects.create(
        project=project,
        run=run,
        number=1,
        route="probe",
        taxonomy=taxonomy,
        label_keys=["旅行", "支付", "物流", "其他"],
        artifacts_dir="unused",
        metrics={  # low validation coverage: the model page warns
            "val": {
                "accuracy": 0.8,
                "macro_f1": 0.7,
                "abstention": {"coverage": 0.3, "selective_accuracy": 0.9},
                "calibration": {"ece": 0.05, "ece_before": 0.1},
            }
        },
    )
    compute_agreement(project)  # a report on one shared item: the small-overlap warning shows
    lines = ['{"text": "海关扣了包裹", "label": "清关"}', '{"text": "付款成功但是订单显示未支付", "label": "旅行"}']
    upload = io.BytesIO("\n".join(lines).encode())
    job = run_import(start_import(project=project, content=upload, file_name="a.jsonl", enqueue=False).pk)
    return {"project": project, "items": items, "task": task, "import_job": job}


def pages(world) -> dict[str, list[str]]:
    slug = world["project"].slug
    item = world["items"][0]

    def lab(name, *args):
        return reverse(f"labeling:{name}", args=[slug, *args])

    return {
        "owner": [
            reverse("labeling:project_list"),
            lab("project_detail"),
            lab("project_settings"),
            lab("members"),
            lab("tokens"),
            lab("taxonomy"),
            lab("taxonomy_version", 1),
            lab("items"),
            lab("item_detail", item.pk),
            lab("item_import"),
            lab("import_job", world["import_job"].pk),
            lab("agreement"),
            lab("annotators"),
            lab("taxonomy_diff"),
            lab("adjudication"),
            reverse("modeling:model_page", args=[slug]),
            reverse("modeling:version", args=[slug, 1]),
            reverse("modeling:active_learning", args=[slug]),
            reverse("feedback:predictions", args=[slug]),
            reverse("feedback:monitoring", args=[slug]),
            lab("workspace_settings"),
        ],
        "annotator": [reverse("labeling:project_list"), lab("project_detail"), lab("workspace")],
        "reviewer": [
            lab("project_detail"),
            lab("review"),
            lab("review_task", world["task"].pk),
            lab("adjudication"),
            lab("annotators"),
        ],
    }


def render_all(client, world, users, language: str) -> dict[str, str]:
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    rendered = {}
    for role, urls in pages(world).items():
        client.force_login(users[role])
        for url in urls:
            response = client.get(url)
            assert response.status_code == 200, (role, url, response.status_code)
            rendered[f"{role} {url}"] = response.content.decode()
    client.logout()  # the test client drops its cookies on logout
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = language
    for url in ["/accounts/login/", "/no-such-page/"]:
        rendered[f"anonymous {url}"] = client.get(url).content.decode()
    return rendered


@pytest.fixture
def users(owner, annotator, reviewer):
    return {"owner": owner, "annotator": annotator, "reviewer": reviewer}


def test_chinese_pages_have_no_english_ui_words(client, world, users):
    leftovers = {
        page: sorted(english_words(html)) for page, html in render_all(client, world, users, "zh-hans").items()
    }
    bad = {page: words for page, words in leftovers.items() if words}
    assert not bad, "\n".join(f"{page}: {' '.join(words)}" for page, words in bad.items())


def test_english_pages_render_in_english(client, world, users):
    rendered = render_all(client, world, users, "en")
    rendered.pop("anonymous /no-such-page/")  # bilingual on purpose, see english_words
    assert "Log in" in rendered["anonymous /accounts/login/"]
    chinese_ui = {"项目", "复核队列", "标注工作台"}  # UI words; the test data holds Chinese texts too
    assert {
        page: [w for w in chinese_ui if w in html]
        for page, html in rendered.items()
        if any(w in html for w in chinese_ui)
    } == {}


def test_review_success_message_says_the_item_now_has_gold(client, world, reviewer):
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    client.force_login(reviewer)
    task = world["task"]
    url = reverse("labeling:review_task", args=[world["project"].slug, task.pk])
    page = client.post(url, {"action": "correct", "label": "物流", "comment": ""}, follow=True).content.decode()
    assert "现在已有金标" in page and "已有金标" not in page.replace("现在已有金标", "")


def test_error_envelope_message_follows_the_language_and_the_code_stays(client, world, owner):
    client.force_login(owner)
    url = f"/api/v1/projects/{world['project'].slug}/taxonomy/diff?a=x&b=1"
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    chinese = client.get(url).json()["error"]
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    english = client.get(url).json()["error"]
    assert chinese["code"] == english["code"] == "invalid_parameter"
    assert chinese["message"] == "查询参数 'a' 必须是版本号。"
    assert english["message"] == "Query parameter 'a' must be a version number."


def test_service_error_flash_is_translated(client, world, annotator):
    client.force_login(annotator)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    url = reverse("labeling:workspace_undo", args=[world["project"].slug])
    client.post(url)  # undoes the annotator's only annotation
    page = client.post(url, follow=True).content.decode()
    assert "没有可撤销的操作。" in page and "Nothing to undo" not in page


def test_model_page_warning_is_translated(client, world, owner):
    client.force_login(owner)
    client.cookies[settings.LANGUAGE_COOKIE_NAME] = "zh-hans"
    page = client.get(reverse("modeling:version", args=[world["project"].slug, 1])).content.decode()
    assert "该模型只回答了 30% 的验证文本" in page
