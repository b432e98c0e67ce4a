"""Every open tab of a conversation thread, in any worker process, sees the same turns live.

Each connection joins a channel-layer group named after its thread and announces itself
(``pyhub_ai.presence`` events); connections already there answer, so each knows its peers.
The frames of a turn go to the connection's own socket at once and, only when it has peers,
through the group to them (``pyhub_ai.frame`` events, handled by the consumer's
``pyhub_ai_frame``). A lone tab, the usual case, costs the channel layer nothing per turn.
Streamed text is relayed in pieces at most every ``GROUP_DELTA_INTERVAL`` seconds, so other
tabs cost one channel-layer message per interval, not one per token.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

from channels.exceptions import ChannelFull

logger = logging.getLogger("pyhub_ai.group")

#: Seconds between two ``stream_delta`` frames relayed to the thread's other connections.
GROUP_DELTA_INTERVAL = 0.05


class ThreadGroupMixin:
    """Joins the thread's group and relays turn frames to it. Needs ``CHANNEL_LAYERS``; without
    a channel layer each connection only sees its own turns."""

    channel_layer: Any
    channel_name: str
    thread_group: str | None = None
    _peers: set[str] | None = None
    _pending_delta: dict[str, Any] | None = None
    _last_delta_relay: float = 0.0

    def get_thread_group_name(self) -> str:
        """The group of the connected visitor's thread (ASCII, under channels' 100-character limit)."""
        digest = hashlib.sha256(self.history.thread_key.encode()).hexdigest()[:40]
        return f"pyhub_ai.thread.{digest}"

    async def join_thread_group(self) -> None:
        """Called by ``connect()`` once access is granted."""
        if self.channel_layer is not None:
            self.thread_group = self.get_thread_group_name()
            self._peers = set()
            await self.channel_layer.group_add(self.thread_group, self.channel_name)
            await self._announce(joined=True)

    async def leave_thread_group(self) -> None:
        """Called by ``disconnect()``."""
        if self.thread_group is not None:
            await self.channel_layer.group_discard(self.thread_group, self.channel_name)
            await self._announce(joined=False)

    async def on_peer_presence(self, event: dict[str, Any]) -> None:
        """Another connection of the thread joined or left (called by ``pyhub_ai_presence``);
        a newcomer is answered directly, so it knows this connection too."""
        sender = event["sender"]
        if sender == self.channel_name or self._peers is None:
            return
        if not event["joined"]:
            self._peers.discard(sender)
            return
        if sender not in self._peers:
            self._peers.add(sender)
            if event.get("answer", True):
                try:
                    await self.channel_layer.send(sender, self._presence(joined=True, answer=False))
                except ChannelFull:  # many tabs joined at once: dropped, as the layer drops group messages to a full channel
                    logger.debug("Could not answer the presence of %s: its channel is full.", sender)

    def _presence(self, *, joined: bool, answer: bool = True) -> dict[str, Any]:
        return {"type": "pyhub_ai.presence", "sender": self.channel_name, "joined": joined, "answer": answer}

    async def _announce(self, *, joined: bool) -> None:
        await self.channel_layer.group_send(self.thread_group, self._presence(joined=joined))

    async def send_turn_frame(self, frame_type: str, *, to_self: bool = True, **data: Any) -> None:
        """Send a frame of a turn to this connection (unless ``to_self`` is false: it has gone)
        and to the thread's other connections."""
        frame = {"type": frame_type, **data}
        if to_self:
            try:
                await self.send_json(frame)
            except Exception as exc:  # the client has gone; its disconnect event stops the turn
                logger.debug("Could not send a %s frame: %r", frame_type, exc)
        if not self._peers:
            return
        if frame_type == "stream_delta":
            await self._relay_delta(frame)
            return
        await self._flush_delta()
        await self._relay(frame)

    async def _relay(self, frame: dict[str, Any]) -> None:
        await self.channel_layer.group_send(
            self.thread_group, {"type": "pyhub_ai.frame", "frame": frame, "sender": self.channel_name}
        )

    async def _relay_delta(self, frame: dict[str, Any]) -> None:
        if self._pending_delta is None:
            self._pending_delta = frame
        else:
            self._pending_delta["text"] += frame["text"]
        now = asyncio.get_running_loop().time()
        if now - self._last_delta_relay >= GROUP_DELTA_INTERVAL:
            self._last_delta_relay = now
            await self._flush_delta()

    async def _flush_delta(self) -> None:
        if self._pending_delta is not None:
            frame, self._pending_delta = self._pending_delta, None
            await self._relay(frame)
