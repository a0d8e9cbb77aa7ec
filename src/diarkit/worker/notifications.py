"""Result notifications shaped like SageMaker asynchronous inference's.

Subscribers (an SQS queue, a Lambda, e-mail) then handle ``diarkit worker`` results and
real async-endpoint results with the same code.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def timestamp(moment: datetime | None = None) -> str:
    """ISO 8601 with milliseconds and a Z, as SageMaker writes eventTime."""
    moment = (moment or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _base(*, status: str, inference_id: str, input_location: str, endpoint_name: str,
          content_type: str, accept: str, received: datetime, region: str | None,
          custom_attributes: str | None) -> dict[str, Any]:
    request: dict[str, Any] = {"contentType": content_type, "accept": accept,
                               "endpointName": endpoint_name, "inputLocation": input_location}
    if custom_attributes:
        request["customAttributes"] = custom_attributes
    return {
        "awsRegion": region or "local",
        "eventTime": timestamp(),
        "receivedTime": timestamp(received),
        "invocationStatus": status,
        "requestParameters": request,
        "inferenceId": inference_id,
        "eventVersion": "1.0",
        "eventSource": "aws:sagemaker",
        "eventName": "InferenceResult",
    }


def success_message(*, inference_id: str, input_location: str, output_location: str,
                    output_content_type: str, endpoint_name: str, content_type: str, accept: str,
                    received: datetime, region: str | None = None,
                    custom_attributes: str | None = None) -> dict[str, Any]:
    message = _base(status="Completed", inference_id=inference_id, input_location=input_location,
                    endpoint_name=endpoint_name, content_type=content_type, accept=accept,
                    received=received, region=region, custom_attributes=custom_attributes)
    message["responseParameters"] = {"contentType": output_content_type, "outputLocation": output_location}
    return message


def failure_message(*, inference_id: str, input_location: str, failure_location: str,
                    failure_reason: str, endpoint_name: str, content_type: str, accept: str,
                    received: datetime, region: str | None = None,
                    custom_attributes: str | None = None) -> dict[str, Any]:
    message = _base(status="Failed", inference_id=inference_id, input_location=input_location,
                    endpoint_name=endpoint_name, content_type=content_type, accept=accept,
                    received=received, region=region, custom_attributes=custom_attributes)
    message["failureReason"] = failure_reason
    message["responseParameters"] = {"contentType": "application/json", "failureLocation": failure_location}
    return message
