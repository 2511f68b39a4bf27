import hashlib, os, time
import pytest
from django.contrib.auth import get_user_model
from labeling.models import Item, Role
from labeling.services.projects import create_project, add_member
from labeling.services.workspace import next_assignment, submit_annotation
from tests.workspace.factories import publish_scenes

@pytest.mark.django_db
@pytest.mark.parametrize("n", [1000, 10000])
def test_bench(n):
    user = get_user_model().objects.create_user("bench", password="x")
    project = create_project(slug="bench", name="Bench", overlap_k=1, agreement_share=0.1)
    add_member(project=project, user=user, role=Role.ANNOTATOR)
    publish_scenes(project)
    Item.objects.bulk_create([Item(project=project, text=f"t{i}", normalized_text=f"t{i}", text_hash=hashlib.sha256(f"t{i}".encode()).hexdigest(), source=f"s{i%3}") for i in range(n)], batch_size=1000)
    times = []
    for _ in range(30):
        t = time.perf_counter()
        a = next_assignment(project=project, annotator=user)
        submit_annotation(project=project, annotator=user, item_id=a.item_id, label_key="支付", time_ms=1)
        times.append(time.perf_counter() - t)
    times.sort()
    print(f"\n{os.environ.get('DATABASE_URL','sqlite')[:8]} N={n} pull+submit median {1000*times[15]:.1f} ms, max {1000*times[-1]:.1f} ms")
