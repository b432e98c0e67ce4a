"""Create (or reset) the demo user and print how to sign in; run by ``make run``.

The demo user is a superuser, so its password is not a public default: unless ``--password``
is given, it is generated once per checkout and kept in ``var/demo-password`` (readable by its
owner only), so signing in keeps working from one ``make run`` to the next.
"""
import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


def local_demo_password() -> str:
    """This checkout's demo password, generated the first time."""
    path = Path(settings.BASE_DIR) / "var" / "demo-password"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(password + "\n")
    return password


class Command(BaseCommand):
    help = "Create or reset the demo user and print its username and password."

    def add_arguments(self, parser):
        parser.add_argument("--username", default="demo")
        parser.add_argument("--password", default=None, help="Default: generated once, kept in var/demo-password.")

    def handle(self, *args, username: str, password: str | None, **options):
        password = password or local_demo_password()
        user, created = get_user_model().objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
        user.set_password(password)
        user.save()
        verb = "Created" if created else "Reset"
        self.stdout.write(self.style.SUCCESS(f"{verb} the demo user: username '{username}', password '{password}' (admin too)."))
