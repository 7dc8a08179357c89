"""Concept generation: the OpenAI provider against a real local HTTP server, parsing, concept sets."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pandas as pd
import pytest

from conceptlab.concepts import UnknownNameError
from conceptlab.concepts.language import (
    PROMPT_SETS,
    ConceptSet,
    OfflineProvider,
    OpenAIProvider,
    PromptSet,
    concept_set_precision,
    load_concept_set,
    parse_list_answer,
    sentence_to_concept,
    shapesworld_concept_set,
)

KEY = "test-key-7f3a9c"  # distinctive, so a leak into a file or a log line is easy to find

ANSWERS = {
    # LaBo-style: the answer continues after "1)", names its class, repeats itself
    "ruby disc": "The ruby disc is a deep red color.\n2) It has a round shape.\n3) The ruby disc looks like a flat coin.\n"
                 "4) It is a deep red color.\n5) Ruby disc",
    # bullets, Markdown, a preamble, items run together on one line
    "jade spire": "Sure! Here are the features:\n- **Green** colour\n* triangular shape\n• pointed top.\n1) sharp tip 2) tall tower",
}


class FakeOpenAI:
    """State shared with the handler: scripted failures and every request seen."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.fail_next = 0  # answer 500 this many times first
        self.status_next: int | None = None  # answer this status once
        self.lock = threading.Lock()

    def answer(self, prompt: str) -> dict:
        for cls, text in ANSWERS.items():
            if f"the {cls}" in prompt or f'"{cls}"' in prompt:
                return {"content": text}
        if "empty choices" in prompt:
            return {"choices": []}
        return {"content": "1) something"}


def make_handler(state: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep the test output clean
            pass

        def _send(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self):  # noqa: N802
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
            with state.lock:
                state.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
                if state.fail_next > 0:
                    state.fail_next -= 1
                    return self._send(500, {"error": {"message": "boom", "type": "server_error"}})
                if state.status_next is not None:
                    status, state.status_next = state.status_next, None
                    return self._send(status, {"error": {"message": "nope", "type": "invalid_request_error"}})
            if self.path.endswith("/chat/completions"):
                prompt = body["messages"][-1]["content"]
                answer = state.answer(prompt)
                choices = answer.get("choices")
                if choices is None:
                    choices = [{"index": 0, "message": {"role": "assistant", "content": answer["content"]}, "finish_reason": "stop"}]
                return self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": body["model"], "choices": choices})
            if self.path.endswith("/completions"):
                answer = state.answer(body["prompt"])
                return self._send(200, {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": body["model"],
                                        "choices": [{"index": 0, "text": answer.get("content", ""), "finish_reason": "stop", "logprobs": None}]})
            return self._send(404, {"error": {"message": "no such route"}})

    return Handler


@pytest.fixture()
def server(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    state = FakeOpenAI()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    state.base_url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    yield state
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def provider(server, tmp_path, **kw) -> OpenAIProvider:
    return OpenAIProvider(model="fake-model", base_url=server.base_url, api_key=KEY, cache_dir=tmp_path / "cache", backoff=0.01, **kw)


def test_openai_provider_retries_parses_caches_and_never_leaks_the_key(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)  # every logger, openai's and httpx's included
    server.fail_next = 1
    first = provider(server, tmp_path)
    concepts = first.generate(["ruby disc", "jade spire"], "labo")

    n_prompts = 2 * len(PROMPT_SETS["labo"].prompts)
    assert len(server.requests) == n_prompts + 1  # one 500, retried
    assert first.stats["retries"] == 1 and first.stats["failures"] == 1 and first.stats["requests"] == n_prompts + 1
    assert all(r["auth"] == f"Bearer {KEY}" and r["path"] == "/v1/chat/completions" for r in server.requests)
    assert {r["body"]["model"] for r in server.requests} == {"fake-model"}
    assert server.requests[0]["body"]["messages"][0]["content"] == "Use 10 sentences to describe how the ruby disc looks like:\n1)"
    # LaBo sentences shortened, class name masked out, duplicates merged across the five prompts
    assert concepts["ruby disc"] == ["deep red color", "round shape", "flat coin"]
    assert concepts["jade spire"] == ["green colour", "triangular shape", "pointed top", "sharp tip", "tall tower"]
    assert concepts.provenance["cache_hits"] == 0 and concepts.provenance["model"] == "fake-model"

    files = sorted((tmp_path / "cache").rglob("*.json"))
    assert len(files) == n_prompts
    for file in files:
        entry = json.loads(file.read_text())
        assert entry["key"]["model"] == "fake-model" and isinstance(entry["text"], str)
        assert KEY not in file.read_text()
    assert KEY not in json.dumps(concepts.provenance) and KEY not in repr(first)
    assert KEY not in caplog.text
    assert "retry 1/4" in caplog.text  # the retry was logged (without the key)

    # a second run: every answer from disk, no request at all, the same concepts
    before = len(server.requests)
    second = provider(server, tmp_path)
    again = second.generate(["ruby disc", "jade spire"], "labo")
    assert len(server.requests) == before
    assert second.stats["requests"] == 0 and second.stats["cache_hits"] == n_prompts
    assert again.to_dict() == concepts.to_dict() and again.provenance["cache_hits"] == n_prompts
    assert KEY not in caplog.text


def test_cache_key_covers_model_and_prompt(server, tmp_path):
    p = provider(server, tmp_path, cache=True)
    p.complete("Use 10 sentences to describe the shape of the ruby disc:\n1)")
    other_model = OpenAIProvider(model="other-model", base_url=server.base_url, api_key=KEY, cache_dir=tmp_path / "cache", backoff=0.01)
    other_model.complete("Use 10 sentences to describe the shape of the ruby disc:\n1)")
    p.complete("Use 10 sentences to describe the shape of the jade spire:\n1)")
    p.complete("Use 10 sentences to describe the shape of the ruby disc:\n1)")  # cached
    assert len(server.requests) == 3 and p.stats["cache_hits"] == 1


def test_malformed_answers_and_errors(server, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    p = provider(server, tmp_path, max_retries=2)
    one = PromptSet("one", {"q": "List features of {}:"}, samples=1)
    # a 200 answer without choices: recorded and skipped, or raised
    out = p.generate(["empty choices"], one, on_error="skip")
    assert out["empty choices"] == [] and out.provenance["problems"] == [{"class": "empty choices", "prompt": "q", "sample": 0, "error": "ValueError"}]
    with pytest.raises(ValueError, match="no text"):
        p.generate(["empty choices"], one)
    assert not list((tmp_path / "cache").rglob("*.json"))  # nothing cached for a failed answer
    # client errors are not retried
    import openai

    server.status_next = 401
    n = len(server.requests)
    with pytest.raises(openai.AuthenticationError):
        p.complete("List features of ruby disc:")
    assert len(server.requests) == n + 1
    # persistent server errors: retried max_retries times, then raised
    server.fail_next = 5
    n = len(server.requests)
    with pytest.raises(openai.InternalServerError):
        p.complete("List features of jade spire:")
    assert len(server.requests) == n + 3
    server.fail_next = 0
    assert KEY not in caplog.text


def test_completions_api_and_environment(server, tmp_path, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("CONCEPTLAB_LLM_MODEL", "env-model")
    p = OpenAIProvider(cache_dir=tmp_path / "c", api="completions", backoff=0.01)
    assert p.model == "env-model" and KEY not in repr(p) and "api_key=<set>" in repr(p)
    out = p.generate(["jade spire"], "lfcbm")
    assert len(server.requests) == 6  # 3 prompts x 2 samples (LF-CBM), separately cached
    assert server.requests[0]["path"] == "/v1/completions" and server.requests[0]["body"]["temperature"] == 0.7
    assert server.requests[0]["body"]["prompt"].endswith('List the most important features for recognizing something as a "jade spire":')
    assert out["jade spire"] == ["green colour", "triangular shape", "pointed top", "sharp tip", "tall tower"]
    monkeypatch.delenv("CONCEPTLAB_LLM_MODEL")
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(ValueError, match="needs a model"):
        OpenAIProvider(cache_dir=tmp_path / "c")


# ------------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------------


def test_parse_lists_bullets_duplicates():
    text = "Here are some features:\n1. Bright red color\n2) round body\n(3) Round body.\n- a small mouth\n* `orange fins`\n\n10. The Tail"
    assert parse_list_answer(text) == ["bright red color", "round body", "small mouth", "orange fins", "tail"]
    assert parse_list_answer("1) red 2) blue 3) red") == ["red", "blue"]
    assert parse_list_answer("-object\n-container", "beer glass") == ["object", "container"]  # "object" is not leakage
    assert parse_list_answer("") == []


def test_parse_class_name_leakage():
    text = "- ruby disc\n- A Ruby Disc\n- red ruby disc shape\n- ruby discs\n- glossy surface"
    assert parse_list_answer(text, "ruby disc") == ["red shape", "glossy surface"]
    assert parse_list_answer(text, "ruby disc", leakage="drop") == ["glossy surface"]
    assert parse_list_answer(text, "ruby disc", leakage="keep") == ["red ruby disc shape", "glossy surface"]
    with pytest.raises(ValueError):
        parse_list_answer(text, "ruby disc", leakage="hide")


def test_sentence_to_concept():
    assert sentence_to_concept("The object is bright red in color.") == "bright red in color"
    assert sentence_to_concept("It has a round shape") == "round shape"
    assert sentence_to_concept("Its edges are smooth.") == "its edges are smooth"


# ------------------------------------------------------------------------------------------------
# concept sets and the offline provider
# ------------------------------------------------------------------------------------------------


def test_concept_set_roundtrip_and_offline_provider(tmp_path):
    from conceptlab.data import CLASS_RULES

    shipped = shapesworld_concept_set()
    assert shipped.classes == list(CLASS_RULES)
    assert all(len(v) >= 15 for v in shipped.concepts.values())
    path = shipped.save(tmp_path / "set.json")
    assert load_concept_set(path).to_dict() == shipped.to_dict()
    plain = shipped.save(tmp_path / "plain.json", plain=True)
    assert json.loads(plain.read_text()) == shipped.to_dict()  # the papers' class -> list format

    offline = OfflineProvider([plain, {"ruby disc": ["red", "extra concept"]}])
    out = offline.generate(["jade spire", "ruby disc"])
    assert out.classes == ["jade spire", "ruby disc"]
    assert out["ruby disc"][-1] == "extra concept" and out["ruby disc"].count("red") == 1
    with pytest.raises(UnknownNameError, match="ruby disc"):
        offline.generate(["ruby dsic"])

    cs = ConceptSet({"a": ["x", "y", "x", " y "], "b": ["y", "z"]})
    assert cs["a"] == ["x", "y"] and cs.unique() == ["x", "y", "z"] and cs.links() == {"x": ["a"], "y": ["a", "b"], "z": ["b"]}
    with pytest.raises(ValueError):
        ConceptSet({"a": "not a list"})


def test_concept_set_precision_against_class_rules():
    cs = ConceptSet({
        "ruby disc": ["bright red color", "round shape", "sparkling facets", "reddish tint"],  # 2 of 4 true
        "violet zebra": ["purple stripes", "polka dots", "white background"],  # 2 of 3; white is not its usual background
        "ruby block": ["black background", "square"],  # 1 of 2; black is ruby block's usual (spurious) background
    })
    report = concept_set_precision(cs)
    assert report["precision"] == pytest.approx(5 / 9)
    assert report["per_class"] == pytest.approx({"ruby disc": 0.5, "violet zebra": 2 / 3, "ruby block": 0.5})
    table = report["table"].set_index("concept")
    assert table.loc["purple stripes", "attribute"] == "color:purple"
    assert table.loc["polka dots", "attribute"] == "fill:dotted"
    assert pd.isna(table.loc["reddish tint", "attribute"])
    # true attributes: ruby disc (circle, red), violet zebra (square, circle, purple, striped, dotted), ruby block (square, red)
    assert report["attribute_recall"] == pytest.approx(5 / 9)  # red, circle, purple, dotted, square
    assert report["spurious_share"] == pytest.approx(1 / 9)  # only ruby block's black background
    shipped = concept_set_precision(shapesworld_concept_set())
    assert 0.6 < shipped["precision"] < 0.8 and shipped["attribute_recall"] == 1.0
