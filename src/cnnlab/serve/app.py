"""The HTTP API and web page of `cnnlab serve`.

    POST /predict   one or more images (multipart `file` fields, or a raw image body) -> top-k JSON
    POST /explain   one image -> its Grad-CAM overlay as PNG (?format=json: the heatmap as numbers)
    GET  /model     the model card; GET /healthz; GET /metrics (Prometheus text); GET / the page

Every error is JSON `{"error": "..."}` with the status that names it: 413 too large, 415 not an
accepted image, 422 unreadable or missing, 400 malformed, 503 busy (with Retry-After), 408 a body
too slow to arrive, 431 headers too large, 504 the model past the request's deadline, 500 a model
whose probabilities are not numbers (never a NaN in the JSON).
"""

from __future__ import annotations

import asyncio
import io
import socket
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..base.devices import set_threads
from ..base.errors import CnnlabError
from ..base.settings import resolve
from ..data.images import ImageReadError, ImageTooLarge, UnsupportedImage, decode_image
from ..models.onnx import OnnxClassifier
from ..run.contract import PRETRAINED_PREFIX
from ..run.prediction import UnknownVerdict
from ..run.predictor import Predictor, load_predictor
from .batcher import Batcher, QueueFull
from .limits import BodyTimeout, BodyTooLarge, LimitUpload
from .metrics import Metrics
from .protocol import ConnectionLimits, guarded_protocol
from .settings import ServeSettings

STATIC = Path(__file__).parent / "static"
MAX_FORM_FILES, MAX_FORM_FIELDS, MAX_FIELD_BYTES = 64, 64, 64 * 1024
RETRY_AFTER_SECONDS = "1"
# Open files the server needs besides its connections: the model, libraries, torch's threads.
FILE_RESERVE = 128
FORMS = ("multipart/form-data", "application/x-www-form-urlencoded")


class ApiError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.headers = status, headers


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class Service:
    """The model, its one worker thread and the batcher: what the endpoints share."""

    def __init__(self, predictor: Predictor, settings: ServeSettings, metrics: Metrics) -> None:
        self.predictor, self.settings, self.metrics = predictor, settings, metrics
        self.computing_since: float | None = None  # when the worker's current job began
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cnnlab-model")
        self.batcher = Batcher(self.assess, max_batch=settings.max_batch,
                               max_wait_ms=settings.max_wait_ms, max_queue=settings.max_queue,
                               worker=self.worker, on_batch=metrics.batch_size.observe)

    def assess(self, batch: torch.Tensor) -> list[tuple[torch.Tensor, UnknownVerdict | None]]:
        """(B, C, H, W) -> for each image, its probabilities (K,) and the unknown detector's
        verdict (None without a detector)."""
        with self._computing():
            probabilities, scores = self.predictor.assess(batch)
        return list(zip(probabilities, self.predictor.verdicts(scores, len(batch)), strict=True))

    def decode(self, name: str, data: bytes) -> torch.Tensor:
        """Bytes of an upload -> the model's input (C, H, W); the name is only ever a label."""
        try:
            image = decode_image(io.BytesIO(data), name, self.settings.max_pixels)
        except UnsupportedImage as error:
            raise ApiError(415, str(error)) from None
        except ImageTooLarge as error:
            raise ApiError(413, str(error)) from None
        except ImageReadError as error:
            raise ApiError(422, str(error)) from None
        return self.predictor.preprocess(image)

    async def decode_all(self, uploads: list[tuple[str, bytes]]) -> list[tuple[str, torch.Tensor]]:
        return [(name, await asyncio.to_thread(self.decode, name, data)) for name, data in uploads]

    @asynccontextmanager
    async def deadline(self) -> AsyncIterator[None]:
        """The request's deadline for the model: its wait in the queue and its forward pass.
        A forward pass cannot be interrupted: past the deadline the request is answered 504 while
        the worker finishes the pass."""
        seconds = self.settings.request_timeout
        timeout = asyncio.timeout(seconds)
        try:
            async with timeout:
                yield
        except TimeoutError:
            if not timeout.expired():
                raise
            raise ApiError(504, f"the model did not answer within the {seconds:g} s deadline "
                                f"(--request-timeout)") from None

    @contextmanager
    def _computing(self) -> Iterator[None]:
        """Marks the worker busy, so that /healthz sees a forward pass that does not end."""
        self.computing_since = time.monotonic()
        try:
            yield
        finally:
            self.computing_since = None

    def stuck_seconds(self) -> float | None:
        """How long the worker's current job has run, where that is past the request deadline."""
        since = self.computing_since
        running = 0.0 if since is None else time.monotonic() - since
        return running if running > self.settings.request_timeout else None

    async def predict(self, images: list[torch.Tensor]) -> list[torch.Tensor]:
        try:
            return await self.batcher.predict(images)
        except QueueFull:
            raise ApiError(503, "the server is busy; retry shortly",
                           {"Retry-After": RETRY_AFTER_SECONDS}) from None

    def gradcam(self, image: torch.Tensor, target: int | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(heatmap (H, W), probabilities (K,)), on the model's thread (hooks must not see the
        batcher's forward passes)."""
        from ..explain import attribute

        batch = image[None].to(self.predictor.device)
        with self._computing():
            probabilities = self.predictor.probabilities(batch)[0]
            chosen = int(probabilities.argmax()) if target is None else target
            heatmap = attribute("gradcam", self.predictor.model, batch,
                                torch.tensor([chosen], device=self.predictor.device))[0]
        return heatmap, probabilities


async def _uploads(request: Request) -> list[tuple[str, bytes]]:
    """The images of a request: multipart `file` fields, or the whole body."""
    if request.headers.get("content-type", "").startswith(FORMS):
        form = await request.form(max_files=MAX_FORM_FILES, max_fields=MAX_FORM_FIELDS,
                                  max_part_size=MAX_FIELD_BYTES)
        files = form.getlist("file")
        if not files:
            raise ApiError(422, "the form has no 'file' field; send the image as file=@photo.jpg")
        if any(isinstance(item, str) for item in files):
            raise ApiError(422, "the 'file' field must be a file upload, not text")
        return [(item.filename or "upload", await item.read()) for item in files]  # type: ignore[union-attr]
    body = await request.body()
    if not body:
        raise ApiError(422, "no image: send it as a multipart 'file' field or as the request body")
    return [("body", body)]


def _topk(request: Request, default: int, classes: int) -> int:
    text = request.query_params.get("topk", str(default))
    if not _is_count(text) or int(text) < 1:
        raise ApiError(400, f"topk must be a whole number >= 1, got {text!r}"[:300])
    return min(int(text), classes)


def _target(request: Request, class_names: list[str]) -> int | None:
    text = request.query_params.get("target")
    if text is None:
        return None
    if text in class_names:
        return class_names.index(text)
    if _is_count(text) and int(text) < len(class_names):
        return int(text)
    raise ApiError(422, f"unknown target class {text!r}"[:300])


def _is_count(text: str) -> bool:
    """ASCII digits of a sane length: '²'.isdigit() is true and 5,000 digits are slow to convert,
    both would end in a 500."""
    return text.isascii() and text.isdigit() and len(text) <= 9


def _install_errors(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return _error(error.status, str(error), error.headers)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request: Request, error: BodyTooLarge) -> JSONResponse:
        return _error(413, str(error))

    @app.exception_handler(BodyTimeout)
    async def too_slow(request: Request, error: BodyTimeout) -> JSONResponse:
        # Closed after the answer: the rest of the body may still be on its way.
        return _error(408, str(error), {"Connection": "close"})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), getattr(error, "headers", None))


def _routes(app: FastAPI, service: Service) -> None:
    predictor = service.predictor
    on_onnx_runtime = isinstance(predictor.model, OnnxClassifier)

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        topk = _topk(request, service.settings.topk, len(predictor.class_names))
        inputs = await service.decode_all(await _uploads(request))
        async with service.deadline():
            rows = await service.predict([image for _, image in inputs])
        # The same Prediction (and dict form) as `cnnlab predict` and model.predict give.
        try:
            predictions = predictor.predictions(
                torch.stack([probabilities for probabilities, _ in rows]),
                [verdict for _, verdict in rows], [name for name, _ in inputs], topk)
        except CnnlabError as error:  # probabilities that are not numbers: the model's fault
            raise ApiError(500, str(error)) from None
        return {"predictions": [prediction.to_dict() for prediction in predictions]}

    @app.post("/explain")
    async def explain(request: Request) -> Response:
        if on_onnx_runtime:
            raise ApiError(501, "Grad-CAM needs the PyTorch model's gradients: serve the run "
                                "folder, not its ONNX export")
        target = _target(request, predictor.class_names)
        uploads = await _uploads(request)
        if len(uploads) != 1:
            raise ApiError(422, "explain takes one image at a time")
        [(name, image)] = await service.decode_all(uploads)
        loop = asyncio.get_running_loop()
        async with service.deadline():
            heatmap, probabilities = await loop.run_in_executor(service.worker, service.gradcam,
                                                                image, target)
        top = predictor.top(probabilities[None], len(predictor.class_names))[0]
        if request.query_params.get("format") == "json":
            return JSONResponse({"input": name, "top": [s.to_dict() for s in top],
                                 "heatmap": heatmap.tolist()})
        return Response(_png(image, heatmap), media_type="image/png",
                        headers={"X-Predicted-Class": top[0].name})

    @app.get("/model")
    async def model() -> dict[str, Any]:
        return {**predictor.card.to_dict(), "runtime": predictor.runtime, "run": app.state.run_label}

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        stuck = service.stuck_seconds()
        if stuck is None:
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "stuck", "error": (
            f"the model has been computing one batch for {stuck:.0f} s, past the "
            f"{service.settings.request_timeout:g} s request deadline")}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(service.metrics.render(), media_type="text/plain; version=0.0.4")

    @app.get("/")
    async def page() -> FileResponse:
        return FileResponse(STATIC / "index.html")


def _png(image: torch.Tensor, heatmap: torch.Tensor) -> bytes:
    from ..explain import overlay_image

    buffer = io.BytesIO()
    overlay_image(image, heatmap).save(buffer, format="PNG")
    return buffer.getvalue()


def create_app(model: str | Path, settings: ServeSettings | None = None, **options: Any) -> FastAPI:
    """The app serving a run folder, an export folder or an .onnx file in one (never a URL)."""
    settings = resolve(ServeSettings, settings, options)
    _refuse_remote(model)
    if settings.max_batch < 1 or settings.max_queue < 1:
        raise CnnlabError("--max-batch and --max-queue must be at least 1")
    set_threads(settings.threads)
    metrics = Metrics()
    predictor = load_predictor(model, "cpu", unknown=settings.unknown, engine=settings.engine)
    service = Service(predictor, settings, metrics)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.batcher.start()
        yield
        await service.batcher.stop()
        service.worker.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="cnnlab", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.service = service
    app.state.run_label = _run_label(model)
    _install_errors(app)
    _routes(app, service)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(LimitUpload, max_bytes=int(settings.max_upload_mb * 1e6),
                       timeout=settings.body_timeout)
    app.middleware("http")(metrics.middleware)
    return app


def _refuse_remote(model: str | Path) -> None:
    """Serve loads what is on this machine: not a URL, nor a hub name after pretrained:
    (`hf-hub:ORG/NAME` fetches a model's config and weights from the Hugging Face hub)."""
    text = str(model)
    if "://" in text:
        raise CnnlabError(f"{model}: cnnlab serves a model from this machine, not from a URL")
    name = text.removeprefix(PRETRAINED_PREFIX)
    if name != text and (":" in name or "/" in name):  # hf-hub:ORG/NAME, or ORG/NAME alone
        raise CnnlabError(f"{model}: cnnlab serve takes no model from the Hugging Face hub "
                          f"(hf-hub:ORG/NAME); serve a run folder, its export, or pretrained:NAME "
                          f"(e.g. pretrained:efficientnet_lite0)")


def _run_label(model: str | Path) -> str:
    """The run's folder name for the page's header (RUN/export for its ONNX export)."""
    path = Path(model).resolve()
    folder = path.parent if path.suffix == ".onnx" else path
    return f"{folder.parent.name}/{folder.name}" if (folder / "export.json").is_file() else path.name


def run_server(model: str | Path, settings: ServeSettings | None = None, **options: Any) -> None:
    """Serve on uvicorn until interrupted."""
    import uvicorn

    settings = resolve(ServeSettings, settings, options)
    app = create_app(model, settings)
    listening = _listen(settings.host, settings.port)  # a port in use is one line, before "serving"
    limits = _connection_limits(settings)
    _allow_open_files(limits.max_connections + FILE_RESERVE)
    print(f"serving {model} at http://{settings.host}:{settings.port}/ (Ctrl+C stops)", flush=True)
    config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=5,
                            http=guarded_protocol(limits, app.state.service.metrics))
    uvicorn.Server(config).run(sockets=[listening])


def _connection_limits(settings: ServeSettings) -> ConnectionLimits:
    return ConnectionLimits(max_connections=settings.max_connections,
                            header_timeout=settings.header_timeout,
                            body_timeout=settings.body_timeout,
                            max_header_bytes=int(settings.max_header_kb * 1000))


def _allow_open_files(needed: int) -> None:
    """Raises this process's soft limit on open files (often 1,024) toward the hard one, so that
    the connection cap, not the limit, decides when connections are refused."""
    try:
        import resource
    except ImportError:  # resource is Unix only
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        raise CnnlabError(f"--max-connections needs about {needed} open files and this process may "
                          f"open {hard} (ulimit -n): lower --max-connections or raise the limit")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def _listen(host: str, port: int) -> socket.socket:
    """The server's socket, bound and listening (as uvicorn binds it), or one clear error."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listening = socket.socket(family, socket.SOCK_STREAM)
    listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listening.bind((host, port))
    except OSError as error:
        listening.close()
        raise CnnlabError(f"cannot serve at {host}:{port}: {error.strerror or error} (another "
                          f"server on that port? choose one with --port)") from None
    listening.listen(2048)
    return listening

