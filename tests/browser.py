"""Browser fixtures: Playwright driving Debian's chromium against Django's live server.

Never a downloaded browser: the tests skip, saying why, when /usr/bin/chromium is absent.
"""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"]
# The pages' screenshots go to var/screenshots (git-ignored), so a test run leaves the checkout as it was;
# `make screenshots` writes them over the README's, in docs/screenshots.
SCREENSHOTS = Path(os.environ.get("SCREENSHOTS_DIR") or Path(__file__).resolve().parent.parent / "var" / "screenshots")
SCREENSHOTS.mkdir(parents=True, exist_ok=True)


def chromium_missing_reason():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"{CHROMIUM} is not installed (apt-get install chromium): browser tests skipped"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed: browser tests skipped"
    return ""


@pytest.fixture(scope="session")
def browser():
    reason = chromium_missing_reason()
    if reason:
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def live_server(request):
    """pytest-django's live server, but static files go through WhiteNoise as in production.

    pytest-django wraps the site in staticfiles' finder handler, which knows only the source
    names, not the hashed names of the manifest storage the pages link to (DEBUG is off in tests).
    """
    from pytest_django.live_server_helper import LiveServer

    addr = request.config.getvalue("liveserver") or os.getenv("DJANGO_LIVE_TEST_SERVER_ADDRESS") or "localhost"
    server = LiveServer(addr, start=False)
    server.thread.static_handler = lambda application: application
    server.start()
    yield server
    server.stop()


@pytest.fixture
def page(browser, live_server):
    """A fresh browser context (no cookies) on the live server; `page.base_url` is its address."""
    context = browser.new_context(base_url=live_server.url, locale="en-GB", viewport={"width": 1000, "height": 800})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.base_url = live_server.url
    yield page
    context.close()


def sign_in(page, username, password):
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_load_state()


def axe_script():
    """Path of axe-core's axe.min.js installed by `make test` (npm, pinned), or "" when it could not be had."""
    import glob

    path = os.environ.get("AXE_JS") or next(iter(sorted(glob.glob(
        str(SCREENSHOTS.parent.parent / "var" / "axe-*" / "node_modules" / "axe-core" / "axe.min.js")))), "")
    return path if path and Path(path).exists() else ""


AXE_MISSING = "axe-core is not installed (make test installs it with npm): accessibility not checked"


def with_axe(page):
    """Inject axe-core into every document of the page's context (an init script is not subject to the CSP),
    and record what the Content-Security-Policy blocks, which `assert_accessible` also checks."""
    page.csp_reports = []
    page.on("console", lambda message: page.csp_reports.append(message.text)
            if "Content Security Policy" in message.text else None)
    if axe_script():
        page.context.add_init_script(path=axe_script())
    return page


def assert_accessible(page):
    """axe-core finds no serious or critical violation on the current page (a warning when axe is missing),
    and the page needed nothing its Content-Security-Policy refused."""
    assert not getattr(page, "csp_reports", []), f"blocked by the CSP on {page.url}: {page.csp_reports}"
    if not axe_script():
        import warnings

        warnings.warn(AXE_MISSING)
        return []
    violations = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    bad = [f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:5]}"
           for v in violations if v["impact"] in ("serious", "critical")]
    assert not bad, f"accessibility violations on {page.url}:\n" + "\n".join(bad)
    return violations


# Words that read the same in both languages (names of things, not sentences).
SAME_IN_BOTH_LANGUAGES = {"FlashNotify", "SMS", "Push", "OK", "CSV", "API", "JSON", "SVG", "URL", "%", "Total",
                          "Notifications", "Notification", "Message", "Messages", "Type", "Action", "Actions",
                          "Date", "Statut", "Description", "Important", "Maximum", "Minimum", "Staff", "Admin", "Test"}

_VISIBLE_TEXTS = """() => {
  const texts = new Set();
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest('script, style, noscript, [translate="no"], [hidden]')) continue;
    const text = node.textContent.replace(/\\s+/g, ' ').trim();
    if (text) texts.add(text);
  }
  for (const el of document.querySelectorAll('[title], [aria-label], [placeholder], input[type=submit][value], button[value]')) {
    for (const attr of ['title', 'aria-label', 'placeholder']) {
      const value = (el.getAttribute(attr) || '').trim();
      if (value) texts.add(value);
    }
    if (el.matches('input[type=submit]')) texts.add((el.value || '').trim());
  }
  texts.add(document.title.trim());
  return [...texts];
}"""


def visible_texts(page):
    """Every piece of text a reader sees on the current page: text nodes, titles, labels, placeholders."""
    return set(page.evaluate(_VISIBLE_TEXTS))


def english_left_on_french_page(page, user, *, data=()):
    """The texts of the current page, shown to `user` in French, that stay the same when the page is shown in
    English: untranslated strings. `data` are values the test created (names, titles, codes) that are the same
    in every language; texts without a word of three letters or more (numbers, dates, codes) never count.

    The page is reloaded once in English (the user's language switched) and once more in French."""
    import re

    def has_words(text):
        if re.fullmatch(r"[0-9a-f]{6,}", text):  # a hexadecimal code (an API key's prefix), whatever letters it draws
            return False
        return re.search(r"[^\W\d_]{3,}", text) is not None

    user.language = "fr"
    user.save(update_fields=["language"])
    page.reload()
    page.wait_for_load_state()
    french = visible_texts(page)
    user.language = "en"
    user.save(update_fields=["language"])
    page.reload()
    page.wait_for_load_state()
    english = visible_texts(page)
    user.language = "fr"
    user.save(update_fields=["language"])
    page.reload()
    page.wait_for_load_state()
    allowed = SAME_IN_BOTH_LANGUAGES | set(data)

    def is_data(text):
        return text in allowed or any(value and value in text and len(text) <= len(value) + 3 for value in allowed)

    return sorted(text for text in french & english if has_words(text) and not is_data(text))
