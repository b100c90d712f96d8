import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "receptionist.settings")

app = Celery("receptionist")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
