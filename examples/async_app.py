"""An async web app that streams answers to the browser over Server-Sent Events.

    python examples/async_app.py            # then open http://127.0.0.1:8001/

Built on Starlette + uvicorn (``pip install "llmkit[server]"``); one AsyncClient is shared by
every request. The same code works with FastAPI (`StreamingResponse` is the same class).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, StreamingResponse
from starlette.routing import Route

from llmkit import AsyncClient, LLMError

CONFIG = Path(__file__).with_name("llmkit.toml")
PAGE = """<!doctype html><meta charset="utf-8"><title>llmkit</title>
<form id="f"><input id="q" size="60" value="What is the capital of France?"><button>Ask</button></form>
<pre id="out"></pre>
<script>
document.getElementById("f").onsubmit = (e) => {
  e.preventDefault();
  const out = document.getElementById("out"); out.textContent = "";
  const source = new EventSource("/ask?q=" + encodeURIComponent(document.getElementById("q").value));
  source.onmessage = (m) => { const d = JSON.parse(m.data); if (d.done) source.close(); else out.textContent += d.text; };
};
</script>"""


def create_app(client: AsyncClient) -> Starlette:
    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(PAGE)

    async def ask(request: Request) -> StreamingResponse:
        question = request.query_params.get("q", "")

        async def events() -> AsyncIterator[str]:
            try:
                async with client.stream(question, max_tokens=80) as stream:
                    async for event in stream:
                        if event.text:
                            yield f"data: {json.dumps({'text': event.text})}\n\n"
            except LLMError as error:  # shown in the page instead of a broken connection
                yield f"data: {json.dumps({'text': f'[error: {error}]'})}\n\n"
            yield f"data: {json.dumps({'done': True})}\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=[Route("/", index), Route("/ask", ask)], lifespan=lifespan)


if __name__ == "__main__":
    import uvicorn

    profile = os.environ.get("LLMKIT_PROFILE", "local")
    uvicorn.run(
        create_app(AsyncClient.from_config(CONFIG, profile=profile)), host="127.0.0.1", port=8001
    )
