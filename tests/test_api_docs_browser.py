import pytest

from .browser import with_axe


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path, shows", [("/api/v1/docs/", ".swagger-ui .info"), ("/api/v1/docs/redoc/", "redoc h1")])
def test_it_renders_the_api_documentation_under_the_content_security_policy(page, path, shows):
    with_axe(page)

    page.goto(path)
    page.wait_for_selector(shows)

    assert "FlashNotify API" in page.inner_text(shows)
    # Only loads from other hosts (ReDoc's CDN logo) are refused; the page itself needs nothing blocked.
    assert not [report for report in page.csp_reports if "https://" not in report], page.csp_reports
