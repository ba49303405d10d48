# syntax=docker/dockerfile:1
# GPU inference worker: pulls interval jobs from a capture node, runs TimeLens on
# onnxruntime-gpu, pushes frames to the capture node's recorder.
#
#   docker build -f docker/worker.Dockerfile -t slomo-rig-worker .      (from the repo root)
#   docker run --gpus all -v slomo-keys:/keys slomo-rig-worker \
#       --jobs tcp://CAPTURE:5555 --results tcp://CAPTURE:5556 --keys /keys --model timelens
#
# onnxruntime-gpu 1.31 (PyPI) is built against CUDA 13 + cuDNN 9 (it links
# libcudart.so.13, libcublas.so.13, libcudnn.so.9), so the base is a CUDA 13 cuDNN
# runtime image; the host needs an NVIDIA driver that supports CUDA 13 and the NVIDIA
# Container Toolkit. See docs/docker.md.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-cudnn-runtime-ubuntu22.04
FROM ${CUDA_IMAGE}

# torch is pinned exactly as in pyproject.toml. From the default index the Linux x86_64
# wheel drags in its own CUDA libraries (several GB). models/engine.py imports torch, so
# the worker cannot go without it; TORCH_INDEX_URL lets a site point at another index
# (e.g. the CPU-only one: the GPU work is done by onnxruntime-gpu either way).
ARG TORCH_INDEX_URL=
ARG SLOMO_UID=10001

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv \
    && pip install --upgrade pip

# Dependencies first (cached until pyproject.toml changes), read from pyproject.toml so
# the list cannot drift from the project's.
COPY pyproject.toml README.md /src/
RUN pip install "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
    && python -c "import tomllib; print('\n'.join(tomllib.load(open('/src/pyproject.toml', 'rb'))['project']['dependencies']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY rig /src/rig
COPY pipeline /src/pipeline
COPY calibration /src/calibration
COPY models /src/models
RUN pip install --no-deps /src && rm -rf /src && pip check

# Same UID as the capture image: the CurveZMQ secret keys are mode 0600.
RUN useradd --uid ${SLOMO_UID} --create-home --shell /usr/sbin/nologin slomo \
    && mkdir -p /keys \
    && chown slomo:slomo /keys
USER slomo
WORKDIR /home/slomo

# Keys (from 'slomo-rig keys') are mounted here, read-only is fine for a worker.
ENTRYPOINT ["slomo-rig", "worker"]
CMD ["--help"]
