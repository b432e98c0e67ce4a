"""``manage.py pyhub_ai_import``: bring conversations in, from one of three sources.

- ``FILE`` (``-`` for standard input): a ``pyhub_ai_export`` JSON Lines file, read back
  losslessly into new rows. The whole file is validated before anything is written.
- ``--from-redis REDIS_URL``: the lists LangChain's ``RedisChatMessageHistory`` keeps, one
  conversation per session id.
- ``--upgrade-legacy-rows``: rewrites django-pyhub-ai rows in place into the current codec form.

The record formats live in ``pyhub_ai.transfer``.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError, transaction

from pyhub_ai import codec, transfer
from pyhub_ai.models import Conversation, ConversationMessage

#: Lookups by a list of values are split into chunks of this size (SQL parameter limits).
CHUNK = 500


class Command(BaseCommand):
    help = (
        "Import conversations: from a pyhub_ai_export JSON Lines FILE (- for standard input), from "
        "LangChain's RedisChatMessageHistory (--from-redis), or upgrade django-pyhub-ai rows in place "
        "(--upgrade-legacy-rows)."
    )
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", nargs="?", metavar="FILE", help="A pyhub_ai_export JSON Lines file; - reads standard input.")
        parser.add_argument(
            "--missing-users",
            choices=["error", "skip-owner"],
            default="error",
            help="When a username in the file does not exist: stop (error, the default), or import "
            "those conversations and messages without an owner or user (skip-owner).",
        )
        parser.add_argument(
            "--replace",
            action="store_true",
            help="Delete existing conversations whose session_id is in the file (with all their threads) first.",
        )
        parser.add_argument("--from-redis", metavar="REDIS_URL", help="Import RedisChatMessageHistory lists from this Redis.")
        parser.add_argument(
            "--key-prefix", default="message_store:", help="The key prefix of the Redis lists (default message_store:)."
        )
        parser.add_argument(
            "--session", action="extend", nargs="+", metavar="ID", help="Import only these Redis session ids."
        )
        parser.add_argument(
            "--append",
            action="store_true",
            help="Append Redis messages to existing conversations with the same session_id instead of refusing.",
        )
        parser.add_argument(
            "--upgrade-legacy-rows",
            action="store_true",
            help="Rewrite stored django-pyhub-ai messages into the current form, in place.",
        )
        parser.add_argument("--batch-size", type=int, default=1000, help="Rows written per query (default 1000).")

    def handle(self, *args: Any, **options: Any) -> None:
        sources = [name for name in ("file", "from_redis", "upgrade_legacy_rows") if options[name]]
        if len(sources) != 1:
            raise CommandError("Give exactly one of FILE (- for standard input), --from-redis REDIS_URL or --upgrade-legacy-rows.")
        batch_size = max(options["batch_size"], 1)
        if options["file"]:
            self.import_file(options, batch_size)
        elif options["from_redis"]:
            self.import_redis(options)
        else:
            self.upgrade_legacy_rows(batch_size)

    # -- An export file --------------------------------------------------------------------

    def import_file(self, options: dict[str, Any], batch_size: int) -> None:
        with self.open_source(options["file"], options.get("stdin")) as source:
            try:
                summary = transfer.check_export(source)
            except (transfer.TransferError, UnicodeDecodeError) as exc:
                raise CommandError(f"Nothing was imported. {exc}") from exc
            users = self.get_users(summary.usernames, options["missing_users"])
            existing = list(_existing(summary.session_ids))
            if existing and not options["replace"]:
                raise CommandError(
                    "Conversations with these session ids exist already: "
                    f"{', '.join(sorted(c.session_id for c in existing))}. Pass --replace to delete them first."
                )
            try:
                with transaction.atomic():
                    for conversation in existing:
                        conversation.delete()
                    source.seek(0)
                    new_pks = transfer.create_conversations(source, users, batch_size)
                    source.seek(0)
                    messages = transfer.create_messages(source, new_pks, users, batch_size)
            except DatabaseError as exc:
                raise CommandError(f"Nothing was imported; the database refused a row: {exc}") from exc
        replaced = f", replacing {len(existing)} existing conversations" if existing else ""
        self.stdout.write(f"Imported {len(new_pks)} conversations and {messages} messages{replaced}.")

    @contextmanager
    def open_source(self, path: str, stdin: IO[str] | None) -> Iterator[IO[str]]:
        """The file to read (twice: to check, then to write); standard input is spooled first."""
        if path != "-":
            try:
                source = open(path, encoding="utf-8")
            except OSError as exc:
                raise CommandError(f"Cannot read {path}: {exc.strerror}.") from exc
            with source:
                yield source
            return
        with tempfile.TemporaryFile("w+", encoding="utf-8") as spool:
            shutil.copyfileobj(stdin or sys.stdin, spool)
            spool.seek(0)
            yield spool

    def get_users(self, usernames: set[str], missing_users: str) -> dict[str, Any]:
        """Users by username; with ``skip-owner`` a missing name is left out (imported as no user)."""
        user_model = get_user_model()
        lookup = f"{user_model.USERNAME_FIELD}__in"
        users = {
            user.get_username(): user
            for chunk in _chunks(sorted(usernames))
            for user in user_model._default_manager.filter(**{lookup: chunk})
        }
        missing = sorted(usernames - users.keys())
        if missing and missing_users == "error":
            raise CommandError(
                f"These users do not exist: {', '.join(missing)}. Create them first, or pass "
                "--missing-users=skip-owner to import their conversations and messages without a user."
            )
        if missing:
            self.stderr.write(f"Importing without a user what belonged to: {', '.join(missing)}.")
        return users

    # -- LangChain's RedisChatMessageHistory -------------------------------------------------

    def import_redis(self, options: dict[str, Any]) -> None:
        try:
            import redis
        except ImportError:
            raise CommandError("--from-redis needs the redis package: pip install redis") from None
        client = redis.Redis.from_url(options["from_redis"])
        try:
            keys = transfer.redis_sessions(client, options["key_prefix"], options["session"])
            histories = {session_id: transfer.read_redis_history(client, key) for session_id, key in keys.items()}
        except redis.RedisError as exc:
            raise CommandError(f"Could not read from Redis: {exc}") from exc
        except transfer.TransferError as exc:
            raise CommandError(f"Nothing was imported. {exc}") from exc
        self.check_session_ids(histories)
        existing = {conversation.session_id: conversation for conversation in _existing(histories)}
        if existing and not options["append"]:
            raise CommandError(
                f"Conversations with these session ids exist already: {', '.join(sorted(existing))}. "
                "Pass --append to add the Redis messages to them."
            )
        messages = 0
        with transaction.atomic():
            for session_id, history in histories.items():
                conversation = existing.get(session_id) or Conversation.objects.create(session_id=session_id)
                messages += transfer.store_messages(conversation, history)
        appended = f" ({len(existing)} appended to existing conversations)" if existing else ""
        self.stdout.write(f"Imported {messages} messages from {len(histories)} Redis sessions{appended}.")

    def check_session_ids(self, histories: dict[str, Any]) -> None:
        max_length = Conversation._meta.get_field("session_id").max_length
        too_long = [session_id for session_id in histories if len(session_id) > max_length]
        if too_long:
            raise CommandError(f"Nothing was imported: session ids longer than {max_length} characters: {', '.join(too_long)}.")
        if not histories:
            raise CommandError("No RedisChatMessageHistory lists found; check the URL (and its database) and --key-prefix.")

    # -- django-pyhub-ai rows ----------------------------------------------------------------

    def upgrade_legacy_rows(self, batch_size: int) -> None:
        rows = ConversationMessage.objects.filter(content__has_key="_type").only("pk", "content").order_by("pk")
        upgraded, unreadable, last_pk = 0, [], None
        while batch := list((rows if last_pk is None else rows.filter(pk__gt=last_pk))[:batch_size]):
            last_pk = batch[-1].pk
            changed = []
            for row in batch:
                try:
                    transfer.upgrade_legacy_row(row)
                except codec.CodecError:
                    unreadable.append(row.pk)
                else:
                    changed.append(row)
            upgraded += ConversationMessage.objects.bulk_update(changed, ["content", "role", "token_count"])
        self.stdout.write(f"Upgraded {upgraded} django-pyhub-ai messages.")
        if unreadable:
            self.stderr.write(
                f"Left {len(unreadable)} messages that cannot be decoded untouched: pk {', '.join(map(str, unreadable))}."
            )


def _chunks(values: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(values), CHUNK):
        yield values[start : start + CHUNK]


def _existing(session_ids: Iterable[str]) -> Iterator[Conversation]:
    """The stored conversations with these session ids."""
    for chunk in _chunks(sorted(session_ids)):
        yield from Conversation.objects.filter(session_id__in=chunk)
