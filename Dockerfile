# cuefast server image: `docker build -t cuefast .`
FROM python:3.12-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY cuefast ./cuefast
RUN pip install '.[server]' && useradd --system --uid 10001 cuefast
USER cuefast
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=5 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2).status == 200 else 1)"
CMD ["cuefast", "serve", "--host", "0.0.0.0", "--port", "8000"]
