"""Concept providers: anything that makes a :class:`ConceptSet` for a list of class names.

- :class:`OfflineProvider` reads class -> list JSON files (no network; what the tests and the app use);
- :class:`OpenAIProvider` asks any OpenAI-compatible server through the ``openai`` client. Every
  answer is cached on disk, keyed by model + prompt + sampling settings, so a rerun pays nothing;
  failed requests are retried with exponential backoff; the API key is never logged, cached or
  written into provenance. Under a bad server it stays bounded: a total deadline per attempt (every
  byte, headers included), per answer and per run, a size cap on each answer, a circuit breaker
  after consecutive failures, and errors that say what the server at which URL did.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
import os
import random
import re
import secrets
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from conceptlab.concepts.bank import library_provenance, unknown_name, write_json
from conceptlab.concepts.language.parsing import parse_list_answer
from conceptlab.concepts.language.prompts import PromptSet, resolve_prompt_set
from conceptlab.concepts.language.sets import ConceptSet, load_concept_set
from conceptlab.limits import limit, parse_json, read_regular_file
from conceptlab.utils import human_bytes

__all__ = [
    "ConceptProvider",
    "LLMCacheError",
    "LLMDeadlineError",
    "LLMError",
    "LLMResponseError",
    "LLMUnavailableError",
    "OfflineProvider",
    "OpenAIProvider",
]

log = logging.getLogger(__name__)


@runtime_checkable
class ConceptProvider(Protocol):
    """Makes a :class:`ConceptSet` for a list of class names."""

    name: str

    def generate(self, class_names: Sequence[str], prompt_set: str | PromptSet = "labo") -> ConceptSet: ...


class OfflineProvider:
    """Serves concept sets read from JSON files (class -> list), as the papers ship them.

    Args:
        source: a path, a :class:`ConceptSet`, a plain mapping, or a list of those (merged in order;
            a class in several sources gets the union of their lists).
    """

    name = "offline"

    def __init__(self, source: str | os.PathLike | ConceptSet | Mapping[str, Sequence[str]] | Sequence[Any]) -> None:
        sources = list(source) if isinstance(source, (list, tuple)) else [source]
        merged: dict[str, list[str]] = {}
        files = []
        for item in sources:
            if isinstance(item, ConceptSet):
                cs = item
            elif isinstance(item, Mapping):
                cs = ConceptSet(dict(item))
            else:
                cs = load_concept_set(item)
                files.append(str(item))
            for cls, concepts in cs.concepts.items():
                merged.setdefault(cls, []).extend(concepts)
        self._set = ConceptSet(merged, provenance={"source": "offline", "files": files})

    def generate(self, class_names: Sequence[str] | None = None, prompt_set: str | PromptSet | None = None) -> ConceptSet:
        """The stored concepts of ``class_names`` (all classes when None), in that order."""
        names = self._set.classes if class_names is None else [str(c) for c in class_names]
        missing = [c for c in names if c not in self._set.concepts]
        if missing:
            raise unknown_name(missing[0], self._set.classes, "class")
        return ConceptSet({c: self._set.concepts[c] for c in names}, provenance={**self._set.provenance, **library_provenance(provider="offline")})


_RETRYABLE_STATUS = {408, 409, 429, 500, 502, 503, 504}
_KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,4096}")


class LLMError(RuntimeError):
    """The LLM client stopped a whole run, not one answer: the server is unavailable (circuit
    breaker), the run passed its deadline, or the answer cache cannot be written."""


class LLMUnavailableError(LLMError):
    """The server failed this many requests in a row that no further request is sent."""


class LLMDeadlineError(LLMError):
    """A ``generate`` run passed its total deadline; answers received so far are cached."""


class LLMCacheError(LLMError):
    """The answer cache cannot be written, so paid answers would be lost; checked before the first request."""


class LLMResponseError(ValueError):
    """An answer refused as it arrived: larger than the size cap, compressed, or malformed JSON."""


class _RefusedAnswer(Exception):
    """Raised inside the HTTP stack (below the openai client), turned into :class:`LLMResponseError`."""


# -- a total deadline and a size cap on every byte of one attempt --------------------------------------
#
# ``timeout`` in an HTTP client bounds each read, so a server sending one byte a second holds a
# request forever. The guard wraps the client's network backend: every read and write of the socket
# (headers included) is given at most the time left to the attempt, and every byte read counts
# against the size cap. The budget is per thread, set around each attempt.

_local = threading.local()


class _Budget:
    def __init__(self, seconds: float, max_bytes: int) -> None:
        self.deadline = time.monotonic() + seconds
        self.seconds = seconds
        self.max_bytes = max_bytes
        self.read = 0


@contextlib.contextmanager
def _attempt_budget(seconds: float, max_bytes: int):
    previous = getattr(_local, "budget", None)
    _local.budget = _Budget(seconds, max_bytes)
    try:
        yield _local.budget
    finally:
        _local.budget = previous


def _time_left(timeout: float | None, timeout_error: type) -> float | None:
    budget = getattr(_local, "budget", None)
    if budget is None:
        return timeout
    left = budget.deadline - time.monotonic()
    if left <= 0:
        raise timeout_error(f"the attempt's total deadline of {budget.seconds:g} s passed")
    return left if timeout is None else min(timeout, left)


class _GuardedStream:
    def __init__(self, inner: Any, errors: Any) -> None:
        self._inner, self._errors = inner, errors

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, _time_left(timeout, self._errors.ReadTimeout))
        budget = getattr(_local, "budget", None)
        if budget is not None:
            budget.read += len(data)
            if budget.read > budget.max_bytes:
                raise _RefusedAnswer(f"it sent more than {human_bytes(budget.max_bytes)} for one answer")
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _time_left(timeout, self._errors.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        tls = self._inner.start_tls(ssl_context, server_hostname, _time_left(timeout, self._errors.ConnectTimeout))
        return _GuardedStream(tls, self._errors)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend:
    def __init__(self, inner: Any, errors: Any) -> None:
        self._inner, self._errors = inner, errors

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        stream = self._inner.connect_tcp(host, port, _time_left(timeout, self._errors.ConnectTimeout), local_address, socket_options)
        return _GuardedStream(stream, self._errors)

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        stream = self._inner.connect_unix_socket(path, _time_left(timeout, self._errors.ConnectTimeout), socket_options)
        return _GuardedStream(stream, self._errors)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _guard_network(http_client: Any) -> bool:
    """Wrap the network backend of every connection pool of an httpx(2) client; False when this
    client's internals are not the ones this was written for (then only per-read timeouts hold)."""
    transports = [getattr(http_client, "_transport", None), *getattr(http_client, "_mounts", {}).values()]
    pools = [getattr(t, "_pool", None) for t in transports if t is not None]
    if not pools or any(p is None or not hasattr(p, "_network_backend") for p in pools):
        return False
    for pool in pools:
        errors = importlib.import_module(type(pool).__module__.split(".")[0])  # httpcore or httpcore2
        pool._network_backend = _GuardedBackend(pool._network_backend, errors)
    return True


def _refuse_compressed(response: Any) -> None:
    """A response hook: answers are asked for uncompressed, so a size cap on the bytes read is a cap on
    the answer; a compressed one (which could inflate without bound) or one announced as too big is refused."""
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise _RefusedAnswer(f"it sent a {encoding!r}-compressed answer although conceptlab asks for an uncompressed one")
    budget = getattr(_local, "budget", None)
    length = response.headers.get("content-length", "")
    if budget is not None and length.isdigit() and int(length) > budget.max_bytes:
        raise _RefusedAnswer(f"it announced {human_bytes(int(length))} for one answer, more than the {human_bytes(budget.max_bytes)} cap")


class OpenAIProvider:
    """Concept generation through an OpenAI-compatible server, with a disk cache and retries.

    Args:
        model: model name; default ``$CONCEPTLAB_LLM_MODEL``, then ``$OPENAI_MODEL``.
        base_url: server URL ending in ``/v1``; default ``$OPENAI_BASE_URL`` (the client's own default).
        api_key: default ``$OPENAI_API_KEY``; surrounding whitespace (a trailing newline from a file)
            is stripped, and a key an HTTP header cannot carry is refused before any request. Never
            logged, cached, stored in provenance or shown in an error message.
        cache_dir: answers are stored here, one JSON file per request (key, answer text, time;
            never the API key); default ``$CONCEPTLAB_HOME/llm_cache``. It must be writable: that is
            checked before the first request, so no paid answer is thrown away.
        cache: ``False`` neither reads nor writes the cache.
        api: ``"chat"`` (``/chat/completions``, the prompt as one user message) or
            ``"completions"`` (``/completions``, as the papers' GPT-3 calls).
        max_retries: retries after the first attempt, on connection errors, timeouts, 408/409/429
            and 5xx answers; other errors (bad key, bad request) are raised at once.
        backoff: first wait in seconds, doubled after each failure (capped by ``max_backoff``),
            with up to 10% jitter.
        timeout: total seconds for one attempt: connecting, sending, and every byte of the answer
            (not per read: a server trickling bytes cannot hold it longer).
        request_deadline: total seconds for one answer, retries and waits included.
        run_deadline: total seconds for one :meth:`generate` call; past it the run stops with
            :class:`LLMDeadlineError` (the answers received are cached: rerunning resumes).
        max_consecutive_failures: after this many answers in a row failed for want of a working
            server (connection errors, timeouts, 5xx, after their retries), no request is sent any
            more (:class:`LLMUnavailableError`, a circuit breaker) -- not even with ``on_error="skip"``.
        max_response_bytes: cap on the bytes of one answer; default the ``llm_response_bytes`` limit
            (1 MiB, ``$CONCEPTLAB_LIMIT_LLM_RESPONSE_BYTES``).
        client: an already built ``openai.OpenAI`` (its own retries should be 0); for tests.

    With the defaults a dead server costs at most ``max_consecutive_failures × request_deadline``
    (6 minutes) per run, and a refused connection a few seconds, instead of minutes per request.
    """

    name = "openai"

    def __init__(
        self,
        model: str | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        cache_dir: str | os.PathLike | None = None,
        cache: bool = True,
        api: str = "chat",
        max_retries: int = 4,
        backoff: float = 1.0,
        max_backoff: float = 30.0,
        timeout: float = 60.0,
        request_deadline: float = 120.0,
        run_deadline: float = 1800.0,
        max_consecutive_failures: int = 3,
        max_response_bytes: int | None = None,
        client: Any = None,
    ) -> None:
        if api not in ("chat", "completions"):
            raise ValueError(f"api must be 'chat' or 'completions', got {api!r}")
        self.model = model or os.environ.get("CONCEPTLAB_LLM_MODEL") or os.environ.get("OPENAI_MODEL")
        if not self.model:
            raise ValueError("OpenAIProvider needs a model: pass model=... or set $CONCEPTLAB_LLM_MODEL / $OPENAI_MODEL")
        self.base_url = base_url or os.environ.get("OPENAI_BASE_URL")
        self.__api_key = _clean_key(api_key if api_key is not None else os.environ.get("OPENAI_API_KEY"))
        if cache_dir is None:
            from conceptlab.utils import conceptlab_home

            cache_dir = conceptlab_home() / "llm_cache"
        self.cache_dir = Path(cache_dir)
        self.cache = bool(cache)
        self.api = api
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        for name, value in (("timeout", timeout), ("request_deadline", request_deadline), ("run_deadline", run_deadline)):
            if not float(value) > 0:
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        self.timeout = float(timeout)
        self.request_deadline = float(request_deadline)
        self.run_deadline = float(run_deadline)
        if int(max_consecutive_failures) < 1:
            raise ValueError(f"max_consecutive_failures must be at least 1, got {max_consecutive_failures!r}")
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.max_response_bytes = int(max_response_bytes) if max_response_bytes is not None else limit("llm_response_bytes")
        self._client = client
        self._guarded = client is not None  # a client given by the caller is used as it is
        self._cache_checked = False
        self._consecutive_failures = 0
        self._run_ends: float | None = None
        self.stats = {"requests": 0, "failures": 0, "retries": 0, "cache_hits": 0, "cache_misses": 0}

    def __repr__(self) -> str:  # never shows the key
        key = "set" if self.__api_key else "unset"
        return (f"OpenAIProvider(model={self.model!r}, base_url={self.base_url!r}, api={self.api!r}, api_key=<{key}>, "
                f"cache_dir={str(self.cache_dir)!r})")

    # -- the client ------------------------------------------------------------------------------

    @property
    def client(self):
        if self._client is None:
            try:
                import openai
            except ImportError as error:  # pragma: no cover - a core dependency
                raise ImportError("OpenAIProvider needs the openai package: pip install openai") from error
            if not self.__api_key:
                raise ValueError("OpenAIProvider needs an API key: pass api_key=... or set $OPENAI_API_KEY")
            http_client = openai.DefaultHttpxClient(timeout=self.timeout, event_hooks={"response": [_refuse_compressed]})
            self._guarded = _guard_network(http_client)
            if not self._guarded:
                log.warning("this httpx version's internals are unknown to conceptlab: only per-read timeouts hold for LLM requests")
            self._client = openai.OpenAI(
                api_key=self.__api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout,
                http_client=http_client, default_headers={"Accept-Encoding": "identity"},
            )
        return self._client

    @property
    def server(self) -> str:
        """The server's URL, as errors name it."""
        url = self.base_url or str(getattr(self._client, "base_url", "") or "https://api.openai.com/v1")
        return self._redact(str(url).rstrip("/"))

    def _redact(self, text: str) -> str:
        key = self.__api_key
        return text.replace(key, "<redacted>") if key else text

    # -- the cache -------------------------------------------------------------------------------

    def cache_key(self, prompt: str, temperature: float, max_tokens: int, sample: int) -> dict[str, Any]:
        """What identifies one answer: model, API, prompt, sampling settings, sample number."""
        return {
            "model": self.model, "api": self.api, "prompt": prompt,
            "temperature": float(temperature), "max_tokens": int(max_tokens), "sample": int(sample),
        }

    def cache_path(self, key: Mapping[str, Any]) -> Path:
        digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
        return self.cache_dir / digest[:2] / f"{digest}.json"

    def _read_cache(self, key: Mapping[str, Any]) -> str | None:
        path = self.cache_path(key)
        if not (self.cache and path.is_file()):
            return None
        try:
            bound = 2 * self.max_response_bytes + 2 * len(json.dumps(dict(key))) + 4096
            entry = parse_json(read_regular_file(path, max_bytes=bound, what="LLM cache entry"), f"LLM cache entry {path}")
        except (OSError, ValueError):
            log.warning("ignoring unreadable LLM cache entry %s", path)
            return None
        if not isinstance(entry, dict) or entry.get("key") != dict(key) or not isinstance(entry.get("text"), str):
            log.warning("ignoring mismatched LLM cache entry %s", path)
            return None
        return entry["text"]

    def _check_cache_writable(self) -> None:
        """Before the first request: a cache that cannot be written would throw every paid answer away."""
        if not self.cache or self._cache_checked:
            return
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            probe = self.cache_dir / f".write-test-{os.getpid()}-{secrets.token_hex(4)}"
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as error:
            raise LLMCacheError(
                f"the LLM answer cache {self.cache_dir} is not writable ({error.strerror or type(error).__name__}); "
                "every answer would be paid for and then lost. Pass cache_dir= a writable folder (or cache=False)"
            ) from None
        self._cache_checked = True

    def _write_cache(self, key: Mapping[str, Any], text: str) -> None:
        if self.cache:
            try:
                write_json(self.cache_path(key), {"key": dict(key), "text": text, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            except OSError as error:
                raise LLMCacheError(f"could not write the LLM answer cache {self.cache_dir} ({error.strerror or type(error).__name__})") from None

    # -- requests --------------------------------------------------------------------------------

    def _request(self, prompt: str, temperature: float, max_tokens: int) -> str:
        try:
            if self.api == "chat":
                response = self.client.chat.completions.create(
                    model=self.model, messages=[{"role": "user", "content": prompt}], temperature=temperature, max_tokens=max_tokens
                )
                choices = getattr(response, "choices", None) or []
                content = choices[0].message.content if choices and choices[0].message is not None else None
            else:
                response = self.client.completions.create(model=self.model, prompt=prompt, temperature=temperature, max_tokens=max_tokens)
                choices = getattr(response, "choices", None) or []
                content = choices[0].text if choices else None
        except json.JSONDecodeError as error:
            raise LLMResponseError(f"the server at {self.server} answered with malformed JSON ({error.msg} at character {error.pos})") from None
        except (AttributeError, TypeError, IndexError, KeyError):  # JSON of the wrong shape
            content = None
        if not isinstance(content, str):
            raise ValueError(f"the server at {self.server} answered with no text (model {self.model!r}); got {type(content).__name__}")
        return content

    def _explain(self, error: BaseException, seconds: float | None = None) -> BaseException:
        """The error to raise: the same class where it is openai's (callers catch those), a message
        that names the server and what it did, the API key redacted, and no exception chain (whose
        messages the key could be in)."""
        import openai

        refused = next((e for e in _chain(error) if isinstance(e, _RefusedAnswer)), None)
        if refused is not None:
            out: BaseException = LLMResponseError(f"the server at {self.server} sent an answer conceptlab refuses: {refused}")
        elif isinstance(error, openai.APIStatusError):
            detail = _status_detail(error)
            message = f"the server at {self.server} answered {error.status_code} {_reason(error)}" + (f": {detail}" if detail else "")
            out = type(error)(self._redact(message), response=error.response, body=None)
        elif isinstance(error, openai.APITimeoutError):
            allowed = self.timeout if seconds is None else seconds
            out = _with_message(error, f"the server at {self.server} did not answer within the {allowed:.3g} s allowed for one attempt")
        elif isinstance(error, openai.APIConnectionError):
            cause = error.__cause__ or error.__context__
            reason = f" ({type(cause).__name__}: {cause})" if cause is not None else ""
            out = _with_message(error, f"could not reach the server at {self.server}{reason}")
        else:
            out = error
            if error.args and isinstance(error.args[0], str):
                out.args = (self._redact(error.args[0]), *error.args[1:])
        if out.args and isinstance(out.args[0], str):
            out.args = (self._redact(out.args[0]), *out.args[1:])
        if hasattr(out, "message") and isinstance(out.message, str):
            out.message = self._redact(out.message)
        out.__cause__, out.__context__, out.__suppress_context__ = None, None, True
        return out

    @staticmethod
    def _retryable(error: BaseException) -> bool:
        import openai

        if isinstance(error, (openai.APIConnectionError, openai.APITimeoutError)):
            return True
        if isinstance(error, openai.APIStatusError):
            return error.status_code in _RETRYABLE_STATUS
        return False

    def complete(self, prompt: str, temperature: float = 0.7, max_tokens: int = 256, sample: int = 0) -> str:
        """The answer text for ``prompt``: from the cache when there, else from the server (retried
        within ``request_deadline``; each attempt within ``timeout``, every byte counted)."""
        key = self.cache_key(prompt, temperature, max_tokens, sample)
        cached = self._read_cache(key)
        if cached is not None:
            self.stats["cache_hits"] += 1
            log.debug("LLM cache hit for model %s (%s)", self.model, self.cache_path(key).name)
            return cached
        self.stats["cache_misses"] += 1
        self._check_cache_writable()
        if self._consecutive_failures >= self.max_consecutive_failures:
            raise LLMUnavailableError(
                f"the server at {self.server} failed {self._consecutive_failures} requests in a row; not sending more. "
                "Check the server (and base_url), then run again: answers already received are cached"
            )
        deadline = time.monotonic() + self.request_deadline
        if self._run_ends is not None:
            deadline = min(deadline, self._run_ends)
        attempt = 0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise LLMDeadlineError(f"the run's deadline of {self.run_deadline:g} s passed before this request to {self.server}")
            self.stats["requests"] += 1
            seconds = min(self.timeout, left)
            try:
                self.client  # noqa: B018 - built (imports, TLS context) outside the attempt's clock
                with _attempt_budget(seconds, self.max_response_bytes):
                    text = self._request(prompt, temperature, max_tokens)
                break
            except Exception as raw:
                self.stats["failures"] += 1
                error = self._explain(raw, seconds)
                if self._run_ends is not None and time.monotonic() >= self._run_ends:
                    raise LLMDeadlineError(
                        f"the run's deadline of {self.run_deadline:g} s passed during a request to {self.server} ({error})"
                    ) from None
                retryable = self._retryable(error)
                wait = min(self.max_backoff, self.backoff * 2**attempt) * (1.0 + 0.1 * random.random())
                if attempt >= self.max_retries or not retryable or time.monotonic() + wait >= deadline:
                    if retryable:
                        self._consecutive_failures += 1
                    log.error("LLM request to model %s at %s failed after %d attempt(s): %s",
                              self.model, self.server, attempt + 1, type(error).__name__)
                    raise error from None
                attempt += 1
                self.stats["retries"] += 1
                log.warning("LLM request to model %s failed (%s); retry %d/%d in %.2fs",
                            self.model, type(error).__name__, attempt, self.max_retries, wait)
                time.sleep(wait)
        self._consecutive_failures = 0
        self._write_cache(key, text)
        return text

    def generate(
        self,
        class_names: Sequence[str],
        prompt_set: str | PromptSet = "labo",
        leakage: str = "mask",
        max_words: int | None = None,
        on_error: str = "raise",
    ) -> ConceptSet:
        """Ask every prompt of ``prompt_set`` about every class and parse the answers.

        ``on_error="skip"`` records a failed or unparseable answer in provenance and goes on;
        ``"raise"`` (default) stops. An answer that parses to nothing is recorded as ``empty``.
        Failures of the run itself are raised either way: an unwritable cache (checked before the
        first request), a server that failed ``max_consecutive_failures`` answers in a row, and the
        ``run_deadline`` (see :class:`LLMError`).
        """
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        ps = resolve_prompt_set(prompt_set)
        class_names = [str(c) for c in class_names]
        if not class_names:
            raise ValueError("generate needs at least one class name")
        concepts: dict[str, list[str]] = {}
        sources: dict[str, dict[str, list[str]]] = {}
        problems: list[dict[str, Any]] = []
        hits_before = self.stats["cache_hits"]
        total = len(class_names) * len(ps.prompts) * int(ps.samples)
        done = 0
        self._run_ends = time.monotonic() + self.run_deadline
        try:
            for cls in class_names:
                found: list[str] = []
                for kind, template in ps.prompts.items():
                    for sample in range(int(ps.samples)):
                        if time.monotonic() >= self._run_ends:
                            raise LLMDeadlineError(
                                f"the run passed its deadline of {self.run_deadline:g} s after {done} of {total} answers; "
                                "the answers received are cached, so running it again resumes where it stopped"
                            )
                        try:
                            text = self.complete(template.format(cls), ps.temperature, ps.max_tokens, sample)
                        except LLMDeadlineError:
                            raise LLMDeadlineError(
                                f"the run passed its deadline of {self.run_deadline:g} s after {done} of {total} answers; "
                                "the answers received are cached, so running it again resumes where it stopped"
                            ) from None
                        except LLMError:
                            raise
                        except Exception as error:
                            if on_error == "raise":
                                raise
                            problems.append({"class": cls, "prompt": kind, "sample": sample, "error": type(error).__name__})
                            continue
                        finally:
                            done += 1
                        items = parse_list_answer(
                            text, cls, sentences=ps.sentences, strip_articles=ps.strip_articles, leakage=leakage, max_words=max_words
                        )
                        if not items:
                            problems.append({"class": cls, "prompt": kind, "sample": sample, "error": "empty"})
                        for item in items:
                            sources.setdefault(cls, {}).setdefault(item, []).append(kind)
                        found.extend(items)
                concepts[cls] = found
        finally:
            self._run_ends = None
        provenance = library_provenance(
            provider="openai", model=self.model, api=self.api, prompt_set=ps.name, prompts=dict(ps.prompts),
            samples=ps.samples, temperature=ps.temperature, max_tokens=ps.max_tokens, leakage=leakage,
            cache_hits=self.stats["cache_hits"] - hits_before, problems=problems, prompt_kinds=sources,
        )
        return ConceptSet(concepts, provenance=provenance)


def _clean_key(key: str | None) -> str | None:
    """The key without surrounding whitespace; one an HTTP header cannot carry is refused (the
    message never shows it)."""
    if key is None:
        return None
    if not isinstance(key, str):
        raise TypeError(f"the API key must be a string, got {type(key).__name__}")
    key = key.strip()
    if not key:
        return None
    if not _KEY_PATTERN.fullmatch(key):
        raise ValueError(
            "the API key (api_key= or $OPENAI_API_KEY) holds whitespace, control or non-ASCII characters inside it, "
            "which an HTTP header cannot carry; check how it was set (the key itself is not shown)"
        )
    return key


def _chain(error: BaseException):
    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        yield error
        error = error.__cause__ or error.__context__


def _reason(error: Any) -> str:
    response = getattr(error, "response", None)
    return str(getattr(response, "reason_phrase", "") or "").strip()


def _status_detail(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        message = inner.get("message") if isinstance(inner, dict) else inner
        if message:
            return " ".join(str(message).split())[:200]
    try:
        return " ".join(error.response.text.split())[:200]
    except Exception:  # an unreadable body says nothing more
        return ""


def _with_message(error: Any, message: str) -> Any:
    error.args = (message,)
    error.message = message
    return error
