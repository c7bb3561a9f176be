import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "flashnotify.settings")
application = get_wsgi_application()

# WSGI servers do not run Django's system checks: refuse to serve with a serious misconfiguration.
from flashnotify.checks import refuse_to_start_if_misconfigured  # noqa: E402

refuse_to_start_if_misconfigured()
