"""Cerberus schemas for the OpenAI payloads people forward: chat, responses, embeddings.

Each builder returns a fresh plain-dict Cerberus schema, so a route can also take
one, change it and pass it as ``Validate(schema=...)``. The schemas list the
fields a client may send (everything else is refused as ``unknown``) and cap what
costs money or memory. Fields a route does not allow keep their name in the
schema but accept only a neutral value (``logprobs: false``, ``logit_bias: {}``),
so a client sending them learns which field and rule refused it.

The rules only use what airlock compiles (see :mod:`airlock.validation.compiler`),
so every preset runs on the fast path.
"""

from airlock.validation.openai.chat import chat_schema
from airlock.validation.openai.embeddings import embeddings_schema
from airlock.validation.openai.responses import RESPONSES_INCLUDE, responses_schema

__all__ = ["RESPONSES_INCLUDE", "chat_schema", "embeddings_schema", "responses_schema"]
