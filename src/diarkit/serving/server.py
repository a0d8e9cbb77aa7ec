"""``diarkit serve``: the model directory behind SageMaker's container HTTP contract.

GET /ping answers 503 while the models load and 200 once they are ready; POST
/invocations takes the same requests as ``code/inference.py`` (both read them through
``diarkit.serving.protocol``). uvicorn and starlette do the HTTP. Inference runs on a fixed number
of dedicated threads, each with its own pipeline copy (a pipeline is not safe to share
between threads), so the event loop stays free to answer /ping during long inferences.
Request bodies are streamed to a temporary directory that is removed after every request
(or, when that fails, e.g. out of file descriptors, at a later request and at exit). An
upload that sends nothing for ``idle_timeout`` seconds is answered 408; a client that
goes away gives up its inference (skipped if queued, stopped at the next stage if running).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import queue
import shutil
import signal
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any, Callable

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from diarkit import audio
from diarkit.errors import DiarkitError, OptionsError
from diarkit.serving.protocol import (
    CUSTOM_ATTRIBUTES_HEADER, PayloadTooLargeError, empty_body_error, error_body, negotiate_format,
    parse_json_payload, request_kind, transcribe_file,
)
from diarkit.compat import uvicorn
from diarkit.request import RequestOptions

logger = logging.getLogger(__name__)

MiB = 1 << 20
#: Body bytes gathered before one (threaded) write to the temporary file.
WRITE_CHUNK = 1 * MiB


@dataclass
class ServeConfig:
    model_dir: Path
    host: str = "127.0.0.1"
    port: int = 8080
    #: inference threads, one pipeline copy each (GPU memory grows with it)
    workers: int = 1
    #: seconds from the request's arrival to its answer (upload, queue and inference)
    timeout: float = 3600.0
    max_body_bytes: int = 2048 * MiB
    #: a JSON envelope is parsed in memory, so it gets a smaller limit than raw media
    max_json_bytes: int = 100 * MiB
    #: after SIGTERM, how long requests in flight may take (SageMaker kills at 30 s)
    graceful_timeout: float = 25.0
    device: str = "auto"
    tmp_dir: str | None = None
    #: seconds an upload may send nothing before it is answered 408 (stalled clients hold sockets)
    idle_timeout: float = 60.0

    def __post_init__(self):
        if self.workers < 1:
            raise OptionsError(f"workers must be at least 1, not {self.workers}")
        if not 0 <= self.port <= 65535:
            raise OptionsError(f"port must be between 0 and 65535, not {self.port}")
        for name in ("timeout", "max_body_bytes", "max_json_bytes", "idle_timeout"):
            if getattr(self, name) <= 0:
                raise OptionsError(f"{name} must be positive, not {getattr(self, name)}")


@dataclass
class _Job:
    fn: Callable[[Any], Any]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    #: set when the request gave up (time limit, shutdown): a queued job is then skipped
    abandoned: threading.Event = field(default_factory=threading.Event)

    def execute(self, pipeline: Any) -> None:
        if self.abandoned.is_set():
            return
        try:
            result, error = self.fn(pipeline), None
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting request
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            self.loop.call_soon_threadsafe(self._settle, result, error)

    def _settle(self, result: Any, error: BaseException | None) -> None:
        if self.future.done():
            return
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result(result)


class RequestAbandoned(Exception):
    """Raised inside an inference whose request is over (client gone, time limit): stop early."""


class BodyTimeoutError(DiarkitError):
    status = 408
    kind = "request_timeout"


class WorkerPool:
    """``count`` daemon threads; each loads one pipeline, then runs jobs in arrival order.

    A job that outlives its request's time limit keeps its thread until it finishes (a
    running inference cannot be interrupted), so the pool never runs more than ``count``
    inferences at once. Daemon threads never hold up the exit after the grace period.
    """

    def __init__(self, load: Callable[[], Any], count: int = 1,
                 on_failure: Callable[[BaseException], None] | None = None):
        self._load = load
        self.count = count
        self.on_failure = on_failure
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._loaded = 0
        #: jobs executing right now (a timed-out or cancelled job runs on to its end)
        self.running = 0
        self.error: BaseException | None = None

    @property
    def ready(self) -> bool:
        return self.error is None and self._loaded == self.count

    def start(self) -> None:
        for index in range(self.count):
            threading.Thread(target=self._work, name=f"diarkit-inference-{index}", daemon=True).start()

    def stop(self) -> None:
        for _ in range(self.count):
            self._jobs.put(None)

    def _work(self) -> None:
        try:
            pipeline = self._load()
        except BaseException as exc:  # noqa: BLE001 - reported through /ping and the exit status
            logger.error("loading the models failed: %s", exc, exc_info=not isinstance(exc, DiarkitError))
            with self._lock:
                first = self.error is None
                self.error = self.error or exc
            if first and self.on_failure is not None:
                self.on_failure(exc)
            return
        with self._lock:
            self._loaded += 1
            if self.ready:
                logger.info("models loaded: ready (%d inference worker(s))", self.count)
        while (job := self._jobs.get()) is not None:
            with self._lock:
                self.running += 1
            try:
                job.execute(pipeline)
            finally:
                with self._lock:
                    self.running -= 1

    async def run(self, fn: Callable[[Any], Any]) -> Any:
        """``fn(pipeline)`` on the next free worker; cancelling the wait abandons the job."""
        loop = asyncio.get_running_loop()
        job = _Job(fn, loop, loop.create_future())
        self._jobs.put(job)
        try:
            return await job.future
        except BaseException:
            job.abandoned.set()
            raise


def _error(status: int, error: str, detail: str, *, close: bool = False) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status,
                        headers={"connection": "close"} if close else None)


class DiarkitServer:
    """The starlette app: /ping, /invocations, and the worker pool started by its lifespan."""

    def __init__(self, config: ServeConfig, load: Callable[[], Any] | None = None):
        self.config = config
        self.workers = WorkerPool(load or self._load_pipeline, config.workers)
        #: spool folders that could not be removed yet (e.g. no file descriptor left): retried
        self._leftovers: set[Path] = set()
        self.app = Starlette(
            routes=[Route("/ping", self.ping, methods=["GET"]),
                    Route("/invocations", self.invocations, methods=["POST"])],
            exception_handlers={HTTPException: self._http_error},
            lifespan=self._lifespan,
        )

    def _load_pipeline(self):
        from diarkit.pipeline import DiarkitPipeline

        # the cores are shared out between the workers (torch, CTranslate2 and onnxruntime threads)
        threads = max(1, (os.cpu_count() or 1) // self.config.workers)
        return DiarkitPipeline.from_model_dir(self.config.model_dir, device=self.config.device,
                                              cpu_threads=threads)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app):
        self.workers.start()  # loads in the background: /ping says 503 meanwhile
        yield
        self.workers.stop()
        self._clean()

    async def _http_error(self, request: Request, exc: HTTPException) -> JSONResponse:
        kind = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
        return _error(exc.status_code, kind, str(exc.detail))

    def _not_ready(self) -> JSONResponse:
        if self.workers.error is not None:
            return _error(500, "model_load_failed", str(self.workers.error))
        return _error(503, "loading", "the models are still loading; retry when GET /ping answers 200")

    async def ping(self, request: Request) -> Response:
        return Response(status_code=200) if self.workers.ready else self._not_ready()

    async def invocations(self, request: Request) -> Response:
        if not self.workers.ready:
            return self._not_ready()
        tmp: Path | None = None
        try:
            with anyio.fail_after(self.config.timeout):
                tmp = Path(tempfile.mkdtemp(prefix="diarkit-", dir=self.config.tmp_dir))
                return await self._invoke(request, tmp)
        except DiarkitError as exc:
            logger.info("request refused (%d %s): %s", exc.status, exc.kind, exc.message)
            return _error(exc.status, **error_body(exc),
                          close=isinstance(exc, (PayloadTooLargeError, BodyTimeoutError)))
        except TimeoutError:
            logger.warning("request timed out after %s s", self.config.timeout)
            return _error(504, "timeout", f"no answer within the time limit of {self.config.timeout:g} s",
                          close=True)
        except ClientDisconnect:
            logger.info("the client disconnected")
            return _error(400, "client_disconnected", "the client went away before the answer")
        except asyncio.CancelledError:  # SIGTERM's grace period ran out (the time limit is a TimeoutError)
            logger.warning("shutting down before the request finished")
            return _error(503, "shutting_down", "the server stopped before the request finished; send it again",
                          close=True)
        except Exception as exc:  # noqa: BLE001 - the server keeps serving
            logger.exception("internal error")
            # the text of an OSError names the server's files: it stays in the log
            return _error(500, "internal_error", f"{type(exc).__name__}; the server log has the details", close=True)
        finally:
            self._clean(tmp)

    def _clean(self, tmp: Path | None = None) -> None:
        """Remove this request's spool folder and any left by earlier requests."""
        for path in ([tmp] if tmp is not None else []) + sorted(self._leftovers):
            shutil.rmtree(path, ignore_errors=True)
            if os.path.lexists(path):
                if path not in self._leftovers:
                    logger.warning("could not remove %s yet; retrying after the next request", path)
                self._leftovers.add(path)
            else:
                self._leftovers.discard(path)

    async def _invoke(self, request: Request, tmp: Path) -> Response:
        headers = request.headers
        kind = request_kind(headers.get("content-type"))
        options = RequestOptions.from_custom_attributes(headers.get(CUSTOM_ATTRIBUTES_HEADER))
        if kind == "media":  # fail before the upload; a JSON body may still name the format
            negotiate_format(headers.get("accept"), options.format)
        limit = self.config.max_json_bytes if kind == "json" else self.config.max_body_bytes
        media = tmp / "body"
        if await _receive(request, media, limit, self.config.idle_timeout) == 0:
            raise empty_body_error()
        if kind == "json":
            options = (await anyio.to_thread.run_sync(_unpack_json, media, tmp / "media")).merged(options)
            media = tmp / "media"
        fmt = negotiate_format(headers.get("accept"), options.format)
        # refuse what is not media at once, without waiting for an inference worker
        await anyio.to_thread.run_sync(audio.probe, media)
        reply = await self._run_while_connected(request, media, options, fmt)
        return Response(reply.body, media_type=reply.content_type)

    async def _run_while_connected(self, request: Request, media: Path, options: RequestOptions, fmt: str):
        """The inference, given up as soon as the client disconnects or the request ends otherwise."""
        over = threading.Event()
        stage_now = ["decode"]

        def check(stage: str, done: int, total: int) -> None:
            stage_now[0] = stage
            if stage == "decode" and done == 0:
                logger.info("inference started")
            if over.is_set():
                raise RequestAbandoned(stage)

        def job(pipeline):
            try:
                return transcribe_file(pipeline, media, options, fmt, progress=check)
            except BaseException:
                # the request's spool folder is gone by now: a decode not yet started fails on it
                if over.is_set():
                    logger.info("inference stopped at stage %s: its request is over", stage_now[0])
                    raise RequestAbandoned(stage_now[0]) from None
                raise

        work = asyncio.ensure_future(self.workers.run(job))
        watch = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({work, watch}, return_when=asyncio.FIRST_COMPLETED)
            if work.done():
                return work.result()
            logger.info("the client went away: its inference is given up")
            raise ClientDisconnect()
        finally:
            if not work.done():
                over.set()  # a running inference stops at its next stage; a queued one is skipped
                work.cancel()
            watch.cancel()


async def _disconnected(request: Request) -> None:
    """Returns when the client closes the connection (the body has been read by then)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _receive(request: Request, path: Path, limit: int, idle_timeout: float) -> int:
    """Stream the body to ``path`` (never whole in memory); its size in bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_large(limit)
    size = 0
    pending = bytearray()
    chunks = request.stream().__aiter__()
    with open(path, "wb") as out:
        while True:
            try:
                with anyio.fail_after(idle_timeout):
                    chunk = await chunks.__anext__()
            except StopAsyncIteration:
                break
            except TimeoutError:
                raise BodyTimeoutError(f"the upload sent nothing for {idle_timeout:g} s",
                                       hint="send the whole body without pausing, or raise --idle-timeout") from None
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            pending += chunk
            if len(pending) >= WRITE_CHUNK:
                await anyio.to_thread.run_sync(out.write, pending)
                pending = bytearray()
        if pending:
            await anyio.to_thread.run_sync(out.write, pending)
    return size


def _too_large(limit: int) -> PayloadTooLargeError:
    return PayloadTooLargeError(f"the body is larger than the {limit / MiB:g} MiB limit",
                                hint="raise --max-body-mb / --max-json-mb, or send raw media instead of JSON")


def _unpack_json(body: Path, media: Path) -> RequestOptions:
    payload = parse_json_payload(body.read_bytes())
    if not payload.audio:
        raise empty_body_error()
    media.write_bytes(payload.audio)
    body.unlink()
    return payload.options


class _Server(uvicorn.ExitZeroServer):
    """uvicorn, minus re-raising SIGTERM after its graceful shutdown: SageMaker wants exit 0."""

    def handle_exit(self, sig, frame) -> None:
        if not self.should_exit:
            logger.info("%s: no new connections; requests in flight get up to %g s",
                        signal.Signals(sig).name, self.config.timeout_graceful_shutdown)
        super().handle_exit(sig, frame)


class _QuietPing(logging.Filter):
    """Health checks come every few seconds; keep them out of the access log unless they fail."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        return not (isinstance(args, tuple) and len(args) >= 5 and args[2] == "/ping" and args[4] == 200)


def run_server(config: ServeConfig) -> int:
    """Serve until SIGTERM; the exit status (2 when the models could not load)."""
    server_app = DiarkitServer(config)
    server = _Server(uvicorn.Config(
        server_app.app, host=config.host, port=config.port, lifespan="on", http="h11", loop="asyncio",
        timeout_graceful_shutdown=config.graceful_timeout, server_header=False, log_level="info",
    ))
    server_app.workers.on_failure = lambda exc: setattr(server, "should_exit", True)
    logging.getLogger("uvicorn.access").addFilter(_QuietPing())
    logger.info("serving %s on http://%s:%d (%d worker(s), time limit %g s)", config.model_dir, config.host,
                config.port, config.workers, config.timeout)
    server.run()
    status = 0
    if server_app.workers.error is not None:
        status = 2 if isinstance(server_app.workers.error, DiarkitError) else 1
    if server_app.workers.running:
        # an inference outlived the grace period: end now, as the interpreter's normal exit
        # would abort in the native code still running on that thread
        logger.warning("exiting with %d inference(s) unfinished", server_app.workers.running)
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    return status
