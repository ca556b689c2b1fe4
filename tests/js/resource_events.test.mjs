// Conformance of the local cloud's resource events (Event Grid's `resources` system topic) with the
// official @azure/eventgrid package: its deserializer takes the deliveries, isSystemEvent knows their
// types, and every property its models ResourceWriteSuccessEventData, ResourceWriteFailureEventData,
// ResourceAuthorization and ResourceHttpRequest require is there, with the type they declare.
//
// Run by `cargo test -p devcloud --test resource_events`, which captures deliveries of both schemas
// into the JSON file named by DEVCLOUD_RESOURCE_EVENTS_FILE:
// {"imageId", "topic", "eventGrid": [delivery body, …], "cloudEvents": [delivery body, …]}.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";

import { EventGridDeserializer, isSystemEvent } from "@azure/eventgrid";

const file = process.env.DEVCLOUD_RESOURCE_EVENTS_FILE;
if (!file) throw new Error("DEVCLOUD_RESOURCE_EVENTS_FILE is not set: run through cargo test -p devcloud --test resource_events");
const captured = JSON.parse(await readFile(file, "utf8"));
// The package's serialization models (not exported by name, so loaded by path).
const mappers = await import(
  new URL("./node_modules/@azure/eventgrid/dist/esm/generated/models/mappers.js", import.meta.url)
);
const deserializer = new EventGridDeserializer();

// Every required property of `mapper` is in `value` with the declared type (nested models too).
function conforms(mapper, value, path) {
  assert.equal(typeof value, "object", `${path} is an object`);
  for (const [name, prop] of Object.entries(mapper.type.modelProperties)) {
    const v = value[prop.serializedName];
    const where = `${path}.${prop.serializedName}`;
    if (v === undefined || v === null) {
      assert.ok(!prop.required, `${where} is required by ${mapper.type.className}`);
      continue;
    }
    switch (prop.type.name) {
      case "String":
        assert.equal(typeof v, "string", `${where} is a string`);
        break;
      case "Dictionary":
        assert.equal(typeof v, "object", `${where} is a dictionary`);
        for (const x of Object.values(v)) assert.equal(typeof x, prop.type.value.type.name.toLowerCase(), `${where} values`);
        break;
      case "Composite":
        conforms(mappers[prop.type.className], v, where);
        break;
      default:
        assert.fail(`${where}: unexpected model type ${prop.type.name} (${name})`);
    }
  }
}

const DATA_MODEL = {
  "Microsoft.Resources.ResourceWriteSuccess": mappers.ResourceWriteSuccessEventData,
  "Microsoft.Resources.ResourceWriteFailure": mappers.ResourceWriteFailureEventData,
  "Microsoft.Resources.ResourceDeleteSuccess": mappers.ResourceDeleteSuccessEventData,
};

test("Event Grid schema deliveries deserialize into resource system events", async () => {
  assert.ok(captured.eventGrid.length > 0);
  let writes = 0;
  for (const body of captured.eventGrid) {
    for (const e of await deserializer.deserializeEventGridEvents(body)) {
      const model = DATA_MODEL[e.eventType];
      assert.ok(model, `unexpected ${e.eventType}`);
      assert.ok(isSystemEvent(e.eventType, e));
      assert.ok(e.eventTime instanceof Date && !isNaN(e.eventTime));
      assert.equal(e.dataVersion, "2");
      conforms(model, e.data, "data");
      assert.equal(e.data.resourceUri, e.subject);
      assert.equal(e.topic, `/subscriptions/${e.data.subscriptionId}/resourceGroups/${e.data.resourceGroup}`);
      if (isSystemEvent("Microsoft.Resources.ResourceWriteSuccess", e) && e.subject === captured.imageId) {
        writes += 1;
        assert.equal(e.data.operationName, "Microsoft.Compute/images/write");
        assert.equal(e.data.resourceProvider, "Microsoft.Compute");
        assert.equal(e.data.status, "Succeeded");
        assert.equal(e.data.authorization.action, e.data.operationName);
        assert.equal(e.data.httpRequest.method, "PUT");
      }
    }
  }
  assert.equal(writes, 1, "one ResourceWriteSuccess for the image");
});

test("CloudEvents deliveries deserialize, with the topic as source", async () => {
  assert.ok(captured.cloudEvents.length > 0);
  for (const body of captured.cloudEvents) {
    for (const e of await deserializer.deserializeCloudEvents(body)) {
      assert.ok(isSystemEvent("Microsoft.Resources.ResourceWriteSuccess", e), e.type);
      assert.equal(e.specversion, "1.0");
      assert.equal(e.source, captured.topic);
      assert.equal(e.subject, captured.imageId);
      conforms(mappers.ResourceWriteSuccessEventData, e.data, "data");
    }
  }
});
