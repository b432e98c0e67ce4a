"""The lean HTTP/1.1 transport of the fast streaming path (``pyhub_ai.lean_http``), and the
fast path's own request payload and event decoding (``pyhub_ai.openai_stream``).

Each test talks to the local OpenAI-compatible server (tests/fake_openai.py) through the openai
SDK, on a copy of the model's client made by ``lean_client_for``: the SDK's own streams, errors
and timeouts must come out as they do on httpx2's default transport. The end-to-end equality of
frames and stored rows is in tests/test_fast_stream.py, which runs against both kinds of server
(one request per connection, and keep-alive with chunked bodies).
"""
from __future__ import annotations

import datetime
import ipaddress
import json
import random
import socket
import ssl

import httpx2
import openai
import pytest
from langchain_openai import ChatOpenAI
from openai._streaming import SSEDecoder

from pyhub_ai.lean_http import LeanTransport, lean_client_for
from pyhub_ai.openai_stream import _EventDecoder

from .fake_openai import FakeOpenAI, Reply

REPLY = "One two three four five six seven."
PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")


@pytest.fixture(autouse=True)
def no_proxy_in_the_environment(monkeypatch):
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server():
    with FakeOpenAI(reply=REPLY, keep_alive=True) as fake:
        yield fake


def chat_model(base_url: str, **kwargs) -> ChatOpenAI:
    return ChatOpenAI(**{"model": "gpt-4o-mini", "api_key": "sk-test-lean", "base_url": base_url, "max_retries": 0, **kwargs})


def sse_events(texts) -> list[bytes]:
    """The server-sent events of a chat completions stream of ``texts``, then ``[DONE]``."""
    events = [{"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "gpt-4o-mini",
               "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]} for text in texts]  # fmt: skip
    return [b"data: %s\n\n" % json.dumps(event).encode() for event in events] + [b"data: [DONE]\n\n"]


async def streamed_text(client, **kwargs) -> str:
    """One streamed completion through the SDK's ``create()``, joined."""
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Count."}], stream=True, **kwargs
    )
    return "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])


def test_the_models_default_client_gets_a_lean_copy_made_once():
    llm = chat_model("http://127.0.0.1:9/v1", default_headers={"X-Team": "chat"})
    lean = lean_client_for(llm.root_async_client)
    assert lean is not llm.root_async_client
    assert lean_client_for(llm.root_async_client) is lean
    assert isinstance(lean._client._transport, LeanTransport)
    for attribute in ("api_key", "base_url", "max_retries", "timeout", "_custom_headers", "_custom_query"):
        assert getattr(lean, attribute) == getattr(llm.root_async_client, attribute)
    # langchain-openai's TCP keepalive options are kept.
    assert (socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1) in lean._client._transport.socket_options


def test_a_custom_client_or_a_proxy_keeps_the_models_own_client(monkeypatch):
    custom = chat_model("http://127.0.0.1:9/v1", http_async_client=httpx2.AsyncClient(event_hooks={"request": [print]}))
    proxied = chat_model("http://127.0.0.1:9/v1", openai_proxy="http://127.0.0.1:9")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    from_environment = chat_model("http://127.0.0.1:9/v1")
    for llm in (custom, proxied, from_environment):
        assert lean_client_for(llm.root_async_client) is llm.root_async_client


async def test_keep_alive_connections_carry_request_after_request(server):
    client = lean_client_for(chat_model(server.base_url).root_async_client)
    assert [await streamed_text(client) for _ in range(3)] == [REPLY] * 3
    assert server.connections == 1
    assert len(server.completions()) == 3


async def test_an_idle_connection_the_server_closed_is_replaced_without_an_error(server):
    client = lean_client_for(chat_model(server.base_url).root_async_client)
    assert await streamed_text(client) == REPLY
    server.close_connections()
    assert await streamed_text(client) == REPLY
    assert server.connections == 2
    assert len(server.completions()) == 2  # sent once each: no retry by the SDK


def test_a_connection_left_by_another_event_loop_is_not_reused(server):
    import asyncio

    client = lean_client_for(chat_model(server.base_url).root_async_client)
    assert asyncio.run(streamed_text(client)) == REPLY  # its connection stays idle in the pool
    assert asyncio.run(streamed_text(client)) == REPLY
    assert server.connections == 2


async def test_a_status_error_is_the_sdks_with_the_servers_message_and_the_connection_stays(server):
    client = lean_client_for(chat_model(server.base_url).root_async_client)
    server.fail_with(401, "Incorrect API key provided.")
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key provided"):
        await streamed_text(client)
    server.succeed()
    assert await streamed_text(client) == REPLY
    assert server.connections == 1


async def test_a_body_ends_at_its_content_length_whatever_follows_it():
    import asyncio

    body = json.dumps({"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error"}}).encode()

    async def answer(reader, writer):  # the body, then bytes no response announced, then silence
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"x-should-retry: false\r\n\r\n%sGARBAGE" % (len(body), body))  # fmt: skip
        await writer.drain()
        await asyncio.sleep(30)

    listener = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    client = lean_client_for(chat_model(f"http://127.0.0.1:{port}/v1").root_async_client)
    try:
        with pytest.raises(openai.AuthenticationError, match="Incorrect API key provided"):
            await streamed_text(client, timeout=5)
        (idle,) = [connection for connections in client._client._transport._idle.values() for connection in connections]
        assert not idle.reusable(asyncio.get_running_loop().time())  # what followed the body is left unread
    finally:
        listener.close()


async def test_a_compressed_stream_is_decoded_before_its_events_are_read():
    import asyncio
    import gzip

    from langchain_core.messages import HumanMessage

    from pyhub_ai.openai_stream import openai_reply_stream

    body = gzip.compress(b"".join(sse_events(["Packed ", "text."])))

    async def answer(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Encoding: gzip\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        stream = openai_reply_stream(chat_model(f"http://127.0.0.1:{port}/v1"), [HumanMessage(content="Hi.")])
        assert "".join([text async for text in stream.texts()]) == "Packed text."
    finally:
        listener.close()


async def test_a_stream_that_stalls_ends_with_the_sdks_timeout_error(server):
    client = lean_client_for(chat_model(server.base_url).root_async_client)
    server.answer_with(Reply(text=REPLY, stall_after=2))
    with pytest.raises(openai.APITimeoutError):
        await streamed_text(client, timeout=0.3)
    assert await streamed_text(client) == REPLY  # on a new connection


async def test_a_stream_cut_midway_ends_with_the_sdks_connection_error(server):
    client = lean_client_for(chat_model(server.base_url).root_async_client)
    server.answer_with(Reply(text=REPLY, drop_after=2))
    with pytest.raises(openai.APIConnectionError):
        await streamed_text(client)


async def test_a_server_that_is_not_there_is_a_connection_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    client = lean_client_for(chat_model(f"http://127.0.0.1:{port}/v1").root_async_client)
    with pytest.raises(openai.APIConnectionError):
        await streamed_text(client)


async def test_tcp_keepalive_is_set_on_the_connections(server):
    client = lean_client_for(chat_model(server.base_url).root_async_client)
    await streamed_text(client)
    (idle,) = [connection for connections in client._client._transport._idle.values() for connection in connections]
    assert idle.writer.get_extra_info("socket").getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[str, str]:
    """A self-signed certificate for 127.0.0.1: (certificate file, key file)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    folder = tmp_path_factory.mktemp("tls")
    (folder / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(folder / "cert.pem"), str(folder / "key.pem")


async def test_https_uses_the_clients_certificate_verification(certificate):
    cert_file, key_file = certificate
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert_file, key_file)
    with FakeOpenAI(reply=REPLY, keep_alive=True, ssl_context=server_context) as server:
        trusting = chat_model(server.base_url, http_async_client=httpx2.AsyncClient(verify=ssl.create_default_context(cafile=cert_file)))
        client = lean_client_for(trusting.root_async_client)
        assert isinstance(client._client._transport, LeanTransport)
        assert [await streamed_text(client) for _ in range(2)] == [REPLY] * 2
        assert server.connections == 1
        # The default verification does not know this certificate: no reply, the SDK's error.
        with pytest.raises(openai.APIConnectionError):
            await streamed_text(lean_client_for(chat_model(server.base_url).root_async_client))


STREAM = (
    b": a comment\r\n"
    b"data: {\"n\": 1}\r\n\r\n"
    b"event: message\ndata: {\"n\": 2}\n\n"
    b"data: {\"lines\":\ndata:[1, 2]}\n\n"
    b"id: 7\rdata: {\"n\": 3}\r\r"
    b"retry: 100\ndata: {\"text\": \"caf\xc3\xa9 \xed\x95\x9c\"}\n\n"
    b"data:  {\"spaced\": true}\t \n\n"
    b"data: [DONE]\n\n"
    b"data: {\"after\": \"done\"}\n\n"
)


def split_at_random(stream: bytes, shuffle: random.Random) -> list[bytes]:
    cuts = sorted(shuffle.sample(range(1, len(stream)), shuffle.randint(1, 12)))
    return [stream[start:end] for start, end in zip([0, *cuts], [*cuts, len(stream)])]


def decoded(pieces: list[bytes], ended: bool = False) -> tuple[list, _EventDecoder]:
    """The events ``_EventDecoder`` makes of ``pieces``, fed one by one (then the end of the body)."""
    decoder = _EventDecoder(httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions"))
    events = [event for piece in pieces for event in decoder.feed(piece)]
    if ended:
        events += decoder.feed(None)
    return events, decoder


def test_server_sent_events_are_decoded_as_the_sdk_decodes_them_however_the_bytes_are_split():
    sdk_events = [event.data for event in SSEDecoder().iter_bytes(iter([STREAM]))]
    expected = [json.loads(data) for data in sdk_events[: sdk_events.index("[DONE]")]]
    assert len(expected) == 6 and expected[2] == {"lines": [1, 2]} and expected[5] == {"spaced": True}
    shuffle = random.Random(20261130)
    for pieces in [[STREAM], list(STREAM[i : i + 1] for i in range(len(STREAM)))] + [split_at_random(STREAM, shuffle) for _ in range(200)]:
        events, decoder = decoded(pieces)
        assert events == expected, pieces
        assert decoder.done and decoder.error is None  # [DONE] ends it: what follows is not read


def test_the_last_event_counts_when_the_body_ends_without_its_empty_line():
    for ending in (b"", b"\r", b"\n", b"\r\n"):
        events, decoder = decoded([b"data: {\"n\": 1}\n\ndata: {\"n\": 2}" + ending], ended=True)
        assert events == [{"n": 1}, {"n": 2}] and decoder.done, ending
    assert decoded([b"data: {\"n\": 1}\r\r"], ended=True)[0] == [{"n": 1}]  # not twice


def test_an_error_event_or_broken_json_stops_the_stream_after_the_events_before_it():
    events, decoder = decoded([b'data: {"n": 1}\n\ndata: {"error": {"message": "overloaded"}}\n\ndata: {"n": 2}\n\n'])
    assert events == [{"n": 1}] and decoder.done
    assert type(decoder.error) is openai.APIError and decoder.error.message == "overloaded"
    assert decoder.error.body == {"message": "overloaded"}
    events, decoder = decoded([b'data: {"n": 1}\n\ndata: {"error": "no message"}\n\n'])
    assert events == [{"n": 1}] and decoder.error.message == "An error occurred during streaming"
    events, decoder = decoded([b'data: {"n": 1}\n\ndata: {"n": \n\ndata: {"n": 2}\n\n'])
    assert events == [{"n": 1}] and isinstance(decoder.error, json.JSONDecodeError)
    events, decoder = decoded([b'data: {"n": 1}\n\ndata: {"text": "\xff"}\n\n'])
    assert events == [{"n": 1}] and isinstance(decoder.error, UnicodeDecodeError)  # the SDK's data is UTF-8
    assert decoder.feed(b'data: {"n": 3}\n\n') == []


def test_the_fast_paths_payload_is_langchains_for_every_kind_of_message():
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage

    from pyhub_ai.openai_stream import _PLAIN_DICTS, _request_payload

    messages = [
        SystemMessage("You are terse."),
        HumanMessage("What is the weather in Seoul?", name="minji"),
        AIMessage("", tool_calls=[{"name": "get_weather", "args": {"city": "Seoul"}, "id": "call_1"}]),
        ToolMessage("sunny", tool_call_id="call_1"),
        AIMessage("It is sunny in Seoul. 서울은 맑아요."),
        HumanMessage([{"type": "text", "text": "And this?"}, {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]),
        AIMessage("Kept", additional_kwargs={"audio": {"id": "audio_1"}}),
        HumanMessage("Thanks."),
    ]
    for model in ("gpt-4o-mini", "o3-mini"):  # o-series: system messages are sent as "developer"
        llm = chat_model("http://127.0.0.1:9/v1", model=model)
        expected = llm._get_request_payload(messages, stop=["END"], stream=True)
        for _ in range(2):  # converted, then from the cache of plain messages
            payload = _request_payload(llm, list(messages), ["END"], {"stream": True})
            assert payload == expected
            payload["messages"][0]["content"] = "changed"  # a caller's change stays in its payload
    assert (HumanMessage, "Thanks.", None) in _PLAIN_DICTS
    assert not any(key[0] is AIMessage and key[1] == "Kept" for key in _PLAIN_DICTS)


async def test_each_fast_request_carries_its_own_body_to_the_clients_current_base_url(server):
    from langchain_core.messages import HumanMessage

    from pyhub_ai.openai_stream import openai_reply_stream

    llm = chat_model(server.base_url, default_headers={"X-Team": "chat"})
    for question in ("First?", "Second?"):
        stream = openai_reply_stream(llm, [HumanMessage(content=question)])
        assert "".join([text async for text in stream.texts()]) == REPLY
    first, second = server.completions()
    assert [first.body["messages"][0]["content"], second.body["messages"][0]["content"]] == ["First?", "Second?"]
    assert first.path == second.path == "/v1/chat/completions" and second.headers["x-team"] == "chat"
    with FakeOpenAI(reply="Moved.", keep_alive=True) as other:
        lean_client_for(llm.root_async_client).base_url = other.base_url
        stream = openai_reply_stream(llm, [HumanMessage(content="Third?")])
        assert "".join([text async for text in stream.texts()]) == "Moved."
        assert other.completions()[0].body["messages"][0]["content"] == "Third?"


def sse_chunked_body(texts, *, extension=b"", trailers=b""):
    """A chat completions stream as a chunked body: one chunk per event, then the last chunk."""
    body = b"".join(b"%x%s\r\n%s\r\n" % (len(data), extension, data) for data in sse_events(texts))
    return body + b"0\r\n" + trailers + b"\r\n"


async def serve_chunked(pieces, *, close_after=False):
    """A server answering each request on a connection with a chunked stream written in
    ``pieces`` (bytes, each flushed on its own); returns the listener and its base URL."""
    import asyncio

    async def answer(reader, writer):
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
                for piece in pieces:
                    writer.write(piece)
                    await writer.drain()
                    await asyncio.sleep(0)
                if close_after:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0)
    return listener, f"http://127.0.0.1:{listener.sockets[0].getsockname()[1]}/v1"


async def test_a_chunked_body_is_read_whatever_its_pieces_with_extensions_and_trailers_and_the_connection_kept():
    body = sse_chunked_body(["One", " two", " three"], extension=b";name=value", trailers=b"X-Trailer: 1\r\n")
    splits = [[body]] + [[body[:cut], body[cut:]] for cut in range(1, len(body))] + [[bytes([byte]) for byte in body]]
    for pieces in splits[:: max(1, len(splits) // 40)] + splits[-1:]:
        listener, base_url = await serve_chunked(pieces)
        client = lean_client_for(chat_model(base_url).root_async_client)
        try:
            assert [await streamed_text(client) for _ in range(2)] == ["One two three"] * 2, pieces[:2]
            (idle,) = [connection for connections in client._client._transport._idle.values() for connection in connections]
            assert idle.idle_since is not None  # the one connection carried both, and is kept
        finally:
            listener.close()


@pytest.mark.parametrize(
    ("pieces", "close_after"),
    [
        ([b"zz\r\ndata: x\r\n"], False),  # a size that is not hexadecimal
        ([b"-5\r\ndata: x\r\n"], False),  # nor a size
        ([sse_chunked_body(["One"])[:40]], True),  # the server goes away in the middle of a chunk
        ([b"1" * 70_000], False),  # a size line longer than any line may be
    ],
    ids=["malformed size", "negative size", "cut midway", "endless line"],
)
async def test_a_broken_chunked_body_is_the_sdks_connection_error(pieces, close_after):
    listener, base_url = await serve_chunked(pieces, close_after=close_after)
    client = lean_client_for(chat_model(base_url).root_async_client)
    try:
        with pytest.raises(openai.APIConnectionError) as raised:
            await streamed_text(client, timeout=5)
        assert type(raised.value) is openai.APIConnectionError  # refused as broken, not waited for until the timeout
    finally:
        listener.close()


def test_the_loop_clock_is_the_loops_own_time():
    import asyncio
    import time

    from pyhub_ai.loop_clock import loop_clock

    class OwnClockLoop(asyncio.SelectorEventLoop):
        def time(self) -> float:
            return 42.0

    default, own = asyncio.new_event_loop(), OwnClockLoop()
    try:
        assert loop_clock(default) is time.monotonic
        assert abs(loop_clock(default)() - default.time()) < 1.0
        assert loop_clock(own)() == 42.0
    finally:
        default.close()
        own.close()
