//! The load tool both handlers get: a fixed number of keep-alive HTTP/1.1 connections, each sending the
//! next invocation as soon as the previous answer is in (closed loop), the body chunked as the Functions
//! host sends it, with the host's headers and a fresh invocation id per request. Latency is recorded only
//! inside the measured window; requests still in flight when it closes are not counted.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const WARMING: u8 = 0;
const MEASURING: u8 = 1;
const STOPPED: u8 = 2;

/// What one connection saw in the measured window.
#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    failed: u64,
}

/// What the load tool saw in the measured window, all connections together.
pub struct Window {
    pub ok: u64,
    pub failed: u64,
    pub seconds: f64,
    /// Sorted, in microseconds.
    pub latencies_us: Vec<u32>,
    /// The counters at the window's start and end.
    pub before: Sample,
    pub after: Sample,
}

/// Counters read at each end of the measured window.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    /// CPU time of the server process, in clock ticks.
    pub server_ticks: u64,
    /// The server's kernel (system) part of `server_ticks`.
    pub server_system_ticks: u64,
    /// CPU time of the load tool, in clock ticks.
    pub load_ticks: u64,
    /// Lines the server wrote to stdout and stderr so far.
    pub lines: u64,
}

/// One request's bytes up to the invocation id, and from the id to the end (the chunked body).
pub struct Request {
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Request {
    /// `POST /{function}` as the host sends it (shared/fixtures/functions/request-headers.host-4.24.capture.json).
    pub fn new(port: u16, function: &str, body: &[u8]) -> Request {
        let head = format!(
            "POST /{function} HTTP/1.1\r\nhost: 127.0.0.1:{port}\r\nx-azure-functions-hostversion: 4.24.4.4\r\n\
             user-agent: Azure-Functions-Host/4.24.4.4\r\ntransfer-encoding: chunked\r\n\
             traceparent: 00-bb2bd5eef54cb15a1506d0326d2489e7-d3f54c84c7034d76-00\r\n\
             content-type: application/json; charset=utf-8\r\nx-azure-functions-invocationid: "
        )
        .into_bytes();
        let mut tail = format!("\r\n\r\n{:x}\r\n", body.len()).into_bytes();
        tail.extend_from_slice(body);
        tail.extend_from_slice(b"\r\n0\r\n\r\n");
        Request { head, tail }
    }

    fn write_into(&self, out: &mut Vec<u8>, connection: usize, n: u64) {
        use std::io::Write;
        out.clear();
        out.extend_from_slice(&self.head);
        let _ = write!(out, "00000000-{connection:04x}-4000-8000-{n:012x}");
        out.extend_from_slice(&self.tail);
    }
}

/// Runs `connections` closed-loop connections to 127.0.0.1:`port`: `warmup`, then the measured window of
/// `duration`, sampling with `sample` at the window's two ends.
pub async fn run(
    port: u16,
    request: Arc<Request>,
    connections: usize,
    warmup: Duration,
    duration: Duration,
    busy: bool,
    sample: impl Fn() -> Sample,
) -> Result<Window, String> {
    let phase = Arc::new(AtomicU8::new(WARMING));
    if busy {
        // Always ready: the runtime never blocks in epoll_wait, it polls for I/O between turns.
        let phase = phase.clone();
        tokio::spawn(async move {
            while phase.load(Ordering::Relaxed) != STOPPED {
                tokio::task::yield_now().await;
            }
        });
    }
    let mut tasks = Vec::with_capacity(connections);
    for c in 0..connections {
        let stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| format!("cannot connect to 127.0.0.1:{port}: {e}"))?;
        let _ = stream.set_nodelay(true);
        tasks.push(tokio::spawn(connection(
            stream,
            c,
            request.clone(),
            phase.clone(),
        )));
    }
    tokio::time::sleep(warmup).await;
    let before = sample();
    phase.store(MEASURING, Ordering::SeqCst);
    let started = Instant::now();
    tokio::time::sleep(duration).await;
    phase.store(STOPPED, Ordering::SeqCst);
    let seconds = started.elapsed().as_secs_f64();
    let after = sample();
    let mut latencies_us = Vec::new();
    let mut failed = 0;
    for task in tasks {
        match task.await {
            Ok(Ok(tally)) => {
                latencies_us.extend(tally.latencies_us);
                failed += tally.failed;
            }
            Ok(Err(e)) => return Err(e),
            Err(e) => return Err(format!("a load connection panicked: {e}")),
        }
    }
    latencies_us.sort_unstable();
    Ok(Window {
        ok: latencies_us.len() as u64,
        failed,
        seconds,
        latencies_us,
        before,
        after,
    })
}

async fn connection(
    mut stream: TcpStream,
    index: usize,
    request: Arc<Request>,
    phase: Arc<AtomicU8>,
) -> Result<Tally, String> {
    let mut tally = Tally::default();
    let mut out = Vec::with_capacity(2048);
    let mut buf = Vec::with_capacity(4096);
    let mut n = 0u64;
    loop {
        if phase.load(Ordering::Relaxed) == STOPPED {
            return Ok(tally);
        }
        n += 1;
        request.write_into(&mut out, index, n);
        let started = Instant::now();
        stream
            .write_all(&out)
            .await
            .map_err(|e| format!("send: {e}"))?;
        let status = read_response(&mut stream, &mut buf).await?;
        let micros = u32::try_from(started.elapsed().as_micros()).unwrap_or(u32::MAX);
        if phase.load(Ordering::Relaxed) == MEASURING {
            if status == 200 {
                tally.latencies_us.push(micros);
            } else {
                tally.failed += 1;
            }
        }
    }
}

/// Reads one HTTP/1.1 response (Content-Length or chunked body) and returns its status code.
async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<u16, String> {
    buf.clear();
    let head_end = loop {
        if let Some(at) = find(buf, b"\r\n\r\n") {
            break at + 4;
        }
        fill(stream, buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|e| format!("response head: {e}"))?;
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let mut length = None;
    let mut chunked = false;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.to_ascii_lowercase().contains("chunked");
            }
        }
    }
    if chunked {
        let mut at = head_end;
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[at..], b"\r\n") {
                    break at + i;
                }
                fill(stream, buf).await?;
            };
            let size_text = std::str::from_utf8(&buf[at..line_end]).unwrap_or("");
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|e| format!("chunk size {size_text:?}: {e}"))?;
            let next = line_end + 2 + size + 2;
            while buf.len() < next {
                fill(stream, buf).await?;
            }
            at = next;
            if size == 0 {
                return Ok(status);
            }
        }
    }
    let end = head_end + length.unwrap_or(0);
    while buf.len() < end {
        fill(stream, buf).await?;
    }
    Ok(status)
}

async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let n = stream
        .read(&mut chunk)
        .await
        .map_err(|e| format!("receive: {e}"))?;
    if n == 0 {
        return Err("the server closed the connection".into());
    }
    buf.extend_from_slice(&chunk[..n]);
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The `p`-quantile (0..=1) of sorted latencies, in milliseconds.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted_us[idx.min(sorted_us.len() - 1)]) / 1000.0
}
