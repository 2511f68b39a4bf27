"""Agreement that says how sure it is: a seeded bootstrap interval, a warning below 30 shared items, and the
items by agreement, lowest first, for the review queue."""

from __future__ import annotations

import random

import numpy as np
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from labeling.models import Annotation, ReviewTask, Role
from labeling.selectors.agreement import items_by_agreement
from labeling.services.agreement import agreement_stats, bootstrap_alpha_ci, compute_agreement, queue_low_agreement
from labeling.services.projects import add_member
from tests.workspace.factories import make_items

LABELS = ["旅行", "支付", "物流"]


def noisy_units(n: int, seed: int = 1) -> list[dict[str, str]]:
    """Three raters who agree on about four items out of five."""
    rng = random.Random(seed)
    units = []
    for _ in range(n):
        truth = rng.choice(LABELS)
        units.append({r: truth if rng.random() < 0.8 else rng.choice(LABELS) for r in ("a", "b", "c")})
    return units


def test_bootstrap_interval_is_seeded_holds_alpha_and_narrows_with_more_items():
    encode = {label: float(i) for i, label in enumerate(LABELS)}
    small = noisy_units(12)
    stats = agreement_stats(small, LABELS, 0.8, list(range(12)))
    ci = stats.alpha_ci
    assert ci == bootstrap_alpha_ci(small, ["a", "b", "c"], encode)  # same seed, same interval
    assert ci["low"] <= stats.krippendorff_alpha <= ci["high"]
    assert (ci["level"], ci["n_boot"], ci["seed"]) == (0.95, 1000, 0)
    other_seed = bootstrap_alpha_ci(small, ["a", "b", "c"], encode, seed=7)
    assert other_seed != ci
    large = bootstrap_alpha_ci(noisy_units(400), ["a", "b", "c"], encode)
    assert large["high"] - large["low"] < (ci["high"] - ci["low"]) / 2


def test_no_interval_without_variation():
    units = [{"a": "旅行", "b": "旅行"} for _ in range(5)]
    assert bootstrap_alpha_ci(units, ["a", "b"], {"旅行": 0.0, "支付": 1.0}) == {}


def annotate(project, rows: list[list[str]]):
    users = []
    for name in ("rater_a", "rater_b", "rater_c"):
        user = get_user_model().objects.create_user(name, password="x")
        add_member(project=project, user=user, role=Role.ANNOTATOR)
        users.append(user)
    items = make_items(project, [f"第{i}条一致性反馈" for i in range(len(rows))])
    taxonomy = project.taxonomy_versions.get(status="published")
    for item, row in zip(items, rows, strict=True):
        for user, label in zip(users, row, strict=True):
            Annotation.objects.create(item=item, annotator=user, label_key=label, taxonomy=taxonomy, time_ms=800)
    return items


ROWS = [
    ["旅行", "旅行", "旅行"],
    ["旅行", "支付", "物流"],  # 0 of 3 pairs agree
    ["支付", "支付", "物流"],  # 1 of 3
    ["物流", "物流", "物流"],
    ["支付", "旅行", "旅行"],  # 1 of 3
]


@pytest.mark.django_db
def test_items_by_agreement_lowest_first_and_queued_for_review(published, reviewer):
    items = annotate(published, ROWS)
    (report,) = compute_agreement(published)
    order = items_by_agreement(report)
    assert [entry.item.pk for entry in order] == [items[1].pk, items[2].pk, items[4].pk]
    assert [round(entry.agreement, 3) for entry in order] == [0.0, 0.333, 0.333]

    tasks = queue_low_agreement(project=published, report_id=report.pk, limit=2)
    assert [(t.item_id, t.kind) for t in tasks] == [(items[1].pk, "low_agreement"), (items[2].pk, "low_agreement")]
    assert tasks[1].suggested_label == "支付" and tasks[0].suggested_label == ""
    assert [t.item_id for t in queue_low_agreement(project=published, report_id=report.pk)] == [items[4].pk]
    assert ReviewTask.objects.filter(kind=ReviewTask.Kind.LOW_AGREEMENT).count() == 3


@pytest.mark.django_db
def test_page_warns_below_thirty_items_and_shows_the_interval(published, reviewer):
    annotate(published, ROWS * 2)
    compute_agreement(published)
    client = Client()
    client.force_login(reviewer)
    url = reverse("labeling:agreement", args=[published.slug])
    html = client.get(url).content.decode()
    assert 'id="overlap-warning"' in html and "Only 10 items" in html
    assert 'id="alpha-ci"' in html and "95% interval" in html
    assert html.count('class="item-agreement"') == 6

    response = client.post(
        reverse("labeling:agreement_queue_review", args=[published.slug]),
        {"report_id": published.agreement_reports.get().pk, "limit": "3"},
    )
    assert response.status_code == 302 and response["Location"].endswith("?kind=low_agreement")
    assert ReviewTask.objects.filter(project=published, kind="low_agreement").count() == 3


@pytest.mark.django_db
def test_no_warning_from_thirty_items(published, reviewer):
    annotate(published, (ROWS * 6)[:30])
    compute_agreement(published)
    client = Client()
    client.force_login(reviewer)
    html = client.get(reverse("labeling:agreement", args=[published.slug])).content.decode()
    assert 'id="overlap-warning"' not in html


def test_pair_agreement_values():
    from labeling.services.agreement import pair_agreement

    assert pair_agreement({"a": "x", "b": "x"}) == 1.0
    assert pair_agreement({"a": "x", "b": "y", "c": "x"}) == pytest.approx(1 / 3)
    assert np.isclose(pair_agreement({"a": "x", "b": "y"}), 0.0)
