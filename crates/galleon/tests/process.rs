//! Starts the galleon executable as the Functions host does (port in the environment, `GET /` until it
//! answers) and sends chunked invocations over a real socket. CI points `GALLEON_BIN` at the release build;
//! otherwise the test profile's binary is used.

use std::{
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    process::{Child, Command},
};

fn binary() -> PathBuf {
    std::env::var_os("GALLEON_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_galleon-handler")))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

struct Handler {
    child: Child,
    port: u16,
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn start(extra_env: &[(&str, &str)]) -> Handler {
    start_with(extra_env, Stdio::null()).await
}

/// [`start`], with stdout going to `stdout` (a piped stdout must be read, or the handler blocks on it).
async fn start_with(extra_env: &[(&str, &str)], stdout: Stdio) -> Handler {
    let port = free_port();
    let mut cmd = Command::new(binary());
    cmd.env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env(
            "FUNCTIONS_CUSTOMHANDLER_WORKER_ID",
            "d1b3e6f0-4c2a-4f7e-9b8d-2a1c3e5f7a9b",
        )
        .env("GALLEON_INSTANCE", "process-test")
        .env(
            "GALLEON_SUBSCRIPTION_ID",
            "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b",
        )
        .env("GALLEON_RESOURCE_GROUP", "rg-images")
        .env("GALLEON_GALLERY", "golden")
        .env("GALLEON_LOCATION", "westeurope")
        .env(
            "ServiceBusConnection__fullyQualifiedNamespace",
            "127.0.0.1:9",
        )
        .env(
            "GALLEON_STATE_CONTAINER_URL",
            "https://127.0.0.1:9/devstoreaccount1/galleon-state",
        )
        .env(
            "GALLEON_STORAGE_ACCOUNTS",
            "https://ingest.blob.core.windows.net",
        )
        .stdout(stdout)
        .stderr(Stdio::inherit())
        .kill_on_drop(true);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary().display()));
    let handler = Handler { child, port };
    // The host polls GET / every 25 ms; any HTTP answer means ready.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok((status, _)) = http(
            port,
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
            &[],
        )
        .await
        {
            assert_eq!(status, 200);
            return handler;
        }
        assert!(
            Instant::now() < deadline,
            "galleon did not answer GET / within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Sends `head` and then `chunks` with chunked transfer encoding; returns the status and the decoded body.
async fn http(port: u16, head: &str, chunks: &[&[u8]]) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let sent = async {
        stream.write_all(head.as_bytes()).await?;
        if !chunks.is_empty() {
            for chunk in chunks {
                stream
                    .write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await?;
                stream.write_all(chunk).await?;
                stream.write_all(b"\r\n").await?;
                stream.flush().await?;
            }
            stream.write_all(b"0\r\n\r\n").await?;
        }
        Ok::<(), std::io::Error>(())
    }
    .await;
    // A server that answers before reading the whole body (413) may close its side while the rest is
    // still being written; like any HTTP client, read the answer it sent.
    match sent {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .map_err(|_| std::io::Error::other("no answer within 10 s"))??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| std::io::Error::other("no header end"))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other("no status"))?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, body))
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(line_end) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = usize::from_str_radix(String::from_utf8_lossy(&raw[..line_end]).trim(), 16)
            .unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = line_end + 2;
        out.extend_from_slice(&raw[start..(start + size).min(raw.len())]);
        raw = &raw[(start + size + 2).min(raw.len())..];
    }
    out
}

fn invocation_head(function: &str) -> String {
    format!(
        "POST /{function} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json; charset=utf-8\r\n\
         Transfer-Encoding: chunked\r\nX-Azure-Functions-InvocationId: 83a33220-a921-460a-bec0-b3f043dcf1ff\r\n\
         X-Azure-Functions-HostVersion: 4.24.4.4\r\nUser-Agent: Azure-Functions-Host/4.24.4.4\r\n\
         traceparent: 00-bb2bd5eef54cb15a1506d0326d2489e7-d3f54c84c7034d76-00\r\nConnection: close\r\n\r\n"
    )
}

/// A Service Bus invocation as the host encodes it: the body's JSON text inside a JSON string.
fn service_bus_invocation(body: &str) -> Vec<u8> {
    let envelope = json!({
        "Data": {"fact": serde_json::to_string(body).unwrap_or_default()},
        "Metadata": {
            "DeliveryCount": "1",
            "MessageId": "\"6d1c2b3a-4e5f-5a6b-8c7d-000000000009\"",
            "ContentType": "\"application/cloudevents+json; charset=utf-8\"",
            "SequenceNumber": "42",
            "EnqueuedTimeUtc": "2026-11-21T10:43:09",
            "ApplicationProperties": {"type": "io.galleon.image.ready.v1"},
            "sys": {"MethodName": "Announce", "UtcNow": "2026-11-21T10:43:09.6400021Z", "RandGuid": "35e6e68c-5583-436c-a277-5aec2b416ba8"}
        }
    });
    serde_json::to_vec(&envelope).unwrap_or_default()
}

fn example(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../events")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[tokio::test]
async fn chunked_invocations_over_a_real_socket() {
    let handler = start(&[]).await;
    let body = service_bus_invocation(&example("image.ready.v1.example.json"));
    // Split the body into uneven chunks, as a streaming host would send it.
    let (a, rest) = body.split_at(7);
    let (b, c) = rest.split_at(rest.len() / 2);
    let (status, answer) = http(handler.port, &invocation_head("Announce"), &[a, b, c])
        .await
        .expect("answer");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    let answer: Value = serde_json::from_slice(&answer).expect("JSON answer");
    let announced = &answer["Outputs"]["announcements"][0];
    assert_eq!(announced["type"], "io.galleon.image.ready.v1");
    assert_eq!(announced["id"], "6d1c2b3a-4e5f-5a6b-8c7d-000000000009");
    assert!(
        answer["Logs"].as_array().is_some_and(|l| !l.is_empty()),
        "Logs carries the invocation's lines"
    );
    assert_eq!(answer["ReturnValue"], Value::Null);
}

/// stdout lines are written in batches; one invocation's line still reaches the host while the handler
/// has nothing else to do (it is written when the runtime goes idle), and it names the function, the
/// invocation id, the outcome and the duration. That line is at debug (the host logs each invocation's
/// outcome itself), so this test asks for it.
#[tokio::test]
async fn the_invocation_line_reaches_stdout_when_the_handler_goes_idle() {
    let mut handler = start_with(&[("RUST_LOG", "info,galleon::host=debug")], Stdio::piped()).await;
    let stdout = handler.child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let body = service_bus_invocation(&example("image.ready.v1.example.json"));
    let (status, _) = http(handler.port, &invocation_head("Announce"), &[&body])
        .await
        .expect("answer");
    assert_eq!(status, 200);
    let line = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("invocation succeeded") {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("the invocation's line on stdout while the handler is idle");
    let parsed: Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(parsed["level"], "DEBUG", "{line}");
    assert_eq!(parsed["span"]["function"], "Announce", "{line}");
    assert_eq!(
        parsed["span"]["invocation_id"], "83a33220-a921-460a-bec0-b3f043dcf1ff",
        "{line}"
    );
    assert!(parsed["fields"]["elapsed_ms"].is_number(), "{line}");
}

#[tokio::test]
async fn poison_message_is_answered_2xx_with_a_failure_fact() {
    let handler = start(&[]).await;
    let body = service_bus_invocation("{\"hello\": \"not a fact\"}");
    let (status, answer) = http(handler.port, &invocation_head("Announce"), &[&body])
        .await
        .expect("answer");
    assert_eq!(status, 200, "poison input must not burn retries");
    let answer: Value = serde_json::from_slice(&answer).expect("JSON answer");
    let announced = &answer["Outputs"]["announcements"][0];
    assert_eq!(announced["type"], "io.galleon.step.failed.v1");
    assert_eq!(announced["data"]["error"]["code"], "FactUndecodable");
    assert_eq!(
        announced["data"]["input"]["id"],
        "6d1c2b3a-4e5f-5a6b-8c7d-000000000009"
    );
}

#[tokio::test]
async fn many_concurrent_invocations_and_oversized_ones_do_not_hang_it() {
    let handler = start(&[("GALLEON_MAX_INVOCATION_BYTES", "65536")]).await;
    let body = service_bus_invocation(&example("image.replica.ready.v1.example.json"));
    let head = invocation_head("Announce");
    let chunks: [&[u8]; 1] = [&body];
    let calls = (0..32).map(|_| http(handler.port, &head, &chunks));
    for result in futures::future::join_all(calls).await {
        assert_eq!(result.expect("answer").0, 200);
    }
    let big = vec![b' '; 70_000];
    let (status, answer) = http(handler.port, &head, &[&big[..40_000], &big[40_000..]])
        .await
        .expect("answer");
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&answer));
    // Still serving afterwards.
    assert_eq!(
        http(handler.port, &head, &[&body]).await.expect("answer").0,
        200
    );
}

#[tokio::test]
async fn bad_settings_stop_it_with_the_setting_named() {
    let output = std::process::Command::new(binary())
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", "7072")
        .env("GALLEON_LOG_FORMAT", "yaml")
        .output()
        .expect("runs");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("GALLEON_LOG_FORMAT") && stderr.contains("'json' or 'text'"),
        "{stderr}"
    );
}

/// An App Service identity endpoint that knows no identity: every token request is answered 400, as App
/// Service answers for a client id not assigned to the app.
async fn identity_endpoint_without_identities() -> (u16, tokio::task::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 8192];
                let _ = socket.read(&mut buf).await;
                let body = r#"{"statusCode":400,"message":"No User Assigned or Delegated Managed Identity found for specified ClientId/ResourceId/PrincipalId."}"#;
                let reply = format!(
                    "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (port, task)
}

#[tokio::test]
async fn a_missing_identity_is_said_once_at_start_and_the_handler_keeps_serving() {
    let (identity_port, endpoint) = identity_endpoint_without_identities().await;
    let port = free_port();
    let client_id = "0f9b2a4c-6d8e-4f10-a2b3-c4d5e6f7a8b9";
    let mut child = Command::new(binary())
        .env_clear()
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env(
            "GALLEON_SUBSCRIPTION_ID",
            "8c3e1f7a-2b4d-4e5f-9a6b-7c8d9e0f1a2b",
        )
        .env("GALLEON_RESOURCE_GROUP", "rg-images")
        .env("GALLEON_GALLERY", "golden")
        .env("GALLEON_LOCATION", "westeurope")
        .env(
            "ServiceBusConnection__fullyQualifiedNamespace",
            "127.0.0.1:9",
        )
        .env(
            "GALLEON_STORAGE_ACCOUNTS",
            "https://ingest.blob.core.windows.net",
        )
        .env(
            "GALLEON_STATE_CONTAINER_URL",
            "https://ingest.blob.core.windows.net/galleon-state",
        )
        .env(
            "IDENTITY_ENDPOINT",
            format!("http://127.0.0.1:{identity_port}/msi/token"),
        )
        .env("IDENTITY_HEADER", "local-secret")
        .env("GalleonIdentity__clientId", client_id)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("starts");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), async {
        while let Ok(Some(line)) = stderr.next_line().await {
            if line.contains("managed identity") {
                return Some(line);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
    .expect("one line about the managed identity on stderr within 20 s");
    let parsed: Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(parsed["level"], "ERROR", "{line}");
    assert!(
        !line.to_ascii_lowercase().contains("warn"),
        "an error line the host logs as Error: {line}"
    );
    let fields = &parsed["fields"];
    assert_eq!(
        fields["identity"],
        format!("client id {client_id}"),
        "{line}"
    );
    assert!(
        fields["error"]
            .as_str()
            .is_some_and(|e| e.contains("no managed identity")),
        "named as a missing identity, not a transient failure: {line}"
    );
    assert!(
        fields["fix"]
            .as_str()
            .is_some_and(|f| f.contains("GalleonIdentity__clientId")),
        "{line}"
    );
    // Still serving.
    let (status, _) = http(
        port,
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        &[],
    )
    .await
    .expect("answers");
    assert_eq!(status, 200);
    assert!(child.try_wait().expect("status").is_none(), "still running");
    endpoint.abort();
}
