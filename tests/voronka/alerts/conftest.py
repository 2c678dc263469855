"""Real local endpoints for the alert sinks: an HTTP server, an SMTP server (aiosmtpd, with
STARTTLS and login), a closed port and a port that never answers. Nothing leaves 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

PROXY_VARS = ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY")


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch):
    """urllib honours proxy variables; the tests talk to 127.0.0.1 directly."""
    for var in PROXY_VARS:
        monkeypatch.delenv(var, raising=False)


@dataclass
class Received:
    path: str
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body.decode("utf-8"))


@dataclass
class HttpEndpoint:
    url: str
    requests: list[Received] = field(default_factory=list)
    # Status codes to answer, in order (then 200): e.g. [500, 500] fails twice, then succeeds.
    statuses: list[int] = field(default_factory=list)
    extra_headers: dict = field(default_factory=dict)


@pytest.fixture
def http_endpoint():
    endpoint = HttpEndpoint(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            endpoint.requests.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            status = endpoint.statuses.pop(0) if endpoint.statuses else 200
            reply = b"ok" if status == 200 else b"invalid_payload"
            self.send_response(status)
            for name, value in endpoint.extra_headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args):  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield endpoint
    server.shutdown()
    server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def closed_port() -> int:
    """A port nobody listens on: connecting is refused at once."""
    return _free_port()


@pytest.fixture
def silent_port():
    """A port that accepts connections (the kernel's backlog) and never answers."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    yield s.getsockname()[1]
    s.close()


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and localhost: (cert.pem, key.pem)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    login: str | None
    over_tls: bool


@dataclass
class SmtpEndpoint:
    port: int
    messages: list[Mail] = field(default_factory=list)
    logins: list[tuple[str, str]] = field(default_factory=list)  # every (login, password) tried


@pytest.fixture
def smtp_server(tls_cert):
    """Factory: smtp_server(tls=False) or smtp_server(tls=True, user=..., password=...), which
    requires STARTTLS and a login (aiosmtpd refuses AUTH before TLS)."""
    controllers = []

    def start(tls: bool = False, user: str | None = None, password: str | None = None) -> SmtpEndpoint:
        endpoint = SmtpEndpoint(port=_free_port())

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
                endpoint.messages.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                                              login, session.ssl is not None))
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            if not isinstance(auth_data, LoginPassword):
                return AuthResult(success=False, handled=False)
            endpoint.logins.append((auth_data.login.decode(), auth_data.password.decode()))
            ok = (auth_data.login.decode(), auth_data.password.decode()) == (user, password)
            # handled=False: aiosmtpd answers "535" itself (handled=True would leave the client waiting)
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        options = {}
        if tls:
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls_cert)
            options = dict(tls_context=context, require_starttls=True, authenticator=authenticator,
                           auth_required=True, auth_require_tls=True)
        controller = Controller(Handler(), hostname="127.0.0.1", port=endpoint.port, **options)
        controller.start()
        controllers.append(controller)
        return endpoint

    yield start
    for controller in controllers:
        controller.stop()


def _coverage_row(pipeline: str = "SaaS", period: str = "2026-Q2", coverage: float | None = 2.0,
                  status: str = "warn") -> dict:
    """One row of main.pipeline_coverage (target 1M, nothing booked)."""
    gap = 1_000_000.0
    open_pipeline = (coverage or 0.0) * gap
    return {"period": period, "period_grain": "quarter" if "Q" in period else "month", "pipeline": pipeline,
            "currency": "USD", "target": gap, "booked": 0.0, "open_pipeline": open_pipeline, "gap": gap,
            "coverage": coverage, "required_coverage": 3.0, "shortfall": max(3.0 * gap - open_pipeline, 0.0),
            "status": status}


@pytest.fixture
def coverage_row():
    return _coverage_row
