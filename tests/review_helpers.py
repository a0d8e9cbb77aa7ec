"""Shared by the review tests: ``diarkit review`` as a real process, and headless Chromium."""

from __future__ import annotations

import http.client
import os
import queue
import re
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from conftest import REPO

HOST = "127.0.0.1"  # never anything else
URL_LINE = re.compile(r"open (http://\S+)")


@dataclass
class ReviewProcess:
    proc: subprocess.Popen
    url: str
    output: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return urlsplit(self.url).port

    @property
    def prefix(self) -> str:
        return urlsplit(self.url).path  # "/" or "/<token>/"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """A raw request: the path is sent exactly as given (no normalization of .. or %2e)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=30)
        try:
            conn.putrequest(method, path, skip_host="Host" in (headers or {}), skip_accept_encoding=True)
            for key, value in (headers or {}).items():
                conn.putheader(key, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def stop(self) -> str:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return "".join(self.output)


def run_review(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "diarkit", "review", *args], capture_output=True, text=True,
                          cwd=REPO, timeout=timeout)


def start_review(result: Path, media: Path, *extra: str, timeout: float = 120) -> ReviewProcess:
    """Start ``diarkit review`` on a free loopback port; returns once it has printed its URL."""
    proc = subprocess.Popen([sys.executable, "-m", "diarkit", "review", str(result), "--media", str(media),
                             "--host", HOST, "--port", "0", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    lines: queue.Queue[str | None] = queue.Queue()
    output: list[str] = []

    def pump():
        for line in proc.stdout:
            output.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            proc.kill()
            raise AssertionError(f"diarkit review printed no URL within {timeout} s:\n{''.join(output)}") from None
        if line is None:
            proc.wait()
            raise AssertionError(f"diarkit review exited with {proc.returncode}:\n{''.join(output)}")
        if match := URL_LINE.search(line):
            url = match.group(1)
            assert urlsplit(url).hostname == HOST
            return ReviewProcess(proc, url, output)


def chromium_or_skip():
    """Debian's chromium + chromedriver driven by Selenium, or a clean skip saying what is missing."""
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (pip install -r requirements.txt)")
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not browser or not driver:
        pytest.skip("Debian's chromium and chromium-driver are not installed "
                    "(make system-deps, or apt-get install chromium chromium-driver)")
    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must not look anything up
    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800",
                "--autoplay-policy=no-user-gesture-required", "--mute-audio", "--no-first-run", "--no-default-browser-check",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
                "--disable-client-side-phishing-detection", "--disable-features=Translate,OptimizationHints,MediaRouter",
                # nothing may leave the machine: every non-loopback host fails to resolve, and any
                # request that still tried would go to a closed port on loopback
                "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                "--proxy-server=http://127.0.0.1:9"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(executable_path=driver))
