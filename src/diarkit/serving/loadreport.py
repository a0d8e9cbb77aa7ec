"""What a serving process logs once its models are loaded: device, load time, GPU memory.

On SageMaker this line in CloudWatch is the first thing to read when an instance is slow
or runs out of memory (one model copy per worker).
"""

from __future__ import annotations

import logging

logger = logging.getLogger("diarkit.inference")


def load_report(pipeline) -> dict:
    """Device, profile, load seconds and (on a GPU) memory allocated / reserved / total."""
    import torch

    report = {"device": pipeline.device, "profile": pipeline.model_dir.profile,
              "load_seconds": round(pipeline.load_seconds, 2)}
    if pipeline.device.startswith("cuda") and torch.cuda.is_available():
        index = torch.device(pipeline.device).index or 0
        report.update(gpu=torch.cuda.get_device_name(index),
                      gpu_allocated_gb=round(torch.cuda.memory_allocated(index) / 2**30, 2),
                      gpu_reserved_gb=round(torch.cuda.memory_reserved(index) / 2**30, 2),
                      gpu_total_gb=round(torch.cuda.get_device_properties(index).total_memory / 2**30, 2))
    return report


def log_load(pipeline) -> dict:
    report = load_report(pipeline)
    logger.info("models loaded: %s", " ".join(f"{k}={v}" for k, v in report.items()))
    return report
