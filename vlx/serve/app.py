"""The page's web routes (FastAPI): the static page, and JSON over ``Demo``.

Every route that computes is a plain ``def``, which FastAPI runs on its thread pool: requests
run at once, and each explanation's hooks belong to its own thread. A bad choice or upload is a
400 (413 past the upload limit) with ``{"error": message}``, which the page shows; the server
keeps serving. Nothing is loaded from elsewhere: no CDN, no API docs page (its assets are
remote).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from vlx.errors import InputError
from vlx.files import slug
from vlx.serve.session import Choice, Demo, Wanted

STATIC = Path(__file__).resolve().parent / "static"
logger = logging.getLogger(__name__)


def choice(task: str, image: str, text: str | None = None, method: str = "gradcam",
           layer: str | None = None) -> Choice:
    """The query parameters every computing route reads: what the page asks about."""
    return Choice(task, image, text, method, layer or None)


def wanted(target: int | None = None, answer: str | None = None) -> Wanted | None:
    """A clicked target's id, or a typed answer to force (``None``: the first listed)."""
    return answer.strip() if answer and answer.strip() else target


Chosen = Annotated[Choice, Depends(choice)]
Target = Annotated[Wanted | None, Depends(wanted)]
Forced = Annotated[list[str] | None, Query()]
"""The answers forced so far (VQA), repeated: ``forced=red&forced=blue``."""


def create_app(demo: Demo, max_upload: int) -> FastAPI:
    """The app serving ``demo``; uploads larger than ``max_upload`` bytes are refused."""
    app = FastAPI(title="vlx", docs_url=None, redoc_url=None, openapi_url=None)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.exception_handler(InputError)
    async def bad_input(request: Request, err: InputError) -> JSONResponse:
        return JSONResponse({"error": str(err)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, err: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'][1:])}: {e['msg']}"
                             for e in err.errors())
        return JSONResponse({"error": f"bad request: {problems}"}, status_code=400)

    @app.exception_handler(Exception)
    async def failed(request: Request, err: Exception) -> JSONResponse:
        logger.exception("vlx serve: %s failed", request.url.path, exc_info=err)
        return JSONResponse({"error": f"internal error: {type(err).__name__}: {err}"},
                            status_code=500)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        return {**demo.config(), "max_upload": max_upload}

    @app.post("/api/samples/{name}")
    def sample(name: str, index: int | None = None) -> dict[str, Any]:
        return demo.sample(name, index)

    @app.post("/api/images")
    async def upload(request: Request, name: str = "upload") -> Any:
        """The request body is the file; it is read up to the limit and no further."""
        limit = f"{name!r} is larger than the upload limit of {max_upload / 2**20:g} MB"
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_upload:
            return JSONResponse({"error": limit}, status_code=413)
        data = bytearray()
        async for chunk in request.stream():
            data += chunk
            if len(data) > max_upload:
                return JSONResponse({"error": limit}, status_code=413)
        return await run_in_threadpool(demo.upload, bytes(data), name)

    @app.get("/api/images/{image}.png")
    def image(image: str) -> Response:
        return Response(demo.image_png(image), media_type="image/png")

    @app.get("/api/analyze")
    def analyze(chosen: Chosen) -> dict[str, Any]:
        return demo.analyze(chosen)

    @app.get("/api/explain")
    def explain(chosen: Chosen, target: Target) -> dict[str, Any]:
        return demo.explain(chosen, target)

    @app.get("/api/text")
    def text(chosen: Chosen, target: Target) -> dict[str, Any]:
        return demo.text(chosen, target)

    @app.get("/api/figure.png")
    def figure(chosen: Chosen, target: Target, forced: Forced = None) -> Response:
        return Response(demo.figure_png(chosen, target, forced or []), media_type="image/png",
                        headers=_attachment(demo, chosen, "png"))

    @app.get("/api/record.json")
    def record(chosen: Chosen, target: Target, forced: Forced = None) -> JSONResponse:
        return JSONResponse(demo.record(chosen, target, forced or []),
                            headers=_attachment(demo, chosen, "json"))

    return app


def _attachment(demo: Demo, chosen: Choice, suffix: str) -> dict[str, str]:
    name = slug(f"{demo.image_name(chosen.image)}_{chosen.task}_{chosen.method}")
    return {"Content-Disposition": f'attachment; filename="{name}.{suffix}"'}
