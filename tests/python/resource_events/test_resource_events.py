"""Reads the resource events devcloud's local Event Grid delivered (its ``resources`` system topic) with
Microsoft's own Python models: ``EventGridEvent`` and ``azure.core.messaging.CloudEvent`` take them,
and their types are those ``SystemEventNames`` names for Resource Manager's events.

Run by ``cargo test -p devcloud --test resource_events``, which captures deliveries of both schemas
into the JSON file named by DEVCLOUD_RESOURCE_EVENTS_FILE
(``{"imageId", "topic", "eventGrid": [delivery body, ...], "cloudEvents": [delivery body, ...]}``).
"""

import json
import os

import pytest
from azure.core.messaging import CloudEvent
from azure.eventgrid import EventGridEvent, SystemEventNames

FILE = os.environ.get("DEVCLOUD_RESOURCE_EVENTS_FILE")

pytestmark = pytest.mark.skipif(not FILE, reason="needs captured deliveries (see module docstring)")

# The fields of Resource Manager's event data (ResourceWriteSuccessEventData and its siblings).
DATA_FIELDS = {"authorization", "claims", "correlationId", "httpRequest", "operationName",
               "resourceGroup", "resourceProvider", "resourceUri", "status", "subscriptionId", "tenantId"}


@pytest.fixture(scope="module")
def captured():
    with open(FILE, encoding="utf-8") as f:
        return json.load(f)


def test_event_grid_schema_deliveries_are_resource_system_events(captured):
    known = {SystemEventNames.ResourceWriteSuccessEventName, SystemEventNames.ResourceWriteFailureEventName,
             SystemEventNames.ResourceDeleteSuccessEventName}
    writes = 0
    for body in captured["eventGrid"]:
        for raw in body:
            e = EventGridEvent.from_json(json.dumps(raw))
            assert e.event_type in known, e.event_type
            assert e.data_version == "2"
            assert DATA_FIELDS <= set(e.data), sorted(DATA_FIELDS - set(e.data))
            assert e.data["resourceUri"] == e.subject
            if e.event_type == SystemEventNames.ResourceWriteSuccessEventName and e.subject == captured["imageId"]:
                writes += 1
                assert e.topic == captured["topic"]
                assert e.data["operationName"] == "Microsoft.Compute/images/write"
    assert writes == 1


def test_cloud_events_deliveries_carry_the_topic_as_source(captured):
    assert captured["cloudEvents"]
    for body in captured["cloudEvents"]:
        e = CloudEvent.from_json(json.dumps(body))
        assert e.type == SystemEventNames.ResourceWriteSuccessEventName
        assert e.source == captured["topic"]
        assert e.subject == captured["imageId"]
        assert DATA_FIELDS <= set(e.data)
