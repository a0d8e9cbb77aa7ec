# diarkit serving image: `docker run IMAGE serve` answers SageMaker's GET /ping and
# POST /invocations on port 8080, as SageMaker runs a bring-your-own container.
#
#   GPU (default):  docker build -t diarkit .
#   CPU only:       docker build --build-arg BASE_IMAGE=python:3.11-slim-bookworm -t diarkit:cpu .
#   run:            docker run --gpus all -p 8080:8080 -v "$PWD/model:/opt/ml/model" diarkit serve
#
# The models are not in the image: mount a model directory at /opt/ml/model (SageMaker
# unpacks model.tar.gz there). Python packages are the pinned, tested set (requirements.txt).
ARG BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu22.04
FROM ${BASE_IMAGE}

ARG DEBIAN_FRONTEND=noninteractive
ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# ffmpeg decodes every input. Python 3.11: the CPU base has it; the CUDA base is Ubuntu
# 22.04 (python3 is 3.10), so it comes from the deadsnakes PPA there.
RUN set -eux; \
    apt-get update; \
    if ! command -v python3.11 >/dev/null; then \
        apt-get install -y --no-install-recommends software-properties-common; \
        add-apt-repository -y ppa:deadsnakes/ppa; \
        apt-get update; \
        apt-get install -y --no-install-recommends python3.11 python3.11-venv; \
        apt-get purge -y --auto-remove software-properties-common; \
    fi; \
    apt-get install -y --no-install-recommends ffmpeg ca-certificates; \
    rm -rf /var/lib/apt/lists/*; \
    python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /opt/program
# Dependencies first, so this (large) layer is rebuilt only when the pins change. The
# torch wheel on PyPI is the CUDA build; it also runs on CPU.
COPY requirements.txt ./
RUN pip install --no-cache-dir -r requirements.txt
COPY pyproject.toml README.md ./
COPY src/ src/
RUN pip install --no-cache-dir --no-deps . && diarkit --version

ENV DIARKIT_MODEL_DIR=/opt/ml/model \
    DIARKIT_HOST=0.0.0.0 \
    HF_HUB_OFFLINE=1 \
    PYANNOTE_METRICS_ENABLED=0
EXPOSE 8080
# SageMaker runs the container as root with the argument `serve`. Exec form: the server
# is PID 1 and receives SIGTERM itself (graceful shutdown, exit status 0).
ENTRYPOINT ["diarkit"]
CMD ["serve"]
