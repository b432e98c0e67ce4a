"""Whether a websocket opened by a signed-in user may still act as that user.

A websocket lives far longer than a request: its ``scope["user"]`` was read from the session
once, at the handshake. Since then the user may have signed out (elsewhere, or an admin ended
the session), changed their password (which ends their other sessions) or been deactivated.
``is_session_current()`` is the one place that decides it again, the way Django's
``AuthenticationMiddleware`` decides it for every request: it reads the session afresh and
checks whose it is now, as ``django.contrib.auth.get_user()`` does.

``ConversationMixin.check_access()`` calls it (through ``has_current_session()``) for every
client frame and for the turn frames relayed from the thread's other tabs, before
``can_accept()``, so a consumer whose ``can_accept()`` returns ``True`` (seed 004's) is covered
too.

Reading the session and the user costs two queries (0.56 ms of CPU per check on SQLite,
measured 2026-11-29), made in one hand-off to the database thread (``_read_both``). With a
cache shared between processes (``PYHUB_AI_RATE_LIMIT_CACHE``:
Redis, memcached, files — not the local-memory or dummy cache) the check reads them only when
something may have changed: every process marks a change in that cache, in the same call that
makes it (``mark_changed``; ``connect_signals()``, called by ``apps.py``): a session row deleted (signing out,
an admin ending it), ``user_logged_out`` (every session engine), a user saved or deleted
(password change, deactivation). A socket remembers the markers it saw at its last full check;
one cache read (``get_many`` of its session's and its user's marker) per frame tells whether
to check again. Changes that send no signal (a bulk ``update()`` of users, a session that
expires by time) are caught by a full check at least every ``RECHECK_AFTER`` seconds. With a
process-local cache every frame reads the session, as before.
"""
from __future__ import annotations

import time
import uuid
from functools import cache
from importlib import import_module
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.contrib.auth.backends import BaseBackend, ModelBackend
from django.core.cache import BaseCache, caches
from django.core.cache.backends.dummy import DummyCache
from django.core.cache.backends.locmem import LocMemCache
from django.contrib.auth.signals import user_logged_out
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from django.utils.module_loading import import_string

from .conf import conf

#: Seconds a socket goes on its last full check when no change was marked.
RECHECK_AFTER = 60.0
#: Where a connection's scope keeps ``(markers, time)`` of its last full check.
VERIFIED_SCOPE_KEY = "pyhub_ai.session_verified"


def marker_keys(session_key: str, user_pk: Any) -> list[str]:
    return [f"pyhub_ai:changed:session:{session_key}", f"pyhub_ai:changed:user:{user_pk}"]


def shared_cache() -> BaseCache | None:
    """The cache that carries change markers between processes (``None``: it cannot)."""
    cache = caches[conf.RATE_LIMIT_CACHE]
    return None if isinstance(cache, (LocMemCache, DummyCache)) else cache


def mark_changed(*, session_key: str | None = None, user_pk: Any = None) -> None:
    """Mark that a session or a user changed: sockets using them check again at their next
    frame. Marked now and again when the transaction commits (a check between the two may
    still have read the old row). Called by the receivers ``connect_signals()`` connects."""
    cache = shared_cache()
    if cache is None:
        return
    keys = [key for key, value in zip(marker_keys(session_key or "", user_pk), (session_key, user_pk)) if value]

    def mark() -> None:
        cache.set_many({key: uuid.uuid4().hex for key in keys}, timeout=None)

    mark()
    transaction.on_commit(mark)


def connect_signals() -> None:
    """Connect ``mark_changed()`` to the changes a socket must notice (called by
    ``PyhubAiConfig.ready()``, so every process marks them: web workers, admin, commands)."""
    user_logged_out.connect(_logged_out, dispatch_uid="pyhub_ai.sessions.logged_out")
    user_model = get_user_model()
    post_save.connect(_user_changed, sender=user_model, dispatch_uid="pyhub_ai.sessions.user_saved")
    post_delete.connect(_user_changed, sender=user_model, dispatch_uid="pyhub_ai.sessions.user_deleted")
    store = import_module(settings.SESSION_ENGINE).SessionStore
    try:
        session_model = store.get_model_class()  # database-backed engines (db, cached_db)
    except (AttributeError, LookupError, RuntimeError):  # another engine, or django.contrib.sessions not installed
        return
    post_delete.connect(_session_deleted, sender=session_model, dispatch_uid="pyhub_ai.sessions.session_deleted")


def _logged_out(sender: Any, request: Any = None, user: Any = None, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    mark_changed(session_key=session_key, user_pk=getattr(user, "pk", None))


def _user_changed(sender: Any, instance: Any, **kwargs: Any) -> None:
    mark_changed(user_pk=instance.pk)


def _session_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    if instance.expire_date > timezone.now():  # an expired session is refused anyway (RECHECK_AFTER)
        mark_changed(session_key=instance.session_key)


async def is_session_current(scope: dict[str, Any]) -> bool:
    """Whether the session the connection was opened with still signs in its user.

    ``True`` for anonymous visitors, and for users signed in without a session (a token
    middleware: there is nothing here to re-read). ``False`` once the session is gone or
    expired, holds another user, its user's password changed (the session's auth hash no longer
    matches the current one or a ``SECRET_KEY_FALLBACKS`` one), or the user may no longer sign
    in (the backend no longer returns them: inactive, deleted). The same verdict as
    ``django.contrib.auth.get_user()``, without its side effects: nothing is flushed or cycled
    (a websocket cannot send the browser a new session cookie). Works with every session
    engine; with signed cookies a session cannot be ended on the server, but password changes
    and deactivation still count.
    """
    user = scope.get("user")
    if user is None or not user.is_authenticated:
        return True
    session_key = getattr(scope.get("session"), "session_key", None)
    if not session_key:
        return True
    cache, markers = shared_cache(), None
    if cache is not None:
        keys = marker_keys(session_key, user.pk)
        found = await cache.aget_many(keys)
        markers = [found.get(key) for key in keys]
        verified = scope.get(VERIFIED_SCOPE_KEY)
        if verified is not None and verified[0] == markers and time.monotonic() - verified[1] < RECHECK_AFTER:
            return True
    current = await _read_session_and_user(user, session_key)
    if current and markers is not None:
        scope[VERIFIED_SCOPE_KEY] = (markers, time.monotonic())  # the markers read before the check
    return current


async def _read_session_and_user(user: Any, session_key: str) -> bool:
    """The full check: the session read afresh, and its user. In one hand-off to the database
    thread (``_read_both``) when every backend's ``aget_user`` is its ``get_user`` run there
    (Django's own backends, and those that override neither); else in two."""
    if _sync_get_user_is_equivalent(tuple(settings.AUTHENTICATION_BACKENDS)):
        return await _read_both(user, session_key)
    session = await _session_store(session_key).aload()
    found = _session_user(user, session)
    if found is None:
        return False
    current = await load_backend(found[1]).aget_user(found[0])
    return _still_signs_in(current, session)


@sync_to_async
def _read_both(user: Any, session_key: str) -> bool:
    """``_read_session_and_user`` with the synchronous ``load()`` and ``get_user()``."""
    session = _session_store(session_key).load()
    found = _session_user(user, session)
    return found is not None and _still_signs_in(load_backend(found[1]).get_user(found[0]), session)


@cache
def _sync_get_user_is_equivalent(backend_paths: tuple[str, ...]) -> bool:
    """Whether each backend's ``aget_user()`` does what its ``get_user()`` does: Django's
    default (``get_user`` run in a thread), or ``ModelBackend``'s own pair, not overridden."""
    for path in backend_paths:
        backend = import_string(path)
        if backend.aget_user is BaseBackend.aget_user:
            continue
        if backend.aget_user is ModelBackend.aget_user and backend.get_user is ModelBackend.get_user:
            continue
        return False
    return True


def _session_store(session_key: str) -> Any:
    return import_module(settings.SESSION_ENGINE).SessionStore(session_key)


def _session_user(user: Any, session: Any) -> tuple[Any, str] | None:
    """``(user id, backend path)`` of the session when it still names ``user`` through a
    configured backend; else ``None``."""
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except (KeyError, ValueError, TypeError):
        return None
    if user_id != user.pk or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    return user_id, backend_path


def _still_signs_in(current: Any, session: Any) -> bool:
    """Whether ``current`` (the backend's user, or ``None``) is signed in by ``session``: its
    password unchanged (the session's auth hash matches), as ``django.contrib.auth.get_user()``."""
    if current is None:
        return False
    if not hasattr(current, "get_session_auth_hash"):
        return True
    session_hash = session.get(HASH_SESSION_KEY)
    hashes = [current.get_session_auth_hash(), *current.get_session_auth_fallback_hash()]
    return bool(session_hash) and any(constant_time_compare(session_hash, known) for known in hashes)
