# syntax=docker/dockerfile:1
# Capture node: reads the cameras, writes the raw recording, hands intervals to the
# workers over ZeroMQ and runs the recorder. The recorder is a child process that
# 'slomo-rig record' spawns inside this same container; it writes the slow-motion
# video and timestamps into the same session folder (/sessions/...) as the raw file.
#
#   docker build -f docker/capture.Dockerfile -t slomo-rig-capture .    (from the repo root)
#
# USB cameras need device access (see docs/docker.md): --privileged, or
# --device-cgroup-rule 'c 189:* rmw' -v /dev/bus/usb:/dev/bus/usb.
FROM python:3.11-slim-bookworm

# torch==2.13.0 is a dependency of the project (pyproject.toml) although capture itself
# does not run a model; see worker.Dockerfile for TORCH_INDEX_URL.
ARG TORCH_INDEX_URL=
ARG SLOMO_UID=10001

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# Dependencies first, read from pyproject.toml: the core list plus the Basler (pypylon)
# and Prophesee RAW (faery) extras. dv-processing is a core dependency.
COPY pyproject.toml README.md /src/
RUN pip install "torch==2.13.0" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"} \
    && python -c "import tomllib; p = tomllib.load(open('/src/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['basler'] + p['optional-dependencies']['prophesee']))" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

COPY rig /src/rig
COPY pipeline /src/pipeline
COPY calibration /src/calibration
COPY models /src/models
RUN pip install --no-deps /src && rm -rf /src && pip check

# Same UID as the worker image: the keys this image makes must be readable there.
RUN useradd --uid ${SLOMO_UID} --create-home --shell /usr/sbin/nologin slomo \
    && mkdir -p /keys /sessions /config \
    && chown slomo:slomo /keys /sessions
USER slomo
WORKDIR /home/slomo

# 'record' stops cleanly (raw file closed, recorder drained) on SIGINT, the same as
# Ctrl-C; 'docker stop' sends this signal. Give it time: see stop_grace_period.
STOPSIGNAL SIGINT
EXPOSE 5555 5556
ENTRYPOINT ["slomo-rig"]
CMD ["record", "--config", "/config/rig.toml", "--out", "/sessions", "--workers", "0", \
     "--bind", "0.0.0.0", "--job-port", "5555", "--result-port", "5556", "--keys", "/keys"]
