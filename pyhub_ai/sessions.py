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
too. Each call reads the session and the user (two queries). To make it cheaper, replace the
read by an invalidation (e.g. a channel-layer event sent on ``user_logged_out`` and on session
deletion) here, behind the same function: its callers do not change.
"""
from __future__ import annotations

from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.utils.crypto import constant_time_compare


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
    fresh = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    session = await fresh.aload()
    try:
        user_id = get_user_model()._meta.pk.to_python(session[SESSION_KEY])
        backend_path = session[BACKEND_SESSION_KEY]
    except (KeyError, ValueError, TypeError):
        return False
    if user_id != user.pk or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return False
    current = await load_backend(backend_path).aget_user(user_id)
    if current is None:
        return False
    if not hasattr(current, "get_session_auth_hash"):
        return True
    session_hash = session.get(HASH_SESSION_KEY)
    hashes = [current.get_session_auth_hash(), *current.get_session_auth_fallback_hash()]
    return bool(session_hash) and any(constant_time_compare(session_hash, known) for known in hashes)
