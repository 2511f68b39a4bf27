from django.apps import AppConfig


class ModelingConfig(AppConfig):
    name = "modeling"
    verbose_name = "Modeling"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Active learning's signal hooks (gold label saved → retrain check; new model version → re-score).
        from modeling import tasks_al  # noqa: F401
