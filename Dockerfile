# invdn: REST service (default command) and batch CLI in one CPU-only image.
#
#   docker build -t invdn .
#   docker run --rm -p 8000:8000 invdn                                      # service on :8000
#   docker run --rm -v "$PWD:/data" invdn denoise /data/in -o /data/out     # batch folder
#
# Build arguments (see docs/DOCKER.md):
#   BASE_IMAGE           Debian-based Python 3.11 image with python3 -m venv; used by every stage.
#   TORCH_INDEX_URL      pip index for torch/torchvision (default: PyTorch's CPU-only wheels).
#   TORCH_VERSION        torch release; TORCHVISION_VERSION must be its matching torchvision
#   TORCHVISION_VERSION  (empty: torchvision is not installed in this step).
#   TORCH_WHEEL_DIR      folder *inside the build context* (.docker-wheels) holding torch/torchvision wheels; when
#                        set, those two come from it instead of TORCH_INDEX_URL (their dependencies from PyPI).
# Uses no BuildKit-only syntax, so the classic builder works too.

ARG BASE_IMAGE=python:3.11-slim

# ------------------------------------------------------------------------------------------------------- deps
# The virtual environment with every dependency: a large layer that changes only with pyproject.toml or the
# torch build arguments, so rebuilding after a code change reuses it (and users re-pull only a small layer).
FROM ${BASE_IMAGE} AS deps

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_VERSION=2.13.0
ARG TORCHVISION_VERSION=0.28.0
ARG TORCH_WHEEL_DIR=

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_DEFAULT_TIMEOUT=180 \
    PATH=/opt/venv/bin:$PATH

RUN python3 -m venv /opt/venv

# 1. torch + torchvision, CPU-only. The wheel folder's contents land in /tmp/wheels; without TORCH_WHEEL_DIR the
#    COPY takes pyproject.toml instead (a COPY needs a source; unused). torch's C++ test binaries (torch/test,
#    torch/bin/*Test, protoc; ~130 MB) are never used at run time and are dropped.
COPY ${TORCH_WHEEL_DIR:-pyproject.toml} /tmp/wheels/
RUN set -eux; \
    pkgs="torch==${TORCH_VERSION}"; \
    if [ -n "${TORCHVISION_VERSION}" ]; then pkgs="${pkgs} torchvision==${TORCHVISION_VERSION}"; fi; \
    if [ -n "${TORCH_WHEEL_DIR}" ]; then \
        pip install --no-index --no-deps --find-links /tmp/wheels ${pkgs}; \
        pip install ${pkgs}; \
    else \
        pip install --index-url "${TORCH_INDEX_URL}" ${pkgs}; \
    fi; \
    rm -rf /tmp/wheels; \
    site="$(python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"; \
    rm -rf "${site}/torch/test"; \
    find "${site}/torch/bin" -maxdepth 1 -type f ! -name torch_shm_manager -delete; \
    python -c "import torch; assert torch.version.cuda is None, 'expected a CPU-only torch, got CUDA ' + str(torch.version.cuda); print('torch', torch.__version__)"

# 2. The project's other dependencies and its `serve` extra, from pyproject.toml alone (cached until it changes).
#    torch/torchvision are already satisfied, so pip keeps the CPU builds.
COPY pyproject.toml /tmp/pyproject.toml
RUN set -eux; \
    python -c "import tomllib; p = tomllib.load(open('/tmp/pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['serve']))" \
        > /tmp/requirements.txt; \
    pip install -r /tmp/requirements.txt; \
    rm /tmp/requirements.txt /tmp/pyproject.toml

# ---------------------------------------------------------------------------------------------------- project
# The project as a wheel (non-editable), checked against the dependencies above.
FROM deps AS project
COPY pyproject.toml README.md /src/
COPY invdn/ /src/invdn/
COPY invdn_service/ /src/invdn_service/
RUN set -eux; \
    pip wheel --no-deps --wheel-dir /wheels /src; \
    pip install --no-deps --no-index /wheels/*.whl; \
    pip check; \
    python -c "import torch; assert torch.version.cuda is None"

# ---------------------------------------------------------------------------------------------------- weights
# Only what weights/manifest.json ships, sha256-checked (the build fails on a corrupt or missing file, or when nothing
# is shipped); superseded versions stay in git, out of the image. This stage reruns after a code change (a few
# seconds), but its output is byte-identical while the shipped weights are, so the runtime's COPY of it stays cached.
FROM project AS weights
COPY weights/ /tmp/weights/
RUN INVDN_WEIGHTS_DIR=/tmp/weights python -c "from invdn.models.weights import copy_shipped; copy_shipped('/opt/invdn/weights')"

# ---------------------------------------------------------------------------------------------------- runtime
FROM ${BASE_IMAGE}

# tini reaps zombies and forwards signals (docker stop -> graceful uvicorn shutdown). The local debootstrap base
# already has it; the official python slim image gets Debian's package.
RUN set -eux; \
    if ! command -v tini >/dev/null 2>&1; then \
        apt-get update; \
        apt-get install -y --no-install-recommends tini; \
        rm -rf /var/lib/apt/lists/*; \
    fi; \
    groupadd --gid 10001 invdn; \
    useradd --uid 10001 --gid invdn --no-log-init --home-dir /home/invdn --create-home --shell /usr/sbin/nologin invdn

# Layers from the least to the most often changed: dependencies, shipped weights, the project's code.
COPY --from=deps /opt/venv /opt/venv
COPY --from=weights /opt/invdn/weights/ /opt/invdn/weights/
COPY --from=project /wheels/ /tmp/invdn-wheel/
RUN /opt/venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-deps --no-index /tmp/invdn-wheel/*.whl \
    && rm -rf /tmp/invdn-wheel

# Runtime defaults (equal to invdn_service.config.Settings' defaults; tests/test_docker_smoke.py keeps them so), shown
# here so `docker inspect` lists the main knobs. Every INVDN_* variable can be set with `docker run -e`.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/home/invdn \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/.cache \
    INVDN_WEIGHTS_DIR=/opt/invdn/weights \
    INVDN_INFERENCE_WORKERS=1 \
    INVDN_QUEUE_SIZE=16 \
    INVDN_TORCH_THREADS=0 \
    INVDN_MAX_UPLOAD_BYTES=20971520 \
    INVDN_MAX_PIXELS=16000000

USER invdn:invdn
WORKDIR /home/invdn
EXPOSE 8000

# Healthy only once /health/ready answers 200, i.e. after both models are loaded and warmed up.
HEALTHCHECK --interval=10s --timeout=5s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; r = urllib.request.urlopen('http://127.0.0.1:8000/health/ready', timeout=4); sys.exit(0 if r.status == 200 else 1)"]

ENTRYPOINT ["tini", "--", "invdn"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
