"""``diarkit review``: a local page to check and correct who said what.

The server holds one result and one media file and serves exactly these: the page's own
files (a fixed list read at start), the media (with HTTP ranges, so the player can seek),
the result, previews of a list of edits, and the save. Nothing else of the machine is
reachable: no route takes a file path. On loopback the Host header must be a loopback
name (a web page elsewhere cannot reach the server through DNS rebinding); on any other
address every URL must start with a random token.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import mimetypes
import re
import secrets
import shutil
import socket
import subprocess
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from diarkit import audio
from diarkit.compat import uvicorn
from diarkit.errors import DiarkitError, InputNotFoundError, OptionsError
from diarkit.result import TranscriptResult
from diarkit.review.edits import EditError, apply_edits, parse_edits
from diarkit.writers import RENDERERS, parse_formats, write_outputs

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
#: the largest edit list a request may carry (a day of corrections is a few hundred kB)
MAX_BODY = 20 << 20
#: suffix of the corrected result's stem: sample.json -> sample.reviewed.json
REVIEWED = ".reviewed"
#: the page loads nothing from elsewhere, and may not be framed
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; media-src 'self'; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
LOOPBACK_NAMES = ("localhost",)
_MEDIA_TYPES = {".opus": "audio/ogg", ".ogg": "audio/ogg", ".m4a": "audio/mp4", ".mkv": "video/x-matroska",
                ".flac": "audio/flac", ".wav": "audio/wav", ".mp3": "audio/mpeg", ".mov": "video/quicktime"}


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ReviewConfig:
    result: Path
    media: Path
    host: str = "127.0.0.1"
    #: 0 picks a free port
    port: int = 8770
    #: require a random token in every URL (always on when ``host`` is not loopback)
    token_required: bool = False
    formats: list[str] = field(default_factory=lambda: list(RENDERERS))
    #: a voice library (folder or s3:// prefix): the speakers given a name are enrolled on save
    voices: str | None = None
    #: the model directory whose speaker encoder made (and reads) that library
    model_dir: str = "model"

    def __post_init__(self):
        if not 0 <= self.port <= 65535:
            raise OptionsError(f"port must be between 0 and 65535, not {self.port}")
        self.formats = parse_formats(self.formats)
        if "json" not in self.formats:
            self.formats.insert(0, "json")  # the corrected result itself is always saved
        if not is_loopback(self.host):
            self.token_required = True


def output_stem(result_path: Path) -> str:
    """``ep1.json`` -> ``ep1.reviewed``; reviewing ``ep1.reviewed.json`` again saves over it."""
    stem = result_path.name[:-5] if result_path.name.lower().endswith(".json") else result_path.stem
    return stem if stem.endswith(REVIEWED) else stem + REVIEWED


def load_result(path: Path) -> TranscriptResult:
    if not path.is_file():
        raise InputNotFoundError("no such result file", path=str(path),
                                 hint="give the .json that diarkit transcribe wrote")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return TranscriptResult.from_dict(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise OptionsError(f"not a JSON file ({exc})", path=str(path),
                           hint="give the .json that diarkit transcribe wrote") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise OptionsError(f"not a diarkit result ({type(exc).__name__}: {exc})", path=str(path),
                           hint="give the .json that diarkit transcribe wrote") from None


def page_view(result: TranscriptResult) -> dict[str, Any]:
    """What the page draws, compact: a word is [word, start, end, score] (an hour: ~0.5 MB, ~0.1 s less
    to build than ``to_dict``), its speaker is its segment's."""
    return {
        "duration": result.duration,
        "speakers": [{"label": s.label, "speaking_time": s.speaking_time, "words": s.words} for s in result.speakers],
        "segments": [{"speaker": s.speaker, "start": s.start, "end": s.end,
                      "words": [[w.word, w.start, w.end, w.score] for w in s.words]} for s in result.segments],
        "diarization": [[t.start, t.end, t.speaker] for t in result.turns],
    }


def has_picture(path: Path) -> bool:
    """A video stream that is not just cover art (mp3 and m4a files often carry one)."""
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        return False
    proc = subprocess.run([ffprobe, "-v", "error", "-select_streams", "v", "-show_entries",
                           "stream=index:stream_disposition=attached_pic", "-of", "json", "--", str(path)],
                          capture_output=True, timeout=60)
    streams = json.loads(proc.stdout or b"{}").get("streams", []) if proc.returncode == 0 else []
    return any(not s.get("disposition", {}).get("attached_pic") for s in streams)


class ReviewSession:
    """One result, its media, and what has been saved of its review so far."""

    def __init__(self, config: ReviewConfig):
        self.config = config
        self.result_path = config.result.resolve()
        self.media_path = config.media.resolve()
        self.result = load_result(self.result_path)
        info = audio.probe(self.media_path)  # missing, unreadable or silent-less media fails here
        self.video = has_picture(self.media_path)
        self.media_type = (_MEDIA_TYPES.get(self.media_path.suffix.lower())
                           or mimetypes.guess_type(self.media_path.name)[0] or "application/octet-stream")
        if info.duration and self.result.duration and abs(info.duration - self.result.duration) > 5:
            logger.warning("%s lasts %.1f s but the result says %.1f s: is it the right media?",
                           self.media_path, info.duration, self.result.duration)
        self.out_dir = self.result_path.parent
        self.out_stem = output_stem(self.result_path)
        self.log_path = self.out_dir / f"{self.out_stem}.edits.jsonl"
        self.source_sha256 = hashlib.sha256(self.result_path.read_bytes()).hexdigest()
        #: the edit list as last saved, to log only what changed since
        self.saved_edits: list[dict[str, Any]] = []
        self._save_lock = threading.Lock()
        self._enroller = None  # the encoder for --voices, loaded at the first save that needs it
        if (self.out_dir / f"{self.out_stem}.json").exists() and self.out_stem != self.result_path.name[:-5]:
            logger.warning("%s exists and is replaced on save (review %s to continue it)",
                           self.out_dir / f"{self.out_stem}.json", self.out_dir / f"{self.out_stem}.json")

    def describe(self) -> dict[str, Any]:
        return {
            "result": page_view(self.result),
            "name": self.result_path.name,
            "media": {"url": "media", "video": self.video, "type": self.media_type, "name": self.media_path.name},
            "output": {"stem": self.out_stem, "formats": self.config.formats, "log": self.log_path.name},
            "voices": self.config.voices,
        }

    def preview(self, edits_json: Any) -> TranscriptResult:
        return apply_edits(self.result, parse_edits(edits_json))

    def save(self, edits_json: Any) -> dict[str, Any]:
        """Write the corrected result and formats (each atomically) and log what changed."""
        edits = parse_edits(edits_json)
        corrected = apply_edits(self.result, edits)
        with self._save_lock:
            written = write_outputs(corrected, self.out_dir, self.config.formats, stem=self.out_stem)
            now = datetime.now(timezone.utc).isoformat(timespec="seconds")
            current = [e.to_dict() for e in edits]
            kept = 0
            while kept < min(len(current), len(self.saved_edits)) and current[kept] == self.saved_edits[kept]:
                kept += 1
            lines = [{"event": "undo", "saved_at": now, **edit} for edit in reversed(self.saved_edits[kept:])]
            lines += [{"event": "edit", "saved_at": now, "summary": edit.describe(), **edit.to_dict()}
                      for edit in edits[kept:]]
            lines.append({"event": "save", "saved_at": now, "source": self.result_path.name,
                          "source_sha256": self.source_sha256, "media": self.media_path.name,
                          "edits": len(edits), "files": [p.name for p in written],
                          "speakers": [s.label for s in corrected.speakers]})
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))
            self.saved_edits = current
            voices = self.enroll(corrected) if self.config.voices else None
            if voices is not None:
                with open(self.log_path, "a", encoding="utf-8") as log:
                    log.write(json.dumps({"event": "voices", "saved_at": now, "library": self.config.voices,
                                          **voices}, ensure_ascii=False) + "\n")
        logger.info("saved %d edit(s): %s", len(edits), ", ".join(p.name for p in written))
        return {"files": [p.name for p in written], "log": self.log_path.name, "edits": len(edits),
                "saved_at": now, "speakers": [s.label for s in corrected.speakers], "voices": voices}

    def enroll(self, corrected: TranscriptResult) -> dict[str, Any]:
        """Add every speaker a person named (not SPEAKER_xx) to the voice library.

        The corrected files are already written: a library problem is reported with the save,
        it does not undo it."""
        from diarkit.voices.command import Enroller, enroll_from_result
        from diarkit.voices.library import check_name, open_store

        named = {s.label: s.label for s in corrected.speakers if not re.fullmatch(r"SPEAKER_\d+", s.label)}
        if not named:
            return {"added": []}
        try:
            if self._enroller is None:
                self._enroller = Enroller(self.config.model_dir)
            pairs = {label: check_name(name) for label, name in named.items()}
            added = enroll_from_result(open_store(self.config.voices), self._enroller, corrected,
                                       self.result_path, self.media_path, pairs)
        except DiarkitError as exc:
            logger.warning("the voice library was not updated: %s", exc)
            return {"added": [], "error": str(exc)}
        return {"added": [{"name": name, "seconds": source["seconds"]} for name, _, source in added]}


def _error(status: int, error: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": error, "detail": detail}, status_code=status, headers={"cache-control": "no-store"})


class ReviewApp:
    """The starlette app over one ReviewSession."""

    def __init__(self, session: ReviewSession, token: str | None = None):
        self.session = session
        self.token = token
        self._described: bytes | None = None
        #: the page's files: fixed at start, looked up by exact name, never joined to a path
        self.static = {p.name: p for p in STATIC_DIR.iterdir() if p.is_file() and not p.name.startswith(".")}
        app = Starlette(routes=[
            Route("/", self.index, methods=["GET", "HEAD"]),
            Route("/static/{name}", self.asset, methods=["GET", "HEAD"]),
            Route("/media", self.media, methods=["GET", "HEAD"]),
            Route("/api/session", self.describe, methods=["GET"]),
            Route("/api/preview", self.preview, methods=["POST"]),
            Route("/api/save", self.save, methods=["POST"]),
        ])
        self.app = _Guard(app, token=token, host_check=is_loopback(session.config.host))

    async def index(self, request: Request) -> Response:
        return FileResponse(self.static["index.html"], media_type="text/html; charset=utf-8",
                            headers={"content-security-policy": CSP, "cache-control": "no-store"})

    async def asset(self, request: Request) -> Response:
        path = self.static.get(request.path_params["name"])
        if path is None:
            return _error(404, "not_found", "no such file")
        return FileResponse(path, headers={"cache-control": "no-store"})

    async def media(self, request: Request) -> Response:
        return FileResponse(self.session.media_path, media_type=self.session.media_type)

    async def describe(self, request: Request) -> Response:
        if self._described is None:  # the original never changes: encoded once (an hour: ~0.1 s)
            self._described = await anyio.to_thread.run_sync(
                lambda: JSONResponse(self.session.describe()).body)
        return Response(self._described, media_type="application/json", headers={"cache-control": "no-store"})

    async def _edits(self, request: Request) -> Any:
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            raise _Refused(415, "unsupported_media_type", "send the edits as application/json")
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > MAX_BODY:
            raise _Refused(413, "too_large", f"more than {MAX_BODY >> 20} MiB of edits")
        body = await request.body()
        if len(body) > MAX_BODY:
            raise _Refused(413, "too_large", f"more than {MAX_BODY >> 20} MiB of edits")
        try:
            payload = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise _Refused(400, "bad_json", f"the body is not JSON ({exc})") from None
        if not isinstance(payload, dict) or "edits" not in payload:
            raise _Refused(400, "bad_request", 'send {"edits": [...]}')
        return payload["edits"]

    async def preview(self, request: Request) -> Response:
        try:
            edits = await self._edits(request)
            result = await anyio.to_thread.run_sync(self.session.preview, edits)
        except _Refused as exc:
            return _error(exc.status, exc.kind, exc.detail)
        except EditError as exc:
            return JSONResponse({"error": exc.kind, "detail": str(exc), "index": exc.index}, status_code=400)
        return JSONResponse({"result": page_view(result)}, headers={"cache-control": "no-store"})

    async def save(self, request: Request) -> Response:
        try:
            edits = await self._edits(request)
            saved = await anyio.to_thread.run_sync(self.session.save, edits)
        except _Refused as exc:
            return _error(exc.status, exc.kind, exc.detail)
        except EditError as exc:
            return JSONResponse({"error": exc.kind, "detail": str(exc), "index": exc.index}, status_code=400)
        except OSError as exc:
            logger.error("save failed: %s", exc)
            return _error(500, "save_failed", f"could not write beside {self.session.result_path.name}: {exc}")
        return JSONResponse(saved, headers={"cache-control": "no-store"})


class _Refused(Exception):
    def __init__(self, status: int, kind: str, detail: str):
        self.status, self.kind, self.detail = status, kind, detail


class _Guard:
    """ASGI wrapper: the token prefix (when required) and the loopback Host check."""

    def __init__(self, app, *, token: str | None, host_check: bool):
        self.app = app
        self.token = token
        self.host_check = host_check

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.host_check and not is_loopback(_host_name(scope)):
            await _error(403, "forbidden", "this page answers only to a loopback host name")(scope, receive, send)
            return
        if self.token is not None:
            parts = scope["path"].split("/", 2)  # "", token, the rest
            given = parts[1] if len(parts) > 1 else ""
            if not secrets.compare_digest(given.encode(), self.token.encode()):
                await _error(404, "not_found", "no such page")(scope, receive, send)
                return
            if len(parts) == 2:  # the page's relative URLs need the trailing slash
                await RedirectResponse(f"/{self.token}/")(scope, receive, send)
                return
            # ASGI: path keeps the prefix, root_path names it; starlette routes on the rest
            scope = dict(scope, root_path=f"/{self.token}")
        await self.app(scope, receive, send)


def _host_name(scope) -> str:
    for key, value in scope.get("headers", []):
        if key == b"host":
            host = value.decode("latin-1")
            if host.startswith("["):
                return host[1:host.find("]")] if "]" in host else host
            return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return ""


_Server = uvicorn.ExitZeroServer  # Ctrl+C exits 0, no traceback


def bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound before the URL is printed (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise OptionsError(f"cannot listen on {host}:{port} ({exc.strerror})",
                           hint="pick another --port, or --port 0 for any free one") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def page_url(host: str, port: int, token: str | None) -> str:
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/" + (f"{token}/" if token else "")


def run_review(config: ReviewConfig, *, open_browser: bool = False) -> int:
    """Serve the page until Ctrl+C / SIGTERM."""
    session = ReviewSession(config)
    token = secrets.token_urlsafe(18) if config.token_required else None
    review = ReviewApp(session, token=token)
    sock = bind(config.host, config.port)
    url = page_url(config.host, sock.getsockname()[1], token)
    server = _Server(uvicorn.Config(review.app, lifespan="off", http="h11", loop="asyncio", server_header=False,
                                    log_level="warning", timeout_graceful_shutdown=5))
    print(f"diarkit review: {session.result_path.name} with {session.media_path.name}; saves "
          f"{session.out_stem}.{{{','.join(config.formats)}}} and {session.log_path.name} in {session.out_dir}",
          flush=True)
    print(f"diarkit review: open {url} (Ctrl+C to stop)", flush=True)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return 0
