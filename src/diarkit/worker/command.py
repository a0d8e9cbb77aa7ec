"""``diarkit worker``: queue mode (S3 events from SQS) or watch mode (a folder)."""

from __future__ import annotations

import logging
from pathlib import Path

from diarkit.errors import DiarkitError, OptionsError
from diarkit.models.manifest import DEFAULT_MODEL_DIR

logger = logging.getLogger(__name__)

def add_subcommand(subparsers) -> None:
    p = subparsers.add_parser(
        "worker", help="process media dropped into S3 (events from SQS) or into a folder",
        description="The asynchronous-endpoint data plane, locally: S3 event notifications from an "
                    "SQS queue (--queue-url), or a folder (--watch DIR).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--queue-url", help="SQS queue receiving the S3 ObjectCreated notifications")
    source.add_argument("--watch", metavar="DIR", help="folder mode: DIR/input -> DIR/output, DIR/failed")
    engine = p.add_mutually_exclusive_group()
    engine.add_argument("--model-dir", default=DEFAULT_MODEL_DIR,
                        help="run the pipeline in this process with this model directory (default)")
    engine.add_argument("--serve-url", help="POST each file to this `diarkit serve` URL instead")
    p.add_argument("--device", default="auto", help="auto (default), cpu or cuda (in-process only)")
    p.add_argument("--num-speakers", type=int, help="exact number of speakers, when known")
    p.add_argument("--min-speakers", type=int, help="at least this many speakers")
    p.add_argument("--max-speakers", type=int, help="at most this many speakers")
    p.add_argument("--language", help="language code")
    p.add_argument("--voices", metavar="LIB", help="voice library (folder or s3://...) naming known speakers")
    p.add_argument("--custom-attributes", default="",
                   help="as SageMaker passes them, e.g. 'num_speakers=2;language=en'")
    q = p.add_argument_group("queue mode")
    q.add_argument("--output", metavar="S3URI", help="where results go: s3://bucket/output/ (required)")
    q.add_argument("--failure", metavar="S3URI", help="where failure reports go (default: --output)")
    q.add_argument("--success-topic", metavar="ARN", help="SNS topic for success notifications")
    q.add_argument("--error-topic", metavar="ARN", help="SNS topic for error notifications")
    q.add_argument("--endpoint-name", default="diarkit-worker", help="name reported in notifications")
    q.add_argument("--visibility-timeout", type=int, default=300,
                   help="seconds a received message stays hidden; extended while it runs (default 300)")
    q.add_argument("--heartbeat", type=float, help="seconds between extensions (default: a third of it)")
    q.add_argument("--wait-time", type=int, default=20, help="SQS long-poll seconds (default 20)")
    q.add_argument("--retry-delay", type=int, default=30,
                   help="seconds before a message comes back after a transient failure, or while "
                        "another worker holds its claim (default 30)")
    q.add_argument("--accept", default="json", help="output format of the .out object (default json)")
    q.add_argument("--endpoint-url", help="S3/SQS/SNS endpoint (default: AWS_ENDPOINT_URL or AWS)")
    q.add_argument("--region", help="AWS region (default: AWS_DEFAULT_REGION)")
    q.add_argument("--tmp-dir", help="where inputs are downloaded (default: the system's)")
    w = p.add_argument_group("watch mode")
    w.add_argument("--formats", default="json", help="output formats (default json)")
    w.add_argument("--poll-interval", type=float, default=1.0, help="seconds between scans (default 1)")
    w.add_argument("--settle", type=float, default=2.0,
                   help="a file must be unchanged this long before it is taken (default 2 s)")
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    p.add_argument("-v", "--verbose", action="store_true", help="log details")
    p.set_defaults(handler=cmd_worker)


def _make_processor(args):
    from diarkit.worker.processors import HttpProcessor, LocalProcessor

    if args.serve_url:
        processor = HttpProcessor(args.serve_url)
        processor.wait_ready()
        return processor
    return LocalProcessor(args.model_dir, device=args.device)


def cmd_worker(args) -> int:
    from diarkit.worker.common import Shutdown, install_signal_handlers
    from diarkit.worker.folder import FolderSettings, FolderWorker
    from diarkit.request import RequestOptions
    from diarkit.worker.processors import TransientError
    from diarkit.worker.queue import QueueSettings, QueueWorker
    from diarkit.worker.s3events import parse_s3_uri
    from diarkit.writers import parse_formats

    logging.getLogger("diarkit").setLevel(logging.WARNING if args.quiet else logging.INFO)
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    try:
        options = RequestOptions.from_flags(num_speakers=args.num_speakers, min_speakers=args.min_speakers,
                                            max_speakers=args.max_speakers, language=args.language,
                                            custom_attributes=args.custom_attributes, voices=args.voices)
        formats = parse_formats(args.formats)
        if args.queue_url and not args.output:
            raise OptionsError("--output s3://bucket/prefix/ is required with --queue-url")
        if args.output:
            parse_s3_uri(args.output)
        if args.failure:
            parse_s3_uri(args.failure)
    except (OptionsError, ValueError) as exc:
        logger.error("%s", exc)
        return 2
    install_signal_handlers()
    try:
        try:
            processor = _make_processor(args)
        except (DiarkitError, TransientError) as exc:
            logger.error("%s", exc)
            return 2
        if args.watch:
            try:
                FolderWorker(FolderSettings(Path(args.watch), formats=formats, poll_interval=args.poll_interval,
                                            settle=args.settle, options=options), processor).run()
            except DiarkitError as exc:  # e.g. a read-only or full output folder, found at start
                logger.error("%s", exc)
                return 2
            return 0
        worker = QueueWorker(QueueSettings(
            queue_url=args.queue_url, output_path=args.output, failure_path=args.failure,
            success_topic=args.success_topic, error_topic=args.error_topic, endpoint_name=args.endpoint_name,
            visibility_timeout=args.visibility_timeout, heartbeat_interval=args.heartbeat,
            wait_time=args.wait_time, retry_delay=args.retry_delay, accept=args.accept, options=options, tmp_dir=args.tmp_dir,
        ), processor, session=_session(args.region), endpoint_url=args.endpoint_url)
        try:
            worker.check()
        except Exception as exc:  # noqa: BLE001 - wrong queue or no credentials: say so and stop
            logger.error("cannot use queue %s: %s", args.queue_url, exc)
            return 1
        worker.run()
        return 0
    except Shutdown as stop:
        logger.info("stopped (%s)", stop)
        return 0


def _session(region: str | None):
    import boto3

    return boto3.session.Session(region_name=region)
