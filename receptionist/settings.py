"""Every knob of the product, read from the environment in this one place.

The defaults run the whole product on one machine with nothing else installed:
SQLite, an in-memory channel layer and Celery tasks executed in-process.
`.env.example` documents every variable read here.
"""

from __future__ import annotations

import ipaddress
import json
import os
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_str(name: str, default: str = "") -> str:
    """A string setting; NAME_FILE (a mounted secret) wins over NAME."""
    file_path = os.environ.get(f"{name}_FILE")
    if file_path:
        try:
            return Path(file_path).read_text().strip()
        except OSError as exc:  # fail loudly: a missing secret file is a deployment error
            raise ImproperlyConfigured(f"{name}_FILE points at {file_path!r}, which cannot be read: {exc}")
    return os.environ.get(name, default)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}")


def _env_number(name: str, default: Any, parse: Callable[[str], Any], kind: str) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {kind}, not {raw!r}")


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# --- Core -------------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", False)
_DEV_SECRET_KEY = "dev-only-insecure-secret-key-do-not-use-in-production"
SECRET_KEY = env_str("SECRET_KEY", _DEV_SECRET_KEY if DEBUG else "")
if not DEBUG and (not SECRET_KEY or SECRET_KEY == _DEV_SECRET_KEY or len(SECRET_KEY) < 50):
    raise ImproperlyConfigured(
        "SECRET_KEY must be set to a random string of at least 50 characters when DEBUG is off "
        "(generate one with: python -c 'import secrets; print(secrets.token_urlsafe(50))')."
    )

PUBLIC_BASE_URL = env_str("PUBLIC_BASE_URL", "http://127.0.0.1:8000").rstrip("/")
_public = urlparse(PUBLIC_BASE_URL)
if _public.scheme not in {"http", "https"} or not _public.hostname:
    raise ImproperlyConfigured(f"PUBLIC_BASE_URL must be an absolute http(s) URL, not {PUBLIC_BASE_URL!r}")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "") or [_public.hostname]
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS") or [f"{_public.scheme}://{_public.netloc}"]

INSTALLED_APPS = [
    "daphne",  # first: its runserver serves HTTP and WebSockets in development
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "allauth",
    "allauth.account",
    "allauth.socialaccount",
    "allauth.socialaccount.providers.google",
    "accounts",
    "billing",
    "calls",
    "voice",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "receptionist.static_files.StaticFilesMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]

ROOT_URLCONF = "receptionist.urls"
ASGI_APPLICATION = "receptionist.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.current_business",
                "accounts.context_processors.demo_mode",
            ],
        },
    },
]

# --- Data stores ------------------------------------------------------------------------------

DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=env_int("DB_CONN_MAX_AGE", 0))}
# A psycopg connection pool (PostgreSQL only). The web process turns it on (receptionist/asgi.py): its calls make
# many short database hops from a few threads, and without a pool each hop opens a connection (a PostgreSQL
# backend process) and closes it. Celery's prefork workers keep plain connections: a pool must not cross a fork.
DB_POOL = env_bool("DB_POOL", False)
# The web process's database hops (a call's set-up and writes, async views) run on this many threads, all started
# before the process takes traffic; the pool opens one connection per thread up front, so a burst of calls never
# waits for PostgreSQL to start a backend. Few on purpose: the ORM's work holds the GIL, and every extra thread
# busy with it is one more the event loop queues behind before it can forward a frame (docs/benchmarks.md: 100
# calls arriving in 2 s on a fresh process, frame round trip p99 6-23 ms with 2 threads, 28-78 ms with 8).
DB_THREADS = max(1, env_int("DB_THREADS", 2))
# Blocking calls to outside services (Twilio's REST API, the task broker) get threads of their own, so a slow one
# never holds the database hops' few threads (voice/session/shared.py `in_io_threads`).
IO_THREADS = max(1, env_int("IO_THREADS", 4))
DB_POOL_MIN_SIZE = env_int("DB_POOL_MIN_SIZE", DB_THREADS)
DB_POOL_MAX_SIZE = env_int("DB_POOL_MAX_SIZE", 12)
DB_POOL_TIMEOUT_SECONDS = env_int("DB_POOL_TIMEOUT_SECONDS", 10)  # waiting for a free connection, then an error
if DB_POOL and DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    if DATABASES["default"].get("CONN_MAX_AGE"):
        raise ImproperlyConfigured("DB_POOL and DB_CONN_MAX_AGE cannot both be on: the pool keeps the connections")
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": DB_POOL_MIN_SIZE, "max_size": max(DB_POOL_MIN_SIZE, DB_POOL_MAX_SIZE),
        "timeout": DB_POOL_TIMEOUT_SECONDS}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # One machine without PostgreSQL: the server, the call sessions' recorders and the post-call threads write at
    # once. A transaction that read first and then writes cannot wait for another writer (SQLite answers
    # "database is locked" at once), so every transaction takes the write lock when it begins and waits up to
    # `timeout` seconds for it.
    DATABASES["default"].setdefault("OPTIONS", {}).update({"transaction_mode": "IMMEDIATE", "timeout": 20})
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env_str("REDIS_URL", "")
if REDIS_URL:
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            # socket_timeout above channels_redis' 5 s blocking pop: redis-py 8 defaults to 5 s and
            # would otherwise kill every consumer that sits idle for 5 s.
            "CONFIG": {"hosts": [{"address": REDIS_URL, "socket_timeout": 10}], "capacity": 1500, "expiry": 60},
        }
    }
else:
    CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}

CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
if REDIS_URL:
    # Shared across web processes: allauth's rate limits and single-use stream tokens rely on it.
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL,
                          "KEY_PREFIX": env_str("CACHE_KEY_PREFIX", "receptionist")}}

# --- Celery -----------------------------------------------------------------------------------

# Without Redis tasks run eagerly, but apply_async still opens a producer on this broker; kombu warns on every
# one whose URL names no host, so the in-memory broker gets one.
CELERY_BROKER_URL = REDIS_URL or "memory://localhost/"
CELERY_RESULT_BACKEND = None
# Embedded mode: tasks run in-process; the post-call work on a small background executor (calls/background.py),
# never in the thread that finalised the call.
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 60)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 90)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# The supervisor's requests have a queue of their own: a caller is waiting on each, and each spends seconds
# waiting for the model (I/O, not CPU), so the Procfile serves it with a `supervisor` worker of many threads
# (SUPERVISOR_CONCURRENCY) instead of a few prefork processes that post-call work could keep busy. Both queues
# are declared, so a worker started without -Q/-X (make run, tests) serves both.
CELERY_SUPERVISOR_QUEUE = env_str("CELERY_SUPERVISOR_QUEUE", "supervisor") or "supervisor"
CELERY_TASK_DEFAULT_QUEUE = "celery"
CELERY_TASK_QUEUES = {"celery": {}, CELERY_SUPERVISOR_QUEUE: {}} if CELERY_SUPERVISOR_QUEUE != "celery" else {"celery": {}}
CELERY_TASK_ROUTES = {"voice.ask_supervisor": {"queue": CELERY_SUPERVISOR_QUEUE}}

# --- Accounts (django-allauth) ----------------------------------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/dashboard/"

ACCOUNT_LOGIN_METHODS = {"email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "password1*", "password2*"]
ACCOUNT_USER_MODEL_USERNAME_FIELD = None
ACCOUNT_EMAIL_VERIFICATION = env_str("ACCOUNT_EMAIL_VERIFICATION", "optional" if DEBUG else "mandatory")
if not DEBUG and ACCOUNT_EMAIL_VERIFICATION != "mandatory":
    raise ImproperlyConfigured("ACCOUNT_EMAIL_VERIFICATION must be 'mandatory' when DEBUG is off")
ACCOUNT_UNIQUE_EMAIL = True
ACCOUNT_LOGIN_ON_EMAIL_CONFIRMATION = True
ACCOUNT_CONFIRM_EMAIL_ON_GET = False
# ACCOUNT_RATE_LIMITS is deliberately unset: allauth then applies its built-in limits (failed logins per IP and
# per email address, signup, password reset, email confirmation, ...). Setting it to False would switch them all off.
ACCOUNT_ADAPTER = "accounts.adapters.AccountAdapter"
# Our labels, and at sign-up the browser's time zone for the new business.
ACCOUNT_FORMS = {"login": "accounts.forms.LoginForm", "signup": "accounts.forms.SignupForm",
                 "reset_password": "accounts.forms.ResetPasswordForm",
                 "reset_password_from_key": "accounts.forms.ResetPasswordKeyForm",
                 "change_password": "accounts.forms.ChangePasswordForm"}
ACCOUNT_DEFAULT_HTTP_PROTOCOL = _public.scheme
SOCIALACCOUNT_ADAPTER = "accounts.adapters.SocialAccountAdapter"
SOCIALACCOUNT_AUTO_SIGNUP = True
SOCIALACCOUNT_LOGIN_ON_GET = False
SOCIALACCOUNT_EMAIL_AUTHENTICATION_AUTO_CONNECT = True
GOOGLE_CLIENT_ID = env_str("GOOGLE_CLIENT_ID")
GOOGLE_CLIENT_SECRET = env_str("GOOGLE_CLIENT_SECRET")
SOCIALACCOUNT_PROVIDERS: dict = {}
if GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET:
    SOCIALACCOUNT_PROVIDERS["google"] = {
        "APP": {"client_id": GOOGLE_CLIENT_ID, "secret": GOOGLE_CLIENT_SECRET, "key": ""},
        "SCOPE": ["profile", "email"],
        "AUTH_PARAMS": {"access_type": "online"},
        "OAUTH_PKCE_ENABLED": True,
        # Google verifies addresses, so a Google login with an existing account's email signs into it.
        "EMAIL_AUTHENTICATION": True,
    }
# Behind a proxy allauth's rate limits need the real client address (accounts.http.client_ip reads it too).
ALLAUTH_TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)

# /admin/ has its own login form, which allauth's limits don't cover: failed admin logins are counted in the
# cache per client address and per username; past either limit the form answers 429 without checking passwords.
ADMIN_LOGIN_FAILURE_WINDOW_SECONDS = env_int("ADMIN_LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60)
ADMIN_LOGIN_MAX_FAILURES_PER_IP = env_int("ADMIN_LOGIN_MAX_FAILURES_PER_IP", 20)
ADMIN_LOGIN_MAX_FAILURES_PER_USERNAME = env_int("ADMIN_LOGIN_MAX_FAILURES_PER_USERNAME", 5)

INVITE_MAX_AGE_DAYS = env_int("INVITE_MAX_AGE_DAYS", 7)
# Invitations each business, and each inviting user (across their businesses), may send per hour and per day;
# every sent invitation counts, revoked or not. They are emails sent from our domain to any address.
INVITES_PER_BUSINESS_PER_HOUR = env_int("INVITES_PER_BUSINESS_PER_HOUR", 10)
INVITES_PER_BUSINESS_PER_DAY = env_int("INVITES_PER_BUSINESS_PER_DAY", 30)
INVITES_PER_USER_PER_HOUR = env_int("INVITES_PER_USER_PER_HOUR", 10)
INVITES_PER_USER_PER_DAY = env_int("INVITES_PER_USER_PER_DAY", 30)

# --- Email ------------------------------------------------------------------------------------

EMAIL_HOST = env_str("EMAIL_HOST")
EMAIL_BACKEND = env_str(
    "EMAIL_BACKEND",
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend",
)
EMAIL_PORT = env_int("EMAIL_PORT", 587)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "AI Receptionist <no-reply@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL

# --- HTTPS and cookies ------------------------------------------------------------------------

# TLS is terminated by the proxy in front of us; it tells us the original scheme in this header.
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
_https = _public.scheme == "https"
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", _https and not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz/$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", _https)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", _https)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31536000 if _https and not DEBUG else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
# Opt-in: a preloaded domain is built into browsers and takes months to remove; only the operator can decide
# that every subdomain will be HTTPS forever.
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", False)
SECURE_REFERRER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# `check --deploy` warns (security.W021) whenever preload is off; off is our deliberate default (above), so
# that one warning is silenced. Every other deployment warning still counts (tests/test_settings.py).
# SILENCED_SYSTEM_CHECKS adds more, e.g. voice.W001 when OpenAI moves a model's shutdown date that
# voice/model_shutdowns.py still lists.
SILENCED_SYSTEM_CHECKS = ["security.W021", *env_list("SILENCED_SYSTEM_CHECKS")]

# --- Operator metrics (/metrics, receptionist/metrics.py) ------------------------------------------

# Where web and worker processes on one machine keep their metrics so that any web process's /metrics shows them
# all (prometheus-client's multi-process mode; the library reads this variable itself). Unset: each process
# shows only its own, which is right for one process (`make run`). Emptied per deploy, before the processes
# start (README "Operator metrics").
PROMETHEUS_MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "").strip()  # as the library reads it: no _FILE
# Who may read /metrics. With METRICS_TOKEN set a scraper must send `Authorization: Bearer <token>`; with
# METRICS_ALLOWED_NETWORKS (comma-separated CIDRs) it must come from one of them (behind a proxy, counted with
# TRUSTED_PROXY_COUNT). Both set: both apply. Neither: only this machine (loopback) may scrape.
METRICS_TOKEN = env_str("METRICS_TOKEN")
METRICS_ALLOWED_NETWORKS = env_list("METRICS_ALLOWED_NETWORKS")
for _network in METRICS_ALLOWED_NETWORKS:
    try:
        ipaddress.ip_network(_network, strict=False)
    except ValueError:
        raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS takes comma-separated CIDRs, not {_network!r}")

# --- Static files, i18n -----------------------------------------------------------------------

STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG and env_bool("STATIC_MANIFEST", True)
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
WHITENOISE_USE_FINDERS = env_bool("WHITENOISE_USE_FINDERS", DEBUG)
# Files browsers ask for at the site's root (/favicon.ico, which every page without a <link rel="icon"> -- the
# admin, error pages -- makes them request), served by WhiteNoise like the rest of the static files.
WHITENOISE_ROOT = BASE_DIR / "static" / "root"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Outside services -------------------------------------------------------------------------

OPENAI_API_KEY = env_str("OPENAI_API_KEY")
OPENAI_BASE_URL = env_str("OPENAI_BASE_URL", "https://api.openai.com/v1")
OPENAI_REALTIME_URL = env_str("OPENAI_REALTIME_URL", "wss://api.openai.com/v1/realtime")
# gpt-realtime (the first GA model) is reported to shut down on 2027-01-20; gpt-realtime-2.1 is its named
# replacement. `manage.py check` warns about any configured model on voice/model_shutdowns.py's list.
OPENAI_REALTIME_MODEL = env_str("OPENAI_REALTIME_MODEL", "gpt-realtime-2.1")
OPENAI_SUPERVISOR_MODEL = env_str("OPENAI_SUPERVISOR_MODEL", "gpt-4.1")
# The voice engine a business gets unless its owner chose one (agent settings): `realtime` (OpenAI Realtime, turn by
# turn, our supervisor on Celery) or `live` (GPT-Live, full duplex, reasoning and tools delegated to a Responses
# backend whose function calls our server runs).
VOICE_ENGINE = env_str("VOICE_ENGINE", "realtime")
if VOICE_ENGINE not in {"realtime", "live"}:
    raise ImproperlyConfigured("VOICE_ENGINE must be 'realtime' or 'live'")
OPENAI_LIVE_URL = env_str("OPENAI_LIVE_URL", "wss://api.openai.com/v1/live/sessions")
OPENAI_LIVE_MODEL = env_str("OPENAI_LIVE_MODEL", "gpt-live-1.1")
# GPT-Live's delegation backend (Responses): the business tools and the supervisor's instructions go to it.
OPENAI_DELEGATION_MODEL = env_str("OPENAI_DELEGATION_MODEL", "") or OPENAI_SUPERVISOR_MODEL
OPENAI_SUMMARY_MODEL = env_str("OPENAI_SUMMARY_MODEL", "gpt-4.1-mini")
# On when the OpenAI addresses point at the local stand-in (scripts/run.sh sets it without OPENAI_API_KEY):
# every page says that replies are simulated.
DEMO_MODE = env_bool("DEMO_MODE", False)

TWILIO_ACCOUNT_SID = env_str("TWILIO_ACCOUNT_SID")
TWILIO_AUTH_TOKEN = env_str("TWILIO_AUTH_TOKEN")
# The twilio client's API host; only the local stand-in in tests and demos changes it.
TWILIO_API_BASE_URL = env_str("TWILIO_API_BASE_URL", "")
# Countries whose local numbers owners can search and buy in the portal (ISO codes, comma-separated; the first
# is preselected). Some countries need an address or regulatory bundle on the Twilio account before Twilio sells.
TWILIO_NUMBER_COUNTRIES = [c.strip().upper() for c in env_str("TWILIO_NUMBER_COUNTRIES", "US,CA").split(",") if c.strip()]
if not TWILIO_NUMBER_COUNTRIES or not all(len(c) == 2 and c.isalpha() for c in TWILIO_NUMBER_COUNTRIES):
    raise ImproperlyConfigured("TWILIO_NUMBER_COUNTRIES must list two-letter country codes, like US,CA")

POLAR_ACCESS_TOKEN = env_str("POLAR_ACCESS_TOKEN")
POLAR_SERVER = env_str("POLAR_SERVER", "sandbox")
if POLAR_SERVER not in {"sandbox", "production"}:
    raise ImproperlyConfigured("POLAR_SERVER must be 'sandbox' or 'production'")
POLAR_WEBHOOK_SECRET = env_str("POLAR_WEBHOOK_SECRET")

# --- Logging ----------------------------------------------------------------------------------

LOG_LEVEL = env_str("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        # daphne's runserver attaches its own handler; don't print every request twice.
        "django.channels.server": {"handlers": ["console"], "level": "INFO", "propagate": False},
    },
}

# Realtime model prices, USD per million tokens (cached tokens are a subset of input tokens), from OpenAI's model
# pages as of Nov 2026. A model missing here is priced as the default model. The older models stay listed so
# calls made with them keep their cost; voice/model_shutdowns.py says when they stop working.
# Override with REALTIME_PRICES_JSON='{"model": {"text_in": ..., ...}}'.
_GPT_REALTIME_2 = {"text_in": 4.00, "text_cached": 0.40, "text_out": 24.00,
                   "audio_in": 32.00, "audio_cached": 0.40, "audio_out": 64.00}
_GPT_REALTIME_2_MINI = {"text_in": 0.60, "text_cached": 0.06, "text_out": 2.40,
                        "audio_in": 10.00, "audio_cached": 0.30, "audio_out": 20.00}
_GPT_REALTIME_1 = {**_GPT_REALTIME_2, "text_out": 16.00}
REALTIME_PRICES = {
    # Current models.
    "gpt-realtime-2.1": _GPT_REALTIME_2,
    "gpt-realtime-2": _GPT_REALTIME_2,
    "gpt-realtime-2.1-mini": _GPT_REALTIME_2_MINI,
    # Older models (gpt-realtime and gpt-realtime-mini are reported to shut down on 2027-01-20).
    "gpt-realtime-1.5": _GPT_REALTIME_1,
    "gpt-realtime": _GPT_REALTIME_1,
    "gpt-realtime-mini": _GPT_REALTIME_2_MINI,
}
REALTIME_PRICES.update(json.loads(env_str("REALTIME_PRICES_JSON", "{}")))
REALTIME_PRICES.setdefault("default", REALTIME_PRICES.get(OPENAI_REALTIME_MODEL, _GPT_REALTIME_2))

# GPT-Live prices: USD per minute of active session time, billed per second (not rounded), from OpenAI's model
# pages as of Nov 2026; the backend's tokens are priced by SUPERVISOR_PRICES under OPENAI_DELEGATION_MODEL.
# Override with LIVE_PRICES_JSON='{"model": {"active_minute": ...}}'.
LIVE_PRICES = {
    "gpt-live-1.1": {"active_minute": 0.05},
    "gpt-live-1": {"active_minute": 0.05},
}
LIVE_PRICES.update(json.loads(env_str("LIVE_PRICES_JSON", "{}")))
LIVE_PRICES.setdefault("default", LIVE_PRICES.get(OPENAI_LIVE_MODEL, {"active_minute": 0.05}))

# --- Voice ------------------------------------------------------------------------------------

OPENAI_TRANSCRIPTION_MODEL = env_str("OPENAI_TRANSCRIPTION_MODEL", "gpt-4o-mini-transcribe")
# How long a stream token from the incoming-call webhook stays valid (Twilio connects within a second or two).
STREAM_TOKEN_MAX_AGE_SECONDS = env_int("STREAM_TOKEN_MAX_AGE_SECONDS", 60)
# A media socket must send Twilio's `start` (with its token) this soon after opening, or it is closed (4408).
MEDIA_STREAM_START_SECONDS = env_int("MEDIA_STREAM_START_SECONDS", 5)
# On SIGTERM (a deploy) live calls get this long to hear the restart sentence and hang up before uvicorn shuts
# down; keep it below the Procfile's --timeout-graceful-shutdown. 0: no drain, calls are cut at once.
CALL_DRAIN_SECONDS = env_int("CALL_DRAIN_SECONDS", 15)
# Log every module imported after a web process is ready, with the importing stack (an import on the live path
# stalls every call's audio while it runs). For tests and for hunting a stall; off in production.
LOG_LATE_IMPORTS = env_bool("LOG_LATE_IMPORTS", False)
# The longest call a business gets: then the agent says goodbye and hangs up. Not bound to OpenAI's session cap:
# a call outlasting a session moves to a new one (below).
CALL_MAX_SECONDS = env_int("CALL_MAX_SECONDS", 2 * 60 * 60)
# OpenAI ends a Realtime session at 60 minutes (error `session_expired`, close 1001). This long before that, the
# call opens the next session, seeds it with the transcript and switches at the next moment nobody speaks.
OPENAI_SESSION_MAX_SECONDS = env_int("OPENAI_SESSION_MAX_SECONDS", 60 * 60)
OPENAI_SESSION_RENEW_MARGIN_SECONDS = env_int("OPENAI_SESSION_RENEW_MARGIN_SECONDS", 5 * 60)
# OpenAI's socket lost mid-call (a drop, an error close, `session_expired`): a new session is opened, seeded with
# the transcript, within this many seconds (first try at once, then growing); caller audio in the gap is held, up
# to OPENAI_RECONNECT_AUDIO_SECONDS of it. After the budget, or this many reconnects on one call, the fallback.
OPENAI_RECONNECT_BUDGET_SECONDS = env_float("OPENAI_RECONNECT_BUDGET_SECONDS", 4.0)
OPENAI_RECONNECT_AUDIO_SECONDS = env_int("OPENAI_RECONNECT_AUDIO_SECONDS", 10)
OPENAI_RECONNECTS_PER_CALL = env_int("OPENAI_RECONNECTS_PER_CALL", 5)
# GPT-Live: a session says when it expires (session.started's expires_at; about 2 hours observed). Renewal uses
# OPENAI_SESSION_RENEW_MARGIN_SECONDS before that; this cap applies when a session does not say.
OPENAI_LIVE_SESSION_MAX_SECONDS = env_int("OPENAI_LIVE_SESSION_MAX_SECONDS", 2 * 60 * 60)
# GPT-Live: when a business tool the backend called takes longer than this, the voice model is asked to tell the
# caller what is happening ("I'm checking the calendar"), so the line never goes quiet.
LIVE_TOOL_PROGRESS_SECONDS = env_float("LIVE_TOOL_PROGRESS_SECONDS", 1.5)
# GPT-Live: at hang-up we send session.close and wait this long for session.closed (with the session's usage).
LIVE_CLOSE_WAIT_SECONDS = env_float("LIVE_CLOSE_WAIT_SECONDS", 3.0)
# Browser test calls run on the operator's OpenAI key and are never billed to Polar: keep them short and few at a time.
BROWSER_CALL_MAX_SECONDS = env_int("BROWSER_CALL_MAX_SECONDS", 10 * 60)
BROWSER_CALLS_AT_ONCE = env_int("BROWSER_CALLS_AT_ONCE", 2)
# Transfers to a person (the agent's transfer, and calls billing refuses): where they may go and for how long.
# Comma-separated ISO country codes (e.g. "US,CA"); empty = only the country of the business's own number.
# Premium-rate, shared-cost and other surcharged numbers are refused whatever the country.
TRANSFER_ALLOWED_COUNTRIES = [code.upper() for code in env_list("TRANSFER_ALLOWED_COUNTRIES")]
_unknown_countries = [code for code in TRANSFER_ALLOWED_COUNTRIES if len(code) != 2 or not code.isalpha()]
if _unknown_countries:
    raise ImproperlyConfigured(f"TRANSFER_ALLOWED_COUNTRIES takes two-letter ISO country codes, not {_unknown_countries}")
# Every <Dial> we emit hangs up after this long (Twilio's own default is 4 hours).
TRANSFER_TIME_LIMIT_MINUTES = env_int("TRANSFER_TIME_LIMIT_MINUTES", 30)
if not 1 <= TRANSFER_TIME_LIMIT_MINUTES <= 24 * 60:
    raise ImproperlyConfigured("TRANSFER_TIME_LIMIT_MINUTES must be between 1 and 1440")
# Voicemail, when the model is gone and the business takes voicemail (Twilio <Record>): the longest message, and
# how long the summary waits for Twilio's recording of it before summarising the call without it.
VOICEMAIL_MAX_SECONDS = env_int("VOICEMAIL_MAX_SECONDS", 120)
if not 10 <= VOICEMAIL_MAX_SECONDS <= 3600:
    raise ImproperlyConfigured("VOICEMAIL_MAX_SECONDS must be between 10 and 3600")
VOICEMAIL_WAIT_SECONDS = env_int("VOICEMAIL_WAIT_SECONDS", VOICEMAIL_MAX_SECONDS + 300)
# A recording larger than this is not played or transcribed (a 2-minute Twilio WAV is about 2 MB).
VOICEMAIL_MAX_BYTES = env_int("VOICEMAIL_MAX_BYTES", 25 * 1024 * 1024)
# Test-call time per business and local day (all its members together); on the free trial it spends trial minutes.
BROWSER_CALL_DAILY_MINUTES = env_int("BROWSER_CALL_DAILY_MINUTES", 20)
# The page's microphone sends real-time audio; more than this much ahead of real time is dropped...
BROWSER_AUDIO_BURST_MS = env_int("BROWSER_AUDIO_BURST_MS", 2000)
# ...and audio still arriving too fast after this many seconds ends the call.
BROWSER_AUDIO_EXCESS_SECONDS = env_int("BROWSER_AUDIO_EXCESS_SECONDS", 3)
# How often a live call re-reads the minutes it has left (free trial, hard cap, test-call quota), off the
# audio path, so calls running at once share what is left.
CALL_ALLOWANCE_RECHECK_SECONDS = env_int("CALL_ALLOWANCE_RECHECK_SECONDS", 15)
# The same for a call with no cap (a metered plan): only a plan change can give it one, so it looks less often.
CALL_ALLOWANCE_UNCAPPED_RECHECK_SECONDS = env_int("CALL_ALLOWANCE_UNCAPPED_RECHECK_SECONDS", 60)
# Server VAD tuning for phone audio.
VAD_SILENCE_MS = env_int("VAD_SILENCE_MS", 500)
VAD_PREFIX_PADDING_MS = env_int("VAD_PREFIX_PADDING_MS", 300)

# --- Supervisor -------------------------------------------------------------------------------

# How long the voice agent waits for the supervisor before apologising and offering to take a message.
SUPERVISOR_DEADLINE_SECONDS = float(env_str("SUPERVISOR_DEADLINE_SECONDS", "8"))
SUPERVISOR_MAX_STEPS = env_int("SUPERVISOR_MAX_STEPS", 6)
SUPERVISOR_MODEL_TIMEOUT_SECONDS = float(env_str("SUPERVISOR_MODEL_TIMEOUT_SECONDS", "7"))
# USD per million tokens for the supervisor's text model.
SUPERVISOR_PRICES = {
    "default": {"in": 2.00, "cached": 0.50, "out": 8.00},
    "gpt-4.1": {"in": 2.00, "cached": 0.50, "out": 8.00},
    "gpt-4.1-mini": {"in": 0.40, "cached": 0.10, "out": 1.60},
}
SUPERVISOR_PRICES.update(json.loads(env_str("SUPERVISOR_PRICES_JSON", "{}")))

# --- Billing (Polar) --------------------------------------------------------------------------

# Empty POLAR_ACCESS_TOKEN: checkout and portal are off (404); calls are still gated by the free trial.
# Overrides Polar's API address (sandbox/production come from POLAR_SERVER); only for a local stand-in.
POLAR_API_BASE_URL = env_str("POLAR_API_BASE_URL", "")
POLAR_TIMEOUT_SECONDS = float(env_str("POLAR_TIMEOUT_SECONDS", "10"))
# With POLAR_WEBHOOK_SECRET set, build the SDK's webhook parser (~9 s of CPU) in a background thread at start-up.
POLAR_WARM_UP = env_bool("POLAR_WARM_UP", True)
# Minutes of calls a new business gets before it must subscribe.
BILLING_TRIAL_MINUTES = env_int("BILLING_TRIAL_MINUTES", 30)
# The plans on the pricing page, each mapped to a Polar product: a JSON list of
# {"key", "name", "product_id", "included_minutes", "hard_cap", "price"}; "price" is shown when Polar is unreachable.
BILLING_PLANS = json.loads(env_str("BILLING_PLANS", "[]"))
if not isinstance(BILLING_PLANS, list) or not all(isinstance(p, dict) and p.get("key") and p.get("product_id")
                                                    for p in BILLING_PLANS):
    raise ImproperlyConfigured("BILLING_PLANS must be a JSON list of objects, each with a key and a product_id")
# The event name the Polar meter counts (sum of metadata.minutes).
BILLING_USAGE_EVENT_NAME = env_str("BILLING_USAGE_EVENT_NAME", "call.completed")
# How long prices read from Polar stay cached.
BILLING_PRICE_CACHE_SECONDS = env_int("BILLING_PRICE_CACHE_SECONDS", 3600)
# Celery beat re-reports any finished call whose usage has not reached Polar (a missed status callback, an outage).
BILLING_USAGE_SWEEP_SECONDS = env_int("BILLING_USAGE_SWEEP_SECONDS", 300)
# Attempts to send one call's usage to Polar before it is given up (left for the admin's "Send again"): a task
# tries 7 times over ~10 minutes, the sweep starts another round 15-20 minutes later, so 360 is about a day of
# Polar being unreachable. A usage event Polar refuses (4xx other than 429) is given up at once.
BILLING_USAGE_MAX_ATTEMPTS = env_int("BILLING_USAGE_MAX_ATTEMPTS", 360)
CELERY_BEAT_SCHEDULE = {
    "billing-sweep-unreported-usage": {"task": "billing.sweep_unreported_usage",
                                       "schedule": float(BILLING_USAGE_SWEEP_SECONDS)},
}

# --- After the call (calls/postcall/): summary, email, webhook, reaper ----------------------------

# USD per million tokens for the summary model; override with SUMMARY_PRICES_JSON.
SUMMARY_PRICES = {
    "default": {"in": 0.40, "cached": 0.10, "out": 1.60},
    "gpt-4.1-mini": {"in": 0.40, "cached": 0.10, "out": 1.60},
    "gpt-4.1": {"in": 2.00, "cached": 0.50, "out": 8.00},
}
SUMMARY_PRICES.update(json.loads(env_str("SUMMARY_PRICES_JSON", "{}")))
SUMMARY_MODEL_TIMEOUT_SECONDS = float(env_str("SUMMARY_MODEL_TIMEOUT_SECONDS", "30"))
# Retries of a failing summary (transient model errors) before the call is marked with the error.
SUMMARY_MAX_RETRIES = env_int("SUMMARY_MAX_RETRIES", 4)
# Backoff of post-call retries: base * 2**retry seconds, capped.
POSTCALL_RETRY_BASE_SECONDS = float(env_str("POSTCALL_RETRY_BASE_SECONDS", "10"))
POSTCALL_RETRY_MAX_SECONDS = float(env_str("POSTCALL_RETRY_MAX_SECONDS", "3600"))
EMAIL_MAX_RETRIES = env_int("EMAIL_MAX_RETRIES", 5)
# The file-based email backend's folder (EMAIL_BACKEND=django.core.mail.backends.filebased.EmailBackend).
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH") or str(BASE_DIR / "test-artifacts" / "mail")
WEBHOOK_MAX_ATTEMPTS = env_int("WEBHOOK_MAX_ATTEMPTS", 8)
# Each network step (connect, each read and write) of a webhook attempt waits at most WEBHOOK_TIMEOUT_SECONDS;
# the whole attempt (DNS, connect, request, response) at most WEBHOOK_DEADLINE_SECONDS; at most
# WEBHOOK_MAX_RESPONSE_BYTES of the receiver's answer are read.
WEBHOOK_TIMEOUT_SECONDS = float(env_str("WEBHOOK_TIMEOUT_SECONDS", "10"))
WEBHOOK_DEADLINE_SECONDS = float(env_str("WEBHOOK_DEADLINE_SECONDS", "20"))
WEBHOOK_MAX_RESPONSE_BYTES = env_int("WEBHOOK_MAX_RESPONSE_BYTES", 64 * 1024)
# Only for development and tests: allow webhook URLs that resolve to private or loopback addresses.
WEBHOOK_ALLOW_PRIVATE_ADDRESSES = env_bool("WEBHOOK_ALLOW_PRIVATE_ADDRESSES", DEBUG)
# The reaper: a ringing call whose stream never started, or a live call with no activity (events) for this
# long or past CALL_MAX_SECONDS (+ grace) since it was answered, is finalised as interrupted.
REAPER_INTERVAL_SECONDS = env_int("REAPER_INTERVAL_SECONDS", 60)
REAPER_RINGING_MINUTES = env_int("REAPER_RINGING_MINUTES", 5)
REAPER_IDLE_MINUTES = env_int("REAPER_IDLE_MINUTES", 15)
REAPER_GRACE_SECONDS = env_int("REAPER_GRACE_SECONDS", 120)
# How long Redis keeps a task a worker took but has not acknowledged (acks_late) before giving it to another
# worker: a SIGKILLed worker's task comes back after it. It must exceed the longest task (CELERY_TASK_TIME_LIMIT),
# else a task still running is handed out a second time. Redis' transport also counts a countdown (ETA) task
# as taken from the moment a worker receives it, long before it runs; a countdown longer than this timeout makes
# Redis hand the task out again and again, each copy running. So no task is sent with a countdown longer than
# POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS (the timeout less the time limit less a margin); longer post-call
# backoffs are kept in the database (a claim that expires) and picked up by the post-call sweep below.
CELERY_VISIBILITY_TIMEOUT = env_int("CELERY_VISIBILITY_TIMEOUT", CELERY_TASK_TIME_LIMIT + 30)
if CELERY_VISIBILITY_TIMEOUT <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_VISIBILITY_TIMEOUT must be longer than CELERY_TASK_TIME_LIMIT, or tasks "
                               "still running are handed to a second worker.")
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": CELERY_VISIBILITY_TIMEOUT}
POSTCALL_BROKER_MAX_COUNTDOWN_SECONDS = max(0, CELERY_VISIBILITY_TIMEOUT - CELERY_TASK_TIME_LIMIT - 10)
# The post-call sweep (beat): finalised calls with no summary, emails still queued and webhooks still pending,
# whose claim has expired (a worker died, a message was lost, the broker was down, a long backoff is over),
# are queued again; the compare-and-set claims keep each side effect once. Only calls finalised more than
# POSTCALL_SWEEP_GRACE_SECONDS and less than POSTCALL_SWEEP_MAX_AGE_HOURS ago are looked at.
POSTCALL_SWEEP_SECONDS = env_int("POSTCALL_SWEEP_SECONDS", 10)
POSTCALL_SWEEP_GRACE_SECONDS = env_int("POSTCALL_SWEEP_GRACE_SECONDS", 20)
POSTCALL_SWEEP_MAX_AGE_HOURS = env_int("POSTCALL_SWEEP_MAX_AGE_HOURS", 48)
# How long one summary attempt may hold its claim; after it, the sweep gives the summary to another worker.
SUMMARY_CLAIM_SECONDS = env_int("SUMMARY_CLAIM_SECONDS", int(SUMMARY_MODEL_TIMEOUT_SECONDS) + 5)
# Embedded mode: threads of the background executor running the post-call work.
POSTCALL_EMBEDDED_THREADS = env_int("POSTCALL_EMBEDDED_THREADS", 2)
CELERY_BEAT_SCHEDULE = {
    **globals().get("CELERY_BEAT_SCHEDULE", {}),
    "calls.reap_stuck_calls": {"task": "calls.reap_stuck_calls", "schedule": float(REAPER_INTERVAL_SECONDS)},
}
CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,
    "calls.sweep_postcall": {"task": "calls.sweep_postcall", "schedule": float(POSTCALL_SWEEP_SECONDS)},
}

# --- A business's own tools over MCP (calls/mcp/) ------------------------------------------------------------

# Hosts (names or addresses, comma-separated) an MCP server URL may point at although the outbound address guard
# refuses them (private, loopback, link-local ...): an operator's own tool servers inside its network. Empty: none.
MCP_ALLOWED_HOSTS = frozenset(host.strip().lower().strip("[]") for host in env_list("MCP_ALLOWED_HOSTS") if host.strip())
# The key that encrypts the MCP servers' bearer tokens and headers at rest: a Fernet key
# (`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`). Empty: one is
# derived from SECRET_KEY (rotating SECRET_KEY then makes the stored secrets unreadable: set a key of its own).
MCP_ENCRYPTION_KEY = env_str("MCP_ENCRYPTION_KEY")
# One tool call (connect, handshake, call, answer) waits at most this long; listing a server's tools too.
MCP_CALL_TIMEOUT_SECONDS = env_float("MCP_CALL_TIMEOUT_SECONDS", 8.0)
# At most this many characters of a tool's result go back to the model (and onto the call's timeline).
MCP_RESULT_MAX_CHARS = env_int("MCP_RESULT_MAX_CHARS", 4000)
# At most this many tools of one server are kept (a listing longer than that is cut).
MCP_MAX_TOOLS_PER_SERVER = env_int("MCP_MAX_TOOLS_PER_SERVER", 64)
# How often celery beat refreshes every server's tool list (and marks the ones that stopped answering).
MCP_REFRESH_SECONDS = env_int("MCP_REFRESH_SECONDS", 900)
CELERY_BEAT_SCHEDULE = {
    **CELERY_BEAT_SCHEDULE,
    "calls.refresh_mcp_servers": {"task": "calls.refresh_mcp_servers", "schedule": float(MCP_REFRESH_SECONDS)},
}
