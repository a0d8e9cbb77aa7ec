"""scripts/deploy_async.py against a real moto server on loopback, and --dry-run with no server at all."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest

REPO = Path(__file__).resolve().parent.parent

import deploy_async  # noqa: E402

EXAMPLE = REPO / "scripts" / "deploy_async.example.json"
NAME, BUCKET = "dk-deploy", "dk-deploy-media"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/diarkit:test"
DEPLOY_ORDER = [
    "s3:CreateBucket", "sns:CreateTopic", "sns:CreateTopic", "iam:CreateRole", "iam:PutRolePolicy",
    "sagemaker:CreateModel", "sagemaker:CreateEndpointConfig", "sagemaker:CreateEndpoint",
    "application-autoscaling:RegisterScalableTarget", "application-autoscaling:PutScalingPolicy",
    "application-autoscaling:PutScalingPolicy", "cloudwatch:PutMetricAlarm", "iam:CreateRole",
    "iam:PutRolePolicy", "lambda:CreateFunction", "lambda:AddPermission", "s3:PutBucketNotificationConfiguration",
]


def operations(calls: list[dict]) -> list[str]:
    return [f"{c['service']}:{c['operation']}" for c in calls]


def by_operation(calls: list[dict], operation: str) -> list[dict]:
    return [c["params"] for c in calls if c["operation"] == operation]


def settings(endpoint: str | None, **overrides) -> deploy_async.Settings:
    values = {"name": NAME, "bucket": BUCKET, "image_uri": IMAGE, "max_capacity": 3,
              "model_data_url": f"s3://{BUCKET}/models/model.tar.gz", "custom_attributes": "num_speakers=2",
              "endpoint_url": endpoint, "region": "us-east-1", "poll_seconds": 0.05}
    return deploy_async.load_settings(EXAMPLE, {**values, **overrides})


def test_dry_run_prints_every_call_and_needs_no_server(tmp_path):
    """No credentials, an endpoint where nothing listens: a dry run still prints the whole plan."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(AWS_ENDPOINT_URL="http://127.0.0.1:9", AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"))
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "deploy_async.py"), "--config", str(EXAMPLE),
                           "--dry-run"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    calls = json.loads(done.stdout)
    assert operations(calls) == DEPLOY_ORDER
    (config,) = by_operation(calls, "CreateEndpointConfig")
    output = config["AsyncInferenceConfig"]["OutputConfig"]
    assert output["S3OutputPath"] == "s3://my-diarkit-media/output"
    assert output["S3FailurePath"] == "s3://my-diarkit-media/failed"
    assert output["NotificationConfig"]["SuccessTopic"].endswith(":diarkit-success")
    assert config["AsyncInferenceConfig"]["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 1}
    (variant,) = config["ProductionVariants"]
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 600
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 900
    (model,) = by_operation(calls, "CreateModel")
    env_vars = model["PrimaryContainer"]["Environment"]
    assert env_vars["SAGEMAKER_PROGRAM"] == "inference.py"
    assert env_vars["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == "3600"
    assert {p["PolicyType"] for p in by_operation(calls, "PutScalingPolicy")} == {"StepScaling", "TargetTrackingScaling"}
    assert by_operation(calls, "RegisterScalableTarget")[0]["MinCapacity"] == 0
    assert by_operation(calls, "PutMetricAlarm")[0]["MetricName"] == "HasBacklogWithoutCapacity"
    (function,) = by_operation(calls, "CreateFunction")
    assert function["Code"]["ZipFile"].startswith("<") and function["Handler"] == "handler.lambda_handler"


def test_dry_run_delete_lists_the_teardown_in_reverse(capsys):
    assert deploy_async.main(["--config", str(EXAMPLE), "--dry-run", "--delete", "--region", "us-east-1"]) == 0
    ops = operations(json.loads(capsys.readouterr().out))
    assert ops[0] == "s3:PutBucketNotificationConfiguration" and ops[1] == "lambda:DeleteFunction"
    order = ["cloudwatch:DeleteAlarms", "application-autoscaling:DeregisterScalableTarget", "sagemaker:DeleteEndpoint",
             "sagemaker:DeleteEndpointConfig", "sagemaker:DeleteModel", "sns:DeleteTopic"]
    assert [ops.index(op) for op in order] == sorted(ops.index(op) for op in order)


def test_settings_that_would_trigger_on_own_output_are_refused(capsys):
    code = deploy_async.main(["--config", str(EXAMPLE), "--dry-run", "--output-prefix", "input/results"])
    assert code == 2
    assert "separate folder" in capsys.readouterr().err


@pytest.fixture
def aws(moto_endpoint):
    def client(service):
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")
    return client


def _resources(changes) -> dict[str, str]:
    return {c.kind: c.name for c in changes}


def test_deploy_reads_back_is_idempotent_and_deletes(moto_endpoint, aws):
    s3, sqs = aws("s3"), aws("sqs")
    s3.create_bucket(Bucket=BUCKET)
    queue_arn = sqs.get_queue_attributes(QueueUrl=sqs.create_queue(QueueName="dk-deploy-other")["QueueUrl"],
                                         AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    other = {"Id": "someone-else", "QueueArn": queue_arn, "Events": ["s3:ObjectCreated:*"],
             "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "other/"}]}}}
    s3.put_bucket_notification_configuration(Bucket=BUCKET, NotificationConfiguration={"QueueConfigurations": [other]})

    changes, api = deploy_async.run(settings(moto_endpoint))
    assert {c.action for c in changes} == {"created", "unchanged"}  # the bucket existed
    assert operations(api.calls) == DEPLOY_ORDER[1:]
    names = _resources(changes)
    account = aws("sts").get_caller_identity()["Account"]
    topic = f"arn:aws:sns:us-east-1:{account}:{NAME}"

    sm = aws("sagemaker")
    model = sm.describe_model(ModelName=names["sagemaker model"])
    container = model["PrimaryContainer"]
    assert container["Image"] == IMAGE and container["ModelDataUrl"] == f"s3://{BUCKET}/models/model.tar.gz"
    assert container["Environment"]["SAGEMAKER_MODEL_SERVER_TIMEOUT"] == "3600"
    assert container["Environment"]["SAGEMAKER_MODEL_SERVER_WORKERS"] == "1"
    assert model["ExecutionRoleArn"].endswith(f":role/{NAME}-sagemaker")
    config = sm.describe_endpoint_config(EndpointConfigName=names["endpoint config"])
    assert config["AsyncInferenceConfig"] == {
        "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/output", "S3FailurePath": f"s3://{BUCKET}/failed",
                         "NotificationConfig": {"SuccessTopic": f"{topic}-success", "ErrorTopic": f"{topic}-error"}},
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 1}}
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == names["sagemaker model"] and variant["InstanceType"] == "ml.g4dn.xlarge"
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == 600
    assert variant["ModelDataDownloadTimeoutInSeconds"] == 900
    endpoint = sm.describe_endpoint(EndpointName=NAME)
    assert endpoint["EndpointStatus"] == "InService" and endpoint["EndpointConfigName"] == names["endpoint config"]
    topics = {t["TopicArn"] for t in aws("sns").list_topics()["Topics"]}
    assert {f"{topic}-success", f"{topic}-error"} <= topics

    scaling = aws("application-autoscaling")
    resource = f"endpoint/{NAME}/variant/AllTraffic"
    (target,) = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])["ScalableTargets"]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (0, 3)
    policies = {p["PolicyType"]: p for p in scaling.describe_scaling_policies(
        ServiceNamespace="sagemaker", ResourceId=resource)["ScalingPolicies"]}
    tracking = policies["TargetTrackingScaling"]["TargetTrackingScalingPolicyConfiguration"]
    assert tracking["CustomizedMetricSpecification"]["MetricName"] == "ApproximateBacklogSizePerInstance"
    assert tracking["TargetValue"] == 5.0
    step = policies["StepScaling"]["StepScalingPolicyConfiguration"]
    assert step["AdjustmentType"] == "ChangeInCapacity" and step["StepAdjustments"][0]["ScalingAdjustment"] == 1
    (alarm,) = aws("cloudwatch").describe_alarms(AlarmNames=[names["cloudwatch alarm"]])["MetricAlarms"]
    assert alarm["MetricName"] == "HasBacklogWithoutCapacity" and alarm["Namespace"] == "AWS/SageMaker"
    assert alarm["Dimensions"] == [{"Name": "EndpointName", "Value": NAME}]
    assert alarm["AlarmActions"] == [policies["StepScaling"]["PolicyARN"]]
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold" and alarm["Threshold"] == 1.0

    lam = aws("lambda")
    function = lam.get_function(FunctionName=f"{NAME}-trigger")["Configuration"]
    assert function["Handler"] == "handler.lambda_handler"
    assert function["CodeSha256"] == deploy_async.code_sha256(deploy_async.lambda_zip())
    assert function["Environment"]["Variables"] == {
        "ENDPOINT_NAME": NAME, "INPUT_PREFIX": "input/", "OUTPUT_PATH": f"s3://{BUCKET}/output",
        "FAILURE_PATH": f"s3://{BUCKET}/failed", "INVOCATION_TIMEOUT_SECONDS": "3600",
        "ACCEPT": "application/json", "CUSTOM_ATTRIBUTES": "num_speakers=2"}
    (permission,) = json.loads(lam.get_policy(FunctionName=f"{NAME}-trigger")["Policy"])["Statement"]
    assert permission["Principal"] == {"Service": "s3.amazonaws.com"}
    assert permission["Condition"]["ArnLike"]["AWS:SourceArn"] == f"arn:aws:s3:::{BUCKET}"
    notifications = s3.get_bucket_notification_configuration(Bucket=BUCKET)
    (trigger,) = notifications["LambdaFunctionConfigurations"]
    assert trigger["LambdaFunctionArn"] == function["FunctionArn"] and trigger["Events"] == ["s3:ObjectCreated:*"]
    assert trigger["Filter"]["Key"]["FilterRules"] == [{"Name": "prefix", "Value": "input/"}]
    assert [q["Id"] for q in notifications["QueueConfigurations"]] == ["someone-else"]  # kept

    iam = aws("iam")
    for role in (f"{NAME}-sagemaker", f"{NAME}-trigger"):
        check_least_privilege(iam.get_role_policy(RoleName=role, PolicyName=role)["PolicyDocument"])
    invoke = iam.get_role_policy(RoleName=f"{NAME}-trigger", PolicyName=f"{NAME}-trigger")["PolicyDocument"]
    assert invoke["Statement"][0]["Resource"] == [f"arn:aws:sagemaker:us-east-1:{account}:endpoint/{NAME}"]

    # the same settings again: every resource found as it is, not one write
    changes, api = deploy_async.run(settings(moto_endpoint))
    assert {c.action for c in changes} == {"unchanged"} and api.calls == []
    # one setting changed: one call
    changes, api = deploy_async.run(settings(moto_endpoint, max_capacity=4))
    assert [(c.kind, c.action) for c in changes if c.action != "unchanged"] == [("scalable target", "updated")]
    assert operations(api.calls) == ["application-autoscaling:RegisterScalableTarget"]

    changes, api = deploy_async.run(settings(moto_endpoint), delete=True)
    assert {c.action for c in changes} == {"deleted", "kept"}
    assert_all_gone(aws, names)
    assert s3.get_bucket_notification_configuration(Bucket=BUCKET)["QueueConfigurations"][0]["Id"] == "someone-else"
    changes, api = deploy_async.run(settings(moto_endpoint), delete=True)  # nothing left: no error, no call
    assert {c.action for c in changes} == {"absent", "kept"} and api.calls == []


def check_least_privilege(document: dict) -> None:
    """S3, SNS and SageMaker actions name their resources; only actions AWS cannot scope get "*"."""
    for statement in document["Statement"]:
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        if "*" in resources:
            assert statement["Action"] in (["ecr:GetAuthorizationToken"], ["cloudwatch:PutMetricData"]), statement
            continue
        for action in statement["Action"]:
            if action.startswith("s3:"):
                assert all(r.startswith(f"arn:aws:s3:::{BUCKET}/") and r.endswith(("input/*", "output/*", "failed/*",
                                                                                     "model.tar.gz"))
                           for r in resources), statement
            assert "*" not in action, statement


def assert_all_gone(aws, names: dict[str, str]) -> None:
    from botocore.exceptions import ClientError

    sm = aws("sagemaker")
    for call in (lambda: sm.describe_endpoint(EndpointName=NAME),
                 lambda: sm.describe_endpoint_config(EndpointConfigName=names["endpoint config"]),
                 lambda: sm.describe_model(ModelName=names["sagemaker model"]),
                 lambda: aws("lambda").get_function(FunctionName=f"{NAME}-trigger"),
                 lambda: aws("iam").get_role(RoleName=f"{NAME}-sagemaker"),
                 lambda: aws("iam").get_role(RoleName=f"{NAME}-trigger")):
        with pytest.raises(ClientError):
            call()
    topics = [t["TopicArn"] for t in aws("sns").list_topics()["Topics"]]
    assert not [t for t in topics if f":{NAME}-" in t]
    scaling = aws("application-autoscaling")
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker",
                                             ResourceIds=[f"endpoint/{NAME}/variant/AllTraffic"])["ScalableTargets"] == []
    assert not [p for p in scaling.describe_scaling_policies(ServiceNamespace="sagemaker")["ScalingPolicies"]
                if NAME in p["ResourceId"]]
    assert aws("cloudwatch").describe_alarms(AlarmNames=[names["cloudwatch alarm"]])["MetricAlarms"] == []
    assert "LambdaFunctionConfigurations" not in aws("s3").get_bucket_notification_configuration(Bucket=BUCKET)
