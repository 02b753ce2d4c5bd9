# One image for the five Python services; docker-compose.yml picks the command of each.
FROM python:3.11.13-slim-bookworm

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    TASK_COUNTER_PATH=/data/task_counter

WORKDIR /app

# Dependencies first: this layer is rebuilt only when requirements.txt changes, not on every edit.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# A fixed uid keeps the named volume's ownership stable across rebuilds. /data exists in the image
# owned by that user, so Docker initialises a new named volume mounted there with that ownership.
RUN groupadd --system --gid 10001 app \
    && useradd --system --no-log-init --uid 10001 --gid app --no-create-home app \
    && mkdir /data \
    && chown app:app /data

# The code stays owned by root: the services only read it.
COPY . .

# Numeric, so a runtime can tell it is not root without reading the image's /etc/passwd.
USER 10001:10001
EXPOSE 8080
CMD ["python", "-m", "api"]
