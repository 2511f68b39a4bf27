"""Celery tasks of active learning (thin: each calls one service) and the hooks that trigger them.

- `score_pool_task` (queue ml): rank the unlabelled pool; queued after every new model version, when the owner
  asks, by the beat task when new items arrived, and when a taxonomy version is published while the project has
  no model yet (the zero-shot cold start of the new labels, and its suggestions).
- `check_retrain_task` (queue default, light): queued by beat per project; starts a retrain once
  `Project.retrain_every_n_gold` new gold labels arrived. A saved gold label runs the same check in-process
  after its commit (a few counts), so labelling never waits on the broker: a retrain it starts while the broker
  is down is kept "waiting for the queue" and sent by the requeue sweep.
- `active_learning_beat` (queue default): for every project, the retrain check and a re-score if items arrived.
- `label_check_task` (queue ml): the k-fold label-quality check that fills the review queue.
Task names are `modeling.tasks_al.*`, which the `modeling.tasks.*` route does not match: queues are set here.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from labeling.models import GoldLabel, Project, TaxonomyVersion
from modeling.models import ModelVersion
from sceneclf_site.queueing import send_task_quietly

logger = logging.getLogger(__name__)


@shared_task(name="modeling.tasks_al.score_pool", queue="ml", acks_late=True)
def score_pool_task(project_id: int, trigger: str = "manual") -> int | None:
    from modeling.services.active_learning import score_pool

    project = Project.objects.filter(pk=project_id).first()
    return score_pool(project, trigger=trigger).pk if project else None


@shared_task(name="modeling.tasks_al.check_retrain", queue="default")
def check_retrain_task(project_id: int) -> int | None:
    from modeling.services.active_learning import retrain_if_due

    project = Project.objects.filter(pk=project_id).first()
    run = retrain_if_due(project) if project else None
    return run.pk if run else None


@shared_task(name="modeling.tasks_al.label_check", queue="ml", acks_late=True)
def label_check_task(project_id: int) -> dict[str, int] | None:
    from modeling.services.label_quality import check_project_labels

    project = Project.objects.filter(pk=project_id).first()
    return check_project_labels(project) if project else None


@shared_task(name="modeling.tasks_al.beat", queue="default")
def active_learning_beat() -> int:
    from modeling.selectors.active_learning import al_settings, newest_item_id

    queued = 0
    for project in Project.objects.all():
        send_task_quietly(check_retrain_task, args=[project.pk])
        if newest_item_id(project) > al_settings(project).last_scored_item_id:
            queued += send_task_quietly(score_pool_task, args=[project.pk, "beat"])
    return queued


# --- hooks -------------------------------------------------------------------------------------------
# robust=True: a failing check (or, in eager mode, a failing task) is logged and never breaks the save that
# triggered it; the beat task catches up.


def _retrain_check(project_id: int) -> None:
    from modeling.services.active_learning import retrain_if_due

    project = Project.objects.filter(pk=project_id).first()
    if project is not None:
        retrain_if_due(project)


@receiver(post_save, sender=GoldLabel, dispatch_uid="modeling.al.gold_saved")
def _gold_saved(sender: type, instance: GoldLabel, **kwargs: object) -> None:
    project_id = instance.item.project_id
    transaction.on_commit(lambda: _retrain_check(project_id), robust=True)


@receiver(post_save, sender=ModelVersion, dispatch_uid="modeling.al.version_created")
def _version_created(sender: type, instance: ModelVersion, created: bool, **kwargs: object) -> None:
    if created:
        project_id = instance.project_id
        transaction.on_commit(
            lambda: send_task_quietly(score_pool_task, args=[project_id, "after_training"]), robust=True
        )


@receiver(post_save, sender=TaxonomyVersion, dispatch_uid="modeling.al.taxonomy_published")
def _taxonomy_published(sender: type, instance: TaxonomyVersion, **kwargs: object) -> None:
    update_fields = kwargs.get("update_fields")
    if instance.status != TaxonomyVersion.Status.PUBLISHED or (update_fields and "status" not in update_fields):
        return
    project_id = instance.project_id
    transaction.on_commit(lambda: _zero_shot_rescore(project_id), robust=True)


def _zero_shot_rescore(project_id: int) -> None:
    from modeling.selectors.active_learning import scoring_model

    project = Project.objects.filter(pk=project_id).first()
    if project is not None and scoring_model(project) is None:
        send_task_quietly(score_pool_task, args=[project_id, "taxonomy_published"])
