"""Fuzzing with hypothesis: random frames at a live consumer, random payloads at the codec.

(a) Thousands of random frames go to ONE consumer connection per test (a connection per
hypothesis example would be far too slow): random JSON values, objects with and without a
``type``, random and huge texts (unicode, control characters), text that is not JSON, binary
frames. An oracle that follows docs/protocol.md says what each frame must get back. Every
example ends with a valid message, which must still be answered, and then the stored rows are
checked: only valid ``user_message`` frames stored anything, each exactly one complete human +
AI pair, in order.

(b) Random JSON values, and mutations of valid stored messages (current and django-pyhub-ai
forms), go to ``codec.decode``: it returns a message or raises ``CodecError``, nothing else.

The numbers of frames and payloads thrown are printed and written to
``test-artifacts/fuzz-counts.json``.
"""
from __future__ import annotations

import copy
import itertools
import json
import re
from collections import Counter
from pathlib import Path

import pytest
from django.db import connection
from hypothesis import HealthCheck, given, settings, strategies as st
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    FunctionMessage,
    HumanMessage,
    HumanMessageChunk,
    SystemMessage,
    ToolMessage,
)

from pyhub_ai import codec
from pyhub_ai.display import message_text
from pyhub_ai.models import Conversation, ConversationMessage

from .test_tutorial_consumer import connect, receive_until

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
COUNTS: Counter = Counter()

MAX_MESSAGE_LENGTH = 300
MAX_FRAME_SIZE = MAX_MESSAGE_LENGTH * 6 + 1024  # FrameProtocolMixin.get_max_frame_size()
IDEMPOTENCY_KEY = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
REPLY = "fine, thanks"

#: Hypothesis keeps no example database in the repository; every run is a fresh random one.
FUZZ = settings(
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="session", autouse=True)
def report_counts():
    yield
    if COUNTS:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "fuzz-counts.json").write_text(json.dumps(dict(COUNTS), indent=2, sort_keys=True))
        print("\nfuzz counts:", json.dumps(dict(COUNTS), sort_keys=True))


# ---- (a) frames at a consumer ----------------------------------------------------------------

def json_containers(children: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20), json_containers, max_leaves=10
)

odd_texts = st.sampled_from(
    [
        "", " ", "\t\r\n", "\u3000", "\u200b", "\x00", "\x1f", "\x85", "\u2028", "hi", "안녕하세요 世界", "🙂" * 3,
        "<script>alert(1)</script>", "{}", "null", "\\", '"', "\u202etxet", "a\x00b",
    ]
)
huge_texts = st.builds(
    lambda char, size: char * size,
    st.sampled_from(["x", "가", "🙂", " ", "\n", "é"]),
    st.integers(MAX_MESSAGE_LENGTH - 2, MAX_MESSAGE_LENGTH + 2) | st.integers(0, 3 * MAX_FRAME_SIZE),
)
texts = st.text(max_size=60) | odd_texts | huge_texts
keys = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True) | st.text(max_size=70) | st.just("")


def encode_frame(value, ensure_ascii: bool) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii)


typed_objects = st.builds(
    encode_frame,
    st.fixed_dictionaries(
        {"type": st.sampled_from(["user_message", "load_history", "stop"]) | st.text(max_size=12) | json_values},
        optional={
            "text": texts | json_values,
            "before": st.integers(-3, 10**30) | json_values,
            "idempotency_key": keys | json_values,
            "extra": json_values,
        },
    ),
    st.booleans(),
)
valid_user_messages = st.builds(
    encode_frame,
    st.fixed_dictionaries(
        {"type": st.just("user_message"), "text": st.text(min_size=1, max_size=80).filter(str.strip)},
        optional={"idempotency_key": st.from_regex(r"[a-z0-9]{1,3}", fullmatch=True)},  # repeats happen
    ),
    st.booleans(),
)
valid_history_requests = st.builds(
    lambda before: json.dumps({"type": "load_history", "before": before}), st.integers(1, 10**6) | st.just(2**63)
)
# JSON escapes a browser never sends but JSON allows: lone surrogates.
escaped_oddities = st.sampled_from(
    [
        '{"type": "user_message", "text": "a\\ud800b"}',
        '{"type": "user_message", "text": "\\udfff"}',
        '{"type": "user_message", "text": "\\u0000"}',
        '{"type": "load_history", "before": 1e400}',
        '{"type": "load_history", "before": NaN}',
        '{"type": "stop", "type": "user_message", "text": "last key wins"}',
    ]
)
# Broken JSON: a valid frame cut short or with a character swapped in.
broken_json = st.builds(
    lambda text, cut, char: text[:cut] + char + text[cut + 1 :],
    st.just('{"type": "user_message", "text": "hello"}'),
    st.integers(0, 40),
    st.sampled_from(["", "'", "\\", "}", "\x00", "\n"]),
)
# Deeply nested JSON (depth >= ~1000) is left out here: see
# test_a_deeply_nested_json_frame_gets_an_error_frame below.
text_frames = (
    st.text(max_size=80)
    | st.builds(encode_frame, json_values, st.booleans())
    | typed_objects
    | valid_user_messages
    | valid_history_requests
    | escaped_oddities
    | broken_json
    | huge_texts
)
frames = st.one_of(text_frames.map(lambda text: ("text", text)), st.binary(max_size=80).map(lambda data: ("bytes", data)))


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


def cannot_be_stored(text: str) -> bool:
    """No database stores U+0000 or a lone surrogate everywhere (PostgreSQL's jsonb refuses
    both): the consumer refuses them as invalid_frame."""
    return "\x00" in text or any("\ud800" <= char <= "\udfff" for char in text)


class Oracle:
    """What the consumer must answer to each frame (docs/protocol.md), and what it stored."""

    def __init__(self) -> None:
        self.stored_texts: list[str] = []
        self.used_keys: set[str] = set()

    def expect(self, kind: str, payload) -> tuple:
        if kind == "bytes":
            return ("error", "invalid_frame")
        if len(payload) > MAX_FRAME_SIZE:
            return ("error", "message_too_long")
        try:
            content = json.loads(payload)
        except (ValueError, RecursionError):
            return ("error", "invalid_frame")
        if not isinstance(content, dict):
            return ("error", "invalid_frame")
        frame_type = content.get("type")
        if frame_type == "user_message":
            text = content.get("text")
            if not isinstance(text, str):
                return ("error", "invalid_frame")
            if not text.strip():
                return ("error", "empty_message")
            if cannot_be_stored(text):
                return ("error", "invalid_frame")
            if len(text) > MAX_MESSAGE_LENGTH:
                return ("error", "message_too_long")
            key = content.get("idempotency_key", "")
            if not isinstance(key, str) or not IDEMPOTENCY_KEY.fullmatch(key or "x"):
                return ("error", "invalid_frame")
            if key and key in self.used_keys:
                return ("duplicate", key)
            if key:
                self.used_keys.add(key)
            self.stored_texts.append(text)
            return ("turn", text)
        if frame_type == "load_history":
            before = content.get("before")
            if not isinstance(before, int) or isinstance(before, bool) or not 1 <= before <= 2**63 - 1:
                return ("error", "invalid_frame")
            return ("history", before)
        if frame_type == "stop":
            return ("silent",)
        return ("error", "invalid_frame")


@pytest.fixture
async def fuzzed_room(user_a, use_model, settings):
    # Frames, not the channel layer, are under test; hypothesis also pauses the event loop between
    # examples, which a Redis layer's blocking reads do not survive (tests/test_idle_connection.py).
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.PYHUB_AI_FRAME_FLOOD_LIMIT = 10**9
    settings.PYHUB_AI_MAX_MESSAGE_LENGTH = MAX_MESSAGE_LENGTH
    use_model(GenericFakeChatModel(messages=itertools.repeat(AIMessage(content=REPLY))))
    conversation = await Conversation.objects.acreate(user=user_a)
    communicator = await connect(conversation.pk, user_a, route="plain")
    await receive_until(communicator, "history")
    yield communicator, conversation, Oracle()
    await communicator.disconnect()


async def throw(communicator, kind: str, payload, expected: tuple) -> None:
    # What daphne hands the consumer for a frame (send_to() refuses empty frames).
    await communicator.send_input({"type": "websocket.receive", kind: payload})
    COUNTS["frames thrown at the consumer"] += 1
    COUNTS[f"frames answered with {expected[0]}"] += 1
    if expected[0] == "silent":
        return
    first = await communicator.receive_json_from(timeout=5)
    if expected[0] == "error":
        assert first["type"] == "error" and first["code"] == expected[1], (payload[:200], first)
        assert set(first) == {"type", "code", "message"} and len(first["message"]) < 120
    elif expected[0] == "history":
        assert first["type"] == "history" and first["before"] == expected[1], (payload[:200], first)
    elif expected[0] == "duplicate":
        assert first["type"] == "message" and first["duplicate"] is True, (payload[:200], first)
    else:
        assert first["type"] == "message" and first["message"]["text"] == expected[1], (payload[:200], first)
        rest = await receive_until(communicator, "stream_end", timeout=5)
        assert [f["type"] for f in rest] == ["stream_start", *["stream_delta"] * (len(rest) - 2), "stream_end"]
        assert rest[-1]["message"]["text"] == REPLY and rest[-1]["message"]["status"] == "complete"


async def assert_stored_exactly(conversation, oracle: Oracle) -> None:
    rows = [row async for row in ConversationMessage.objects.filter(conversation=conversation).order_by("pk")]
    assert len(rows) == 2 * len(oracle.stored_texts)
    assert [(row.role, row.status) for row in rows] == [("human", "complete"), ("ai", "complete")] * len(oracle.stored_texts)
    assert [row.message.content for row in rows[0::2]] == oracle.stored_texts
    assert {row.message.content for row in rows[1::2]} <= {REPLY}
    assert len({row.turn_id for row in rows}) == len(oracle.stored_texts)


@pytest.mark.django_db(transaction=True)
@settings(FUZZ, max_examples=400)
@given(batch=st.lists(frames, min_size=5, max_size=50))
async def test_random_frames_never_crash_the_consumer_and_store_nothing_but_valid_turns(fuzzed_room, batch):
    communicator, conversation, oracle = fuzzed_room
    for kind, payload in batch:
        await throw(communicator, kind, payload, oracle.expect(kind, payload))
    # Nothing else is pending: the answer to a probe comes next (frames are handled in order).
    await communicator.send_json_to({"type": "load_history", "before": 1})
    probe = await communicator.receive_json_from(timeout=5)
    assert probe == {"type": "history", "messages": [], "has_more": False, "before": 1}
    # And the room still answers a valid message.
    final = json.dumps({"type": "user_message", "text": "still there?"})
    await throw(communicator, "text", final, oracle.expect("text", final))
    await assert_stored_exactly(conversation, oracle)
    COUNTS["frame batches (hypothesis examples)"] += 1


@pytest.mark.django_db(transaction=True)
async def test_a_deeply_nested_json_frame_gets_an_error_frame(fuzzed_room):
    communicator, conversation, oracle = fuzzed_room
    await communicator.send_to(text_data="[" * 1200 + "]" * 1200)  # nested past the recursion limit, under the frame size limit
    error = await communicator.receive_json_from(timeout=3)
    assert error["type"] == "error" and error["code"] == "invalid_frame"
    await communicator.send_json_to({"type": "user_message", "text": "still there?"})
    assert (await receive_until(communicator, "stream_end"))[-1]["message"]["text"] == REPLY


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("raw", ['{"type": "user_message", "text": "a\\u0000b"}', '{"type": "user_message", "text": "a\\ud800b"}'])
async def test_a_message_with_a_nul_or_a_lone_surrogate_is_stored_or_refused_the_same_on_every_database(fuzzed_room, raw):
    communicator, conversation, oracle = fuzzed_room
    await communicator.send_to(text_data=raw)
    first = await communicator.receive_json_from(timeout=3)
    if first["type"] == "error":
        assert first["code"] == "invalid_frame"
        assert await ConversationMessage.objects.acount() == 0
    else:
        assert first["type"] == "message" and first["message"]["text"] == json.loads(raw)["text"]
        await receive_until(communicator, "stream_end")
        assert await ConversationMessage.objects.acount() == 2


# ---- (b) payloads at the codec ---------------------------------------------------------------

SAMPLE_MESSAGES: list[BaseMessage] = [
    HumanMessage(content="hello"),
    HumanMessage(content=[{"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": "data:,"}}]),
    AIMessage(
        content="Let me check.",
        id="run-1",
        tool_calls=[{"name": "search", "args": {"q": "서울"}, "id": "call_1", "type": "tool_call"}],
        invalid_tool_calls=[{"name": "bad", "args": "{", "id": "call_2", "error": "bad JSON", "type": "invalid_tool_call"}],
        usage_metadata={"input_tokens": 3, "output_tokens": 2, "total_tokens": 5},
        response_metadata={"model_name": "gpt-4o-mini", "finish_reason": "tool_calls"},
    ),
    SystemMessage(content="You are a tutor."),
    ToolMessage(content="42", tool_call_id="call_1", name="search", artifact={"rows": [1, 2]}, status="success"),
    ChatMessage(content="hi", role="critic"),
    FunctionMessage(content="{}", name="f"),
    AIMessageChunk(content="part", usage_metadata={"input_tokens": 1, "output_tokens": 1, "total_tokens": 2}),
    HumanMessageChunk(content="chunk"),
]


def legacy_form(message: BaseMessage) -> dict:
    """The django-pyhub-ai form: the class name in ``_type``, the fields (with ``type``) in ``_value``."""
    value = {**message.model_dump(), "example": False}
    return {"_type": type(message).__name__, "_value": json.loads(json.dumps(value, default=str))}


VALID_PAYLOADS = [codec.encode(m) for m in SAMPLE_MESSAGES] + [legacy_form(m) for m in SAMPLE_MESSAGES]


def test_every_valid_payload_used_below_decodes():
    for payload in VALID_PAYLOADS:
        assert isinstance(codec.decode(payload), BaseMessage), payload


def places(value):
    """Every (container, key) inside a JSON value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield value, key
            yield from places(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield value, index
            yield from places(item)


@st.composite
def mutated_payloads(draw):
    payload = copy.deepcopy(draw(st.sampled_from(VALID_PAYLOADS)))
    for _ in range(draw(st.integers(1, 4))):
        spots = list(places(payload))
        if not spots:
            break
        container, key = draw(st.sampled_from(spots))
        operation = draw(st.sampled_from(["drop", "replace", "retype", "rename", "legacy-type"]))
        if operation == "drop":
            del container[key]
        elif operation == "replace":
            container[key] = draw(json_values)
        elif operation == "retype":
            value = container[key]
            container[key] = [value] if not isinstance(value, list) else {"0": value}
        elif operation == "rename" and isinstance(container, dict):
            container[draw(st.sampled_from(["_type", "_value", "v", "type", "data", "content", "x"]))] = container.pop(key)
        elif operation == "legacy-type" and isinstance(container, dict):
            container["_type"] = draw(st.sampled_from([*codec.LEGACY_CLASS_NAMES, "DataFrame", "", None, 1]))
    form = draw(st.sampled_from(["object", "json-text", "json-bytes", "cut-text"]))
    if form == "object":
        return payload
    text = json.dumps(payload)
    if form == "json-text":
        return text
    if form == "json-bytes":
        return text.encode()
    return text[: draw(st.integers(0, len(text)))]


def decode_or_codec_error(payload) -> None:
    """``decode`` gives a message that can be shown and stored again, or raises ``CodecError``."""
    try:
        message = codec.decode(payload)
    except codec.CodecError:
        COUNTS["codec payloads refused with CodecError"] += 1
        return
    COUNTS["codec payloads decoded"] += 1
    assert isinstance(message, BaseMessage)
    assert isinstance(message_text(message), str)
    assert codec.decode(codec.encode(message)) == message


@settings(FUZZ, max_examples=1500)
@given(payload=json_values | st.text(max_size=60) | st.binary(max_size=60))
def test_any_json_value_decodes_or_raises_codec_error(payload):
    COUNTS["codec payloads thrown"] += 1
    decode_or_codec_error(payload)


@settings(FUZZ, max_examples=3000, derandomize=True)
@given(payload=mutated_payloads())
def test_mutated_stored_messages_decode_or_raise_codec_error(payload):
    COUNTS["codec payloads thrown"] += 1
    decode_or_codec_error(payload)


def test_deeply_nested_json_text_raises_codec_error():
    with pytest.raises(codec.CodecError):
        codec.decode("[" * 5000 + "]" * 5000)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"v": 1, "type": ["human"], "data": {"content": "x"}}, id="type-is-a-list"),
        pytest.param({"_type": {"HumanMessage": 1}, "_value": {"content": "x", "type": "human"}}, id="legacy-type-is-a-dict"),
        *[
            pytest.param(payload, id=name)
            for name, payload in [
                ("tool-call-is-a-string", {"v": 1, "type": "ai", "data": {"content": "x", "tool_calls": ["x"]}}),
                ("additional-kwargs-is-a-list", {"v": 1, "type": "ai", "data": {"content": "x", "additional_kwargs": []}}),
                ("tool-call-chunks-is-a-dict", {"v": 1, "type": "AIMessageChunk", "data": {"content": "x", "tool_call_chunks": {"0": []}}}),
            ]
        ],
    ],
)
def test_malformed_payloads_found_by_the_fuzzer_raise_codec_error(payload):
    with pytest.raises(codec.CodecError):
        codec.decode(payload)


# ---- (c) URLs at every route -------------------------------------------------------------------

#: Path values every route with an id or a path in it is tried with, for every kind of visitor.
EXTREME_VALUES = [
    "0", "1", "-1", "9223372036854775807", "9223372036854775808", str(10**30), "1" * 40, "1e3", "0x10",
    "%00", "..", "../..", "a%2Fb", "🙂", "안녕", " ", "null", "<script>",
]
#: What a route may answer a visitor's request with: never a server error. (405: a GET of a
#: POST-only view; 400: a request Django itself finds malformed.)
ALLOWED_STATUS = {400, 403, 404, 405}
_ROUTE_PART = re.compile(r"<(?:(?P<converter>[^>:]+):)?(?P<name>[^>]+)>")


def project_routes() -> list[tuple[str, ...]]:
    """Every URL pattern of the project (the demo's, pyhub_ai.urls', the admin's), as the
    route or regex of each level, outermost first."""
    from django.urls import URLResolver, get_resolver

    def walk(resolver, prefix):
        for pattern in resolver.url_patterns:
            parts = (*prefix, str(pattern.pattern))
            if isinstance(pattern, URLResolver):
                yield from walk(pattern, parts)
            else:
                yield parts

    return sorted(set(walk(get_resolver(), ())))


def segment_values(converter: str | None) -> st.SearchStrategy:
    """Random path values for a ``<converter:name>`` (and for a regex group)."""
    numbers = st.integers(-5, 10**40).map(str) | st.from_regex(r"[0-9]{1,40}", fullmatch=True)
    texts = st.text(min_size=1, max_size=30).filter(lambda text: "/" not in text)
    extremes = st.sampled_from(EXTREME_VALUES)
    if converter in ("int", "pk"):
        return extremes | numbers
    if converter == "path":
        return extremes | numbers | st.text(min_size=1, max_size=40)
    return extremes | numbers | texts


_CATCH_ALL = re.compile(r"\^?(?P<prefix>[^()]*)\(\?P<\w+>\.\*\)\$")


def build_url(parts: tuple[str, ...], value_for) -> str:
    """A percent-encoded path that reaches the route ``parts``; ``value_for(kind)`` gives each
    value: ``kind`` is a converter name (``"path"`` for a catch-all regex group), or the regex of
    another ``re_path`` level, which the value must match."""
    from urllib.parse import quote

    texts = []
    for part in parts:
        catch_all = _CATCH_ALL.fullmatch(part)
        if catch_all:  # re_path("^media/(?P<path>.*)$"): its fixed text, then any value
            texts += [catch_all["prefix"], value_for("path")]
        elif part.startswith("^") or part.endswith("$"):  # another re_path
            texts.append(value_for(part))
        else:
            position = 0
            for match in _ROUTE_PART.finditer(part):
                texts += [part[position:match.start()], value_for(match["converter"] or "str")]
                position = match.end()
            texts.append(part[position:])
    return "/" + quote("".join(texts), safe="/")


def has_values(parts: tuple[str, ...]) -> bool:
    return any(_ROUTE_PART.search(part) or _CATCH_ALL.fullmatch(part) for part in parts)


@pytest.fixture
def visitors(django_user_model):
    """An anonymous client, a signed-in user who created a room, and a superuser; a few rooms
    and conversations exist, so small ids are found."""
    from django.test import Client

    from example.models import LLMChatRoom, RoomConversation

    user = django_user_model.objects.create_user(username="fuzz", password="fuzz-pass-123")
    admin = django_user_model.objects.create_superuser(username="fuzz-admin", password="fuzz-pass-123")
    for owner in (user, admin):
        room = LLMChatRoom.objects.create(created_by=owner)
        mine = Conversation.objects.create(user=owner)
        RoomConversation.objects.create(room=room, conversation=mine)
        ConversationMessage.from_message(HumanMessage("hello"), conversation=mine, user=owner).save()
    clients = {"anonymous": Client()}
    for name, member in (("user", user), ("superuser", admin)):
        clients[name] = Client()
        clients[name].force_login(member)
    return clients


def request_status(client, method: str, url: str) -> int:
    response = client.get(url) if method == "GET" else client.post(url)
    return response.status_code


@pytest.mark.django_db
def test_every_route_answers_extreme_path_values_without_a_server_error(visitors):
    routes = [parts for parts in project_routes() if has_values(parts)]
    assert any(parts[0] == "chat/" for parts in project_routes()), "pyhub_ai.urls is not included in mysite/urls.py"
    failures = []
    for parts in routes:
        for value in EXTREME_VALUES:
            url = build_url(parts, lambda kind, value=value: value if kind in ("int", "pk", "str", "path", "slug") else kind)
            for visitor, client in visitors.items():
                status = request_status(client, "GET", url)
                COUNTS["URLs requested"] += 1
                if not (200 <= status < 400 or status in ALLOWED_STATUS):
                    failures.append((visitor, url, status))
    assert failures == []


@pytest.mark.django_db
@settings(FUZZ, max_examples=300)
@given(data=st.data())
def test_random_urls_at_every_route_never_get_a_server_error(visitors, data):
    parts = data.draw(st.sampled_from(project_routes()), label="route")
    url = build_url(
        parts,
        lambda kind: data.draw(st.from_regex(kind, fullmatch=True) if kind.startswith("^") else segment_values(kind), label=kind),
    )
    visitor = data.draw(st.sampled_from(sorted(visitors)), label="visitor")
    method = data.draw(st.sampled_from(["GET", "POST"]), label="method")
    status = request_status(visitors[visitor], method, url)
    COUNTS["URLs requested"] += 1
    assert 200 <= status < 400 or status in ALLOWED_STATUS, (visitor, method, url, status)
