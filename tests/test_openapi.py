import json
from pathlib import Path

from credit_app.web.openapi import build_openapi, postman_collection

COLLECTION = Path(__file__).resolve().parent.parent / "docs" / "postman_collection.json"


def test_openapi_document_describes_every_credit_endpoint(client):
    spec = client.get("/api/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    assert set(spec["paths"]) == {
        "/api/user/credits",
        "/api/user/credits/consume",
        "/api/user/credits/history",
        "/api/user/credits/grant",
    }
    consume = spec["paths"]["/api/user/credits/consume"]["post"]
    assert {"200", "401", "402", "409", "422", "429"} <= set(consume["responses"])
    request = spec["components"]["schemas"]["ConsumeRequest"]
    assert request["properties"]["feature"]["enum"] == [
        "interior",
        "exterior",
        "sketch",
        "furnish",
        "remove",
        "video",
    ]
    assert request["required"] == ["feature"]
    assert spec["components"]["schemas"]["CreditsResponse"]["required"] == [
        "remaining",
        "total",
        "subscription_status",
        "last_updated",
    ]
    history = spec["paths"]["/api/user/credits/history"]["get"]
    assert [param["name"] for param in history["parameters"]] == ["cursor", "limit"]


def test_every_schema_reference_resolves(app):
    spec = build_openapi(app)
    text = json.dumps(spec)
    refs = {part.split('"')[0] for part in text.split("#/components/schemas/")[1:]}
    assert refs <= set(spec["components"]["schemas"])


def test_docs_page_lists_the_endpoints(client):
    page = client.get("/api/docs").get_data(as_text=True)
    assert "/api/user/credits/consume" in page and "Grant credits" in page


def test_committed_postman_collection_matches_the_spec(app):
    generated = postman_collection(build_openapi(app))
    assert json.loads(COLLECTION.read_text()) == generated, (
        "regenerate it: flask --app app api postman > docs/postman_collection.json"
    )


def test_postman_collection_has_bodies_and_auth(app):
    collection = postman_collection(build_openapi(app))
    requests = [item["request"] for folder in collection["item"] for item in folder["item"]]
    assert len(requests) == 4
    consume = next(r for r in requests if r["url"]["raw"].endswith("/consume"))
    assert json.loads(consume["body"]["raw"])["feature"] == "interior"
    assert collection["auth"]["type"] == "bearer"
