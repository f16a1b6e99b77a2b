# One image for the API and the workers; the command chooses the role:
#   docker run IMAGE serve --no-embedded-worker          (API only)
#   docker run IMAGE worker --queues text,media          (a worker)
# syntax=docker/dockerfile:1

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# torch first: set TORCH_INDEX_URL to a CPU-only wheel index to keep the image small
ARG TORCH_INDEX_URL=""
RUN if [ -n "$TORCH_INDEX_URL" ]; then pip install torch==2.13.0 --index-url "$TORCH_INDEX_URL"; \
    else pip install torch==2.13.0; fi
COPY pyproject.toml README.md ./
COPY moderation ./moderation
COPY models ./models
COPY workers ./workers
RUN pip install .

FROM python:3.11-slim AS runtime
RUN useradd --create-home --uid 10001 moderation \
 && mkdir -p /data && chown moderation /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    MODERATION_DATA_DIR=/data \
    MODERATION_HOST=0.0.0.0 \
    MODERATION_MODEL_CACHE=/data/models
USER moderation
WORKDIR /home/moderation
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')" || exit 1
ENTRYPOINT ["moderation"]
CMD ["serve"]
