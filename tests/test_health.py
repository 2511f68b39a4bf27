import pytest
from celery import Celery

from sceneclf_site.health import check_broker


@pytest.mark.smoke
def test_health_reports_each_component(client, db):
    response = client.get("/api/v1/health")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["database"]["status"] == "ok"
    assert body["broker"]["status"] == "ok"
    assert body["worker"]["status"] == "ok"


def test_broker_down_is_reported_clearly():
    dead = Celery("dead", broker="redis://127.0.0.1:1/0")
    result = check_broker(dead)
    assert result["status"] == "down"
    assert "broker unreachable" in result["detail"]
