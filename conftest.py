import pytest

from tests.browser import chromium_page
from tests.factories import add_member, make_business, make_user


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Real hashers cost ~0.3 s per login; the algorithm is not what these tests are about.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(db):
    """Owner of Alice's business."""
    return make_user("alice@example.com")


@pytest.fixture
def alices_business(alice):
    return make_business(owner=alice, name="Alice Dental", phone_number="+14155552671", time_zone="America/Los_Angeles")


@pytest.fixture
def bob(alices_business):
    """Staff on Alice's team."""
    user = make_user("bob@example.com")
    add_member(alices_business, user)
    return user


@pytest.fixture
def charlie(db):
    """Owner of another business; must never see Alice's data."""
    user = make_user("charlie@example.com")
    make_business(owner=user, name="Charlie Plumbing", phone_number="+12025550143")
    return user


@pytest.fixture(autouse=True)
def _empty_cache():
    # allauth's rate limits count in the cache; each test starts with none used.
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(scope="session")
def live_server(django_db_setup, live_server):
    # Depend on the test database so the server thread (and its connections) stops before the database is dropped.
    return live_server


@pytest.fixture
def page():
    """A page in real headless Chromium (tests marked `browser`)."""
    with chromium_page() as page:
        yield page
