"""airlock as a FastAPI dependency: the route gets the checked request; OpenAPI lists the 4xx answers.

Run: python examples/fastapi_app.py   (then open http://127.0.0.1:8002/docs)
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import Depends, FastAPI

from airlock import Context, Policy
from airlock.fastapi import Airlock, install

app = FastAPI(title="airlock FastAPI example")
install(app, policy=Policy(max_body_bytes=256 * 1024))

# Route overrides are merged over the app's policy: this route accepts 16 KiB at most.
Checked = Annotated[Context, Depends(Airlock(max_body_bytes=16 * 1024))]


@app.post("/chat")
async def chat(checked: Checked) -> dict[str, object]:
    return {"received": checked.json, "request_id": checked.request_id}


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "8002")))
