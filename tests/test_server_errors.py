"""One error format everywhere: every error body is JSON (``{"detail": ...}``, OpenAI's
``{"error": {...}}`` under /v1), the Host guard and a refused CORS preflight included; 405 with
``Allow`` on the API's routes even with the UI served; HEAD wherever GET is; precise messages
for NaN and infinities. The real server on a loopback port, with a built UI, the loopback Host
guard and one CORS origin."""

from __future__ import annotations

import mlx_entropix  # noqa: F401  (BLAS preload before mlx)
from mlx_entropix.server import ServerSettings

import httpx
import pytest

from tests._live_server import LiveServer


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    ui = tmp_path_factory.mktemp("ui")
    (ui / "index.html").write_text("<!doctype html><title>entropix ui</title>")
    settings = ServerSettings(
        max_tokens_limit=8,
        ui_dir=ui,
        allowed_hosts=["127.0.0.1", "localhost"],
        cors_origins=["http://ui.example"],
    )
    with LiveServer(settings) as server:
        yield server


@pytest.fixture(scope="module")
def client(live):
    with httpx.Client(base_url=live.url, timeout=60) as c:
        yield c


def detail(r: httpx.Response) -> str:
    assert r.headers["content-type"] == "application/json", r.text
    return r.json()["detail"]


def openai_message(r: httpx.Response) -> str:
    assert r.headers["content-type"] == "application/json", r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error["message"]


def test_host_guard_answers_json(client):
    r = client.get("/api/health", headers={"host": "evil.example"})
    assert r.status_code == 400 and detail(r) == "invalid Host header"
    r = client.get("/v1/models", headers={"host": "evil.example:8000"})
    assert r.status_code == 400 and openai_message(r) == "invalid Host header"
    r = client.get("/api/health", headers={"host": "localhost:1234"})
    assert r.status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("GET", "/api/generate", "POST"),
        ("GET", "/api/compare", "POST"),
        ("PUT", "/api/generate", "POST"),
        ("POST", "/api/health", "GET, HEAD"),
        ("DELETE", "/api/info", "GET, HEAD"),
        ("POST", "/v1/models", "GET, HEAD"),
        ("GET", "/v1/chat/completions", "POST"),
        ("GET", "/v1/completions", "POST"),
    ],
)
def test_wrong_method_is_405_with_allow(client, method, path, allow):
    r = client.request(method, path)
    assert r.status_code == 405 and r.headers["allow"] == allow
    message = openai_message(r) if path.startswith("/v1/") else detail(r)
    assert message == f"method {method} not allowed here (allowed: {allow})"


@pytest.mark.parametrize("path", ["/api/health", "/api/info", "/api/config", "/v1/models", "/"])
def test_head_where_get_is(client, path):
    get, head = client.get(path), client.head(path)
    assert get.status_code == head.status_code == 200
    assert head.content == b"" and head.headers["content-type"] == get.headers["content-type"]


def test_unknown_paths_are_json_404_and_the_ui_is_served(client):
    r = client.get("/api/nope")
    assert r.status_code == 404 and detail(r) == "not found: /api/nope"
    r = client.get("/v1/nope")
    assert r.status_code == 404 and openai_message(r) == "not found: /v1/nope"
    assert "entropix ui" in client.get("/").text


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/api/generate"])
def test_a_refused_cors_preflight_answers_json(client, path):
    # Found by review: Starlette's text/plain 400 "Disallowed CORS origin", the one error of
    # the server that was not JSON in its route family's shape.
    def preflight(origin: str, method: str) -> httpx.Response:
        return client.options(path, headers={"origin": origin,
                                             "access-control-request-method": method})  # fmt: skip

    message = openai_message if path.startswith("/v1/") else detail
    r = preflight("http://evil.example", "POST")
    assert r.status_code == 400 and message(r) == "disallowed CORS origin"
    assert "access-control-allow-origin" not in r.headers and "Origin" in r.headers["vary"]
    r = preflight("http://ui.example", "PUT")
    assert r.status_code == 400 and message(r) == "disallowed CORS method"
    assert r.headers["access-control-allow-origin"] == "http://ui.example"
    r = preflight("http://ui.example", "POST")  # allowed: as before
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "http://ui.example"


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/v1/embeddings"), ("DELETE", "/v1/nope"), ("POST", "/api/nope"), ("PUT", "/api")],
)
def test_an_unknown_api_path_is_404_for_any_method_with_the_ui_served(client, method, path):
    # Found by review: with the UI built, a POST to a path of the APIs that no route serves
    # (an OpenAI client's /v1/embeddings) was the static files' 405 "allowed: GET, HEAD".
    r = client.request(method, path)
    assert r.status_code == 404, r.text
    message = openai_message(r) if path.startswith("/v1/") else detail(r)
    assert message == f"not found: {path}"
    r = client.post("/nope.html")  # the UI's paths: the static files answer, as before
    assert r.status_code == 405 and r.headers["allow"] == "GET, HEAD"


def raw_path(client: httpx.Client, method: str, path: str) -> httpx.Response:
    """``path`` sent as it is (httpx strips a relative path's leading slashes)."""
    request = client.build_request(method, "/")
    request.url = request.url.copy_with(raw_path=path.encode())
    return client.send(request)


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_leading_slashes_keep_the_path_family(client, method):
    # Found by review: //v1/chat/completions (a base URL ending in "/" joined to "/v1/...")
    # answered the /api shape, {"detail": ...}, which an OpenAI client does not show.
    for path in ("//v1/chat/completions", "///v1/models"):
        r = raw_path(client, method, path)
        assert r.status_code == 404 and openai_message(r) == f"not found: {path}"
    r = raw_path(client, method, "//api/generate")
    assert r.status_code == 404 and detail(r) == "not found: //api/generate"


CHAT = '{"messages": [{"role": "user", "content": "x"}], %s}'
GEN = '{"prompt": "x", %s}'


@pytest.mark.parametrize(
    ("path", "template", "field", "expected"),
    [
        ("/v1/chat/completions", CHAT, '"temperature": NaN', "temperature: must be a finite "
         "number, not NaN"),
        ("/v1/chat/completions", CHAT, '"top_p": -Infinity', "top_p: must be a finite number, "
         "not -Infinity"),
        ("/v1/chat/completions", CHAT, '"max_tokens": 1e999', "max_tokens: must be a finite "
         "number, not Infinity"),
        ("/api/generate", GEN, '"sampler": {"temperature": Infinity}', "sampler.temperature: "
         "must be a finite number, not Infinity"),
        ("/api/generate", GEN, '"sampler": {"min_p": "nan"}', "sampler.min_p: must be a finite "
         "number, not NaN"),
        ("/api/compare", GEN, '"sampler": {"low_ent": NaN}', "sampler.low_ent: "
         "must be a finite number, not NaN"),
    ],
)  # fmt: skip
def test_nan_and_infinities_are_named(client, path, template, field, expected):
    r = client.post(path, content=template % field, headers={"content-type": "application/json"})
    assert r.status_code in (400, 422)
    message = openai_message(r) if path.startswith("/v1/") else detail(r)
    assert message == expected


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", '{"messages": [{"role": "user", "content": "a\\ud800"}]}'),
        ("/v1/completions", '{"prompt": "a\\ud800", "max_tokens": 2}'),
        ("/api/generate", '{"messages": [{"role": "user", "content": "a\\ud800"}]}'),
        ("/api/generate", '{"prompt": "hi", "system": "a\\udc80"}'),
    ],
)
def test_a_lone_surrogate_in_the_prompt_is_a_400(client, path, body):
    """JSON's "\\ud800" escape decodes to a lone surrogate, which the tokenizer refused with a
    TypeError: a 500 "internal server error"."""
    r = client.post(path, content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400, r.text
    message = openai_message(r) if path.startswith("/v1/") else detail(r)
    assert message.startswith("the prompt is not valid Unicode: a lone surrogate U+D")
    assert message.endswith("at character 1")


NOT_JSON = "the request body was not read as JSON: send it with Content-Type: application/json"


@pytest.mark.parametrize(
    ("path", "body", "content_type", "status", "expected"),
    [
        ("/v1/chat/completions", CHAT % '"n": 1', "application/x-www-form-urlencoded", 400,
         NOT_JSON),  # curl -d without -H
        ("/v1/completions", '{"prompt": "x"}', None, 400, NOT_JSON),  # requests' data=
        ("/api/generate", GEN % '"seed": 1', "text/plain", 400, NOT_JSON),
        ("/v1/chat/completions", "[1, 2]", "application/json", 400,
         "the request body must be a JSON object"),
        ("/api/generate", "null", "application/json", 422,
         "the request body must be a JSON object"),
        ("/api/generate", "", "application/json", 422,
         "the request body is empty: send a JSON object"),
    ],
)  # fmt: skip
def test_a_body_that_is_not_a_json_object_is_named(client, path, body, content_type, status,
                                                   expected):  # fmt: skip
    """A JSON body under another Content-Type was "request body: Input should be a valid
    dictionary or object to extract fields from" (FastAPI did not parse it): misleading."""
    headers = {"content-type": content_type} if content_type else {}
    r = client.post(path, content=body, headers=headers)
    assert r.status_code == status, r.text
    assert (openai_message(r) if path.startswith("/v1/") else detail(r)) == expected
