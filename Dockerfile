# mfclip serve in a container: CPU torch by default, CUDA with a build argument.
#
#   docker build -t mfclip-serve .
#   docker build -t mfclip-serve:cu126 --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 .
#   docker run --rm -p 8000:8000 -v "$PWD/model:/model:ro" \
#     -v "$PWD/keys.txt:/run/secrets/mfclip-keys:ro" mfclip-serve
#
# The model folder is mounted read-only at /model; the API keys file (one key a line) at
# /run/secrets/mfclip-keys. See docs/serving.md ("Running it in a container").
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim

# Where torch comes from: the CPU wheels (small) unless told otherwise. The version range is
# pyproject.toml's, so the package install below keeps this torch instead of fetching another.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch>=2.1,<=2.14.1"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    MFCLIP_CACHE=/home/mfclip/.cache/mfclip

RUN useradd --create-home --uid 10001 --user-group --shell /usr/sbin/nologin mfclip

# The package from this source tree, with the serve extra; torch first, from TORCH_INDEX.
COPY pyproject.toml README.md LICENSE /tmp/mfclip-src/
COPY src /tmp/mfclip-src/src
RUN pip install --index-url "${TORCH_INDEX}" "${TORCH_SPEC}" \
    && pip install "/tmp/mfclip-src[serve]" \
    && rm -rf /tmp/mfclip-src

USER mfclip
WORKDIR /home/mfclip
EXPOSE 8000

# Liveness without curl: /healthz needs no API key.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status != 200)"]

# SIGTERM (docker stop) drains requests in flight for --grace-period seconds (default 8,
# inside docker stop's 10); raise both together: docker stop -t 30 with --grace-period 25.
STOPSIGNAL SIGTERM
ENTRYPOINT ["mfclip", "serve"]
CMD ["--model", "/model", "--host", "0.0.0.0", "--port", "8000", "--api-key-file", "/run/secrets/mfclip-keys"]
