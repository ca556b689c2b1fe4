#!/usr/bin/env python3
"""Feeds galleon the facts of one image's journey as the Functions host would deliver them (Service Bus
trigger envelopes, double-encoded bodies, chunked transfer) and prints what galleon announces."""
import http.client, json, os, pathlib, socket, subprocess, sys, time

root = pathlib.Path(__file__).resolve().parent.parent
binary = os.environ.get("GALLEON_BIN", str(root / "target/release/galleon"))
journey = ["vhd.accepted.v1", "image.version.published.v1", "image.replica.ready.v1", "image.ready.v1", "vhd.rejected.v1", "operation.followup.v1"]

with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
env = {"FUNCTIONS_CUSTOMHANDLER_PORT": str(port), "GALLEON_INSTANCE": "demo", "GALLEON_LOG_FORMAT": "text", "RUST_LOG": "warn", "PATH": os.environ.get("PATH", ""),
       "GALLEON_SUBSCRIPTION_ID": "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b", "GALLEON_RESOURCE_GROUP": "rg-images", "GALLEON_GALLERY": "golden",
       "GALLEON_LOCATION": "westeurope", "ServiceBusConnection__fullyQualifiedNamespace": "127.0.0.1:9"}
proc = subprocess.Popen([binary], env=env)
try:
    for _ in range(400):
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1); c.request("GET", "/"); c.getresponse().read(); break
        except OSError:
            time.sleep(0.025)
    for name in journey:
        fact = (root / "events" / f"{name}.example.json").read_text()
        envelope = {"Data": {"fact": json.dumps(fact)},
                    "Metadata": {"DeliveryCount": "1", "MessageId": json.dumps(json.loads(fact)["id"]),
                                 "ApplicationProperties": {"type": json.loads(fact)["type"]},
                                 "sys": {"MethodName": "Announce", "UtcNow": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "RandGuid": "00000000-0000-0000-0000-000000000000"}}}
        body = json.dumps(envelope).encode()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        c.putrequest("POST", "/Announce"); c.putheader("Content-Type", "application/json; charset=utf-8"); c.putheader("Transfer-Encoding", "chunked"); c.endheaders()
        for i in range(0, len(body), 1000):
            part = body[i:i + 1000]; c.send(b"%x\r\n" % len(part) + part + b"\r\n")
        c.send(b"0\r\n\r\n")
        r = c.getresponse(); answer = json.loads(r.read() or b"null")
        out = (answer or {}).get("Outputs", {}).get("announcements", [])
        for ev in out:
            extra = ev["data"].get("error", {}).get("code") or ev["data"].get("reason", {}).get("code") or ""
            print(f"{name:28} → HTTP {r.status}  announced {ev['type']}  subject={ev.get('subject')} {extra}")
        if not out:
            print(f"{name:28} → HTTP {r.status}  {answer}")
finally:
    proc.terminate(); proc.wait(timeout=5)
