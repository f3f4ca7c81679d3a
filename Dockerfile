FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data PORT=8000 \
    STATIC_ROOT=/app/staticfiles
WORKDIR /app

# requirements.txt is uv.lock's export without the dev group: every package pinned, with hashes.
COPY requirements.txt ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.txt

COPY . .
RUN SECRET_KEY=build-only DATA_DIR=/tmp/build python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /data && useradd --system --home /app studio && chown studio /data
USER studio

EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec gunicorn studio.asgi:application --worker-class asgi --bind 0.0.0.0:${PORT} --workers 3 --access-logfile - --logger-class studio.serverlog.AccessLogger"]
