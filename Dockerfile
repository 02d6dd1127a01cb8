# cuefast server image: `docker build -t cuefast .`
# Dependencies come from requirements.lock (pinned, hashed; `pip-compile --extra server
# --generate-hashes` under Python 3.12, the image's Python), then cuefast itself without deps.
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements.lock ./
RUN pip install --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md LICENSE ./
COPY cuefast ./cuefast
RUN pip install --no-deps . && useradd --system --uid 10001 cuefast
USER cuefast
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=10s --retries=5 \
  CMD ["cuefast", "health", "--role", "api"]
CMD ["cuefast", "serve", "--host", "0.0.0.0", "--port", "8000"]
