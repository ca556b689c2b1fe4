"""Publishes CloudEvents to devcloud's local Event Grid with Microsoft's own Python publisher client
(``EventGridPublisherClient``), with ``AzureKeyCredential``, with a token credential and with a shared access signature, and
checks that a webhook subscriber receives each event exactly as the client sent it.

Run by ``cargo test -p devcloud-messaging --test python_eventgrid``, which starts the server over HTTPS
and sets DEVCLOUD_EVENTGRID_{ENDPOINT,KEY,TOKEN,TOKEN_WITHOUT_ROLE,ADMIN} and REQUESTS_CA_BUNDLE.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from datetime import datetime, timedelta, timezone

from azure.core.credentials import AccessToken, AzureKeyCredential, AzureSasCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridPublisherClient, generate_sas

ENDPOINT = os.environ.get("DEVCLOUD_EVENTGRID_ENDPOINT")
KEY = os.environ.get("DEVCLOUD_EVENTGRID_KEY")
TOKEN = os.environ.get("DEVCLOUD_EVENTGRID_TOKEN")
# A valid token of a principal without the EventGrid Data Sender role on the topic.
TOKEN_WITHOUT_ROLE = os.environ.get("DEVCLOUD_EVENTGRID_TOKEN_WITHOUT_ROLE")
ADMIN = os.environ.get("DEVCLOUD_EVENTGRID_ADMIN")
TOPIC = os.environ.get("DEVCLOUD_EVENTGRID_TOPIC", "galleon-events")

pytestmark = pytest.mark.skipif(not ENDPOINT, reason="needs a running devcloud Event Grid (see module docstring)")


class Receiver:
    """A webhook subscriber: answers the CloudEvents OPTIONS handshake and records deliveries."""

    def __init__(self):
        self.events = []
        self.handshakes = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_OPTIONS(self):  # noqa: N802 (http.server naming)
                outer.handshakes += 1
                self.send_response(200)
                self.send_header("WebHook-Allowed-Origin", self.headers.get("WebHook-Request-Origin", ""))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length))
                outer.events.extend(body if isinstance(body, list) else [body])
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/events"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n, timeout=15):
        deadline = time.time() + timeout
        while len(self.events) < n:
            assert time.time() < deadline, f"only {len(self.events)} of {n} events arrived"
            time.sleep(0.05)
        return list(self.events)

    def close(self):
        self.server.shutdown()


@pytest.fixture
def receiver(request):
    r = Receiver()
    name = "py-" + request.node.name.replace("_", "-")[:40]
    resp = requests.post(
        f"{ADMIN}/_devcloud/subscriptions",
        json={"name": name, "topic": TOPIC, "endpoint": r.url, "eventDeliverySchema": "CloudEventSchemaV1_0"},
        timeout=30,
    )
    assert resp.status_code == 201, resp.text
    assert r.handshakes == 1, "the handshake happens before any event"
    yield r
    requests.delete(f"{ADMIN}/_devcloud/subscriptions/{name}", timeout=30)
    r.close()


def sent_events(captured):
    """The events exactly as the SDK put them on the wire."""
    return json.loads(captured[0].http_request.body)


def publish_and_check(client, receiver, n):
    events = [
        CloudEvent(
            source="/galleon/devcloud-test",
            type="io.galleon.image.ready.v1",
            subject=f"images/{i}",
            data={"imageVersion": f"1.0.{i}", "regions": ["westeurope", "northeurope"], "ok": True},
            extensions={"galleonrun": f"run{i}"},
        )
        for i in range(n)
    ]
    captured = []
    client.send(events, raw_request_hook=lambda req: captured.append(req))
    wire = sent_events(captured)
    assert len(wire) == n
    got = receiver.wait(n)
    by_id = {e["id"]: e for e in got}
    for e in wire:
        assert by_id[e["id"]] == e, "delivered unchanged"
    assert {e["id"] for e in wire} == {e.id for e in events}


def test_publish_with_azure_key_credential(receiver):
    client = EventGridPublisherClient(ENDPOINT, AzureKeyCredential(KEY))
    publish_and_check(client, receiver, 3)


class DevcloudToken:
    """A token credential handing out a token minted by devcloud's identity."""

    def __init__(self, token):
        self.token = token
        self.scopes = []

    def get_token(self, *scopes, **kwargs):
        self.scopes.extend(scopes)
        return AccessToken(self.token, int(time.time()) + 3600)


def test_publish_with_token_credential(receiver):
    cred = DevcloudToken(TOKEN)
    client = EventGridPublisherClient(ENDPOINT, cred)
    publish_and_check(client, receiver, 2)
    assert cred.scopes == ["https://eventgrid.azure.net/.default"]


def test_a_token_without_the_data_sender_role_is_refused():
    client = EventGridPublisherClient(ENDPOINT, DevcloudToken(TOKEN_WITHOUT_ROLE))
    with pytest.raises(ClientAuthenticationError) as refused:
        client.send([CloudEvent(source="/x", type="t", data={})])
    assert refused.value.status_code == 401
    assert "does not have permission to send data" in str(refused.value)
    assert "EventGrid Data Sender" in str(refused.value)


def test_publish_with_shared_access_signature(receiver):
    expiry = datetime.now(timezone.utc) + timedelta(hours=1)
    signature = generate_sas(ENDPOINT, KEY, expiry)
    client = EventGridPublisherClient(ENDPOINT, AzureSasCredential(signature))
    publish_and_check(client, receiver, 1)


def test_expired_or_foreign_signatures_are_refused():
    past = datetime.now(timezone.utc) - timedelta(minutes=1)
    expired = EventGridPublisherClient(ENDPOINT, AzureSasCredential(generate_sas(ENDPOINT, KEY, past)))
    future = datetime.now(timezone.utc) + timedelta(hours=1)
    other = ENDPOINT.replace("/topics/", "/topics/x")
    foreign = EventGridPublisherClient(ENDPOINT, AzureSasCredential(generate_sas(other, KEY, future)))
    for client in (expired, foreign):
        with pytest.raises(ClientAuthenticationError):
            client.send([CloudEvent(source="/x", type="t", data={})])


def test_wrong_key_is_refused():
    client = EventGridPublisherClient(ENDPOINT, AzureKeyCredential("not-the-key"))
    event = CloudEvent(source="/x", type="t", data={})
    with pytest.raises(ClientAuthenticationError):
        client.send([event])
