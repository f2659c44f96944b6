import json

from machined.api.responses import async_response, error, sync


def test_sync_envelope():
    body = json.loads(sync({"a": 1}).body)
    assert body["type"] == "sync" and body["status_code"] == 200 and body["metadata"] == {"a": 1}


def test_async_envelope_has_location_and_202():
    resp = async_response({"id": "abc"})
    body = json.loads(resp.body)
    assert resp.status == 202 and resp.headers["Location"] == "/1.0/operations/abc"
    assert body["type"] == "async" and body["status_code"] == 100
    assert body["operation"] == "/1.0/operations/abc"


def test_error_envelope():
    resp = error("Instance 'x' not found", 404)
    body = json.loads(resp.body)
    assert resp.status == 404 and body == {**body, "type": "error", "error_code": 404,
                                           "error": "Instance 'x' not found"}
