import pytest

from .browser import sign_in
from .conftest import make_user


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_it_signs_a_student_in_and_lands_on_the_inbox(page):
    make_user("s7000001")

    sign_in(page, "s7000001", "pw-s7000001")

    assert page.url.endswith("/inbox/")
    assert page.get_by_role("heading", name="Inbox").is_visible()
