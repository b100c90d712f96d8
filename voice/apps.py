from django.apps import AppConfig
from django.core import checks


class VoiceConfig(AppConfig):
    name = "voice"

    def ready(self) -> None:
        from voice.model_shutdowns import check_model_shutdowns

        # No tag: plain `check`, `check --deploy`, `migrate` and `runserver` all run it.
        checks.register(check_model_shutdowns)
