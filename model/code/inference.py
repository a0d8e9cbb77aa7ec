"""SageMaker handlers for the PyTorch and Hugging Face inference containers.

The toolkits import this file from ``/opt/ml/model/code`` (``code/`` is on the path, so
``diarkit`` comes from the same model directory), call ``model_fn`` once per worker and
``transform_fn`` per request. A thin adapter: reading the request, running the pipeline
and rendering the answer all live in ``diarkit.serving.protocol``, shared with ``diarkit serve``.
Only ``transform_fn`` is defined: the toolkits refuse it together with input_fn/
predict_fn/output_fn.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from diarkit.errors import DiarkitError
from diarkit.serving.protocol import CUSTOM_ATTRIBUTES_HEADER, error_body, handle_body

logger = logging.getLogger("diarkit.inference")


def model_fn(model_dir):
    """Load every model once from ``model_dir/manifest.json``."""
    from diarkit.pipeline import DiarkitPipeline
    from diarkit.serving.loadreport import log_load

    pipeline = DiarkitPipeline.from_model_dir(model_dir, device=os.environ.get("DIARKIT_DEVICE", "auto"))
    log_load(pipeline)  # device, load time, GPU memory: one line in the endpoint's log
    return pipeline


def transform_fn(model, input_data, content_type, accept, context=None):
    """Media bytes (or the JSON envelope) in, the transcript in the accepted format out.

    The toolkits pass ``context`` (the model server's request context) when the
    function takes a fifth argument; the custom attributes are read from it.
    """
    try:
        reply = handle_body(model, input_data, content_type=content_type, accept=accept,
                            custom_attributes=_request_header(context, CUSTOM_ATTRIBUTES_HEADER))
    except DiarkitError as exc:
        logger.warning("request refused (%s): %s", exc.status, exc)
        toolkit_error = _toolkit_error(exc)
        if toolkit_error is None:
            raise
        raise toolkit_error from exc
    if "sagemaker_huggingface_inference_toolkit" in sys.modules:
        return reply.body  # that toolkit answers with the Accept type and takes no tuple
    return reply.body, reply.content_type


def _request_header(context, name: str) -> str | None:
    """A request header from a TorchServe/MMS context, whatever the spelling of its name."""
    if context is None:
        return None
    try:
        properties = context.request_processor[0].get_request_properties()
    except (AttributeError, IndexError, TypeError):
        return None
    wanted = name.lower()
    for key, value in (properties or {}).items():
        if str(key).lower() == wanted:
            return value.decode("utf-8", "replace") if isinstance(value, (bytes, bytearray)) else str(value)
    return None


def _toolkit_error(exc: DiarkitError) -> Exception | None:
    """Keep the HTTP status and the JSON error body in sagemaker-inference's error response."""
    try:
        from sagemaker_inference.errors import GenericInferenceToolkitError
    except ImportError:  # other hosts (the Hugging Face toolkit, tests) see the DiarkitError
        return None
    return GenericInferenceToolkitError(exc.status, json.dumps(error_body(exc)), exc.kind)
