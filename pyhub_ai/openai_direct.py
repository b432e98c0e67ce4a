"""The fast path's request, sent straight to the lean transport instead of through the SDK's
``request()``; part of the model layer, called by ``OpenAIReplyStream.texts`` for every reply.

Why (measured 2026-11-30, 2 cores): the SDK's ``request()`` and httpx2's client around it cost
about 200 µs of the event loop per request without the network: options copied twice
(pydantic), the headers built from dictionaries and normalized (``x-stainless-*``, auth), the
URL parsed three times, and five layers of sending (auth retry, redirects, the single request).
Per call that is about 650 Python calls, a fifth of everything the event loop runs for a
10-token turn. The request itself never changes between two calls of a client but for its body.

What stays the SDK's, so the request on the wire and every outcome are the same:

* the request: built once per client by the SDK's own ``_build_request`` (headers, URL with the
  client's default query, timeouts), then copied for each call with its body, encoded with the
  SDK's ``openapi_dumps``, its ``Content-Length`` and the attempt's ``x-stainless-retry-count``;
  the client's cookies are sent and kept as httpx2's client does;
* retries: the SDK's loop, run here with the SDK's own decisions (``_should_retry``,
  ``_calculate_retry_timeout``: the same attempts, waits and ``Retry-After`` handling);
* errors: a timeout raises ``APITimeoutError``, a transport error ``APIConnectionError``, and a
  status that is not retried the SDK's status error (``_make_status_error_from_response``).

It is used only when nothing else could change the request (``direct_sender``): a client made
by ``lean_http.lean_client_for`` (so the default HTTP client) of exactly ``AsyncOpenAI``, with
no request options of the call, no provider runtime, workload identity, API key provider,
custom auth, idempotency header or redirect following. Otherwise ``post()`` sends it as before.
Tests: ``tests/test_fast_stream.py`` compares the requests the server receives (headers,
bodies, retries after a server error) with the standard path's.
"""
from __future__ import annotations

import asyncio
import weakref
from typing import Any

import httpx2
import openai
from openai._base_client import get_platform
from openai._httpx2 import request_exceptions, timeout_exceptions
from openai._models import FinalRequestOptions
from openai._utils import asyncify
from openai._utils._json import openapi_dumps

from .lean_http import LeanTransport


class DirectSender:
    """Sends chat completions requests of one client (see the module docstring)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.key = _template_key(client)
        url = chat_completions_url(client)
        #: The options ``_calculate_retry_timeout`` reads (the client's ``max_retries``).
        self.options = FinalRequestOptions.construct(method="post", url=url, json_data={}, security={"bearer_auth": True})
        template = client._build_request(self.options, retries_taken=0)
        self.method, self.url, self.headers = template.method, template.url, template.headers
        self.extensions = template.extensions
        self.http_client = client._client
        self.transport: LeanTransport = self.http_client._transport

    def request(self, content: bytes, retries_taken: int) -> httpx2.Request:
        """The request the SDK builds for ``content`` on attempt ``retries_taken``: the
        template's headers (``Host``, ``Content-Type`` and ``Content-Length`` among them) with
        the body's length and the attempt. The body is given as the request's ``stream``, so
        httpx2 adds no headers of its own: with ``content=`` it made the same headers again
        (82 → 19 Python calls per request, 2026-11-30)."""
        headers = httpx2.Headers(self.headers)
        headers["Content-Length"] = str(len(content))
        headers["x-stainless-retry-count"] = str(retries_taken)
        request = httpx2.Request(self.method, self.url, headers=headers, stream=httpx2.ByteStream(content), extensions=self.extensions)
        request.read()  # the body as request.content, as content= sets it
        if self.http_client.cookies:
            httpx2.Cookies(self.http_client.cookies).set_cookie_header(request)
        return request

    async def send(self, body: dict[str, Any]) -> httpx2.Response:
        """The streaming response to ``body``, with the SDK's retries; raises what the SDK raises."""
        client, content = self.client, openapi_dumps(body)
        max_retries = self.options.get_max_retries(client.max_retries)
        for retries_taken in range(max_retries + 1):
            remaining = max_retries - retries_taken
            request = self.request(content, retries_taken)
            try:
                response = await self.transport.handle_async_request(request)
            except timeout_exceptions() as exc:
                if remaining > 0:
                    await self._wait(remaining, None)
                    continue
                raise openai.APITimeoutError(request=request) from exc
            except request_exceptions() as exc:
                if remaining > 0:
                    await self._wait(remaining, None)
                    continue
                raise openai.APIConnectionError(request=request) from exc
            response.request = request
            if "set-cookie" in response.headers:
                self.http_client.cookies.extract_cookies(response)
            if 200 <= response.status_code < 300:
                return response
            if remaining > 0 and client._should_retry(response):
                await response.aclose()
                await self._wait(remaining, response.headers)
                continue
            await response.aread()
            raise client._make_status_error_from_response(response) from None
        raise AssertionError("unreachable: the last attempt returns or raises")  # pragma: no cover

    async def _wait(self, remaining: int, headers: httpx2.Headers | None) -> None:
        await asyncio.sleep(self.client._calculate_retry_timeout(remaining, self.options, headers))


#: Per client: its sender, made again when the client's base URL or API key changed.
_senders: weakref.WeakKeyDictionary[Any, DirectSender] = weakref.WeakKeyDictionary()


def chat_completions_url(client: Any) -> str:
    """The absolute URL the SDK makes of ``/chat/completions`` for ``client`` (``_prepare_url``:
    the base URL's path joined with it); used by ``DirectSender`` and ``openai_stream._post_stream``."""
    base_url = client.base_url
    return str(base_url.copy_with(raw_path=base_url.raw_path + b"chat/completions"))


def _template_key(client: Any) -> tuple[Any, str]:
    return client.base_url, client.api_key


async def prepare_platform(client: Any) -> None:
    """Read the platform the SDK names in its headers, in a thread, as the SDK's ``request()``
    does before its first request (it may read files); the sender's headers include it."""
    if getattr(client, "_platform", False) is None:
        client._platform = await asyncify(get_platform)()


def direct_sender(client: Any, options: dict[str, Any]) -> DirectSender | None:
    """The sender of ``client``'s chat completions requests with ``options`` (the call's
    request options), or ``None`` when ``post()`` must send them (see the module docstring)."""
    http_client = getattr(client, "_client", None)
    if (
        options.keys() != {"security"}
        or type(client) is not openai.AsyncOpenAI
        or type(getattr(http_client, "_transport", None)) is not LeanTransport
        or http_client.follow_redirects
        or getattr(client, "_provider_runtime", None) is not None
        or getattr(client, "_workload_identity_auth", None) is not None
        or getattr(client, "_api_key_provider", None) is not None
        or client.custom_auth is not None
        or client._idempotency_header is not None
    ):
        return None
    sender = _senders.get(client)
    if sender is None or sender.key != _template_key(client):
        sender = _senders[client] = DirectSender(client)
    return sender
