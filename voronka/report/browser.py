"""Open a page in headless Chromium and look at it, with only the standard library.

Chromium is driven over the DevTools protocol on a websocket (a minimal RFC 6455 client below:
text frames out, masked; frames in, reassembled; pings answered). `inspect_page` loads a file,
waits for the load event and returns what the browser saw: console errors and uncaught
exceptions, every request the page made, the value of a JavaScript expression evaluated in the
page (the page itself carries no script), and a full-page PNG screenshot.

Used by tests/voronka/report/test_report_browser.py and to make docs/report.png; no Dagster imports.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-extensions", "--mute-audio", "--hide-scrollbars"]


def find_chromium() -> str | None:
    for candidate in (os.environ.get("VORONKA_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser"), shutil.which("google-chrome")):
        if candidate and Path(candidate).exists():
            return candidate
    return None


class BrowserError(RuntimeError):
    pass


class _WebSocket:
    """Just enough of a websocket client for the DevTools protocol (ws://, no extensions)."""

    def __init__(self, url: str, timeout: float):
        parts = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise BrowserError("DevTools closed the connection during the handshake")
            self.buffer += chunk
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise BrowserError(f"DevTools refused the websocket: {head[:200]!r}")

    def _frame(self, opcode: int, payload: bytes) -> None:
        header = bytearray([0x80 | opcode])
        n = len(payload)
        if n < 126:
            header.append(0x80 | n)
        elif n < 1 << 16:
            header.append(0x80 | 126)
            header += struct.pack(">H", n)
        else:
            header.append(0x80 | 127)
            header += struct.pack(">Q", n)
        mask = os.urandom(4)
        header += mask
        data = bytearray(payload)
        for i in range(n):
            data[i] ^= mask[i % 4]
        self.sock.sendall(bytes(header) + bytes(data))

    def send(self, text: str) -> None:
        self._frame(0x1, text.encode())

    def _read(self, n: int) -> bytes:
        chunks, have = [self.buffer], len(self.buffer)
        while have < n:
            chunk = self.sock.recv(max(65536, n - have))
            if not chunk:
                raise BrowserError("DevTools closed the connection")
            chunks.append(chunk)
            have += len(chunk)
        data = b"".join(chunks)
        self.buffer = data[n:]
        return data[:n]

    def recv(self) -> str:
        message = bytearray()
        while True:
            b1, b2 = self._read(2)
            opcode, length = b1 & 0x0F, b2 & 0x7F
            if length == 126:
                length = struct.unpack(">H", self._read(2))[0]
            elif length == 127:
                length = struct.unpack(">Q", self._read(8))[0]
            mask = self._read(4) if b2 & 0x80 else None
            payload = bytearray(self._read(length))
            if mask:
                for i in range(length):
                    payload[i] ^= mask[i % 4]
            if opcode == 0x8:
                raise BrowserError("DevTools closed the websocket")
            if opcode == 0x9:
                self._frame(0xA, bytes(payload))
                continue
            if opcode == 0xA:
                continue
            message += payload
            if b1 & 0x80:
                return message.decode("utf-8")

    def close(self) -> None:
        try:
            self._frame(0x8, b"")
        except OSError:
            pass
        self.sock.close()


class _DevTools:
    """One browser websocket; commands to a page go through its flattened session."""

    def __init__(self, url: str, timeout: float):
        self.ws = _WebSocket(url, timeout)
        self.next_id = 0
        self.events: list[dict] = []
        self.timeout = timeout

    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self.next_id += 1
        message: dict = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        self.ws.send(json.dumps(message))
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            reply = json.loads(self.ws.recv())
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)
        raise BrowserError(f"{method}: no answer in {self.timeout:.0f} s")

    def wait_for(self, method: str) -> dict:
        deadline = time.monotonic() + self.timeout
        for event in self.events:
            if event["method"] == method:
                return event
        while time.monotonic() < deadline:
            event = json.loads(self.ws.recv())
            if "method" in event:
                self.events.append(event)
                if event["method"] == method:
                    return event
        raise BrowserError(f"no {method} in {self.timeout:.0f} s")


@dataclass
class PageResult:
    console_errors: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    value: Any = None
    screenshot: bytes | None = None
    size: tuple[float, float] = (0.0, 0.0)
    pdf: bytes | None = None


def _console_errors(events: list[dict]) -> list[str]:
    errors = []
    for e in events:
        p = e.get("params", {})
        if e["method"] == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            errors.append("console: " + " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
        elif e["method"] == "Runtime.exceptionThrown":
            details = p.get("exceptionDetails", {})
            errors.append("exception: " + str(details.get("exception", {}).get("description") or details.get("text")))
        elif e["method"] == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            entry = p["entry"]
            errors.append(f"log ({entry.get('source')}): {entry.get('text')} {entry.get('url', '')}".strip())
    return errors


def inspect_page(path: str | Path, expression: str | None = None, screenshot: bool = True,
                 width: int = 1100, height: int = 900, chromium: str | None = None,
                 timeout: float = 60.0, user_data_dir: str | Path | None = None,
                 media: str | None = None, pdf: bool = False) -> PageResult:
    """Load `path` in headless Chromium and report what happened (see the module doc).

    media='print' lays the page out as it prints; pdf=True also prints it (A4) into result.pdf."""
    chromium = chromium or find_chromium()
    if not chromium:
        raise BrowserError("Chromium not found: run scripts/install_chromium.sh")
    owned_dir = None
    if user_data_dir is None:
        owned_dir = tempfile.mkdtemp(prefix="voronka-chromium-")
        user_data_dir = owned_dir
    user_data_dir = Path(user_data_dir)
    user_data_dir.mkdir(parents=True, exist_ok=True)
    port_file = user_data_dir / "DevToolsActivePort"
    port_file.unlink(missing_ok=True)
    process = subprocess.Popen(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}", "--remote-debugging-port=0",
         f"--window-size={width},{height}", "about:blank"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    devtools = None
    try:
        deadline = time.monotonic() + timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if process.poll() is not None:
                raise BrowserError(f"Chromium exited with code {process.returncode} before it listened")
            if time.monotonic() > deadline:
                raise BrowserError("Chromium did not open its DevTools port")
            time.sleep(0.05)
        port, browser_path = port_file.read_text().splitlines()[:2]
        devtools = _DevTools(f"ws://127.0.0.1:{port.strip()}{browser_path.strip()}", timeout)
        target = devtools.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = devtools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            devtools.call(method, session=session)
        devtools.call("Emulation.setDeviceMetricsOverride",
                      {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        if media:
            devtools.call("Emulation.setEmulatedMedia", {"media": media}, session=session)
        url = Path(path).resolve().as_uri() if not str(path).startswith(("file:", "http:", "https:")) else str(path)
        devtools.events.clear()
        devtools.call("Page.navigate", {"url": url}, session=session)
        devtools.wait_for("Page.loadEventFired")
        result = PageResult()
        if expression:
            evaluated = devtools.call("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                                      session=session)
            if "exceptionDetails" in evaluated:
                raise BrowserError(f"evaluating the probe failed: {evaluated['exceptionDetails'].get('text')}")
            result.value = evaluated.get("result", {}).get("value")
        metrics = devtools.call("Page.getLayoutMetrics", session=session)
        content = metrics.get("cssContentSize") or metrics.get("contentSize")
        result.size = (float(content["width"]), float(content["height"]))
        if screenshot:
            shot = devtools.call("Page.captureScreenshot", {
                "format": "png", "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": width, "height": result.size[1], "scale": 1}}, session=session)
            result.screenshot = base64.b64decode(shot["data"])
        if pdf:
            printed = devtools.call("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69,
                                                        "printBackground": True, "preferCSSPageSize": True},
                                    session=session)
            result.pdf = base64.b64decode(printed["data"])
        events = [e for e in devtools.events if e.get("sessionId") in (session, None)]
        result.console_errors = _console_errors(events)
        result.requests = [e["params"]["request"]["url"] for e in events
                           if e["method"] == "Network.requestWillBeSent"]
        try:
            devtools.call("Browser.close")
        except (BrowserError, OSError):
            pass
        return result
    finally:
        if devtools is not None:
            devtools.ws.close()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if owned_dir:
            shutil.rmtree(owned_dir, ignore_errors=True)
