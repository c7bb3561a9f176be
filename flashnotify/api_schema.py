"""OpenAPI details drf-spectacular cannot infer: every operation's error responses, the webhooks."""

from drf_spectacular import openapi
from drf_spectacular.utils import OpenApiParameter

from accounts.serializers import ErrorSerializer

ERROR_DESCRIPTIONS = {
    "400": "Invalid input: `errors` maps each field to its messages.",
    "401": "Not authenticated, or the credentials are invalid, revoked or expired.",
    "403": "Authenticated, but the role or the API key's scopes do not allow this.",
    "404": "Not found, or not yours.",
    "405": "Method not allowed.",
    "409": "Conflict with the current state.",
    "413": "The request body is too large.",
    "415": "Unsupported media type: send JSON.",
    "429": "Too many requests, or locked out after failed attempts: see `Retry-After`.",
}


class AutoSchema(openapi.AutoSchema):
    """Adds the error responses every operation can give, all with the Error shape."""

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)

        codes = ["400", "401", "403", "404", "405", "429"]
        if self.method in ("POST", "PUT", "PATCH"):
            codes += ["413", "415"]
        if self.method == "POST":
            codes.append("409")
        for code in codes:
            if code not in responses:
                response = self._get_response_for_code(ErrorSerializer, code, direction=direction)
                response["description"] = ERROR_DESCRIPTIONS[code]
                if code == "429":
                    response["headers"] = {"Retry-After": {"schema": {"type": "integer"},
                                                           "description": "Seconds to wait."}}
                responses[code] = response
        return responses


IDEMPOTENCY_KEY = OpenApiParameter(
    "Idempotency-Key", str, OpenApiParameter.HEADER, required=False,
    description="Up to 150 characters. The same key with the same body returns the first notification "
                "(200); the same key with a different body is a 409.",
)


def add_webhooks(result, generator, request, public):
    """Document the provider webhooks (plain Django views, signed by their providers)."""
    result.setdefault("paths", {})
    public_error = {"description": "Refused: the signature or credentials do not match."}
    result["paths"]["/api/v1/webhooks/twilio/status/"] = {
        "post": {
            "operationId": "webhooks_twilio_status",
            "tags": ["webhooks"],
            "summary": "Twilio SMS status callback",
            "description": "Public, signed: refused unless `X-Twilio-Signature` matches TWILIO_AUTH_TOKEN. "
                           "Also served at /webhooks/twilio/status/.",
            "security": [],
            "parameters": [{"name": "X-Twilio-Signature", "in": "header", "required": True,
                            "schema": {"type": "string"}}],
            "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": {
                "type": "object",
                "properties": {"MessageSid": {"type": "string"}, "MessageStatus": {"type": "string"},
                               "ErrorCode": {"type": "string"}}}}}},
            "responses": {"204": {"description": "Receipt applied."}, "403": public_error},
        }
    }
    result["paths"]["/api/v1/webhooks/anymail/{esp}/tracking/"] = {
        "post": {
            "operationId": "webhooks_anymail_tracking",
            "tags": ["webhooks"],
            "summary": "Email tracking events (django-anymail)",
            "description": "Public, protected by HTTP basic auth with ANYMAIL_WEBHOOK_SECRET; the body is the "
                           "email provider's own event format. Exists only for the ESP that EMAIL_BACKEND names "
                           "(any other `esp` answers 404). Also served at /webhooks/anymail/{esp}/tracking/.",
            "security": [{"anymailBasic": []}],
            "parameters": [{"name": "esp", "in": "path", "required": True,
                            "schema": {"type": "string", "example": "postmark"}}],
            "requestBody": {"content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {"200": {"description": "Events applied."}, "400": public_error,
                          "401": public_error, "403": public_error, "404": public_error},
        }
    }
    schemes = result.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["anymailBasic"] = {"type": "http", "scheme": "basic",
                               "description": "ANYMAIL_WEBHOOK_SECRET as `user:password`."}
    return result
