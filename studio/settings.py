"""The studio's only settings file: every value comes from the environment.

Each helper fails loudly on a malformed value, so a typo in a deployment stops the
process at start instead of silently running with a default. `.env.example` lists
every variable read here.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP

BASE_DIR = Path(__file__).resolve().parent.parent


def envstr(name: str, default: str = "") -> str:
    return os.environ.get(name, default).strip()


def envbool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use true or false")


def envint(name: str, default: int, *, minimum: int | None = None) -> int:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not an integer") from None
    if minimum is not None and value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}")
    return value


def envfloat(name: str, default: float, *, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name}={value} is below the minimum {minimum}")
    return value


def envlist(name: str, default: list[str]) -> list[str]:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def envprices(name: str) -> dict[str, Decimal]:
    prices: dict[str, Decimal] = {}
    for item in envlist(name, []):
        model, sep, raw = item.rpartition("=")
        try:
            price = Decimal(raw.strip())
        except InvalidOperation:
            price = None
        if not sep or not model.strip() or price is None or price < 0:
            raise ImproperlyConfigured(f"{name}: {item!r} is not model=price (e.g. flux/dev=0.025)")
        prices[model.strip()] = price
    return prices


def envdecimal(name: str) -> Decimal | None:
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return None
    try:
        value = Decimal(raw)
    except InvalidOperation:
        raise ImproperlyConfigured(f"{name}={raw!r} is not a number") from None
    if value < 0 or not value.is_finite():
        raise ImproperlyConfigured(f"{name}={raw!r} must be zero or more")
    return value


def envsecret(name: str) -> str:
    """A secret from NAME, or from the file named by NAME_FILE (Docker/K8s secrets)."""
    value = os.environ.get(name, "").strip()
    path = os.environ.get(f"{name}_FILE", "").strip()
    if value and path:
        raise ImproperlyConfigured(f"set {name} or {name}_FILE, not both")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"{name}_FILE={path!r} cannot be read: {exc}") from None
    return value


def database_from_url(url: str, data_dir: Path) -> dict:
    if not url:
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": data_dir / "studio.sqlite3",
            # The web process and the workers write to one file: WAL lets readers go on
            # during a write, and IMMEDIATE avoids "database is locked" on upgrade.
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            # sqlite:///relative/path and sqlite:////absolute/path, by convention.
            "NAME": unquote(parts.path[1:]),
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        }
    if parts.scheme not in ("postgres", "postgresql", "pgsql"):
        raise ImproperlyConfigured(
            f"DATABASE_URL scheme {parts.scheme!r} is not supported; use postgres:// or sqlite://"
        )
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ImproperlyConfigured("DATABASE_URL names no database")
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": {"connect_timeout": 5, **dict(parse_qsl(parts.query))},
        "CONN_HEALTH_CHECKS": True,
    }


DATA_DIR = Path(envstr("DATA_DIR", str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)

DEBUG = envbool("DEBUG", False)

SECRET_KEY = envsecret("SECRET_KEY")
if not SECRET_KEY:
    # The embedded default must start with no configuration at all, so a key is made
    # once and kept beside the data it protects; production sets SECRET_KEY.
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    SECRET_KEY = key_file.read_text().strip()

ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", [])
PORT = envint("PORT", 8000, minimum=1)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    # Full-text search and its GIN index for the gallery (harmless on SQLite).
    "django.contrib.postgres",
    "django_htmx",
    "axes",
    # Bottom to top: each app imports only the ones listed before it (docs/architecture.md).
    "studio",
    "audit",
    "accounts",
    "generator",
    "gallery",
    "api",
]

MIDDLEWARE = [
    # First: it turns any other middleware's or Django's HTML error under /v1 into JSON.
    "api.middleware.flat_errors",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "accounts.middleware.member_status",
    "accounts.middleware.domain_errors",
    # Last, as django-axes' installation guide asks: it turns a lockout into a response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "studio.urls"
WSGI_APPLICATION = "studio.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.csp",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.studio",
                "gallery.context_processors.moderation",
                "generator.context_processors.live",
            ],
        },
    },
]

DATABASES = {"default": database_from_url(envstr("DATABASE_URL"), DATA_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
# Email goes out only when a server is configured. Without one, Django's default would
# try SMTP on localhost, so the password reset page says to ask an admin instead.
_email_host = envstr("EMAIL_HOST")
DEFAULT_FROM_EMAIL = envstr("DEFAULT_FROM_EMAIL", "studio@localhost")
MAILERS = (
    {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {
                "host": _email_host,
                "port": envint("EMAIL_PORT", 587, minimum=1),
                "username": envstr("EMAIL_HOST_USER"),
                "password": envsecret("EMAIL_HOST_PASSWORD"),
                "use_tls": envbool("EMAIL_USE_TLS", True),
            },
        }
    }
    if _email_host
    else {"default": {"BACKEND": "studio.mail.NoEmailBackend"}}
)
# The password reset page reads this: is there a way to mail a reset link?
STUDIO_SENDS_EMAIL = bool(_email_host)
# The first account can always be created (it becomes the admin). After that sign-up is
# "approval" (anyone, then an admin approves), "open" (anyone, at once), or "invite"
# (only with an invitation link); an invitation link works in every mode.
SIGNUP_MODE = envstr("SIGNUP_MODE", "approval")
if SIGNUP_MODE not in ("approval", "open", "invite"):
    raise ImproperlyConfigured(f"SIGNUP_MODE={SIGNUP_MODE!r} is not approval, open or invite")
INVITATION_DAYS = envint("INVITATION_DAYS", 7, minimum=1)
# django-axes' backend goes first so a locked-out login is refused before the password
# is checked (and a right password cannot be used to probe during the cool-off).
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "accounts.backends.StudioBackend",
    # The path sessions signed in before the team moved to accounts/ carry; Django
    # only restores a session whose backend is listed here. It never checks passwords.
    "generator.auth.StudioBackend",
]
# Login throttling: this many failed logins lock out the username *from that address*
# for the cool-off. Keyed on the pair, so one person guessing from a shared office IP
# (or the TLS proxy's address) cannot lock their colleagues out, and a username
# attacked from elsewhere still signs in from its usual place.
AXES_FAILURE_LIMIT = envint("LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=envint("LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
LOGIN_REDIRECT_URL = "generator:studio"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# collectstatic's output; images set it outside DATA_DIR so the files built into the image
# are not hidden by the data volume mounted at runtime.
STATIC_ROOT = Path(envstr("STATIC_ROOT") or DATA_DIR / "static")
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(envstr("MEDIA_ROOT", str(DATA_DIR / "media"))).resolve()
# Mirrored files are written under names derived from the generation's UUID, so a
# retry must overwrite its own earlier attempt instead of leaving a renamed copy.
STORAGES = {
    "default": {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"allow_overwrite": True},
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage",
    },
}
# MEDIA_STORAGE=s3 keeps media in an S3-compatible bucket (MinIO in docker-compose.yml)
# so workers on many hosts share it; the media view then answers, after the same
# permission check, with a redirect to a signed URL that expires in S3_URL_TTL seconds.
MEDIA_STORAGE = envstr("MEDIA_STORAGE", "filesystem")
if MEDIA_STORAGE not in ("filesystem", "s3"):
    raise ImproperlyConfigured(f"MEDIA_STORAGE={MEDIA_STORAGE!r} is not filesystem or s3")
# The address browsers reach the bucket at, when it is not S3_ENDPOINT_URL (inside
# compose the services use http://minio:9000); signed URLs name this one.
S3_PUBLIC_ENDPOINT_URL = envstr("S3_PUBLIC_ENDPOINT_URL").rstrip("/")
if MEDIA_STORAGE == "s3":
    if not envstr("S3_BUCKET"):
        raise ImproperlyConfigured("MEDIA_STORAGE=s3 needs S3_BUCKET")
    STORAGES["default"] = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": envstr("S3_BUCKET"),
            "endpoint_url": envstr("S3_ENDPOINT_URL") or None,
            "region_name": envstr("S3_REGION") or None,
            "access_key": envsecret("S3_ACCESS_KEY_ID") or None,
            "secret_key": envsecret("S3_SECRET_ACCESS_KEY") or None,
            "addressing_style": envstr("S3_ADDRESSING_STYLE", "path"),
            "signature_version": "s3v4",
            "querystring_auth": True,
            "querystring_expire": envint("S3_URL_TTL", 300, minimum=10),
            "default_acl": None,
            # Retries overwrite their own files (names come from the generation's UUID).
            "file_overwrite": True,
        },
    }
# Set to the internal location nginx maps to MEDIA_ROOT (e.g. "/protected-media/") to
# hand media bodies to the proxy with X-Accel-Redirect; empty serves them from Django.
MEDIA_ACCEL_REDIRECT_PREFIX = envstr("MEDIA_ACCEL_REDIRECT_PREFIX")

SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SESSION_COOKIE_SECURE", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
BEHIND_TLS_PROXY = envbool("BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Only behind TLS: `make run` serves plain http on localhost, where a redirect to https
# or an HSTS header would lock the browser out of the studio.
SECURE_SSL_REDIRECT = envbool("SECURE_SSL_REDIRECT", BEHIND_TLS_PROXY)
# The container health check calls /healthz over plain http from inside.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
# 30 days by default: long enough for check --deploy and real protection, short enough
# to undo a mistake; no includeSubDomains or preload, which would bind other hosts.
SECURE_HSTS_SECONDS = envint(
    "SECURE_HSTS_SECONDS", 30 * 24 * 3600 if BEHIND_TLS_PROXY else 0, minimum=0
)
# The studio usually runs on one host of a company's domain: HSTS for every subdomain,
# or a preload entry, is the domain owner's decision, so both are opt-in and their
# deploy-check warnings are silenced only while they are off.
SECURE_HSTS_INCLUDE_SUBDOMAINS = envbool("SECURE_HSTS_INCLUDE_SUBDOMAINS", False)
SECURE_HSTS_PRELOAD = envbool("SECURE_HSTS_PRELOAD", False)
SILENCED_SYSTEM_CHECKS = (["security.W005"] if not SECURE_HSTS_INCLUDE_SUBDOMAINS else []) + (
    ["security.W021"] if not SECURE_HSTS_PRELOAD else []
)

SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF, CSP.NONCE],
    "style-src": [CSP.SELF],
    # Media on S3 is a redirect to the bucket: the browser loads it from there.
    "img-src": [CSP.SELF, "data:"]
    + (
        [S3_PUBLIC_ENDPOINT_URL or envstr("S3_ENDPOINT_URL")]
        if MEDIA_STORAGE == "s3" and (S3_PUBLIC_ENDPOINT_URL or envstr("S3_ENDPOINT_URL"))
        else []
    ),
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "frame-ancestors": [CSP.NONE],
    "form-action": [CSP.SELF],
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": envstr("LOG_LEVEL", "INFO")},
    "loggers": {"urllib3": {"level": "WARNING"}},
}

# --- The provider -----------------------------------------------------------------

AIMLAPI_KEY = envsecret("AIMLAPI_KEY")
AIMLAPI_BASE_URL = envstr("AIMLAPI_BASE_URL", "https://api.aimlapi.com/v1").rstrip("/")
if urlsplit(AIMLAPI_BASE_URL).scheme not in ("http", "https"):
    raise ImproperlyConfigured(f"AIMLAPI_BASE_URL={AIMLAPI_BASE_URL!r} is not an http(s) URL")
# Set by `make run` when it starts the bundled offline provider: every page says so.
OFFLINE_PROVIDER = envbool("OFFLINE_PROVIDER", False)

AIMLAPI_CONNECT_TIMEOUT = envfloat("AIMLAPI_CONNECT_TIMEOUT", 5.0, minimum=0.1)
# A generation takes 3-30 s upstream; the read timeout bounds a silent connection and
# the total deadline bounds one that drips bytes.
AIMLAPI_READ_TIMEOUT = envfloat("AIMLAPI_READ_TIMEOUT", 90.0, minimum=0.1)
AIMLAPI_TOTAL_TIMEOUT = envfloat("AIMLAPI_TOTAL_TIMEOUT", 120.0, minimum=0.1)
AIMLAPI_MAX_RESPONSE_BYTES = envint("AIMLAPI_MAX_RESPONSE_BYTES", 64 * 1024 * 1024, minimum=1024)

# Hosts the provider's answers name for images (../docs: cdn.aimlapi.com, fal's media
# CDN, OpenAI's Azure blobs for DALL-E). A leading dot admits subdomains.
MIRROR_ALLOWED_HOSTS = envlist(
    "MIRROR_ALLOWED_HOSTS",
    ["cdn.aimlapi.com", ".fal.media", "oaidalleapiprodscus.blob.core.windows.net"],
)
MIRROR_ALLOW_PRIVATE_ADDRESSES = envbool("MIRROR_ALLOW_PRIVATE_ADDRESSES", False)
MIRROR_MAX_BYTES = envint("MIRROR_MAX_BYTES", 40 * 1024 * 1024, minimum=1024)
MIRROR_TIMEOUT = envfloat("MIRROR_TIMEOUT", 60.0, minimum=0.1)
# The largest image any registry model produces is about 4.2 MP (flux-pro/v1.1-ultra);
# 4096×4096 leaves room for a provider's upscale while a hostile 40 MP RGBA answer
# (over 500 MiB decoded in the image worker) is refused.
MIRROR_MAX_PIXELS = envint("MIRROR_MAX_PIXELS", 4096 * 4096, minimum=1)

# --- The pipeline -------------------------------------------------------------------

# Attempts at the provider call per generation, counting redeliveries after a crash.
GENERATION_MAX_ATTEMPTS = envint("GENERATION_MAX_ATTEMPTS", 5, minimum=1)
GENERATION_MAX_MIRROR_ATTEMPTS = envint("GENERATION_MAX_MIRROR_ATTEMPTS", 5, minimum=1)
# A provider answering 429 says "later", not "no": a stretch of rate limits is waited
# out without counting attempts, for up to this many seconds from its first 429.
GENERATION_RATE_LIMIT_PATIENCE = envint("GENERATION_RATE_LIMIT_PATIENCE", 600, minimum=0)
GENERATION_RETRY_BASE = envfloat("GENERATION_RETRY_BASE", 2.0, minimum=0.0)
GENERATION_RETRY_MAX = envfloat("GENERATION_RETRY_MAX", 60.0, minimum=0.0)
# How long a worker may hold a generation before the sweep assumes it died. It must
# outlast the longest provider call (read timeout and total deadline).
GENERATION_LEASE_SECONDS = envint(
    "GENERATION_LEASE_SECONDS", int(AIMLAPI_TOTAL_TIMEOUT + 60), minimum=1
)
# A queued generation with no worker on it after this long gets its message re-sent.
GENERATION_QUEUE_GRACE_SECONDS = envint("GENERATION_QUEUE_GRACE_SECONDS", 120, minimum=1)
GENERATION_SWEEP_INTERVAL = envint("GENERATION_SWEEP_INTERVAL", 30, minimum=1)
GENERATION_MAX_STORED_RESPONSE = envint("GENERATION_MAX_STORED_RESPONSE", 64 * 1024, minimum=1024)

# Whether a new generation is seen by the whole team or only by its owner (and moderators).
GENERATION_DEFAULT_VISIBILITY = envstr("GENERATION_DEFAULT_VISIBILITY", "shared")
if GENERATION_DEFAULT_VISIBILITY not in ("shared", "private"):
    raise ImproperlyConfigured(
        f"GENERATION_DEFAULT_VISIBILITY={GENERATION_DEFAULT_VISIBILITY!r} is not shared or private"
    )

# Price estimates per image in USD, overriding the registry's list prices:
# "flux-realism=0.035,flux/schnell=0.003". Shown in the form and written to the ledger.
MODEL_PRICES = envprices("MODEL_PRICES")

# Image-to-image: the studio's public https origin. When set, a starting image is sent to
# the provider as a signed URL on it that expires after REFERENCE_URL_TTL seconds;
# otherwise it is sent inline as a data: URI.
STUDIO_PUBLIC_URL = envstr("STUDIO_PUBLIC_URL").rstrip("/")
if STUDIO_PUBLIC_URL and urlsplit(STUDIO_PUBLIC_URL).scheme not in ("http", "https"):
    raise ImproperlyConfigured(f"STUDIO_PUBLIC_URL={STUDIO_PUBLIC_URL!r} is not an http(s) URL")
REFERENCE_URL_TTL = envint("REFERENCE_URL_TTL", 3600, minimum=60)
# Uploaded starting images: bytes and pixels accepted before re-encoding.
REFERENCE_MAX_BYTES = envint("REFERENCE_MAX_BYTES", 10 * 1024 * 1024, minimum=1024)
REFERENCE_MAX_PIXELS = envint("REFERENCE_MAX_PIXELS", 16_000_000, minimum=1)

# Monthly budgets in USD, checked before a generation is queued (estimated cost); an
# admin can set a user's own on the members page. Empty means no budget.
USER_MONTHLY_BUDGET_USD = envdecimal("USER_MONTHLY_BUDGET_USD")
STUDIO_MONTHLY_BUDGET_USD = envdecimal("STUDIO_MONTHLY_BUDGET_USD")
# Fair scheduling: how many of one user's generations in flight go at full priority; the
# rest of a big batch queues behind everyone else's first ones (Redis broker priorities).
GENERATION_FAIR_SHARE = envint("GENERATION_FAIR_SHARE", 4, minimum=1)

# Per-user limits, for the web form and the API alike: generations queued or running
# at once, and generations started in the last hour.
GENERATION_MAX_ACTIVE_PER_USER = envint("GENERATION_MAX_ACTIVE_PER_USER", 16, minimum=1)
GENERATION_MAX_PER_HOUR = envint("GENERATION_MAX_PER_HOUR", 300, minimum=1)
# The Retry-After of a refusal over the concurrency limit while the owner has no finished
# generation yet to estimate a typical duration from.
GENERATION_LIMIT_RETRY_AFTER = envint("GENERATION_LIMIT_RETRY_AFTER", 30, minimum=1)
# How long POST /v1/images/generations waits for the images before answering 202 with
# the generation's Location (it keeps running). 600 s is what OpenAI's SDK waits, so
# the studio answers before the SDK gives up and retries.
API_WAIT_TIMEOUT = envfloat("API_WAIT_TIMEOUT", 600.0, minimum=1.0)
# Lifetime in seconds of the signed image URLs the API answers with (they open without
# a token, for as long as the image stays visible as it was).
API_IMAGE_URL_TTL = envint("API_IMAGE_URL_TTL", 86400, minimum=60)
# Database connections one web process uses at most for waiting API calls.
API_DB_CONCURRENCY = envint("API_DB_CONCURRENCY", 8, minimum=1)

# --- Celery -------------------------------------------------------------------------

CELERY_BROKER_URL = envstr("CELERY_BROKER_URL")
if not CELERY_BROKER_URL:
    # The embedded broker: messages are files under DATA_DIR, so `make run` needs no
    # server and still runs real worker processes.
    _broker_dir = DATA_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        # An unacked message comes back after this; it must outlast a task's time
        # limit plus the longest retry countdown, or a running task is delivered twice.
        "visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", 1800, minimum=1),
        # kombu waits forever on a paused or black-holed Redis without these. They
        # bound a publish from the web: attempts x socket_timeout, about 6 s (tests/
        # test_chaos_broker.py). BRPOP runs in the event loop and needs none of them.
        "socket_connect_timeout": 2,
        "socket_timeout": 2,
        # A timed-out LPUSH may have landed: replaying it would send a message twice.
        "retry_on_timeout": False,
        # A consumer whose BRPOP never comes back (a frozen or paused Redis) is dropped
        # and reconnected after about 1 + 2 x this many seconds (kombu's redis docs).
        "health_check_interval": 10,
        # Fair scheduling (services.fair_priority): each queue is one Redis list per
        # step and workers pop step 0 first, so a big batch's later generations
        # (steps 3-9) wait behind everyone's first ones.
        "priority_steps": [0, 3, 6, 9],
        "max_retries": 2,
        "interval_start": 0,
        "interval_step": 0.5,
        "interval_max": 1,
    }
CELERY_BROKER_CONNECTION_TIMEOUT = 3
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One retry covers a connection the pool kept across a Redis restart; more would only
# keep a web request waiting on a dead broker (the sweep sends what failed, later).
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0,
    "interval_step": 0.5,
    "interval_max": 1,
}
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", 240, minimum=1)
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", 300, minimum=1)
CELERY_WORKER_MAX_TASKS_PER_CHILD = 200
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_TASK_DEFAULT_QUEUE = "images"
# Provider calls are pure waiting and run on a thread pool; decoding and thumbnails
# are CPU work and run on a process pool (see README, "Workers"). The sweep has a queue
# of its own that both workers take (studio/processes.py): on the image queue it stopped
# with the image worker, and its messages counted as mirror backlog in the sweep itself.
CELERY_TASK_ROUTES = {
    "generator.tasks.generation_call": {"queue": "provider"},
    "generator.tasks.generation_mirror": {"queue": "images"},
    "generator.tasks.generation_sweep": {"queue": "sweep"},
}
# One worker node: threads for provider calls, processes for image work (README).
WORKER_PROVIDER_CONCURRENCY = envint("WORKER_PROVIDER_CONCURRENCY", 32, minimum=1)
WORKER_IMAGE_CONCURRENCY = envint("WORKER_IMAGE_CONCURRENCY", 2, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "generation-sweep": {
        "task": "generator.tasks.generation_sweep",
        "schedule": float(GENERATION_SWEEP_INTERVAL),
    },
}
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")

# --- Live updates -------------------------------------------------------------------

# Pages follow generations and badges over one server-sent event stream per browser.
# The events are kept for replay (a reconnecting browser sends Last-Event-ID): in a
# Redis stream when the broker is Redis, else in a table of the database, so the
# embedded setup needs no service of its own.
LIVE_EVENTS_REDIS_URL = CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else ""
LIVE_EVENTS_KEY = "studio:live-events"
# Seconds an event stays available for replay.
SSE_EVENT_RETENTION = envint("SSE_EVENT_RETENTION", 3600, minimum=60)
# Streams one web process serves at once; beyond it the browser is answered 503 with
# Retry-After and falls back to polling.
SSE_MAX_CONNECTIONS = envint("SSE_MAX_CONNECTIONS", 200, minimum=1)
SSE_RETRY_AFTER = envint("SSE_RETRY_AFTER", 30, minimum=1)
# A comment line this often keeps proxies from closing an idle stream and shows a
# server whether the browser is still there.
SSE_HEARTBEAT_SECONDS = envfloat("SSE_HEARTBEAT_SECONDS", 15.0, minimum=0.1)
# A stream ends after this long and the browser reconnects (replaying what it missed),
# so a restart or a permission change is picked up and no request lives forever.
SSE_STREAM_SECONDS = envint("SSE_STREAM_SECONDS", 300, minimum=1)
