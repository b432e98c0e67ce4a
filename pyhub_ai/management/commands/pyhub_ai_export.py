"""``manage.py pyhub_ai_export``: conversations as JSON Lines (for pyhub_ai_import) or Markdown.

Records are streamed from the database, so exporting a huge table needs little memory. The
format is described in ``pyhub_ai.transfer``.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db.models import QuerySet

from pyhub_ai import transfer
from pyhub_ai.models import Conversation


class Command(BaseCommand):
    help = (
        "Export conversations with their messages, as JSON Lines that pyhub_ai_import reads back, "
        "or as a readable Markdown transcript. Select them with --conversation, --user or --all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--conversation", action="append", type=int, metavar="PK", help="Export this conversation (repeatable)."
        )
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help="Export the conversations this user owns and their threads in owner-less ones.",
        )
        parser.add_argument("--all", action="store_true", help="Export every conversation.")
        parser.add_argument(
            "--format", choices=["jsonl", "markdown"], default="jsonl", help="jsonl (default, for importing) or markdown."
        )
        parser.add_argument("--output", metavar="FILE", help="Write to FILE instead of standard output.")

    def handle(self, *args: Any, **options: Any) -> None:
        conversations, user = self.get_selection(options)
        if options["format"] == "markdown":
            lines = transfer.markdown_transcript(conversations, user)
        else:
            lines = (json.dumps(record, ensure_ascii=False) for record in transfer.export_records(conversations, user))
        if not options["output"]:
            for line in lines:
                self.stdout.write(line)
            return
        with open(options["output"], "w", encoding="utf-8") as output:
            count = self.write_lines(output, lines)
        self.stdout.write(f"Wrote {count} lines to {options['output']}.")

    def get_selection(self, options: dict[str, Any]) -> tuple[QuerySet[Conversation], Any]:
        """The conversations to export, and the user whose threads are wanted (``--user``)."""
        chosen = [name for name in ("conversation", "user", "all") if options[name]]
        if len(chosen) != 1:
            raise CommandError("Give exactly one of --conversation PK, --user USERNAME or --all.")
        if options["all"]:
            return Conversation.objects.all(), None
        if options["user"]:
            user_model = get_user_model()
            try:
                user = user_model._default_manager.get_by_natural_key(options["user"])
            except user_model.DoesNotExist:
                raise CommandError(f"No user named {options['user']!r}.") from None
            return transfer.conversations_of(user), user
        pks = set(options["conversation"])
        conversations = Conversation.objects.filter(pk__in=pks)
        missing = pks - set(conversations.values_list("pk", flat=True))
        if missing:
            raise CommandError(f"No conversation with pk {', '.join(map(str, sorted(missing)))}.")
        return conversations, None

    @staticmethod
    def write_lines(output: Any, lines: Iterator[str]) -> int:
        count = 0
        for line in lines:
            output.write(line + "\n")
            count += 1
        return count
