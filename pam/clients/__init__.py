"""Chat-completion clients shared by the evaluation judges and the data pipeline.

One interface (:class:`ChatBackend`: ``complete(messages, **params) -> str``) with three
implementations: an OpenAI-compatible HTTP endpoint, a local transformers model, and an on-disk
cache wrapped around either. Imports only the standard library at module level.
"""

from .base import ChatBackend, ChatError, ChatHTTPError, ChatResponseError, ChatRetriesExhausted, Usage, complete_many
from .cache import CachedChatBackend, ResponseCache, cache_key
from .images import image_part, image_to_data_url, text_part
from .openai_http import OpenAIChatBackend
from .ratelimit import TokenBucket
from .transformers_local import TransformersChatBackend

__all__ = [
    "CachedChatBackend",
    "ChatBackend",
    "ChatError",
    "ChatHTTPError",
    "ChatResponseError",
    "ChatRetriesExhausted",
    "OpenAIChatBackend",
    "ResponseCache",
    "TokenBucket",
    "TransformersChatBackend",
    "Usage",
    "cache_key",
    "complete_many",
    "image_part",
    "image_to_data_url",
    "text_part",
]
