"""A real SAML 2.0 identity provider for the SSO tests: pysaml2's `Server`, served as a small WSGI app on
127.0.0.1, signing its assertions (with xmlsec1) with a key and certificate the test generates.

Whoever the test puts in `idp.person` is signed in at once (no password page): the SP side is what is
under test. `idp.mode` makes it answer for another audience ("wrong-audience") or with an assertion
that has already expired ("expired").
"""

import contextlib
import datetime
import threading
import time
from unittest import mock
from pathlib import Path
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.config import IdPConfig
from saml2.metadata import entity_descriptor
from saml2.saml import NAME_FORMAT_URI, NAMEID_FORMAT_PERSISTENT, NameID
from saml2.server import Server
from saml2.time_util import instant

XMLSEC = "/usr/bin/xmlsec1"


def key_and_certificate(directory, name):
    """A fresh RSA key and a self-signed certificate for it, as PEM files; returns their paths."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=30))
                   .sign(key, hashes.SHA256()))
    key_path, cert_path = Path(directory) / f"{name}.key", Path(directory) / f"{name}.crt"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return str(key_path), str(cert_path)


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _ThreadingWSGIServer(WSGIServer):
    daemon_threads = True

    def process_request(self, request, client_address):
        thread = threading.Thread(target=self.process_request_thread, args=(request, client_address), daemon=True)
        thread.start()

    def process_request_thread(self, request, client_address):
        try:
            self.finish_request(request, client_address)
        finally:
            self.shutdown_request(request)


class SamlIdP:
    def __init__(self, directory):
        self.directory = Path(directory)
        self.httpd = make_server("127.0.0.1", 0, self.app, server_class=_ThreadingWSGIServer,
                                 handler_class=_QuietHandler)
        self.base = f"http://127.0.0.1:{self.httpd.server_port}"
        self.entity_id = f"{self.base}/idp/metadata"
        self.key_file, self.cert_file = key_and_certificate(directory, "idp")
        self.person = None
        self.mode = ""
        self.logouts = []
        self.server = None
        self.metadata_file = self.directory / "idp-metadata.xml"
        self.metadata_file.write_text(str(entity_descriptor(self._config())))

    def _config(self, sp_metadata=None, lifetime=None):
        config = IdPConfig()
        config.load({
            "entityid": self.entity_id,
            "xmlsec_binary": XMLSEC,
            "key_file": self.key_file,
            "cert_file": self.cert_file,
            "service": {"idp": {
                "name": "Test university IdP",
                "endpoints": {
                    "single_sign_on_service": [(f"{self.base}/sso/redirect", BINDING_HTTP_REDIRECT)],
                    "single_logout_service": [(f"{self.base}/slo/redirect", BINDING_HTTP_REDIRECT)],
                },
                "name_id_format": [NAMEID_FORMAT_PERSISTENT],
                "policy": {"default": {"lifetime": lifetime or {"minutes": 15}, "name_form": NAME_FORMAT_URI,
                                       "attribute_restrictions": None}},
                "sign_assertion": True,
            }},
            "metadata": {"inline": [sp_metadata]} if sp_metadata else {},
        })
        return config

    def trust(self, sp_metadata):
        """Load the service provider's metadata (its ACS and SLO endpoints)."""
        self.sp_metadata = sp_metadata
        self.server = Server(config=self._config(sp_metadata))
        self.expired_server = Server(config=self._config(sp_metadata, lifetime={"minutes": -30}))

    def start(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- the WSGI app ------------------------------------------------------------------------

    def app(self, environ, start_response):
        query = {key: values[0] for key, values in parse_qs(environ.get("QUERY_STRING", "")).items()}
        if environ["PATH_INFO"] == "/sso/redirect":
            status, headers, body = self.single_sign_on(query)
        elif environ["PATH_INFO"] == "/slo/redirect":
            status, headers, body = self.single_logout(query)
        else:
            status, headers, body = "404 Not Found", [("Content-Type", "text/plain")], "not found"
        start_response(status, headers)
        return [body.encode()]

    def single_sign_on(self, query):
        server = self.expired_server if self.mode == "expired" else self.server
        request = server.parse_authn_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT)
        response_args = server.response_args(request.message, [BINDING_HTTP_POST])
        if self.mode == "wrong-audience":
            response_args["sp_entity_id"] = "https://another-application.example/sp"
        person = dict(self.person)
        name_id = NameID(format=NAMEID_FORMAT_PERSISTENT, text=person.pop("name_id"))
        # An expired assertion was issued an hour ago and expired half an hour ago (the lifetime of
        # expired_server): the assertion's own clock is turned back while it is made.
        issued = (mock.patch("saml2.assertion.instant", lambda *a, **k: instant(time_stamp=time.time() - 3600))
                  if self.mode == "expired" else contextlib.nullcontext())
        with issued:
            response = server.create_authn_response(
                person, userid=name_id.text, name_id=name_id, sign_assertion=True, sign_response=False,
                authn={"class_ref": "urn:oasis:names:tc:SAML:2.0:ac:classes:Password", "authn_auth": self.entity_id},
                **response_args)
        http_args = server.apply_binding(BINDING_HTTP_POST, str(response), response_args["destination"],
                                         query.get("RelayState", ""), response=True)
        return "200 OK", [("Content-Type", "text/html; charset=utf-8")], http_args["data"]

    def single_logout(self, query):
        request = self.server.parse_logout_request(query["SAMLRequest"], BINDING_HTTP_REDIRECT)
        self.logouts.append(request.message.name_id.text)
        response = self.server.create_logout_response(request.message, [BINDING_HTTP_REDIRECT])
        http_args = self.server.apply_binding(BINDING_HTTP_REDIRECT, str(response), response.destination,
                                              query.get("RelayState", ""), response=True)
        return "303 See Other", http_args["headers"], ""
