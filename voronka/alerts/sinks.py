"""Alert sinks: Slack incoming webhook, generic JSON webhook, email over SMTP, JSON-lines file.

Standard library only (urllib.request, smtplib). A sink is a mapping from voronka.yaml's
`alerts:` list, checked by `validate_sinks` when the config is read. Secrets (webhook URLs,
header values, the SMTP password) are never in the config: a sink names the environment variable
that holds each one, read at send time by `read_secrets`. A sender returns a short detail on
success and raises `SinkError` on failure; neither ever contains a secret.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping

from voronka.alerts.model import Alert

if TYPE_CHECKING:
    import urllib.error
    from email.message import EmailMessage

# The network and mail modules (http.client, urllib.request, smtplib, ssl, email) are imported
# by the senders that use them: voronka.config validates sinks on every command, and a read
# command should not pay for them (tests/repository/test_architecture.py checks).

SINK_TYPES = ("file", "slack", "webhook", "email")
DEFAULT_FILE_PATH = "alerts/alerts.jsonl"
USER_AGENT = "voronka-alerts/1"

_FIELDS = {
    "file": {"path"},
    "slack": {"webhook_url_env"},
    "webhook": {"url_env", "headers", "headers_env"},
    "email": {"host", "port", "starttls", "username", "password_env", "from", "to", "tls_ca_file"},
}
_REQUIRED = {"file": (), "slack": ("webhook_url_env",), "webhook": ("url_env",), "email": ("host", "from", "to")}
# Settings people write when they mean to paste a secret; each points at its *_env twin.
_SECRET_LITERALS = {"webhook_url": "webhook_url_env", "url": "url_env", "password": "password_env",
                    "token": "headers_env", "secret": "headers_env"}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


class SinkError(Exception):
    """A failed send. `retry` says whether another attempt could succeed."""

    def __init__(self, message: str, retry: bool = False, retry_after: float | None = None):
        super().__init__(message)
        self.retry = retry
        self.retry_after = retry_after


class MissingSecret(SinkError):
    """The environment variable a sink names is not set (nothing was attempted)."""


# --- configuration -------------------------------------------------------------------------

def default_name(sink: Mapping) -> str:
    if sink.get("type") == "file":
        return f"file:{Path(str(sink.get('path', DEFAULT_FILE_PATH))).name}"
    return str(sink.get("type"))


def _env_name(where: str, key: str, value) -> str:
    # Never echo the value: a user who pasted the secret itself here must not see it in a log.
    if not isinstance(value, str) or not _ENV_NAME.fullmatch(value):
        raise ValueError(f"{where}: {key} must be the name of an environment variable "
                         f"(such as VORONKA_SLACK_WEBHOOK), not its value")
    return value


def _address(where: str, key: str, value) -> str:
    if not isinstance(value, str) or "@" not in value or any(c in value for c in "\r\n,;"):
        raise ValueError(f"{where}: {key} must be one email address, got {value!r}")
    return value.strip()


def validate_sink(sink, index: int) -> dict:
    """Check one sink's settings and fill its defaults; a ValueError names the sink and setting."""
    if not isinstance(sink, dict) or "type" not in sink:
        raise ValueError("alerts must be a list of sinks, each with a 'type'")
    kind = sink["type"]
    where = f"alerts[{index}] ({kind})"
    if kind not in SINK_TYPES:
        raise ValueError(f"alerts[{index}]: unknown sink type {kind!r} (known: {', '.join(SINK_TYPES)})")
    allowed = _FIELDS[kind] | {"type", "name"}
    for key in sink:
        if key in allowed:
            continue
        twin = _SECRET_LITERALS.get(key)
        if twin and twin in allowed:
            raise ValueError(f"{where}: secrets are not written in voronka.yaml; put the value in an "
                             f"environment variable and name it with {twin}")
        raise ValueError(f"{where}: unknown setting {key!r} (known: {', '.join(sorted(allowed))})")
    for key in _REQUIRED[kind]:
        if sink.get(key) in (None, "", []):
            raise ValueError(f"{where}: {key} is required")
    out = dict(sink)
    out["name"] = str(sink.get("name") or default_name(sink))
    if kind == "file":
        out["path"] = str(sink.get("path") or DEFAULT_FILE_PATH)
    elif kind == "slack":
        _env_name(where, "webhook_url_env", sink["webhook_url_env"])
    elif kind == "webhook":
        _env_name(where, "url_env", sink["url_env"])
        for key in ("headers", "headers_env"):
            headers = sink.get(key) or {}
            if not isinstance(headers, dict):
                raise ValueError(f"{where}: {key} must be a mapping of header name to "
                                 f"{'value' if key == 'headers' else 'environment variable name'}")
            for name, value in headers.items():
                if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
                    raise ValueError(f"{where}: {key} has an invalid header name {name!r}")
                if key == "headers_env":
                    _env_name(where, f"headers_env.{name}", value)
                elif not isinstance(value, (str, int, float)) or any(c in str(value) for c in "\r\n"):
                    raise ValueError(f"{where}: headers.{name} must be a one-line value")
            out[key] = {str(k): str(v) for k, v in headers.items()}
    elif kind == "email":
        out["host"] = str(sink["host"])
        starttls = sink.get("starttls", True)
        if not isinstance(starttls, bool):
            raise ValueError(f"{where}: starttls must be true or false")
        out["starttls"] = starttls
        try:
            out["port"] = int(sink.get("port") or (587 if starttls else 25))
        except (TypeError, ValueError):
            raise ValueError(f"{where}: port must be a number") from None
        out["from"] = _address(where, "from", sink["from"])
        to = sink["to"] if isinstance(sink["to"], list) else [sink["to"]]
        out["to"] = [_address(where, "to", a) for a in to]
        if "password_env" in sink:
            _env_name(where, "password_env", sink["password_env"])
            if not sink.get("username"):
                raise ValueError(f"{where}: password_env needs a username")
            if not starttls:
                raise ValueError(f"{where}: a password is only sent over STARTTLS; set starttls: true")
        elif sink.get("username"):
            raise ValueError(f"{where}: username needs password_env (the variable holding the password)")
    return out


def validate_sinks(sinks) -> tuple[dict, ...]:
    if sinks is None:
        return ()
    if not isinstance(sinks, list):
        raise ValueError("alerts must be a list of sinks, each with a 'type'")
    checked = tuple(validate_sink(s, i) for i, s in enumerate(sinks))
    names = [s["name"] for s in checked]
    for name in names:
        if names.count(name) > 1:
            raise ValueError(f"alerts: two sinks are named {name!r}; give each a distinct name")
    return checked


def secret_names(sink: Mapping) -> list[str]:
    names = [sink[k] for k in ("webhook_url_env", "url_env", "password_env") if sink.get(k)]
    return names + list((sink.get("headers_env") or {}).values())


def read_secrets(sink: Mapping, environ: Mapping[str, str]) -> dict[str, str]:
    """The values of the environment variables the sink names; MissingSecret names the variable."""
    values = {}
    for name in secret_names(sink):
        value = environ.get(name)
        if not value:
            raise MissingSecret(f"environment variable {name} is {'empty' if value == '' else 'not set'} "
                                f"(sink {sink.get('name') or default_name(sink)} reads its secret from it)")
        values[name] = value
    return values


# --- payloads ------------------------------------------------------------------------------

def slack_escape(text) -> str:
    """Slack mrkdwn control characters: &, < and > (so a CRM name cannot become a link or @channel)."""
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_SLACK_ICON = {("alert", "error"): ":rotating_light:", ("alert", "warn"): ":warning:",
               ("reminder", "error"): ":hourglass:", ("reminder", "warn"): ":hourglass:"}
_SLACK_SECTION = 2900  # Slack's section text limit is 3000 characters
_SLACK_MAX_LINES = 40


def slack_payload(alert: Alert) -> dict:
    """Slack's incoming-webhook JSON: `text` (the notification fallback) and `blocks`."""
    icon = _SLACK_ICON.get((alert.event, alert.severity), ":white_check_mark:")
    title = slack_escape(alert.title)
    shown = [f"• {slack_escape(line)}" for line in alert.lines[:_SLACK_MAX_LINES]]
    if len(alert.lines) > _SLACK_MAX_LINES:
        shown.append(f"… and {len(alert.lines) - _SLACK_MAX_LINES} more")
    sections, current = [], ""
    for line in shown:
        line = line[:_SLACK_SECTION]
        if current and len(current) + 1 + len(line) > _SLACK_SECTION:
            sections.append(current)
            current = ""
        current = f"{current}\n{line}" if current else line
    if current:
        sections.append(current)
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"{icon} *{title}*"}}]
    blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": s}} for s in sections]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
        f"Voronka · {slack_escape(alert.kind)} · {alert.event} · severity {slack_escape(alert.severity)} "
        f"· as of {slack_escape(alert.as_of)}")}]})
    return {"text": f"{title}\n" + "\n".join(shown), "blocks": blocks}


def webhook_payload(alert: Alert) -> dict:
    return {"source": "voronka", **alert.as_dict()}


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def email_message(alert: Alert, sink: Mapping) -> EmailMessage:
    """A plain-text email: the subject is the alert's title, one line per scope in the body."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    msg = EmailMessage()
    msg["Subject"] = _one_line(f"[Voronka] {alert.title}")
    msg["From"] = sink["from"]
    msg["To"] = ", ".join(sink["to"])
    msg["Date"] = formatdate(localtime=False)
    msg["Message-ID"] = make_msgid(domain=sink["from"].rpartition("@")[2] or "voronka.local")
    body = [alert.title, ""] + [f"- {line}" for line in alert.lines] + [
        "", f"As of: {alert.as_of}", f"Severity: {alert.severity}", f"Event: {alert.event}",
        "", "-- ", "Sent by Voronka (alert sinks are set under `alerts:` in voronka.yaml).",
    ]
    msg.set_content("\n".join(body) + "\n")
    return msg


# --- senders -------------------------------------------------------------------------------

def _no_redirect_handler():
    """A webhook that redirects is misconfigured; following it would resend headers elsewhere."""
    import urllib.request

    class _NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, req, fp, code, msg, headers, newurl):
            return None

    return _NoRedirect


def _retry_after(err: urllib.error.HTTPError) -> float | None:
    try:
        return float(err.headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def post_json(url: str, payload: dict, headers: Mapping[str, str], timeout: float, url_env: str) -> str:
    """POST JSON; 2xx is success, 408/425/429/5xx and network errors may be retried."""
    import http.client
    import urllib.error
    import urllib.parse
    import urllib.request

    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SinkError(f"the value of {url_env} is not an http(s) URL")
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/json; charset=utf-8", "User-Agent": USER_AGENT, **headers})
    opener = urllib.request.build_opener(_no_redirect_handler())
    try:
        with opener.open(request, timeout=timeout) as response:
            return f"HTTP {response.status}"
    except urllib.error.HTTPError as err:
        try:
            text = _one_line(err.read(200).decode("utf-8", "replace")) if err.fp else ""
        except OSError:
            text = ""
        retry = err.code in (408, 425, 429) or err.code >= 500
        raise SinkError(f"HTTP {err.code} {err.reason}" + (f": {text}" if text else ""),
                        retry=retry, retry_after=_retry_after(err)) from None
    except urllib.error.URLError as err:
        raise SinkError(f"cannot reach the endpoint in {url_env}: {err.reason}", retry=True) from None
    except (TimeoutError, ConnectionError, http.client.HTTPException, OSError) as err:
        raise SinkError(f"cannot reach the endpoint in {url_env}: {type(err).__name__}: {err}",
                        retry=True) from None
    except ValueError:
        raise SinkError(f"the value of {url_env} is not a valid URL") from None


def send_file(sink, alert, secrets, timeout, resolve_path) -> str:
    """Append the alert as one JSON line (JSON-encodes every CRM-provided string)."""
    path = resolve_path(sink.get("path", DEFAULT_FILE_PATH))
    record = {"sent_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **alert.as_dict()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
    except OSError as err:
        raise SinkError(f"{type(err).__name__}: {err}", retry=True) from None
    return str(path)


def send_slack(sink, alert, secrets, timeout, resolve_path) -> str:
    var = sink["webhook_url_env"]
    return post_json(secrets[var], slack_payload(alert), {}, timeout, var)


def send_webhook(sink, alert, secrets, timeout, resolve_path) -> str:
    headers = {**(sink.get("headers") or {}),
               **{name: secrets[var] for name, var in (sink.get("headers_env") or {}).items()}}
    return post_json(secrets[sink["url_env"]], webhook_payload(alert), headers, timeout, sink["url_env"])


def send_email(sink, alert, secrets, timeout, resolve_path) -> str:
    """SMTP with STARTTLS (certificate verified) and login when configured."""
    import smtplib
    import ssl

    msg = email_message(alert, sink)
    host, port = sink["host"], int(sink.get("port") or 587)
    try:
        smtp = smtplib.SMTP(host, port, timeout=timeout)
    except (OSError, smtplib.SMTPException) as err:
        raise SinkError(f"cannot reach SMTP server {host}:{port}: {type(err).__name__}: {err}", retry=True) from None
    try:
        smtp.ehlo()
        if sink.get("starttls", True):
            context = ssl.create_default_context(cafile=sink.get("tls_ca_file"))
            smtp.starttls(context=context)
            smtp.ehlo()
        if sink.get("username"):
            smtp.login(sink["username"], secrets[sink["password_env"]])
        refused = smtp.send_message(msg, from_addr=sink["from"], to_addrs=list(sink["to"]))
    except smtplib.SMTPNotSupportedError as err:
        raise SinkError(f"SMTP server {host}:{port}: {err}") from None
    except smtplib.SMTPAuthenticationError as err:
        raise SinkError(f"SMTP server {host}:{port} refused the login for {sink['username']} "
                        f"(code {err.smtp_code})") from None
    except smtplib.SMTPRecipientsRefused as err:
        raise SinkError(f"SMTP server {host}:{port} refused every recipient: {', '.join(err.recipients)}") from None
    except smtplib.SMTPResponseException as err:
        message = err.smtp_error.decode("utf-8", "replace") if isinstance(err.smtp_error, bytes) else err.smtp_error
        raise SinkError(f"SMTP server {host}:{port} answered {err.smtp_code} {_one_line(message)}",
                        retry=err.smtp_code < 500) from None
    except ssl.SSLCertVerificationError as err:
        raise SinkError(f"SMTP server {host}:{port}: TLS certificate not trusted ({err.verify_message}); "
                        f"set tls_ca_file to the CA that signed it") from None
    except (OSError, smtplib.SMTPException) as err:
        raise SinkError(f"SMTP server {host}:{port}: {type(err).__name__}: {err}", retry=True) from None
    finally:
        try:
            smtp.quit()
        except (OSError, smtplib.SMTPException):
            smtp.close()
    sent = len(sink["to"]) - len(refused)
    return f"sent to {sent} of {len(sink['to'])} recipient(s)" + (
        f"; refused: {', '.join(refused)}" if refused else "")


SENDERS: dict[str, Callable[..., str]] = {
    "file": send_file, "slack": send_slack, "webhook": send_webhook, "email": send_email,
}


def redact(text: str, secrets) -> str:
    """Belt and braces: a secret value that slipped into a message is replaced by ***."""
    for value in sorted((v for v in secrets if v), key=len, reverse=True):
        text = text.replace(value, "***")
    return text
