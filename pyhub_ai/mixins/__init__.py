"""Consumer mixins, one concern each. None binds a protocol handler; ``consumers.py`` does."""
from .agent import AgentMixin
from .chat import ChatMixin
from .conversation import ConversationMixin
from .graph import GraphMixin
from .group import ThreadGroupMixin
from .llm import LLMMixin
from .protocol import FrameProtocolMixin

__all__ = ["AgentMixin", "ChatMixin", "ConversationMixin", "FrameProtocolMixin", "GraphMixin", "LLMMixin", "ThreadGroupMixin"]
