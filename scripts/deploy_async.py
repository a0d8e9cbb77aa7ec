#!/usr/bin/env python3
"""Deploy diarkit as a SageMaker asynchronous endpoint fed by an S3 trigger (boto3 only).

Creates or updates, idempotently, in this order (``--delete`` goes backwards):

    bucket (created if missing; never deleted)      SNS success and error topics
    IAM role for SageMaker (least privilege)         SageMaker model  <name>-<hash>
    endpoint config <name>-<hash> (AsyncInferenceConfig, variant timeouts)
    endpoint <name> (waits for InService)            scalable target (min 0, max N)
    target tracking on ApproximateBacklogSizePerInstance
    step scaling + CloudWatch alarm on HasBacklogWithoutCapacity (scales up from zero)
    IAM role for the trigger                         Lambda <name>-trigger (zipped here)
    Lambda permission for S3                         bucket notification (ObjectCreated, input prefix)

Models and endpoint configs cannot be changed in place: their names carry a hash of their
content, so a changed setting makes a new one and the endpoint is updated to it; the same
settings find the same names and nothing is called but Describe/Get/List.

    scripts/deploy_async.py --config scripts/deploy_async.example.json
    scripts/deploy_async.py --config my.json --max-capacity 4      # flags win over the file
    scripts/deploy_async.py --config my.json --dry-run              # the calls, as JSON; no AWS
    scripts/deploy_async.py --config my.json --delete

Endpoint: --endpoint-url or AWS_ENDPOINT_URL (an S3-compatible/moto server); region:
--region or AWS_DEFAULT_REGION.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import logging
import re
import sys
import time
import zipfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
HANDLER_FILE = REPO / "scripts" / "lambda_trigger" / "handler.py"
logger = logging.getLogger("deploy_async")

VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"
NOTIFICATION_KEYS = ("TopicConfigurations", "QueueConfigurations", "LambdaFunctionConfigurations",
                     "EventBridgeConfiguration")
#: instance families with local NVMe storage: SageMaker refuses VolumeSizeInGB there
NVME_FAMILIES = re.compile(r"^ml\.(g4dn|g5|g6|g6e|gr6|p3dn|p4d|p4de|p5|p5e|p5en|[cmr][5-7][a-z]*d)\.")
BUSY_STATUSES = {"Creating", "Updating", "SystemUpdating", "RollingBack", "Deleting"}


class DeployError(Exception):
    """A one-line reason the deployment cannot go on."""


# --------------------------------------------------------------------------- settings


def _help(text: str, **kwargs: Any) -> Any:
    return field(metadata={"help": text}, **kwargs)


@dataclass
class Settings:
    """Every setting; the config file uses these names, flags use them with dashes."""

    name: str = _help("prefix of every resource; the endpoint's name", default="diarkit")
    bucket: str = _help("bucket holding inputs and results (created if missing)", default="")
    input_prefix: str = _help("objects created under it are sent to the endpoint", default="input/")
    output_prefix: str = _help("where results go (never under the input prefix)", default="output/")
    failure_prefix: str = _help("where failure reports go", default="failed/")
    image_uri: str = _help("serving image (ECR URI)", default="")
    model_data_url: str = _help("s3://.../model.tar.gz (or an s3://.../prefix/ of uncompressed files)",
                                default="")
    execution_role_arn: str = _help("use this SageMaker role instead of creating <name>-sagemaker", default="")
    instance_type: str = _help("instance type", default="ml.g4dn.xlarge")
    initial_instance_count: int = _help("instances at creation (autoscaling may go down to min)", default=1)
    min_capacity: int = _help("autoscaling minimum: 0 scales to zero when idle", default=0)
    max_capacity: int = _help("autoscaling maximum", default=2)
    max_concurrent_invocations: int = _help("requests per instance at once (MaxConcurrentInvocationsPerInstance)",
                                            default=1)
    invocation_timeout: int = _help("seconds per invocation (also the model server's timeout), max 3600",
                                    default=3600)
    model_server_workers: int = _help("model copies per instance (SAGEMAKER_MODEL_SERVER_WORKERS)", default=1)
    startup_timeout: int = _help("ContainerStartupHealthCheckTimeoutInSeconds", default=600)
    model_download_timeout: int = _help("ModelDataDownloadTimeoutInSeconds", default=900)
    volume_size_gb: int | None = _help("VolumeSizeInGB (only for instance types without local NVMe)",
                                       default=None)
    backlog_target: float = _help("target ApproximateBacklogSizePerInstance", default=5.0)
    scale_in_cooldown: int = _help("seconds between scale-ins", default=600)
    scale_out_cooldown: int = _help("seconds between scale-outs", default=300)
    custom_attributes: str = _help("sent with every invocation, e.g. num_speakers=2;language=en", default="")
    environment: dict[str, str] = _help("extra container environment (JSON object or KEY=VALUE,...)",
                                        default_factory=dict)
    lambda_runtime: str = _help("trigger runtime", default="python3.12")
    lambda_timeout: int = _help("trigger timeout, seconds", default=60)
    lambda_memory: int = _help("trigger memory, MB", default=128)
    tags: dict[str, str] = _help("tags on everything that takes them", default_factory=lambda: {"project": "diarkit"})
    region: str = _help("AWS region (default: AWS_DEFAULT_REGION)", default="")
    endpoint_url: str = _help("AWS endpoint URL (default: AWS_ENDPOINT_URL, else AWS)", default="")
    wait_timeout: int = _help("seconds to wait for InService", default=1800)
    poll_seconds: float = _help("seconds between status checks", default=15.0)

    def normalize(self) -> "Settings":
        for name in ("input_prefix", "output_prefix", "failure_prefix"):
            value = getattr(self, name).strip("/")
            setattr(self, name, f"{value}/" if value else "")
        return self

    def check(self, delete: bool = False) -> None:
        problems = []
        if not re.fullmatch(r"[a-z0-9](-?[a-z0-9])*", self.name) or len(self.name) > 40:
            problems.append(f"name {self.name!r}: lowercase letters, digits and single dashes, at most 40")
        if not delete:
            for required in ("bucket", "image_uri", "model_data_url"):
                if not getattr(self, required):
                    problems.append(f"{required} is required")
            if self.model_data_url and not self.model_data_url.startswith("s3://"):
                problems.append("model_data_url must be an s3:// URL")
            if not self.input_prefix:
                problems.append("input_prefix must not be empty: results would trigger new invocations")
            for name in ("output_prefix", "failure_prefix"):
                value = getattr(self, name)
                if not value or value.startswith(self.input_prefix) or self.input_prefix.startswith(value):
                    problems.append(f"{name} {value!r} must be a separate folder from input_prefix "
                                    f"{self.input_prefix!r} (else the trigger fires on its own results)")
            if not 1 <= self.invocation_timeout <= 3600:
                problems.append("invocation_timeout must be between 1 and 3600")
            if self.min_capacity < 0 or self.max_capacity < max(1, self.min_capacity):
                problems.append("need 0 <= min_capacity <= max_capacity and max_capacity >= 1")
            if self.initial_instance_count < 1:
                problems.append("initial_instance_count must be at least 1")
            if self.volume_size_gb and NVME_FAMILIES.match(self.instance_type):
                problems.append(f"volume_size_gb: {self.instance_type} has local NVMe storage and takes no "
                                "VolumeSizeInGB; leave it unset")
        if problems:
            raise DeployError("; ".join(problems))


def _parse_mapping(text: str) -> dict[str, str]:
    text = text.strip()
    if text.startswith("{"):
        return {str(k): str(v) for k, v in json.loads(text).items()}
    pairs = [item.split("=", 1) for item in text.split(",") if item.strip()]
    if any(len(pair) != 2 for pair in pairs):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE,... or a JSON object, not {text!r}")
    return {k.strip(): v.strip() for k, v in pairs}


def _field_type(f) -> Callable[[str], Any]:
    kind = str(f.type)
    if kind.startswith("dict"):
        return _parse_mapping
    if kind.startswith("int"):
        return int
    if kind.startswith("float"):
        return float
    return str


def load_settings(config: Path | None, overrides: dict[str, Any]) -> Settings:
    """Defaults < config file < flags."""
    values: dict[str, Any] = {}
    if config is not None:
        try:
            data = json.loads(config.read_text())
        except (OSError, ValueError) as exc:
            raise DeployError(f"cannot read {config}: {exc}") from None
        known = {f.name for f in fields(Settings)}
        for key, value in data.items():
            name = key.replace("-", "_")
            if name.startswith("_"):
                continue  # comments
            if name not in known:
                raise DeployError(f"{config}: unknown setting {key!r}")
            values[name] = value
    values.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**values).normalize()


# --------------------------------------------------------------------------- API access


UNKNOWN: Any = type("Unknown", (), {"__repr__": lambda self: "UNKNOWN"})()  # dry run: state not read


@dataclass
class Change:
    kind: str
    name: str
    action: str  # created, updated, unchanged, deleted, absent, kept
    detail: str = ""


class Api:
    """Every AWS call goes through here: mutating calls are recorded, and only recorded in a dry run."""

    def __init__(self, region: str | None, endpoint_url: str | None, dry_run: bool = False):
        import boto3
        from botocore.config import Config

        self.session = boto3.session.Session(region_name=region or None)
        if not self.session.region_name:
            if not dry_run:
                raise DeployError("no region: pass --region or set AWS_DEFAULT_REGION")
            self.session = boto3.session.Session(region_name="us-east-1")
        self.region = self.session.region_name
        self.partition = self.session.get_partition_for_region(self.region)
        self.endpoint_url = endpoint_url or None
        self.dry_run = dry_run
        self.config = Config(retries={"mode": "standard", "max_attempts": 10})
        self.calls: list[dict[str, Any]] = []
        self._clients: dict[str, Any] = {}

    def client(self, service: str):
        if service not in self._clients:
            self._clients[service] = self.session.client(service, endpoint_url=self.endpoint_url, config=self.config)
        return self._clients[service]

    def read(self, service: str, method: str, missing: tuple[str, ...] = (), **params: Any) -> Any:
        """A Describe/Get/List call; None when the error code says the thing does not exist.

        A ``missing`` entry ``Code:text`` also needs ``text`` in the message (SageMaker
        answers ValidationException for everything).
        """
        if self.dry_run:
            return UNKNOWN
        from botocore.exceptions import ClientError

        try:
            return getattr(self.client(service), method)(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code, message = str(error.get("Code", "")), str(error.get("Message", ""))
            for entry in missing:
                want_code, _, text = entry.partition(":")
                if code == want_code and text.lower() in message.lower():
                    return None
            raise

    def write(self, service: str, method: str, *, retry_role: bool = False, **params: Any) -> dict[str, Any]:
        """A mutating call. ``retry_role``: a new IAM role takes seconds to be assumable."""
        client = self.client(service)
        operation = client.meta.method_to_api_mapping[method]
        self.calls.append({"service": service, "operation": operation, "params": printable(params)})
        if self.dry_run:
            from botocore.validate import validate_parameters

            validate_parameters(params, client.meta.service_model.operation_model(operation).input_shape)
            return fake_response(method, params)
        logger.info("%s %s", service, operation)
        deadline = time.monotonic() + (120 if retry_role else 0)
        while True:
            try:
                return getattr(client, method)(**params)
            except Exception as exc:
                message = str(exc).lower()
                if retry_role and time.monotonic() < deadline and ("assume" in message or "role" in message):
                    logger.info("the new role is not usable yet; retrying in 5 s")
                    time.sleep(5)
                    continue
                raise


def printable(params: dict[str, Any]) -> dict[str, Any]:
    """Call parameters for --dry-run: bytes summarized, JSON documents decoded."""
    shown: dict[str, Any] = {}
    for key, value in params.items():
        if isinstance(value, (bytes, bytearray)):
            digest = base64.b64encode(hashlib.sha256(value).digest()).decode()
            shown[key] = f"<{len(value)} bytes, CodeSha256 {digest}>"
        elif isinstance(value, dict):
            shown[key] = printable(value)
        elif key.endswith(("PolicyDocument", "Document")) and isinstance(value, str):
            shown[key] = json.loads(value)
        else:
            shown[key] = value
    return shown


def fake_response(method: str, params: dict[str, Any]) -> dict[str, Any]:
    """What a dry run pretends AWS answered (only fields this script reads)."""
    if method == "put_scaling_policy":
        return {"PolicyARN": f"<PolicyARN of {params['PolicyName']}>"}
    return {}


def matches(desired: Any, actual: Any) -> bool:
    """Does the live ``actual`` already hold everything in ``desired``? (AWS adds fields, 5 reads 5.0)"""
    if isinstance(desired, dict):
        return isinstance(actual, dict) and all(matches(v, actual.get(k)) for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(actual, list) and len(desired) == len(actual)
                and all(matches(d, a) for d, a in zip(desired, actual)))
    if isinstance(desired, bool) or isinstance(actual, bool):
        return desired == actual
    if isinstance(desired, (int, float)) and isinstance(actual, (int, float)):
        return float(desired) == float(actual)
    return desired == actual


def content_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def lambda_zip() -> bytes:
    """The trigger's deployment package: handler.py alone, stored, fixed time: same bytes every run."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        info = zipfile.ZipInfo("handler.py", date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = 0o644 << 16
        archive.writestr(info, HANDLER_FILE.read_bytes())
    return buffer.getvalue()


def code_sha256(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


# --------------------------------------------------------------------------- names and documents


SM_MISSING = ("ValidationException:could not find",)


@dataclass
class Context:
    settings: Settings
    api: Api
    account: str
    changes: list[Change] = field(default_factory=list)

    def record(self, kind: str, name: str, action: str, detail: str = "") -> None:
        self.changes.append(Change(kind, name, action, detail))
        logger.info("%-9s %s %s%s", action, kind, name, f" ({detail})" if detail else "")

    # names
    @property
    def endpoint(self) -> str:
        return self.settings.name

    @property
    def resource_id(self) -> str:
        return f"endpoint/{self.endpoint}/variant/{VARIANT}"

    def name(self, suffix: str) -> str:
        return f"{self.settings.name}-{suffix}"

    def arn(self, service: str, resource: str, region: bool = True, account: bool = True) -> str:
        return (f"arn:{self.api.partition}:{service}:{self.api.region if region else ''}:"
                f"{self.account if account else ''}:{resource}")

    def topic_arn(self, suffix: str) -> str:
        return self.arn("sns", self.name(suffix))

    def role_arn(self, suffix: str) -> str:
        return self.arn("iam", f"role/{self.name(suffix)}", region=False)

    @property
    def function_name(self) -> str:
        return self.name("trigger")

    @property
    def function_arn(self) -> str:
        return self.arn("lambda", f"function:{self.function_name}")

    @property
    def bucket_arn(self) -> str:
        return f"arn:{self.api.partition}:s3:::{self.settings.bucket}"

    def s3_uri(self, prefix: str) -> str:
        return f"s3://{self.settings.bucket}/{prefix.rstrip('/')}"

    @property
    def execution_role_arn(self) -> str:
        return self.settings.execution_role_arn or self.role_arn("sagemaker")


def _statement(sid: str, actions: list[str], resources: list[str] | str, **extra: Any) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": actions, "Resource": resources, **extra}


def trust_policy(service: str) -> dict[str, Any]:
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}]}


def sagemaker_role_policy(ctx: Context) -> dict[str, Any]:
    """What the endpoint needs: read inputs and the model, write results, notify, pull, log."""
    s = ctx.settings
    objects = f"{ctx.bucket_arn}/"
    model_bucket, _, model_key = s.model_data_url[5:].partition("/")
    model_arn = f"arn:{ctx.api.partition}:s3:::{model_bucket}/{model_key}" + ("*" if model_key.endswith("/") else "")
    log_group = f"log-group:/aws/sagemaker/Endpoints/{ctx.endpoint}"
    statements = [
        _statement("ReadInputs", ["s3:GetObject"], [f"{objects}{s.input_prefix}*"]),
        _statement("WriteResults", ["s3:PutObject", "s3:AbortMultipartUpload"],
                   [f"{objects}{s.output_prefix}*", f"{objects}{s.failure_prefix}*"]),
        _statement("ReadModel", ["s3:GetObject"], [model_arn]),
        _statement("Notify", ["sns:Publish"], [ctx.topic_arn("success"), ctx.topic_arn("error")]),
        _statement("Logs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                            "logs:DescribeLogStreams"],
                   [ctx.arn("logs", log_group), ctx.arn("logs", f"{log_group}:*")]),
        # PutMetricData has no resource-level permissions: the namespace condition narrows it
        _statement("Metrics", ["cloudwatch:PutMetricData"], "*",
                   Condition={"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}}),
    ]
    ecr = re.match(r"^(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/([^:@]+)", s.image_uri)
    if ecr:
        account, region, repository = ecr.groups()
        statements.append(_statement(
            "PullImage", ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"],
            [f"arn:{ctx.api.partition}:ecr:{region}:{account}:repository/{repository}"]))
        statements.append(_statement("EcrLogin", ["ecr:GetAuthorizationToken"], "*"))
    return {"Version": "2012-10-17", "Statement": statements}


def trigger_role_policy(ctx: Context) -> dict[str, Any]:
    """What the Lambda needs: invoke this one endpoint, write its own logs."""
    log_group = f"log-group:/aws/lambda/{ctx.function_name}"
    return {"Version": "2012-10-17", "Statement": [
        _statement("InvokeEndpoint", ["sagemaker:InvokeEndpointAsync"],
                   [ctx.arn("sagemaker", f"endpoint/{ctx.endpoint}")]),
        _statement("Logs", ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
                   [ctx.arn("logs", log_group), ctx.arn("logs", f"{log_group}:*")]),
    ]}


def container_environment(s: Settings) -> dict[str, str]:
    timeout = str(s.invocation_timeout)
    one_gb = str(1 << 30)  # async payloads go up to 1 GB
    return {
        "SAGEMAKER_PROGRAM": "inference.py",
        "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
        "SAGEMAKER_MODEL_SERVER_WORKERS": str(s.model_server_workers),
        "SAGEMAKER_MODEL_SERVER_TIMEOUT": timeout,
        "TS_DEFAULT_RESPONSE_TIMEOUT": timeout, "MMS_DEFAULT_RESPONSE_TIMEOUT": timeout,
        "TS_MAX_REQUEST_SIZE": one_gb, "MMS_MAX_REQUEST_SIZE": one_gb,
        "TS_MAX_RESPONSE_SIZE": one_gb, "MMS_MAX_RESPONSE_SIZE": one_gb,
        **s.environment,
    }


def model_spec(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    container: dict[str, Any] = {"Image": s.image_uri, "Environment": container_environment(s)}
    if s.model_data_url.endswith("/"):  # uncompressed files under a prefix (scripts/package.py --uncompressed)
        container["ModelDataSource"] = {"S3DataSource": {"S3Uri": s.model_data_url, "S3DataType": "S3Prefix",
                                                         "CompressionType": "None"}}
    else:
        container["ModelDataUrl"] = s.model_data_url
    return {"PrimaryContainer": container, "ExecutionRoleArn": ctx.execution_role_arn}


def endpoint_config_spec(ctx: Context, model_name: str) -> dict[str, Any]:
    s = ctx.settings
    variant: dict[str, Any] = {
        "VariantName": VARIANT, "ModelName": model_name, "InstanceType": s.instance_type,
        "InitialInstanceCount": s.initial_instance_count,
        "ContainerStartupHealthCheckTimeoutInSeconds": s.startup_timeout,
        "ModelDataDownloadTimeoutInSeconds": s.model_download_timeout,
    }
    if s.volume_size_gb:
        variant["VolumeSizeInGB"] = s.volume_size_gb
    return {
        "ProductionVariants": [variant],
        "AsyncInferenceConfig": async_inference_config(ctx),
    }


def async_inference_config(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    return {
        "OutputConfig": {
            "S3OutputPath": ctx.s3_uri(s.output_prefix),
            "S3FailurePath": ctx.s3_uri(s.failure_prefix),
            "NotificationConfig": {"SuccessTopic": ctx.topic_arn("success"), "ErrorTopic": ctx.topic_arn("error")},
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": s.max_concurrent_invocations},
    }


def trigger_environment(ctx: Context) -> dict[str, str]:
    s = ctx.settings
    env = {"ENDPOINT_NAME": ctx.endpoint, "INPUT_PREFIX": s.input_prefix,
           "OUTPUT_PATH": ctx.s3_uri(s.output_prefix), "FAILURE_PATH": ctx.s3_uri(s.failure_prefix),
           "INVOCATION_TIMEOUT_SECONDS": str(s.invocation_timeout), "ACCEPT": "application/json"}
    if s.custom_attributes:
        env["CUSTOM_ATTRIBUTES"] = s.custom_attributes
    return env


def step_policy_config(s: Settings) -> dict[str, Any]:
    return {"AdjustmentType": "ChangeInCapacity", "MetricAggregationType": "Average",
            "Cooldown": s.scale_out_cooldown,
            "StepAdjustments": [{"MetricIntervalLowerBound": 0, "ScalingAdjustment": 1}]}


def target_tracking_config(ctx: Context) -> dict[str, Any]:
    s = ctx.settings
    return {"TargetValue": s.backlog_target,
            "CustomizedMetricSpecification": {
                "MetricName": "ApproximateBacklogSizePerInstance", "Namespace": "AWS/SageMaker",
                "Dimensions": [{"Name": "EndpointName", "Value": ctx.endpoint}], "Statistic": "Average"},
            "ScaleInCooldown": s.scale_in_cooldown, "ScaleOutCooldown": s.scale_out_cooldown}


def alarm_spec(ctx: Context, step_policy_arn: str) -> dict[str, Any]:
    return {"AlarmName": ctx.name("has-backlog-without-capacity"),
            "AlarmDescription": f"{ctx.endpoint} has queued requests and no instance: scale out from zero",
            "ActionsEnabled": True, "MetricName": "HasBacklogWithoutCapacity", "Namespace": "AWS/SageMaker",
            "Dimensions": [{"Name": "EndpointName", "Value": ctx.endpoint}], "Statistic": "Average",
            "Period": 60, "EvaluationPeriods": 2, "DatapointsToAlarm": 2, "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold", "TreatMissingData": "missing",
            "AlarmActions": [step_policy_arn]}


def _tags(s: Settings, style: str = "list") -> Any:
    if style == "map":
        return dict(s.tags)
    return [{"Key": k, "Value": v} for k, v in s.tags.items()]


# --------------------------------------------------------------------------- ensure (create or update)


def ensure_bucket(ctx: Context) -> None:
    api, bucket = ctx.api, ctx.settings.bucket
    state = api.read("s3", "head_bucket", missing=("404:", "NoSuchBucket:", "NotFound:"), Bucket=bucket)
    if state is not None and state is not UNKNOWN:
        return ctx.record("s3 bucket", bucket, "unchanged")
    params: dict[str, Any] = {"Bucket": bucket}
    if api.region != "us-east-1":
        params["CreateBucketConfiguration"] = {"LocationConstraint": api.region}
    api.write("s3", "create_bucket", **params)
    ctx.record("s3 bucket", bucket, "created")


def ensure_topic(ctx: Context, suffix: str) -> str:
    arn = ctx.topic_arn(suffix)
    state = ctx.api.read("sns", "get_topic_attributes", missing=("NotFound:", "NotFoundException:"), TopicArn=arn)
    if state is not None and state is not UNKNOWN:
        ctx.record("sns topic", ctx.name(suffix), "unchanged")
        return arn
    ctx.api.write("sns", "create_topic", Name=ctx.name(suffix), Tags=_tags(ctx.settings))
    ctx.record("sns topic", ctx.name(suffix), "created")
    return arn


def _document(value: Any) -> Any:
    """IAM answers documents as dicts (boto3 decodes them) or URL-encoded JSON."""
    from urllib.parse import unquote

    return json.loads(unquote(value)) if isinstance(value, str) else value


def ensure_role(ctx: Context, suffix: str, service: str, policy: dict[str, Any]) -> str:
    api, name = ctx.api, ctx.name(suffix)
    trust = trust_policy(service)
    role = api.read("iam", "get_role", missing=("NoSuchEntity:",), RoleName=name)
    if role is None or role is UNKNOWN:
        api.write("iam", "create_role", RoleName=name, AssumeRolePolicyDocument=json.dumps(trust),
                  Description=f"diarkit {ctx.endpoint}: {suffix}", Tags=_tags(ctx.settings))
        api.write("iam", "put_role_policy", RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        ctx.record("iam role", name, "created")
        return ctx.role_arn(suffix)
    updated = []
    if _document(role["Role"]["AssumeRolePolicyDocument"]) != trust:
        api.write("iam", "update_assume_role_policy", RoleName=name, PolicyDocument=json.dumps(trust))
        updated.append("trust policy")
    current = api.read("iam", "get_role_policy", missing=("NoSuchEntity:",), RoleName=name, PolicyName=name)
    if current is None or _document(current["PolicyDocument"]) != policy:
        api.write("iam", "put_role_policy", RoleName=name, PolicyName=name, PolicyDocument=json.dumps(policy))
        updated.append("permissions")
    ctx.record("iam role", name, "updated" if updated else "unchanged", ", ".join(updated))
    return role["Role"]["Arn"]


def ensure_model(ctx: Context) -> str:
    spec = model_spec(ctx)
    name = ctx.name(content_hash(spec))
    state = ctx.api.read("sagemaker", "describe_model", missing=SM_MISSING, ModelName=name)
    if state is not None and state is not UNKNOWN:
        ctx.record("sagemaker model", name, "unchanged")
        return name
    ctx.api.write("sagemaker", "create_model", retry_role=True, ModelName=name, Tags=_tags(ctx.settings), **spec)
    ctx.record("sagemaker model", name, "created")
    return name


def ensure_endpoint_config(ctx: Context, model_name: str) -> str:
    spec = endpoint_config_spec(ctx, model_name)
    name = ctx.name(content_hash(spec))
    state = ctx.api.read("sagemaker", "describe_endpoint_config", missing=SM_MISSING, EndpointConfigName=name)
    if state is not None and state is not UNKNOWN:
        ctx.record("endpoint config", name, "unchanged")
        return name
    ctx.api.write("sagemaker", "create_endpoint_config", EndpointConfigName=name, Tags=_tags(ctx.settings), **spec)
    ctx.record("endpoint config", name, "created")
    return name


def wait_endpoint(ctx: Context, want: str | None = "InService") -> dict[str, Any] | None:
    """Poll with progress until the endpoint is ``want`` (None: until it is gone)."""
    if ctx.api.dry_run:
        return None
    started, last, printed = time.monotonic(), "", -60.0
    while True:
        state = ctx.api.read("sagemaker", "describe_endpoint", missing=SM_MISSING, EndpointName=ctx.endpoint)
        status = state["EndpointStatus"] if state else None
        elapsed = time.monotonic() - started
        if status != last or elapsed - printed >= 60:
            print(f"endpoint {ctx.endpoint}: {status or 'gone'} ({elapsed:.0f} s)", file=sys.stderr, flush=True)
            last, printed = status, elapsed
        if status == want:
            return state
        if want is not None and status is None:
            raise DeployError(f"endpoint {ctx.endpoint} disappeared while waiting for {want}")
        if want is not None and status not in BUSY_STATUSES:
            raise DeployError(f"endpoint {ctx.endpoint} is {status}: {state.get('FailureReason', 'no reason given')}"
                              " (fix the cause, then --delete and deploy again)")
        if elapsed > ctx.settings.wait_timeout:
            raise DeployError(f"endpoint {ctx.endpoint} still {status} after {elapsed:.0f} s")
        time.sleep(ctx.settings.poll_seconds)


def ensure_endpoint(ctx: Context, config_name: str) -> None:
    api = ctx.api
    state = api.read("sagemaker", "describe_endpoint", missing=SM_MISSING, EndpointName=ctx.endpoint)
    if state is None or state is UNKNOWN:
        api.write("sagemaker", "create_endpoint", EndpointName=ctx.endpoint, EndpointConfigName=config_name,
                  Tags=_tags(ctx.settings))
        wait_endpoint(ctx)
        return ctx.record("endpoint", ctx.endpoint, "created", config_name)
    if state["EndpointStatus"] in BUSY_STATUSES:
        state = wait_endpoint(ctx)
    elif state["EndpointStatus"] == "Failed":
        raise DeployError(f"endpoint {ctx.endpoint} is Failed: {state.get('FailureReason')} (run --delete first)")
    previous = state["EndpointConfigName"]
    if previous == config_name:
        return ctx.record("endpoint", ctx.endpoint, "unchanged", config_name)
    if _instance_type(ctx, previous) != ctx.settings.instance_type:
        # SageMaker refuses to change the instance type of a variant that autoscaling targets
        deregister_scalable_target(ctx)
    api.write("sagemaker", "update_endpoint", EndpointName=ctx.endpoint, EndpointConfigName=config_name)
    wait_endpoint(ctx)
    ctx.record("endpoint", ctx.endpoint, "updated", f"{previous} -> {config_name}")
    prune_old_versions(ctx, keep_config=config_name)


def _instance_type(ctx: Context, config_name: str) -> str | None:
    state = ctx.api.read("sagemaker", "describe_endpoint_config", missing=SM_MISSING, EndpointConfigName=config_name)
    return None if not state else state["ProductionVariants"][0].get("InstanceType")


def _ours(ctx: Context, name: str) -> bool:
    return re.fullmatch(re.escape(ctx.settings.name) + r"-[0-9a-f]{8}", name) is not None


def _list_names(ctx: Context, method: str, key: str, name_key: str) -> list[str]:
    names, token = [], None
    while True:
        params: dict[str, Any] = {"NameContains": ctx.settings.name, "MaxResults": 100}
        if token:
            params["NextToken"] = token
        page = ctx.api.read("sagemaker", method, **params)
        names += [item[name_key] for item in page.get(key, []) if _ours(ctx, item[name_key])]
        token = page.get("NextToken")
        if not token:
            return names


def prune_old_versions(ctx: Context, keep_config: str | None) -> None:
    """Delete our endpoint configs and models that the endpoint no longer uses."""
    keep_models = set()
    if keep_config:
        state = ctx.api.read("sagemaker", "describe_endpoint_config", missing=SM_MISSING,
                             EndpointConfigName=keep_config)
        keep_models = {v["ModelName"] for v in (state or {}).get("ProductionVariants", [])}
    for name in _list_names(ctx, "list_endpoint_configs", "EndpointConfigs", "EndpointConfigName"):
        if name != keep_config:
            ctx.api.write("sagemaker", "delete_endpoint_config", EndpointConfigName=name)
            ctx.record("endpoint config", name, "deleted")
    for name in _list_names(ctx, "list_models", "Models", "ModelName"):
        if name not in keep_models:
            ctx.api.write("sagemaker", "delete_model", ModelName=name)
            ctx.record("sagemaker model", name, "deleted")


def _scaling_key(ctx: Context) -> dict[str, str]:
    return {"ServiceNamespace": "sagemaker", "ResourceId": ctx.resource_id, "ScalableDimension": SCALABLE_DIMENSION}


def ensure_scalable_target(ctx: Context) -> None:
    s = ctx.settings
    desired = {"MinCapacity": s.min_capacity, "MaxCapacity": s.max_capacity}
    state = ctx.api.read("application-autoscaling", "describe_scalable_targets", ServiceNamespace="sagemaker",
                         ResourceIds=[ctx.resource_id], ScalableDimension=SCALABLE_DIMENSION)
    current = [] if state is UNKNOWN else [t for t in state["ScalableTargets"] if t["ResourceId"] == ctx.resource_id]
    if current and matches(desired, current[0]):
        return ctx.record("scalable target", ctx.resource_id, "unchanged", f"min {s.min_capacity}, max {s.max_capacity}")
    ctx.api.write("application-autoscaling", "register_scalable_target", **_scaling_key(ctx), **desired)
    ctx.record("scalable target", ctx.resource_id, "updated" if current else "created",
               f"min {s.min_capacity}, max {s.max_capacity}")


def ensure_policy(ctx: Context, name: str, policy_type: str, config: dict[str, Any]) -> str:
    config_key = f"{policy_type}PolicyConfiguration"  # StepScaling..., TargetTrackingScaling...
    state = ctx.api.read("application-autoscaling", "describe_scaling_policies", PolicyNames=[name],
                         **_scaling_key(ctx))
    current = [] if state is UNKNOWN else [p for p in state["ScalingPolicies"] if p["PolicyName"] == name]
    if current and current[0]["PolicyType"] == policy_type and matches(config, current[0].get(config_key)):
        ctx.record("scaling policy", name, "unchanged", policy_type)
        return current[0]["PolicyARN"]
    response = ctx.api.write("application-autoscaling", "put_scaling_policy", PolicyName=name,
                             PolicyType=policy_type, **_scaling_key(ctx), **{config_key: config})
    ctx.record("scaling policy", name, "updated" if current else "created", policy_type)
    return response["PolicyARN"]


def ensure_alarm(ctx: Context, step_policy_arn: str) -> None:
    spec = alarm_spec(ctx, step_policy_arn)
    state = ctx.api.read("cloudwatch", "describe_alarms", AlarmNames=[spec["AlarmName"]])
    current = [] if state is UNKNOWN else state["MetricAlarms"]
    if current and matches(spec, current[0]):
        return ctx.record("cloudwatch alarm", spec["AlarmName"], "unchanged")
    ctx.api.write("cloudwatch", "put_metric_alarm", Tags=_tags(ctx.settings), **spec)
    ctx.record("cloudwatch alarm", spec["AlarmName"], "updated" if current else "created")


def wait_function(ctx: Context) -> None:
    """Lambda refuses a second update while the first is in progress."""
    if ctx.api.dry_run:
        return
    deadline = time.monotonic() + 300
    while True:
        conf = ctx.api.read("lambda", "get_function_configuration", FunctionName=ctx.function_name)
        if conf.get("State", "Active") != "Pending" and conf.get("LastUpdateStatus") != "InProgress":
            if conf.get("State") == "Failed" or conf.get("LastUpdateStatus") == "Failed":
                raise DeployError(f"lambda {ctx.function_name}: {conf.get('StateReason') or conf.get('LastUpdateStatusReason')}")
            return
        if time.monotonic() > deadline:
            raise DeployError(f"lambda {ctx.function_name} still updating after 300 s")
        time.sleep(2)


def ensure_function(ctx: Context, role_arn: str) -> None:
    s, api = ctx.settings, ctx.api
    package = lambda_zip()
    config = {"Role": role_arn, "Runtime": s.lambda_runtime, "Handler": "handler.lambda_handler",
              "Timeout": s.lambda_timeout, "MemorySize": s.lambda_memory,
              "Description": f"S3 ObjectCreated -> InvokeEndpointAsync on {ctx.endpoint}",
              "Environment": {"Variables": trigger_environment(ctx)}}
    state = api.read("lambda", "get_function", missing=("ResourceNotFoundException:",), FunctionName=ctx.function_name)
    if state is None or state is UNKNOWN:
        api.write("lambda", "create_function", retry_role=True, FunctionName=ctx.function_name,
                  Code={"ZipFile": package}, Tags=_tags(s, "map"), **config)
        wait_function(ctx)
        return ctx.record("lambda function", ctx.function_name, "created")
    current = state["Configuration"]
    updated = []
    if current.get("CodeSha256") != code_sha256(package):
        api.write("lambda", "update_function_code", FunctionName=ctx.function_name, ZipFile=package)
        wait_function(ctx)
        updated.append("code")
    variables = (current.get("Environment") or {}).get("Variables") or {}
    settings_only = {k: v for k, v in config.items() if k != "Environment"}
    if not matches(settings_only, current) or variables != config["Environment"]["Variables"]:
        api.write("lambda", "update_function_configuration", FunctionName=ctx.function_name, **config)
        wait_function(ctx)
        updated.append("configuration")
    ctx.record("lambda function", ctx.function_name, "updated" if updated else "unchanged", ", ".join(updated))


def ensure_permission(ctx: Context) -> None:
    sid = ctx.name("s3-invoke")
    condition = {"ArnLike": {"AWS:SourceArn": ctx.bucket_arn}, "StringEquals": {"AWS:SourceAccount": ctx.account}}
    state = ctx.api.read("lambda", "get_policy", missing=("ResourceNotFoundException:",),
                         FunctionName=ctx.function_name)
    statements = [] if state is None or state is UNKNOWN else json.loads(state["Policy"]).get("Statement", [])
    ours = [st for st in statements if st.get("Sid") == sid]
    if ours and matches(condition, ours[0].get("Condition")):
        return ctx.record("lambda permission", sid, "unchanged", "s3.amazonaws.com")
    if ours:
        ctx.api.write("lambda", "remove_permission", FunctionName=ctx.function_name, StatementId=sid)
    ctx.api.write("lambda", "add_permission", FunctionName=ctx.function_name, StatementId=sid,
                  Action="lambda:InvokeFunction", Principal="s3.amazonaws.com", SourceArn=ctx.bucket_arn,
                  SourceAccount=ctx.account)
    ctx.record("lambda permission", sid, "updated" if ours else "created", "s3.amazonaws.com")


def _notification_config(ctx: Context) -> dict[str, Any]:
    state = ctx.api.read("s3", "get_bucket_notification_configuration", Bucket=ctx.settings.bucket)
    if state is UNKNOWN or state is None:
        return {}
    return {k: state[k] for k in NOTIFICATION_KEYS if k in state}


def _same_trigger(desired: dict[str, Any], actual: dict[str, Any]) -> bool:
    def rules(entry):
        return sorted((r["Name"].lower(), r["Value"]) for r in entry.get("Filter", {}).get("Key", {}).get("FilterRules", []))

    return (desired["LambdaFunctionArn"] == actual.get("LambdaFunctionArn")
            and sorted(desired["Events"]) == sorted(actual.get("Events", [])) and rules(desired) == rules(actual))


def ensure_bucket_notification(ctx: Context) -> None:
    """Add our trigger to the bucket's notifications, keeping everyone else's."""
    nid = ctx.name("trigger")
    ours = {"Id": nid, "LambdaFunctionArn": ctx.function_arn, "Events": ["s3:ObjectCreated:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": ctx.settings.input_prefix}]}}}
    config = _notification_config(ctx)
    lambdas = config.get("LambdaFunctionConfigurations", [])
    current = [c for c in lambdas if c.get("Id") == nid]
    if current and _same_trigger(ours, current[0]):
        return ctx.record("bucket notification", nid, "unchanged", f"s3://{ctx.settings.bucket}/{ctx.settings.input_prefix}")
    config["LambdaFunctionConfigurations"] = [c for c in lambdas if c.get("Id") != nid] + [ours]
    ctx.api.write("s3", "put_bucket_notification_configuration", Bucket=ctx.settings.bucket,
                  NotificationConfiguration=config)
    ctx.record("bucket notification", nid, "updated" if current else "created",
               f"s3://{ctx.settings.bucket}/{ctx.settings.input_prefix}")


def deploy(ctx: Context) -> None:
    s = ctx.settings
    ensure_bucket(ctx)
    ensure_topic(ctx, "success")
    ensure_topic(ctx, "error")
    if not s.execution_role_arn:
        ensure_role(ctx, "sagemaker", "sagemaker.amazonaws.com", sagemaker_role_policy(ctx))
    model_name = ensure_model(ctx)
    config_name = ensure_endpoint_config(ctx, model_name)
    ensure_endpoint(ctx, config_name)
    ensure_scalable_target(ctx)
    ensure_policy(ctx, ctx.name("backlog-per-instance"), "TargetTrackingScaling", target_tracking_config(ctx))
    step_arn = ensure_policy(ctx, ctx.name("scale-out-from-zero"), "StepScaling", step_policy_config(s))
    ensure_alarm(ctx, step_arn)
    trigger_role = ensure_role(ctx, "trigger", "lambda.amazonaws.com", trigger_role_policy(ctx))
    ensure_function(ctx, trigger_role)
    ensure_permission(ctx)
    ensure_bucket_notification(ctx)


# --------------------------------------------------------------------------- delete


def _exists(state: Any) -> bool:
    return state is not None


def delete_bucket_notification(ctx: Context) -> None:
    nid = ctx.name("trigger")
    if not ctx.settings.bucket:
        return ctx.record("bucket notification", nid, "absent", "no bucket given")
    exists = ctx.api.read("s3", "head_bucket", missing=("404:", "NoSuchBucket:", "NotFound:"), Bucket=ctx.settings.bucket)
    if exists is None:
        return ctx.record("bucket notification", nid, "absent", "no such bucket")
    config = _notification_config(ctx)
    lambdas = config.get("LambdaFunctionConfigurations", [])
    if ctx.api.dry_run is False and not any(c.get("Id") == nid for c in lambdas):
        return ctx.record("bucket notification", nid, "absent")
    config["LambdaFunctionConfigurations"] = [c for c in lambdas if c.get("Id") != nid]
    if not config["LambdaFunctionConfigurations"]:
        del config["LambdaFunctionConfigurations"]
    ctx.api.write("s3", "put_bucket_notification_configuration", Bucket=ctx.settings.bucket,
                  NotificationConfiguration=config)
    ctx.record("bucket notification", nid, "deleted")


def delete_function(ctx: Context) -> None:
    state = ctx.api.read("lambda", "get_function", missing=("ResourceNotFoundException:",), FunctionName=ctx.function_name)
    if not _exists(state):
        return ctx.record("lambda function", ctx.function_name, "absent")
    ctx.api.write("lambda", "delete_function", FunctionName=ctx.function_name)  # its permission goes with it
    ctx.record("lambda function", ctx.function_name, "deleted")


def delete_alarm(ctx: Context) -> None:
    name = ctx.name("has-backlog-without-capacity")
    state = ctx.api.read("cloudwatch", "describe_alarms", AlarmNames=[name])
    if state is not UNKNOWN and not state["MetricAlarms"]:
        return ctx.record("cloudwatch alarm", name, "absent")
    ctx.api.write("cloudwatch", "delete_alarms", AlarmNames=[name])
    ctx.record("cloudwatch alarm", name, "deleted")


def delete_policy(ctx: Context, name: str) -> None:
    state = ctx.api.read("application-autoscaling", "describe_scaling_policies", PolicyNames=[name],
                         **_scaling_key(ctx))
    if state is not UNKNOWN and not any(p["PolicyName"] == name for p in state["ScalingPolicies"]):
        return ctx.record("scaling policy", name, "absent")
    ctx.api.write("application-autoscaling", "delete_scaling_policy", PolicyName=name, **_scaling_key(ctx))
    ctx.record("scaling policy", name, "deleted")


def deregister_scalable_target(ctx: Context) -> None:
    state = ctx.api.read("application-autoscaling", "describe_scalable_targets", ServiceNamespace="sagemaker",
                         ResourceIds=[ctx.resource_id], ScalableDimension=SCALABLE_DIMENSION)
    if state is not UNKNOWN and not any(t["ResourceId"] == ctx.resource_id for t in state["ScalableTargets"]):
        return ctx.record("scalable target", ctx.resource_id, "absent")
    ctx.api.write("application-autoscaling", "deregister_scalable_target", **_scaling_key(ctx))
    ctx.record("scalable target", ctx.resource_id, "deleted")


def delete_endpoint(ctx: Context) -> None:
    state = ctx.api.read("sagemaker", "describe_endpoint", missing=SM_MISSING, EndpointName=ctx.endpoint)
    if not _exists(state):
        return ctx.record("endpoint", ctx.endpoint, "absent")
    if state is not UNKNOWN and state["EndpointStatus"] in BUSY_STATUSES - {"Deleting"}:
        wait_endpoint(ctx)
    ctx.api.write("sagemaker", "delete_endpoint", EndpointName=ctx.endpoint)
    wait_endpoint(ctx, want=None)
    ctx.record("endpoint", ctx.endpoint, "deleted")


def delete_versions(ctx: Context) -> None:
    if not ctx.api.dry_run:
        return prune_old_versions(ctx, keep_config=None)
    # a dry run cannot list: show the names the current settings give
    complete = all((ctx.settings.image_uri, ctx.settings.model_data_url))
    model = ctx.name(content_hash(model_spec(ctx))) if complete else ctx.name("<hash>")
    config = ctx.name(content_hash(endpoint_config_spec(ctx, model))) if complete else ctx.name("<hash>")
    ctx.api.write("sagemaker", "delete_endpoint_config", EndpointConfigName=config)
    ctx.record("endpoint config", config, "deleted", "and any other of ours")
    ctx.api.write("sagemaker", "delete_model", ModelName=model)
    ctx.record("sagemaker model", model, "deleted", "and any other of ours")


def delete_role(ctx: Context, suffix: str) -> None:
    name = ctx.name(suffix)
    state = ctx.api.read("iam", "get_role", missing=("NoSuchEntity:",), RoleName=name)
    if not _exists(state):
        return ctx.record("iam role", name, "absent")
    inline = ctx.api.read("iam", "list_role_policies", RoleName=name)
    for policy in [name] if inline is UNKNOWN else inline["PolicyNames"]:
        ctx.api.write("iam", "delete_role_policy", RoleName=name, PolicyName=policy)
    attached = ctx.api.read("iam", "list_attached_role_policies", RoleName=name)
    for policy in [] if attached is UNKNOWN else attached["AttachedPolicies"]:
        ctx.api.write("iam", "detach_role_policy", RoleName=name, PolicyArn=policy["PolicyArn"])
    ctx.api.write("iam", "delete_role", RoleName=name)
    ctx.record("iam role", name, "deleted")


def delete_topic(ctx: Context, suffix: str) -> None:
    arn = ctx.topic_arn(suffix)
    state = ctx.api.read("sns", "get_topic_attributes", missing=("NotFound:", "NotFoundException:"), TopicArn=arn)
    if not _exists(state):
        return ctx.record("sns topic", ctx.name(suffix), "absent")
    ctx.api.write("sns", "delete_topic", TopicArn=arn)
    ctx.record("sns topic", ctx.name(suffix), "deleted")


def teardown(ctx: Context) -> None:
    """Everything ``deploy`` made, in reverse order; the bucket and its objects stay."""
    delete_bucket_notification(ctx)
    delete_function(ctx)
    delete_role(ctx, "trigger")
    delete_alarm(ctx)
    delete_policy(ctx, ctx.name("scale-out-from-zero"))
    delete_policy(ctx, ctx.name("backlog-per-instance"))
    deregister_scalable_target(ctx)
    delete_endpoint(ctx)
    delete_versions(ctx)
    if not ctx.settings.execution_role_arn:
        delete_role(ctx, "sagemaker")
    delete_topic(ctx, "error")
    delete_topic(ctx, "success")
    if ctx.settings.bucket:
        ctx.record("s3 bucket", ctx.settings.bucket, "kept", "it holds your media and results")


# --------------------------------------------------------------------------- command line


def run(settings: Settings, *, delete: bool = False, dry_run: bool = False) -> tuple[list[Change], Api]:
    """Deploy (or tear down) and return what changed, with the Api that recorded every call."""
    settings.check(delete=delete)
    api = Api(settings.region, settings.endpoint_url, dry_run=dry_run)
    account = "<account-id>" if dry_run else api.client("sts").get_caller_identity()["Account"]
    ctx = Context(settings, api, account)
    (teardown if delete else deploy)(ctx)
    return ctx.changes, api


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Every setting is also a key of the --config JSON file "
                                            "(see scripts/deploy_async.example.json).")
    parser.add_argument("--config", type=Path, help="JSON file of settings (flags win)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print every create/update/delete call as JSON and make none (no AWS needed; "
                             "the Describe/Get calls that compare state are not made either)")
    parser.add_argument("--delete", action="store_true", help="tear everything down, in reverse order")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    group = parser.add_argument_group("settings")
    for f in fields(Settings):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        group.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=_field_type(f), default=None,
                           help=f"{f.metadata['help']} (default: {default!r})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING if args.quiet or args.dry_run else logging.INFO,
                        format="%(message)s", stream=sys.stderr)
    overrides = {f.name: getattr(args, f.name) for f in fields(Settings)}
    try:
        settings = load_settings(args.config, overrides)
        changes, api = run(settings, delete=args.delete, dry_run=args.dry_run)
    except DeployError as exc:
        print(f"deploy_async: error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - AWS said no: one line, not a traceback
        from botocore.exceptions import BotoCoreError, ClientError

        if not isinstance(exc, (BotoCoreError, ClientError)):
            raise
        print(f"deploy_async: AWS error: {exc}", file=sys.stderr)
        return 1
    if args.dry_run:
        print(json.dumps(api.calls, indent=2))
    elif args.json:
        print(json.dumps({"changes": [asdict(c) for c in changes], "calls": len(api.calls)}, indent=2))
    else:
        for change in changes:
            print(f"{change.action:9} {change.kind:20} {change.name}" + (f"  ({change.detail})" if change.detail else ""))
        made = sum(c.action in ("created", "updated", "deleted") for c in changes)
        print(f"{made} change(s), {len(api.calls)} write call(s)")
        if not args.delete:
            s = settings
            print(f"\ndrop media into s3://{s.bucket}/{s.input_prefix}; results: s3://{s.bucket}/{s.output_prefix}"
                  f"<inference-id>.out, failures: s3://{s.bucket}/{s.failure_prefix}; notifications: SNS topics "
                  f"{s.name}-success and {s.name}-error")
    return 0


if __name__ == "__main__":
    sys.exit(main())
