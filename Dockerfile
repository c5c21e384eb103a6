# The Switchyard image: `switchyard proxy` by default; the same image runs `switchyard backfill`.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY proxy ./proxy
COPY backfill ./backfill
COPY setup.py ./
# `models`: the local ONNX runtime and the reference models (`pkg:` presets) that the proxy's
# mirror and the backfill daemon embed with (tests/test_containers.py derives this from the code)
RUN pip install --no-cache-dir '.[models]'
# Outside a container the proxy listens on 127.0.0.1 only; here every interface is needed for
# the published ports. The spool (repair records, write-ahead intents) belongs on a volume.
ENV SWITCHYARD_LISTEN_REST=0.0.0.0:6333 \
    SWITCHYARD_LISTEN_GRPC=0.0.0.0:6334 \
    SWITCHYARD_SPOOL_DIR=/var/lib/switchyard
VOLUME /var/lib/switchyard
EXPOSE 6333 6334
# ready = the upstream answers and the state snapshot is fresh (503 with the reason otherwise)
HEALTHCHECK --interval=10s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:6333/switchyard/readyz', timeout=4)"]
ENTRYPOINT []
CMD ["switchyard", "proxy"]
