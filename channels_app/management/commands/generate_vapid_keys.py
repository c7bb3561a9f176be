from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.core.management.base import BaseCommand
from py_vapid import Vapid02, b64urlencode


class Command(BaseCommand):
    help = (
        "Generate a VAPID key pair for web push and print it as environment variables.\n\n"
        "VAPID_PUBLIC_KEY is the uncompressed P-256 point, base64url: the browser's applicationServerKey.\n"
        "VAPID_PRIVATE_KEY is the raw 32-byte private key, base64url: what pywebpush signs with.\n\n"
        "Example:\n  manage.py generate_vapid_keys >> .env"
    )

    def handle(self, *args, **options):
        vapid = Vapid02()
        vapid.generate_keys()
        private = vapid.private_key.private_numbers().private_value.to_bytes(32, "big")
        public = vapid.public_key.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)
        self.stdout.write(f"VAPID_PUBLIC_KEY={b64urlencode(public)}")
        self.stdout.write(f"VAPID_PRIVATE_KEY={b64urlencode(private)}")
