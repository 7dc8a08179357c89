"""Hardening, class 3: the LLM client under a bad server.

A raw-socket server on 127.0.0.1 (started and stopped by each test, every loop bounded) plays the
bad server: one that trickles its answer or even its headers a byte at a time, one that sends 5 MB
for a 256-token answer or a gzip bomb, one that answers garbage JSON or errors, one that hangs up.
The real openai client runs against it. Checked: the total deadline per attempt (every byte,
headers included), per answer and per run; the size cap; the circuit breaker; the API key
stripped, validated and never in a log line (DEBUG, httpx's loggers included), an error or a file;
the cache checked before the first request; errors that name the server and say what it did.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import socketserver
import threading
import time
import traceback

import openai
import pytest

from conceptlab.concepts.language import OpenAIProvider, PromptSet
from conceptlab.concepts.language.providers import (
    LLMCacheError,
    LLMDeadlineError,
    LLMResponseError,
    LLMUnavailableError,
)

KEY = "sk-test-4c1d0e8b2a"
ONE = PromptSet("one", {"q": "List features of {}:"}, samples=1)


def chat_body(text: str = "1) red\n2) round") -> bytes:
    return json.dumps({
        "id": "c", "object": "chat.completion", "created": 0, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }).encode()


def response(body: bytes, status: str = "200 OK", headers: dict | None = None) -> bytes:
    head = {"Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
    return f"HTTP/1.1 {status}\r\n".encode() + b"".join(f"{k}: {v}\r\n".encode() for k, v in head.items()) + b"\r\n" + body


class BadServer:
    """A scripted HTTP server: ``behaviour(conn, request_bytes)`` answers each request."""

    def __init__(self, behaviour) -> None:
        self.behaviour = behaviour
        self.requests: list[bytes] = []
        self.hangups = 0  # writes that failed because the client had gone: the client cut us off
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                self.request.settimeout(10)
                data = b""
                try:
                    while b"\r\n\r\n" not in data and len(data) < 1 << 16:
                        chunk = self.request.recv(4096)
                        if not chunk:
                            return
                        data += chunk
                    head, _, rest = data.partition(b"\r\n\r\n")
                    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")), 0)
                    while len(rest) < length:
                        rest += self.request.recv(4096)
                    outer.requests.append(head)
                    outer.behaviour(self.request, head)
                except (BrokenPipeError, ConnectionResetError):
                    outer.hangups += 1
                except TimeoutError:
                    pass

        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="module", autouse=True)
def warm(tmp_path_factory):
    """One ordinary answer first: openai imports its request machinery on first use, which would
    otherwise eat into the first test's sub-second deadlines."""
    server = BadServer(lambda conn, head: conn.sendall(response(chat_body())))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("NO_PROXY", "127.0.0.1,localhost")
            make(server, tmp_path_factory.mktemp("warm")).complete("warm up")
    finally:
        server.close()


@pytest.fixture()
def serve(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    servers = []

    def start(behaviour):
        servers.append(BadServer(behaviour))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def make(server, tmp_path, **kw) -> OpenAIProvider:
    settings = {"model": "m", "base_url": server.url, "api_key": KEY, "cache_dir": tmp_path / "cache", "backoff": 0.01, "max_retries": 0}
    return OpenAIProvider(**{**settings, **kw})


def trickle(payload: bytes, pause: float = 0.05, limit: int = 400):
    """Send ``payload`` one byte at a time (at most ``limit`` bytes: the loop is bounded)."""
    def behaviour(conn, head):
        for byte in payload[:limit]:
            conn.sendall(bytes([byte]))
            time.sleep(pause)
    return behaviour


# -- deadlines ---------------------------------------------------------------------------------------


def test_a_trickled_body_is_cut_at_the_attempts_total_deadline(serve, tmp_path):
    body = chat_body("x" * 300)
    server = serve(lambda conn, head: (conn.sendall(response(body)[:-len(body)]), trickle(body)(conn, head)))
    provider = make(server, tmp_path, timeout=1.5, request_deadline=5.0)
    with pytest.raises(openai.APITimeoutError, match=rf"the server at {server.url} did not answer within the 1.5 s allowed for one attempt"):
        provider.complete("List features of a:")
    # each read would have come within a per-read timeout: only a total deadline stops it
    assert len(server.requests) == 1
    _wait_for(lambda: server.hangups == 1)
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_trickled_headers_are_cut_too(serve, tmp_path):
    server = serve(trickle(response(chat_body())))
    provider = make(server, tmp_path, timeout=0.5, max_retries=3, request_deadline=1.2, backoff=0.05)
    with pytest.raises(openai.APITimeoutError, match="did not answer within"):
        provider.complete("List features of a:")
    # the answer deadline (1.2 s) leaves room for at most 3 attempts of 0.5 s, not the 4 asked for
    assert 1 <= len(server.requests) <= 3 and provider.stats["requests"] == len(server.requests)
    _wait_for(lambda: server.hangups == len(server.requests))


def test_the_run_deadline_stops_a_run_and_keeps_what_it_got(serve, tmp_path):
    def slow(conn, head):
        time.sleep(0.25)
        conn.sendall(response(chat_body()))

    server = serve(slow)
    classes = [f"class {k}" for k in range(12)]
    provider = make(server, tmp_path, run_deadline=0.6)
    with pytest.raises(LLMDeadlineError, match=r"deadline of 0.6 s after \d+ of 12 answers.*cached.*resumes"):
        provider.generate(classes, ONE)
    got = len(list((tmp_path / "cache").rglob("*.json")))
    assert 1 <= got < 12
    again = make(server, tmp_path)
    before = len(server.requests)
    assert again.generate(classes, ONE).classes == classes
    assert len(server.requests) - before == 12 - got  # resumed from the cache


# -- sizes and encodings ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["huge", "announced", "gzip"])
def test_oversized_and_compressed_answers_are_refused(serve, tmp_path, kind, monkeypatch):
    monkeypatch.setenv("CONCEPTLAB_LIMIT_LLM_RESPONSE_BYTES", str(64 * 1024))
    big = chat_body("word " * 1_000_000)  # 5 MB for max_tokens=256

    def behaviour(conn, head):
        if kind == "gzip":
            packed = gzip.compress(big)
            conn.sendall(response(packed, headers={"Content-Encoding": "gzip"}))
        elif kind == "announced":
            conn.sendall(response(big)[:200])
        else:  # no Content-Length: the size is only known by counting
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
            for start in range(0, len(big), 65536):
                conn.sendall(big[start : start + 65536])

    server = serve(behaviour)
    provider = make(server, tmp_path, max_retries=3)
    message = {"huge": "sent more than 64.0 KiB", "announced": "announced 4.8 MiB", "gzip": "'gzip'-compressed"}[kind]
    with pytest.raises(LLMResponseError, match=rf"the server at {server.url} sent an answer conceptlab refuses: .*{message}"):
        provider.complete("List features of a:")
    assert len(server.requests) == 1  # refused, not retried
    assert b"accept-encoding: identity" in server.requests[0].lower()
    assert not list((tmp_path / "cache").rglob("*.json"))


def test_a_huge_cache_file_is_ignored_not_loaded(serve, tmp_path, monkeypatch):
    server = serve(lambda conn, head: conn.sendall(response(chat_body("1) fresh"))))
    provider = make(server, tmp_path)
    key = provider.cache_key("List features of a:", 0.7, 256, 0)
    path = provider.cache_path(key)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"key": key, "text": "1) stale " * 300_000}))
    assert provider.complete("List features of a:") == "1) fresh"  # re-asked, not read
    assert len(server.requests) == 1


# -- what the server answered ------------------------------------------------------------------------------


@pytest.mark.parametrize("status, body, kind, message", [
    ("500 Internal Server Error", b'{"error": {"message": "boom"}}', openai.InternalServerError, "answered 500 Internal Server Error: boom"),
    ("404 Not Found", b"<html>no such route</html>", openai.NotFoundError, "answered 404 Not Found: <html>no such route</html>"),
    ("200 OK", b'{"choices": [{"message": {"content": "a", ', LLMResponseError, "answered with malformed JSON"),
    ("200 OK", b'{"choices": "nope"}', ValueError, "answered with no text"),
])
def test_errors_say_what_the_server_at_which_url_answered(serve, tmp_path, status, body, kind, message):
    server = serve(lambda conn, head: conn.sendall(response(body, status)))
    with pytest.raises(kind, match=message) as caught:
        make(server, tmp_path).complete("List features of a:")
    assert str(caught.value).startswith(f"the server at {server.url} ")
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_a_dead_server_trips_the_circuit_breaker(serve, tmp_path):
    server = serve(lambda conn, head: None)  # reads the request, hangs up without a word
    provider = make(server, tmp_path, max_retries=1, max_consecutive_failures=3)
    classes = [f"class {k}" for k in range(10)]
    with pytest.raises(LLMUnavailableError, match=rf"the server at {server.url} failed 3 requests in a row; not sending more"):
        provider.generate(classes, ONE, on_error="skip")  # skipping answers does not skip a dead server
    assert len(server.requests) == 3 * 2  # three answers, each tried twice, then nothing


def test_a_success_resets_the_breaker(serve, tmp_path):
    state = {"n": 0}

    def flaky(conn, head):
        state["n"] += 1
        if state["n"] % 3:
            return  # hang up
        conn.sendall(response(chat_body()))

    server = serve(flaky)
    provider = make(server, tmp_path, max_retries=0, max_consecutive_failures=3)
    out = provider.generate([f"c{k}" for k in range(4)], ONE, on_error="skip")  # fail, fail, answer, fail
    assert len(server.requests) == 4 and out["c2"] == ["red", "round"]
    assert [p["class"] for p in out.provenance["problems"]] == ["c0", "c1", "c3"]


# -- the key -----------------------------------------------------------------------------------------------


def test_the_key_is_stripped_validated_and_never_shown(serve, tmp_path, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)
    for name in ("openai", "httpx", "httpx2", "httpcore", "httpcore2"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    server = serve(lambda conn, head: conn.sendall(response(b'{"error": {"message": "bad key"}}', "401 Unauthorized")))
    monkeypatch.setenv("OPENAI_API_KEY", KEY + "\n")  # as read from a file
    provider = OpenAIProvider(model="m", base_url=server.url, cache_dir=tmp_path / "c", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as caught:
        provider.complete("List features of a:")
    assert f"authorization: Bearer {KEY}\r\n".lower().encode() in server.requests[0].lower()  # sent stripped
    text = "".join(traceback.format_exception(caught.value)) + caplog.text + repr(provider)
    assert KEY not in text and "answered 401 Unauthorized: bad key" in text
    for bad in (KEY[:6] + "\n" + KEY[6:], KEY + " x", KEY + "\x00", "ключ"):
        with pytest.raises(ValueError, match="cannot carry") as refused:
            OpenAIProvider(model="m", base_url=server.url, api_key=bad, cache_dir=tmp_path / "c")
        assert bad.strip() not in str(refused.value)
    assert len(server.requests) == 1


def test_the_key_is_redacted_from_server_messages(serve, tmp_path):
    echo = json.dumps({"error": {"message": f"key {KEY} is not allowed"}}).encode()
    server = serve(lambda conn, head: conn.sendall(response(echo, "403 Forbidden")))
    with pytest.raises(openai.PermissionDeniedError) as caught:
        make(server, tmp_path).complete("List features of a:")
    assert KEY not in "".join(traceback.format_exception(caught.value)) and "key <redacted> is not allowed" in str(caught.value)


# -- the cache ----------------------------------------------------------------------------------------------


def test_an_unwritable_cache_is_found_before_the_first_request(serve, tmp_path):
    server = serve(lambda conn, head: conn.sendall(response(chat_body())))
    (tmp_path / "not-a-folder").write_text("x")
    provider = make(server, tmp_path, cache_dir=tmp_path / "not-a-folder" / "cache")
    for on_error in ("skip", "raise"):
        with pytest.raises(LLMCacheError, match=r"not-a-folder/cache is not writable.*paid for and then lost"):
            provider.generate(["a", "b"], ONE, on_error=on_error)
    assert server.requests == []  # not one paid request
    assert make(server, tmp_path, cache_dir=tmp_path / "not-a-folder" / "cache", cache=False).complete("q") == "1) red\n2) round"


def _wait_for(condition, attempts: int = 100) -> None:
    """The server thread notices the hang-up on its next write; give it a bounded number of polls."""
    for _ in range(attempts):
        if condition():
            return
        time.sleep(0.05)
    assert condition()


def test_the_guard_wraps_the_clients_network_backend(serve, tmp_path):
    server = serve(lambda conn, head: conn.sendall(response(chat_body())))
    provider = make(server, tmp_path)
    assert provider.complete("q") == "1) red\n2) round"
    assert provider._guarded  # this openai/httpx version's pools carry the deadline guard
    socket.getaddrinfo("127.0.0.1", 0)  # (loopback only)
