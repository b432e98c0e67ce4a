from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class PyhubAiConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "pyhub_ai"
    verbose_name = _("AI conversations")

    def ready(self) -> None:
        from django.db.models.signals import post_delete

        from . import checks  # noqa: F401  (registers the system checks)
        from .attachments import delete_file
        from .models import Attachment
        from .sessions import connect_signals

        connect_signals()  # sign-out and password changes reach open sockets (pyhub_ai.sessions)
        post_delete.connect(delete_file, sender=Attachment, dispatch_uid="pyhub_ai_attachment_file")
