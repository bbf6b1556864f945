"""The error a digest target raises, apart from ``notify`` so that ``runs`` can tell it from
others without loading slack_sdk and smtplib."""

from cskpi.core.config.secrets import redact


class DeliveryError(Exception):
    """A target could not be reached or refused the digest; the message is redacted."""

    def __init__(self, message: str) -> None:
        super().__init__(redact(message))
