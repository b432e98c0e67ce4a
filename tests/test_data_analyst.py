"""DataAnalystChatConsumer: questions about a table answered with safe tools, results stored as tables and images."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.urls import path

from pyhub_ai.consumers import DataAnalystChatConsumer
from pyhub_ai.data.tools import DataToolError, make_data_tools
from pyhub_ai.llm import OfflineChatModel
from pyhub_ai.models import Conversation, ConversationMessage

from .conftest import tool_calls_then

pytestmark = pytest.mark.django_db(transaction=True)

SALES = Path(__file__).resolve().parent.parent / "example" / "data" / "sales.csv"


class SalesConsumer(DataAnalystChatConsumer):
    llm_model = "openai:gpt-4o-mini"
    dataframe_path = SALES
    column_guideline = "revenue is in Korean won."


application = URLRouter([path("ws/sales/<int:conversation_pk>/", SalesConsumer.as_asgi())])


async def ask(user, text):
    conversation = await Conversation.objects.acreate(user=user)
    communicator = WebsocketCommunicator(application, f"/ws/sales/{conversation.pk}/")
    communicator.scope["user"] = user
    await communicator.connect()
    while (await communicator.receive_json_from())["type"] != "history":
        pass
    await communicator.send_json_to({"type": "user_message", "text": text})
    frames = []
    while not frames or frames[-1]["type"] not in ("stream_end", "error"):
        frames.append(await communicator.receive_json_from(timeout=10))
    await communicator.disconnect()
    rows = [row async for row in ConversationMessage.objects.filter(conversation=conversation).order_by("pk")]
    return frames, rows


def tools():
    import pandas

    return {tool.name: tool for tool in make_data_tools(pandas.read_csv(SALES))}


async def test_a_question_is_answered_with_an_aggregate_table(user_a, use_model):
    model = use_model(tool_calls_then([("aggregate", {"group_by": ["region"], "column": "revenue", "aggregation": "sum"})], "Seoul sells most."))
    frames, rows = await ask(user_a, "Which region has the most revenue?")
    result = next(f for f in frames if f["type"] == "tool_result")["message"]
    table = result["artifact"]
    assert table["type"] == "table" and table["columns"] == ["region", "sum(revenue)"]
    assert table["rows"][0] == ["Seoul", 3_705_000]  # the sum of Seoul's rows in sales.csv
    assert "revenue is in Korean won." in model.calls[0][0].content  # the column guideline is in the system prompt
    assert "20 rows" in model.calls[0][0].content


async def test_a_chart_is_rendered_on_the_server_and_stored_as_an_image_file(user_a, use_model):
    use_model(tool_calls_then([("draw_chart", {"kind": "bar", "x": "product", "y": "units"})], "Here it is."))
    frames, rows = await ask(user_a, "Chart units by product")
    artifact = next(r for r in rows if r.role == "tool").message.artifact
    assert artifact["type"] == "image" and artifact["mime"] == "image/png"
    with default_storage.open(artifact["name"]) as image:
        assert image.read(8) == b"\x89PNG\r\n\x1a\n"
    default_storage.delete(artifact["name"])


async def test_an_unknown_column_is_an_error_result_the_model_can_read(user_a, use_model):
    model = use_model(tool_calls_then([("value_counts", {"column": "colour"})], "That column does not exist."))
    frames, rows = await ask(user_a, "count colours")
    tool_row = next(r for r in rows if r.role == "tool").message
    assert tool_row.status == "error" and "There is no column 'colour'" in tool_row.content
    assert frames[-1]["type"] == "stream_end"


async def test_the_offline_model_describes_the_data_with_a_tool(user_a, use_model):
    use_model(OfflineChatModel())
    frames, rows = await ask(user_a, "Please describe the data")
    assert [f["type"] for f in frames if f["type"] in ("tool_call", "tool_result", "stream_end")] == ["tool_call", "tool_result", "stream_end"]
    assert next(f for f in frames if f["type"] == "tool_call")["tool_calls"][0]["name"] == "describe_data"
    assert "20 rows" in frames[-1]["message"]["text"]


def test_filters_only_accept_known_columns_and_operators():
    query = tools()["query_rows"]
    assert "Seoul" in query.invoke({"filters": [{"column": "region", "op": "==", "value": "Seoul"}], "limit": 1})
    with pytest.raises(DataToolError, match="no column"):
        query.invoke({"filters": [{"column": "__class__", "op": "==", "value": 1}]})
    with pytest.raises(Exception, match="op"):
        query.invoke({"filters": [{"column": "region", "op": "__import__('os').system('x')", "value": 1}]})


def test_no_tool_evaluates_text_as_code():
    # A "value" full of Python is compared as a plain string, never run.
    query = tools()["query_rows"]
    text = query.invoke({"filters": [{"column": "region", "op": "contains", "value": "__import__('os').system('touch /tmp/pwned')"}]})
    assert text.startswith("0 matching rows") and not Path("/tmp/pwned").exists()


def test_a_missing_dataframe_path_names_both_fixes():
    class Unconfigured(DataAnalystChatConsumer):
        llm_model = "offline:demo"

    with pytest.raises(ImproperlyConfigured, match="dataframe_path.*get_dataframe"):
        Unconfigured().get_dataframe()


def test_the_consumers_import_without_the_data_extra_and_name_it_when_used():
    script = (
        "import sys; sys.modules['pandas'] = None; sys.modules['matplotlib'] = None\n"
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'tests.settings'; django.setup()\n"
        "from pyhub_ai.consumers import AgentChatConsumer, DataAnalystChatConsumer\n"
        "class C(DataAnalystChatConsumer): dataframe_path = 'x.csv'\n"
        "try:\n    C().get_dataframe()\nexcept Exception as exc:\n    print(type(exc).__name__, exc)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=SALES.parents[2], timeout=60)
    assert "ImproperlyConfigured" in result.stdout and 'pip install "pyhub_ai[data]"' in result.stdout, result.stderr


async def test_the_offline_model_charts_the_columns_the_question_names(user_a, use_model):
    use_model(OfflineChatModel())
    frames, rows = await ask(user_a, "chart units by product")
    call = next(f for f in frames if f["type"] == "tool_call")["tool_calls"][0]
    assert (call["name"], call["args"]) == ("draw_chart", {"y": "units", "x": "product"})
    assert "units by product" in frames[-1]["message"]["text"]


async def test_describing_the_data_gives_a_short_summary_per_column_without_nan(user_a, use_model):
    use_model(OfflineChatModel())
    frames, rows = await ask(user_a, "describe the data")
    tool = next(f for f in frames if f["type"] == "tool_result")["message"]
    assert "NaN" not in tool["text"] and "- units (int64): count 20, min 25, max 130, mean 75.0" in tool["text"]
    assert tool["artifact"]["columns"][:3] == ["column", "type", "count"]
    assert all(value is None or value == value for row in tool["artifact"]["rows"] for value in row)
