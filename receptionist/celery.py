import os

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "receptionist.settings")

app = Celery("receptionist")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_shutdown.connect  # a prefork child
@worker_shutdown.connect  # the worker itself (with the threads or solo pool, it runs the tasks)
def _metrics_process_exited(**kwargs: object) -> None:
    """Operator metrics (multi-process mode): a worker process going away leaves the live sums."""
    from receptionist import metrics as operator_metrics

    operator_metrics.process_exited()
