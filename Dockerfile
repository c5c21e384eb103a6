FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY proxy ./proxy
COPY backfill ./backfill
RUN pip install --no-cache-dir '.[local]'
EXPOSE 6333 6334
ENTRYPOINT []
CMD ["switchyard", "proxy"]
