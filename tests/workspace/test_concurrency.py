"""Two annotators pulling at the same moment never get the same slot (PostgreSQL, real connections)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections

from labeling.models import Annotation, Assignment, Role
from labeling.selectors.workspace import target_k
from labeling.services.projects import add_member, create_project
from labeling.services.workspace import next_assignment, submit_annotation
from tests.workspace.factories import make_items, numbered_texts, publish_scenes

THREADS = 8
PULLS = 20

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL row locks (SKIP LOCKED); run with DATABASE_URL=postgres://postgres@127.0.0.1:5432/test",
    ),
]


def _worker(project, user, barrier, pulled, errors):
    try:
        barrier.wait()
        for _ in range(PULLS):
            assignment = next_assignment(project=project, annotator=user)
            if assignment is None:
                break
            pulled.append((assignment.item_id, assignment.slot, user.pk))
            submit_annotation(project=project, annotator=user, item_id=assignment.item_id, label_key="支付", time_ms=1)
    except Exception as exc:  # reported by the main thread
        errors.append(exc)
    finally:
        connections.close_all()


@pytest.mark.parametrize("overlap_k", [1, 2])
def test_parallel_pulls_never_share_a_slot(overlap_k):
    users = [get_user_model().objects.create_user(f"ann{i}", password="x") for i in range(THREADS)]
    # No automatic retraining in the middle of the race: this test is about slots only.
    project = create_project(
        slug="race", name="Race", overlap_k=overlap_k, agreement_share=0.1, retrain_every_n_gold=10**6
    )
    for user in users:
        add_member(project=project, user=user, role=Role.ANNOTATOR)
    publish_scenes(project)
    items = make_items(project, numbered_texts(THREADS * PULLS + 20))
    barrier = threading.Barrier(THREADS)
    pulled: list[tuple[int, int, int]] = []
    errors: list[Exception] = []
    threads = [threading.Thread(target=_worker, args=(project, u, barrier, pulled, errors)) for u in users]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors
    assert len(pulled) == THREADS * PULLS  # every pull got work: enough slots for all
    slots = Counter((item_id, slot) for item_id, slot, _ in pulled)
    assert max(slots.values()) == 1, "a slot was handed out twice"
    per_item = Counter(item_id for item_id, _, _ in pulled)
    hashes = {item.pk: item.text_hash for item in items}
    assert all(n <= target_k(project, hashes[item_id]) for item_id, n in per_item.items())
    assert len(set(pulled)) == len(pulled)
    assert Annotation.objects.filter(item__project=project).count() == THREADS * PULLS
    assert Assignment.objects.filter(item__project=project).count() == THREADS * PULLS
