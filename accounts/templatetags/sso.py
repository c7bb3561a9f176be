"""`{% sso_buttons next %}`: a link per configured identity provider, on the student and console sign-in pages."""

from urllib.parse import urlencode

from django import template
from django.urls import reverse

from accounts.sso import sso_providers

register = template.Library()


@register.inclusion_tag("registration/sso_buttons.html")
def sso_buttons(next_url=""):
    query = f"?{urlencode({'next': next_url})}" if next_url else ""
    return {"providers": [{"protocol": protocol, "name": name, "url": reverse(url_name) + query}
                          for protocol, name, url_name in sso_providers()]}
