"""A small FastAPI (Starlette) application for tests/apps/test_frameworks.py (tox -e apps)."""

import asyncio
import hashlib
import os
import threading
from contextlib import asynccontextmanager

from fastapi import FastAPI, File, Form, Request, UploadFile, WebSocket, WebSocketDisconnect
from fastapi.responses import PlainTextResponse, RedirectResponse, StreamingResponse


@asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from the lifespan"}
    os.write(1, b"FASTAPI LIFESPAN SHUTDOWN %d\n" % os.getpid())  # one write: workers share the pipe


app = FastAPI(lifespan=lifespan)


@app.get("/", response_class=PlainTextResponse)
async def index():
    return "Hello from FastAPI"


@app.get("/sync")
def sync_view(request: Request):
    # a plain def: FastAPI runs it in anyio's thread pool (sniffio, anyio, current_task)
    return {"thread": threading.current_thread().name, "greeting": request.state.greeting}


@app.post("/form")
async def form(name: str = Form(...), colour: str = Form(...)):
    return {"name": name, "colour": colour}


@app.post("/upload")
async def upload(file: UploadFile = File(...), note: str = Form(None)):
    data = await file.read()
    return {"name": file.filename, "size": len(data), "sha256": hashlib.sha256(data).hexdigest(), "field": note}


@app.get("/stream")
async def stream(n: int = 5):
    async def parts():
        for index in range(n):
            await asyncio.sleep(0.001)
            yield f"part {index}\n"
    return StreamingResponse(parts(), media_type="text/plain")


@app.get("/login")
async def login():
    response = RedirectResponse("/whoami", status_code=302)
    response.set_cookie("user", "alice")
    return response


@app.get("/whoami")
async def whoami(request: Request):
    return {"user": request.cookies.get("user"), "pid": os.getpid()}


@app.get("/fail")
async def fail():
    raise RuntimeError("a FastAPI view failing on purpose")


@app.websocket("/ws")
async def websocket_echo(websocket: WebSocket):
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect:
        pass
