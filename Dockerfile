FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /srv/clinann
COPY pyproject.toml README.md ./
COPY app ./app
COPY migrations ./migrations
COPY templates ./templates
COPY static ./static
# Editable install: templates/, static/ and migrations/ are read beside app/.
RUN pip install -e . && useradd --system --home /srv/clinann clinann
USER clinann
EXPOSE 8000
CMD ["clinann", "serve", "--host", "0.0.0.0", "--port", "8000"]
