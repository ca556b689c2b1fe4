// Reference custom handler for the side-by-side benchmark (crates/galleon/benches/efficiency.rs), written
// the way the Azure Functions custom-handler documentation samples are: Node's own `http` module, no
// dependencies, the whole body read and JSON.parse'd, a decision, and the `{Outputs, Logs, ReturnValue}`
// answer. It serves the same route as galleon's function (`POST /IngestBlob`, the folder name under
// functions/) and makes galleon's decision for a BlobCreated event: only `.vhd` and `.manifest.json` blobs
// in the ingest containers are galleon's; anything else is ignored, with one log line in `Logs`.
// It never touches Azure: a blob it would have to read answers 501, so the benchmark only measures
// invocations both handlers finish on their own.
'use strict';

const http = require('http');

const port = process.env.FUNCTIONS_CUSTOMHANDLER_PORT || 3000;
const ingestContainers = (process.env.GALLEON_INGEST_CONTAINERS || 'images')
  .split(',')
  .map((c) => c.trim())
  .filter((c) => c.length > 0);

function kindOf(container, path) {
  if (!ingestContainers.includes(container)) return 'NotOurs';
  const lower = path.toLowerCase();
  if (lower.endsWith('.manifest.json')) return 'Manifest';
  if (lower.endsWith('.vhd')) return 'BareVhd';
  return 'NotOurs';
}

function ingestBlob(invocation) {
  const event = invocation.Data.event;
  const logs = [];
  if (event.eventType !== 'Microsoft.Storage.BlobCreated') {
    logs.push(`not a BlobCreated event (${event.eventType}); ignored`);
    return { status: 200, logs };
  }
  const match = /^\/blobServices\/default\/containers\/([^/]+)\/blobs\/(.+)$/.exec(event.subject || '');
  if (!match) {
    logs.push(`BlobCreated without a blob subject (${event.subject}); ignored`);
    return { status: 200, logs };
  }
  const [, container, path] = match;
  const url = (event.data && event.data.url) || '';
  const kind = kindOf(container, path);
  if (kind === 'NotOurs') {
    logs.push(`${url.split('?')[0]} in ${container}: not a VHD or manifest in an ingest container; ignored`);
    return { status: 200, logs };
  }
  return { status: 501, logs: [`${kind} ${url}: the reference handler does not read blobs`] };
}

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/') {
    res.end('ready');
    return;
  }
  if (req.method !== 'POST' || req.url !== '/IngestBlob') {
    res.statusCode = 404;
    res.end();
    return;
  }
  const chunks = [];
  req.on('data', (chunk) => chunks.push(chunk));
  req.on('end', () => {
    let outcome;
    try {
      outcome = ingestBlob(JSON.parse(Buffer.concat(chunks).toString()));
    } catch (e) {
      console.error(`invalid invocation: ${e.message}`);
      res.statusCode = 400;
      res.end();
      return;
    }
    const answer = { Outputs: {}, Logs: outcome.logs, ReturnValue: null };
    res.statusCode = outcome.status;
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify(answer));
  });
});

server.listen(port, '127.0.0.1', () => {
  console.log(`reference handler listening on 127.0.0.1:${port}`);
});
