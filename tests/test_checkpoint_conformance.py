"""LangGraph's official checkpointer conformance suite (langgraph-checkpoint-conformance) against
``DjangoSaver``: every capability, through the async methods and through the sync ones, on the
test database (SQLite, and PostgreSQL in the second run of scripts/test.sh)."""
from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from langgraph.checkpoint.conformance import checkpointer_test, validate
from langgraph.checkpoint.conformance.capabilities import Capability, DetectedCapabilities

from pyhub_ai.checkpoint import DjangoSaver

pytestmark = pytest.mark.django_db(transaction=True)


class SyncMethodsSaver(DjangoSaver):
    """Answers the suite's async calls with the sync methods (run in a worker thread), so the
    suite checks ``get_tuple``, ``list``, ``put``... as ``graph.invoke()`` calls them."""

    async def aget_tuple(self, config):
        return await sync_to_async(self.get_tuple)(config)

    async def alist(self, config, *, filter=None, before=None, limit=None) -> AsyncIterator[Any]:
        tuples = await sync_to_async(lambda: list(self.list(config, filter=filter, before=before, limit=limit)))()
        for item in tuples:
            yield item

    async def aput(self, config, checkpoint, metadata, new_versions):
        return await sync_to_async(self.put)(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config, writes, task_id, task_path=""):
        await sync_to_async(self.put_writes)(config, writes, task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        await sync_to_async(self.delete_thread)(thread_id)

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await sync_to_async(self.delete_for_runs)(run_ids)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await sync_to_async(self.copy_thread)(source_thread_id, target_thread_id)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await sync_to_async(self.prune)(thread_ids, strategy=strategy)


SAVERS = {"async": DjangoSaver, "sync": SyncMethodsSaver}


def test_every_capability_is_implemented():
    detected = DetectedCapabilities.from_instance(DjangoSaver())
    assert detected.missing == frozenset()


@pytest.mark.parametrize("capability", [capability.value for capability in Capability])
@pytest.mark.parametrize("api", list(SAVERS))
async def test_conformance(api: str, capability: str):
    saver_class = SAVERS[api]

    @checkpointer_test(name=f"DjangoSaver ({api})")
    async def factory():
        yield saver_class()

    report = await validate(factory, capabilities={capability})
    result = report.results[capability]
    assert result.detected
    assert result.failures == []
    assert result.passed is True and result.tests_passed > 0
