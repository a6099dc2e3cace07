"""`StreamedBody`: a streamed answer whose source may fail after the first byte.

Once the status line is sent an error can no longer become a 4xx/5xx. When the source
raises one of our errors (the conversation deleted while it was being exported, the
store closing), the answer ends without its final empty chunk: the client sees a
truncated body, never one that looks complete, and the server logs one line, not a
traceback.
"""

from __future__ import annotations

import logging

from starlette.responses import StreamingResponse
from starlette.types import Send

from events import ThreadlineError

logger = logging.getLogger(__name__)


class StreamedBody(StreamingResponse):
    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        try:
            async for chunk in self.body_iterator:
                data = chunk if isinstance(chunk, bytes | memoryview) else chunk.encode()
                await send({"type": "http.response.body", "body": data, "more_body": True})
        except ThreadlineError as exc:
            logger.warning("a streamed answer ended early: %s", exc)
            return
        await send({"type": "http.response.body", "body": b"", "more_body": False})
