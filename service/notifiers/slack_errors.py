"""Classification of Slack's error responses into retryable, final and too-long errors.

Slack reports failures as `{"ok": false, "error": "<code>"}`, with HTTP 200 for most codes,
429 for rate limits and 5xx for its own faults; incoming webhooks return the code as a
plain-text body instead. The codes come from https://docs.slack.dev/reference/methods/chat.postMessage
and https://docs.slack.dev/messaging/sending-messages-using-incoming-webhooks.
"""

from __future__ import annotations

from service.errors import NotifierError
from service.notifiers.retry import (
    MessageTooLongError,
    is_retryable_status,
    parse_retry_after,
    permanent,
    retryable,
)

_RETRYABLE_CODES = frozenset(
    {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable",
     "request_timeout", "rollup_error"}
)  # fmt: skip
_TOO_LONG_CODES = frozenset({"msg_blocks_too_long", "msg_too_long"})
_HINTS = {
    "invalid_auth": "the token is invalid; check the bot token",
    "not_authed": "no token was sent; check the bot token",
    "account_inactive": "the token belongs to a deleted user or workspace; create a new token",
    "token_revoked": "the token was revoked; create a new token",
    "token_expired": "the token expired; create a new token",
    "missing_scope": "the token lacks the chat:write scope; add it and reinstall the app",
    "not_allowed_token_type": "the token is not a bot token (xoxb-); use the bot token",
    "channel_not_found": "the channel does not exist or the bot cannot see it; check `channel`",
    "not_in_channel": "the bot is not a member of the channel; invite the app to the channel",
    "is_archived": "the channel is archived; unarchive it or set another `channel`",
    "channel_is_archived": "the channel is archived; unarchive it or create a new webhook",
    "restricted_action": "the workspace does not let this app post in the channel",
    "posting_to_general_channel_denied": "only admins can post in this channel",
    "action_prohibited": "a workspace admin restricted this webhook",
    "no_service": "the webhook is disabled, removed or invalid; create a new webhook",
    "no_active_hooks": "the webhook is disabled; create a new webhook",
    "no_team": "the workspace of the webhook no longer exists",
    "team_disabled": "the workspace of the webhook is disabled",
    "invalid_token": "the webhook token is invalid; create a new webhook",
    "invalid_blocks": "Slack rejected the message blocks",
    "invalid_payload": "Slack could not read the message",
}


def error_for_slack_answer(
    *, status: int, code: str | None, retry_after: str | None, what: str
) -> NotifierError:
    """Classify a Slack failure from its HTTP status, error code and Retry-After header.

    `what` names the notifier (never its URL or token) in the message.
    """
    label = code or "no error code"
    if code in _TOO_LONG_CODES:
        return MessageTooLongError(f"{what}: Slack rejected the message as too long ({label})")
    if status == 429 or code in _RETRYABLE_CODES or (code is None and is_retryable_status(status)):
        return retryable(
            f"{what}: Slack answered HTTP {status} ({label})",
            retry_after_s=parse_retry_after(retry_after),
        )
    if is_retryable_status(status) and code not in _HINTS:
        return retryable(f"{what}: Slack answered HTTP {status} ({label})")
    hint = _HINTS.get(code or "", "Slack rejected the message")
    return permanent(f"{what}: {label}: {hint} (HTTP {status})")
