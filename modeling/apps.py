from django.apps import AppConfig


class ModelingConfig(AppConfig):
    name = "modeling"
    verbose_name = "Modeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Active learning's signal hooks (gold label saved → retrain check; new model version → re-score), and
        # the task that scores every item for the item browser.
        from modeling import tasks_al, tasks_items  # noqa: F401
        from modeling.services import serving_cache

        serving_cache.connect()
