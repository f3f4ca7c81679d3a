FROM python:3.13-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 DATA_DIR=/data PORT=8000 \
    STATIC_ROOT=/app/staticfiles
WORKDIR /app

COPY pyproject.toml ./
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > /tmp/requirements.txt \
    && pip install --no-cache-dir -r /tmp/requirements.txt

COPY . .
RUN SECRET_KEY=build-only DATA_DIR=/tmp/build python manage.py collectstatic --noinput --verbosity 0 \
    && mkdir -p /data && useradd --system --home /app studio && chown studio /data
USER studio

EXPOSE 8000
CMD ["sh", "-c", "python manage.py migrate --noinput && exec gunicorn studio.asgi:application --worker-class asgi --bind 0.0.0.0:${PORT} --workers 3 --access-logfile -"]
