"""Twenty annotators submitting at once on the embedded SQLite default (a real file, real threads, each with its
own connection, through the HTTP API) while the owner changes workspace settings: no 500, every acknowledged
submission stored once."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.db import connection, connections
from rest_framework.test import APIClient

from labeling.models import Annotation, Role
from labeling.services.projects import add_member, create_project
from tests.workspace.factories import make_items, numbered_texts, publish_scenes

ANNOTATORS = 20
ROUNDS = 6

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.smoke,
    pytest.mark.skipif(connection.vendor != "sqlite", reason="the embedded SQLite default"),
]


def _annotate(user, barrier, statuses, acknowledged, errors):
    client = APIClient()
    client.force_authenticate(user)
    base = "/api/v1/projects/race/"
    try:
        barrier.wait()
        for _ in range(ROUNDS):
            nxt = client.get(base + "workspace/next")
            statuses.append(nxt.status_code)
            if nxt.status_code != 200 or nxt.json()["item"] is None:
                continue
            body = {"item_id": nxt.json()["item"]["id"], "label": "支付", "time_ms": 5}
            posted = client.post(base + "annotations", body, format="json")
            statuses.append(posted.status_code)
            if posted.status_code in (200, 201):
                acknowledged.append(posted.json()["id"])
    except Exception as exc:  # reported by the main thread (an OperationalError would land here)
        errors.append(exc)
    finally:
        connections.close_all()


def _change_settings(user, barrier, statuses, errors):
    client = APIClient()
    client.force_authenticate(user)
    try:
        barrier.wait()
        for minutes in range(30, 30 + ROUNDS * 2):
            patched = client.patch("/api/v1/projects/race/workspace/settings", {"assignment_ttl_minutes": minutes})
            statuses.append(patched.status_code)
    except Exception as exc:
        errors.append(exc)
    finally:
        connections.close_all()


def test_twenty_annotators_at_once_get_no_server_error():
    assert connection.settings_dict["NAME"] != ":memory:"
    users = [get_user_model().objects.create_user(f"ann{i}", password="x") for i in range(ANNOTATORS)]
    owner = get_user_model().objects.create_user("race_owner", password="x")
    project = create_project(slug="race", name="Race", owner=owner, overlap_k=2, retrain_every_n_gold=10**6)
    for user in users:
        add_member(project=project, user=user, role=Role.ANNOTATOR)
    publish_scenes(project)
    make_items(project, numbered_texts(ANNOTATORS * ROUNDS))
    barrier = threading.Barrier(ANNOTATORS + 1)
    statuses: list[int] = []
    acknowledged: list[int] = []
    settings_statuses: list[int] = []
    errors: list[Exception] = []
    threads = [
        threading.Thread(target=_annotate, args=(user, barrier, statuses, acknowledged, errors)) for user in users
    ]
    threads.append(threading.Thread(target=_change_settings, args=(owner, barrier, settings_statuses, errors)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors, errors[:3]
    counts = Counter(statuses)
    assert not [code for code in counts if code >= 500], counts
    assert counts[201] == ANNOTATORS * ROUNDS, counts
    assert settings_statuses == [200] * (ROUNDS * 2)
    stored = Annotation.objects.filter(item__project=project)
    assert stored.count() == len(set(acknowledged)) == ANNOTATORS * ROUNDS
