"""Two versions under real traffic from a test client: the canary split and its stickiness, shadow rows that
are logged and never returned, and the release rule rolling back a worse challenger or promoting a good one."""

from __future__ import annotations

import random

import pytest

from feedback.models import PredictionLog
from feedback.services.shadow import flush_shadow
from labeling.models import GoldLabel
from modeling.models import ModelVersion, VersionEvent
from modeling.services import aliases, serving_cache
from modeling.services.traffic import session_bucket
from tests.modeling.route1 import scene_texts, start_and_run, tiny_params

PREDICT = "/api/v1/projects/alpha/predict"
FEEDBACK = "/api/v1/projects/alpha/feedback"


def answering_params(backbone) -> dict:
    """Most texts answered (coverage target), so labelled predictions measure the model, not the abstention."""
    return {**tiny_params(backbone), "abstain_target_kind": "coverage", "abstain_target": 0.95}


def train(project, backbone, **kwargs) -> ModelVersion:
    run = start_and_run(project, params=answering_params(backbone), **kwargs)
    assert run.status == "succeeded", run.error
    return run.model_version


def train_on_shuffled_labels(project, backbone) -> ModelVersion:
    """A forced regression: the same texts with their gold labels permuted, then the labels restored."""
    gold = list(GoldLabel.objects.filter(item__project=project).order_by("pk"))
    original = {row.pk: row.label_key for row in gold}
    shuffled = [row.label_key for row in gold]
    random.Random(7).shuffle(shuffled)
    for row, key in zip(gold, shuffled, strict=True):
        row.label_key = key
    GoldLabel.objects.bulk_update(gold, ["label_key"])
    try:
        return train(project, backbone)
    finally:
        for row in gold:
            row.label_key = original[row.pk]
        GoldLabel.objects.bulk_update(gold, ["label_key"])


@pytest.fixture
def two_versions(no_auto_retrain, scene_project, tiny_backbone):
    champion = train(scene_project, tiny_backbone, auto_publish=True)
    challenger = train(scene_project, tiny_backbone)
    assert champion.status == "published" and challenger.status == "candidate"
    return champion, challenger


def served_version(client, text: str, session_id: str | None = None) -> dict:
    body = {"text": text} if session_id is None else {"text": text, "session_id": session_id}
    response = client.post(PREDICT, body, format="json")
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.django_db
def test_canary_split_follows_the_session_hash_and_sticks(client, owner, token_client, two_versions):
    champion, challenger = two_versions
    client.force_login(owner)
    response = client.put(
        "/api/v1/projects/alpha/aliases/challenger",
        {"version": challenger.number, "share": 0.3},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    assert response.json()["challenger"] == challenger.number and response.json()["challenger_share"] == 0.3
    salt = aliases.release_rule_for(champion.project).salt

    sessions = [f"user-{i}" for i in range(300)]
    got = {s: served_version(token_client, "我的快递没到", s)["model_version"] for s in sessions}
    expected = {s: challenger.ref if session_bucket(salt, s) < 0.3 else champion.ref for s in sessions}
    assert got == expected
    share = sum(ref == challenger.ref for ref in got.values()) / len(sessions)
    assert abs(share - 0.3) < 0.08, share

    for session in sessions[:10]:  # stickiness: the same user sees one version, request after request
        assert {served_version(token_client, "密码忘了", session)["model_version"] for _ in range(4)} == {got[session]}

    roles = dict(PredictionLog.objects.filter(model_version=challenger).values_list("role", "role"))
    assert set(roles) == {"challenger"}
    assert set(PredictionLog.objects.filter(model_version=champion).values_list("role", flat=True)) == {"champion"}

    aliases.set_challenger_share(project=champion.project, share=0.6)
    regot = {s: served_version(token_client, "我的快递没到", s)["model_version"] for s in sessions[:100]}
    assert all(regot[s] == challenger.ref for s in sessions[:100] if got[s] == challenger.ref)  # nobody flips back

    anonymous = [served_version(token_client, "机票改签")["model_version"] for _ in range(150)]
    assert abs(anonymous.count(challenger.ref) / 150 - 0.6) < 0.15


@pytest.mark.django_db(transaction=True)
def test_shadow_scores_every_request_and_is_never_returned(client, owner, token_client, two_versions):
    champion, shadow = two_versions
    client.force_login(owner)
    assert (
        client.put(
            "/api/v1/projects/alpha/aliases/shadow", {"version": shadow.number}, content_type="application/json"
        ).json()["shadow"]
        == shadow.number
    )

    recent = serving_cache.recent_features()
    hits_before = recent.hits
    texts = [text for text, _ in scene_texts(4)]
    answers = [served_version(token_client, text, f"s-{i}") for i, text in enumerate(texts)]
    batch = token_client.post(PREDICT, {"texts": texts[:5]}, format="json").json()
    assert flush_shadow(timeout=60)
    # The shadow shares the champion's backbone: it ran its head on the champion's features, not the encoder.
    assert recent.hits - hits_before >= len(texts) + 5

    assert {a["model_version"] for a in answers} == {champion.ref} and batch["model_version"] == champion.ref
    served_ids = {a["request_id"] for a in answers} | {r["request_id"] for r in batch["results"]}
    shadow_rows = PredictionLog.objects.filter(role="shadow")
    assert shadow_rows.count() == len(served_ids)  # no row lost
    assert {str(r) for r in shadow_rows.values_list("request_id", flat=True)} == served_ids
    assert set(shadow_rows.values_list("model_version", flat=True)) == {shadow.pk}

    feedback = token_client.post(
        FEEDBACK, {"request_id": answers[0]["request_id"], "correct_label": "物流"}, format="json"
    )
    assert feedback.json()["results"][0]["status"] == "stored"
    dashboard = client.get("/api/v1/projects/alpha/monitoring").json()
    by_role = {(v["version"], v["role"]): v["total"] for v in dashboard["versions"]}
    assert by_role[(f"v{shadow.number}", "shadow")]["volume"] == len(served_ids)
    assert by_role[(f"v{shadow.number}", "shadow")]["labelled"] == 1  # judged by the served answer's correction
    assert dashboard["total"]["volume"] == len(served_ids)  # shadow rows are not traffic


def send_labelled_traffic(token_client, rows, *, prefix: str) -> None:
    results = [
        (served_version(token_client, text, f"{prefix}-{i}")["request_id"], label)
        for i, (text, label) in enumerate(rows)
    ]
    items = [{"request_id": request_id, "correct_label": label} for request_id, label in results]
    response = token_client.post(FEEDBACK, items, format="json")
    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_worse_challenger_is_rolled_back_by_the_rule(
    token_client,
    no_auto_retrain,
    scene_project,
    tiny_backbone,
    django_capture_on_commit_callbacks,
):
    champion = train(scene_project, tiny_backbone, auto_publish=True)
    worse = train_on_shuffled_labels(scene_project, tiny_backbone)
    aliases.update_release_rule(project=scene_project, min_labelled=15, share_steps=[0.5, 1.0], max_latency_ratio=100.0)
    aliases.set_alias(version=worse, alias="challenger")

    with django_capture_on_commit_callbacks(execute=True):
        send_labelled_traffic(token_client, scene_texts(20), prefix="u")

    worse.refresh_from_db()
    assert worse.alias == "" and worse.status == "candidate"
    event = VersionEvent.objects.get(version=worse, kind=VersionEvent.Kind.ROLLED_BACK)
    assert event.rule == "release_rule" and "Macro-F1" in event.reason
    assert event.figures["challenger"]["macro_f1"] < event.figures["champion"]["macro_f1"]
    assert event.figures["challenger"]["labelled"] >= 15
    assert {served_version(token_client, "快递没到", f"u-{i}")["model_version"] for i in range(20)} == {champion.ref}


@pytest.mark.django_db
def test_good_challenger_steps_up_then_becomes_champion(token_client, two_versions, django_capture_on_commit_callbacks):
    champion, challenger = two_versions
    project = champion.project
    # Wide margins: both versions are equally good, and 10-30 labels per version make macro-F1 noisy.
    aliases.update_release_rule(
        project=project,
        min_labelled=10,
        share_steps=[0.3, 0.6, 1.0],
        max_f1_drop=0.3,
        max_abstain_increase=0.3,
        max_latency_ratio=100.0,
    )
    aliases.set_alias(version=challenger, alias="challenger")

    with django_capture_on_commit_callbacks(execute=True):
        send_labelled_traffic(token_client, scene_texts(20), prefix="a")
    assert aliases.release_rule_for(project).challenger_share == 0.6
    with django_capture_on_commit_callbacks(execute=True):
        send_labelled_traffic(token_client, scene_texts(20), prefix="b")

    challenger.refresh_from_db()
    champion.refresh_from_db()
    assert challenger.status == "published" and champion.status == "archived"
    kinds = list(VersionEvent.objects.filter(version=challenger).order_by("id").values_list("kind", flat=True))
    assert kinds == ["alias_set", "share_changed", "promoted"]


@pytest.mark.django_db
def test_alias_api_rules_and_permissions(client, owner, annotator, two_versions):
    champion, other = two_versions
    client.force_login(annotator)
    assert (
        client.put(
            "/api/v1/projects/alpha/aliases/shadow", {"version": other.number}, content_type="application/json"
        ).status_code
        == 403
    )
    client.force_login(owner)
    bad = client.put(
        "/api/v1/projects/alpha/aliases/canary", {"version": other.number}, content_type="application/json"
    )
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_alias"
    assert (
        client.put(
            "/api/v1/projects/alpha/aliases/challenger", {"version": champion.number}, content_type="application/json"
        ).status_code
        == 409
    )
    assert (
        client.put(
            "/api/v1/projects/alpha/aliases/challenger/share", {"share": 0.5}, content_type="application/json"
        ).status_code
        == 409
    )
    client.put("/api/v1/projects/alpha/aliases/challenger", {"version": other.number}, content_type="application/json")
    moved = client.put(
        "/api/v1/projects/alpha/aliases/shadow", {"version": other.number}, content_type="application/json"
    ).json()
    assert (moved["challenger"], moved["shadow"], moved["champion"]) == (None, other.number, champion.number)
    assert client.delete("/api/v1/projects/alpha/aliases/champion").status_code == 409
    assert client.delete("/api/v1/projects/alpha/aliases/shadow").json()["shadow"] is None
    rule = client.patch(
        "/api/v1/projects/alpha/release-rule",
        {"min_labelled": 5, "retrain_alias": "shadow"},
        content_type="application/json",
    )
    assert rule.status_code == 200 and rule.json()["min_labelled"] == 5 and rule.json()["retrain_alias"] == "shadow"
    assert (
        client.patch(
            "/api/v1/projects/alpha/release-rule", {"share_steps": [0, 2]}, content_type="application/json"
        ).status_code
        == 400
    )
    page = client.get("/projects/alpha/models/").content.decode()
    assert 'id="version-history"' in page and "alias_removed" in page
    assert client.get("/api/v1/projects/alpha/models/1").json()["alias"] == "champion"


@pytest.mark.django_db
def test_database_allows_one_challenger_and_champion_holds_no_other_alias(two_versions):
    from django.db import IntegrityError, transaction

    champion, other = two_versions
    ModelVersion.objects.filter(pk=other.pk).update(alias="challenger")
    with pytest.raises(IntegrityError), transaction.atomic():
        ModelVersion.objects.filter(pk=champion.pk).update(alias="shadow")
