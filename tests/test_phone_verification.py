"""Phone verification: a code sent by SMS through the SMS channel to a local Twilio stand-in."""

import re
import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from accounts.models import PhoneVerification
from accounts.phone import phone_verification_confirm, phone_verification_start

PHONE = "+33612345678"


def twilio_answer(request):
    return 201, {}, {"sid": f"SM{len(request['body']):032d}", "status": "queued", "to": PHONE}


@pytest.fixture
def twilio(http_peer, settings):
    peer = http_peer(twilio_answer)
    settings.TWILIO_API_BASE = peer.url
    settings.TWILIO_ACCOUNT_SID = "AC" + "0" * 32
    settings.TWILIO_AUTH_TOKEN = "test-token"
    settings.TWILIO_FROM_NUMBER = "+15005550006"
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    return peer


def sent_code(peer):
    return re.search(r"\b(\d{6})\b", peer.requests[-1]["form"]["Body"]).group(1)


@pytest.mark.django_db
def test_it_texts_a_code_and_verifies_the_number_with_it(twilio, client, student):
    client.force_login(student)

    client.post("/phone/", {"phone": "+33 6 12 34 56 78", "send": "1"})
    response = client.post("/phone/", {"code": sent_code(twilio), "verify": "1"}, follow=True)

    assert twilio.requests[-1]["form"]["To"] == PHONE
    assert twilio.requests[-1]["path"].endswith("/Messages.json")
    student.refresh_from_db()
    assert student.phone == PHONE and student.phone_verified_at is not None
    assert "Your phone number is verified" in response.content.decode()


@pytest.mark.django_db
def test_it_refuses_a_wrong_code_and_stops_after_the_last_attempt(twilio, student):
    phone_verification_start(user=student, phone=PHONE)
    right = sent_code(twilio)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    for left in range(PhoneVerification.MAX_ATTEMPTS - 1, 0, -1):
        with pytest.raises(ValidationError, match=f"{left} more tr"):
            phone_verification_confirm(user=student, code=wrong)
    with pytest.raises(ValidationError, match="Too many wrong codes"):
        phone_verification_confirm(user=student, code=wrong)
    with pytest.raises(ValidationError, match="Too many wrong codes"):
        phone_verification_confirm(user=student, code=right)

    student.refresh_from_db()
    assert student.phone_verified_at is None


@pytest.mark.django_db
def test_it_refuses_an_expired_code(twilio, student):
    now = timezone.now()
    phone_verification_start(user=student, phone=PHONE, now=now)

    with pytest.raises(ValidationError, match="expired"):
        phone_verification_confirm(user=student, code=sent_code(twilio), now=now + timedelta(minutes=11))

    student.refresh_from_db()
    assert student.phone_verified_at is None


@pytest.mark.django_db
def test_it_limits_how_often_codes_are_sent(twilio, student):
    now = timezone.now()
    phone_verification_start(user=student, phone=PHONE, now=now)
    with pytest.raises(ValidationError, match="less than a minute ago"):
        phone_verification_start(user=student, phone=PHONE, now=now + timedelta(seconds=10))
    for n in range(1, 5):
        phone_verification_start(user=student, phone=PHONE, now=now + timedelta(minutes=n))
    with pytest.raises(ValidationError, match="Too many codes"):
        phone_verification_start(user=student, phone=PHONE, now=now + timedelta(minutes=10))

    assert len(twilio.requests) == 5


@pytest.mark.django_db
def test_it_keeps_no_code_when_the_sms_provider_refuses_the_number(http_peer, twilio, settings, student, client):
    refusing = http_peer(lambda request: (400, {}, {"code": 21211, "message": "Invalid 'To' Phone Number",
                                                    "status": 400}))
    settings.TWILIO_API_BASE = refusing.url
    client.force_login(student)

    response = client.post("/phone/", {"phone": PHONE, "send": "1"})

    assert "We could not send a text message to this number" in response.content.decode()
    assert not PhoneVerification.objects.exists()


@pytest.mark.django_db
def test_it_rejects_a_number_that_is_not_a_phone_number(twilio, client, student):
    client.force_login(student)

    response = client.post("/phone/", {"phone": "12", "send": "1"})

    assert "international format" in response.content.decode()
    assert not twilio.requests


@pytest.mark.django_db(transaction=True)
def test_it_counts_no_more_than_the_allowed_attempts_when_wrong_codes_arrive_at_once(twilio, student):
    phone_verification_start(user=student, phone=PHONE)
    right = sent_code(twilio)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    tries = 24
    start, outcomes = threading.Barrier(tries), []

    def attempt():
        try:
            start.wait()
            phone_verification_confirm(user=student, code=wrong)
        except ValidationError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()  # each thread has its own connection

    threads = [threading.Thread(target=attempt) for _ in range(tries)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(outcomes) == tries
    assert outcomes.count("wrong_code") <= PhoneVerification.MAX_ATTEMPTS - 1
    assert PhoneVerification.objects.get(user=student).attempts == PhoneVerification.MAX_ATTEMPTS
    with pytest.raises(ValidationError, match="Too many wrong codes"):
        phone_verification_confirm(user=student, code=right)
    student.refresh_from_db()
    assert student.phone_verified_at is None
