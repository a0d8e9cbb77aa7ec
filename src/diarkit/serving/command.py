"""``diarkit serve``: flags and environment variables -> a ServeConfig -> the HTTP server."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any, Callable

from diarkit.errors import DiarkitError, OptionsError
from diarkit.models.manifest import DEFAULT_MODEL_DIR, ModelDirectory

logger = logging.getLogger("diarkit.serving.server")


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name, "").strip()
    return value or default


def _number(value: Any, name: str, cast: Callable[[str], Any]) -> Any:
    try:
        return cast(value)
    except (TypeError, ValueError):
        raise OptionsError(f"{name} must be a number, not {value!r}") from None


def config_from_args(args: argparse.Namespace) -> "ServeConfig":
    """Flags win over environment variables, which win over the defaults."""

    def pick(flag: Any, env_names: tuple[str, ...], default: Any, cast: Callable[[str], Any]) -> Any:
        if flag is not None:
            return flag
        for env_name in env_names:
            if (value := _env(env_name)) is not None:
                return _number(value, env_name, cast)
        return default

    from diarkit.serving.server import MiB, ServeConfig

    defaults = ServeConfig(model_dir=Path("."))

    return ServeConfig(
        model_dir=Path(args.model_dir or DEFAULT_MODEL_DIR),
        host=args.host or _env("DIARKIT_HOST", defaults.host),
        port=pick(args.port, ("SAGEMAKER_BIND_TO_PORT",), defaults.port, int),
        workers=pick(args.workers, ("SAGEMAKER_MODEL_SERVER_WORKERS",), defaults.workers, int),
        timeout=pick(args.timeout, ("DIARKIT_REQUEST_TIMEOUT", "SAGEMAKER_MODEL_SERVER_TIMEOUT"),
                     defaults.timeout, float),
        max_body_bytes=int(pick(args.max_body_mb, ("DIARKIT_MAX_BODY_MB",), defaults.max_body_bytes / MiB,
                                float) * MiB),
        max_json_bytes=int(pick(args.max_json_mb, ("DIARKIT_MAX_JSON_MB",), defaults.max_json_bytes / MiB,
                                float) * MiB),
        graceful_timeout=pick(args.graceful_timeout, ("DIARKIT_GRACEFUL_TIMEOUT",), defaults.graceful_timeout,
                              float),
        device=args.device or _env("DIARKIT_DEVICE", defaults.device),
        tmp_dir=args.tmp_dir or _env("DIARKIT_TMPDIR"),
        idle_timeout=pick(getattr(args, "idle_timeout", None), ("DIARKIT_IDLE_TIMEOUT",), defaults.idle_timeout,
                          float),
    )


def add_subcommand(subparsers) -> None:
    p = subparsers.add_parser(
        "serve", help="serve the model directory over HTTP (SageMaker container contract)",
        description="GET /ping and POST /invocations, as SageMaker runs a container with `serve`. "
                    "Flags override the environment variables named in each help text.")
    p.add_argument("--model-dir", help="model directory (env DIARKIT_MODEL_DIR; default: model/)")
    p.add_argument("--host", help="address to listen on (env DIARKIT_HOST; default 127.0.0.1, "
                                  "the container sets 0.0.0.0)")
    p.add_argument("--port", type=int, help="port (env SAGEMAKER_BIND_TO_PORT; default 8080)")
    p.add_argument("--workers", type=int,
                   help="inference workers, one model copy each (env SAGEMAKER_MODEL_SERVER_WORKERS; default 1)")
    p.add_argument("--timeout", type=float,
                   help="per-request time limit in seconds, answered with 504 "
                        "(env DIARKIT_REQUEST_TIMEOUT or SAGEMAKER_MODEL_SERVER_TIMEOUT; default 3600)")
    p.add_argument("--max-body-mb", type=float, help="largest media body, MiB (env DIARKIT_MAX_BODY_MB; default 2048)")
    p.add_argument("--max-json-mb", type=float, help="largest JSON body, MiB (env DIARKIT_MAX_JSON_MB; default 100)")
    p.add_argument("--idle-timeout", type=float,
                   help="seconds an upload may send nothing before it is answered 408 "
                        "(env DIARKIT_IDLE_TIMEOUT; default 60)")
    p.add_argument("--graceful-timeout", type=float,
                   help="seconds requests in flight get after SIGTERM (env DIARKIT_GRACEFUL_TIMEOUT; default 25)")
    p.add_argument("--device", help="auto (default), cpu or cuda (env DIARKIT_DEVICE)")
    p.add_argument("--tmp-dir", help="where request bodies are spooled (env DIARKIT_TMPDIR; default: system temp)")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    logging.getLogger("diarkit").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    try:
        config = config_from_args(args)
        ModelDirectory(config.model_dir).check_files()  # a missing or broken manifest fails now, not after binding
        if config.tmp_dir:
            os.makedirs(config.tmp_dir, exist_ok=True)
    except (DiarkitError, OSError) as exc:
        logger.error("diarkit serve: %s", exc)
        return 2
    from diarkit.serving.server import run_server

    return run_server(config)
