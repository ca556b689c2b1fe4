//! The live view of `galleon status --watch`: each recent run as a progress bar of its regions' replicas
//! (indicatif), redrawn as the app answers, until Ctrl-C or, with `--until-done`, until no run is running.

use std::{collections::HashMap, time::Duration};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::client::{Client, Problem};

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

/// (ready, all) replicas, and the regions as `name state` for the message.
fn replicas(run: &Value) -> (u64, u64, String) {
    let all: Vec<&Value> = run
        .get("regions")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let ready = all.iter().filter(|r| s(r, "state") == "ready").count() as u64;
    let each: Vec<String> = all
        .iter()
        .map(|r| format!("{} {}", s(r, "name"), s(r, "state")))
        .collect();
    (ready, all.len() as u64, each.join(", "))
}

/// Failed looks in a row the live view rides out before it gives up with the last one's problem.
const MAX_FAILED_LOOKS: u32 = 5;

pub async fn watch(
    client: &Client,
    limit: u32,
    interval: Duration,
    until_done: bool,
) -> Result<(), Problem> {
    let multi = MultiProgress::new();
    let style = ProgressStyle::with_template("{prefix}  [{bar:20}] {pos}/{len} regions  {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("#>-");
    let mut bars: HashMap<String, ProgressBar> = HashMap::new();
    let mut failed_looks = 0;
    loop {
        let body = match client.get(&format!("api/runs?limit={limit}")).await {
            Ok(body) => {
                failed_looks = 0;
                body
            }
            // A live view rides out a moment's failure (a restart, a busy store), saying so.
            Err(problem) if problem.passing() && failed_looks < MAX_FAILED_LOOKS => {
                failed_looks += 1;
                let _ = multi.println(format!(
                    "(look {failed_looks} of {MAX_FAILED_LOOKS} failed, looking again: {})",
                    problem.cause()
                ));
                tokio::select! {
                    _ = tokio::time::sleep(interval) => continue,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                }
            }
            Err(problem) => return Err(problem),
        };
        let runs = body
            .get("runs")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut running = 0;
        // Oldest first, so a new run's bar goes below the ones already drawn.
        for run in runs.iter().rev() {
            let id = s(run, "run").to_owned();
            let state = s(run, "state");
            if state == "running" {
                running += 1;
            }
            let (ready, all, regions) = replicas(run);
            let bar = bars.entry(id.clone()).or_insert_with(|| {
                let image = match s(run, "image") {
                    "" => s(run, "source"),
                    image => image,
                };
                let short: String = id.chars().take(8).collect();
                multi.add(
                    ProgressBar::new(all.max(1))
                        .with_style(style.clone())
                        .with_prefix(format!("{short}  {image}")),
                )
            });
            if bar.is_finished() {
                continue;
            }
            bar.set_length(all.max(1));
            bar.set_position(ready);
            let advice = run
                .pointer("/failure/code")
                .and_then(Value::as_str)
                .map(|c| format!("  {c}"))
                .unwrap_or_default();
            let message = format!("{state}  {regions}{advice}");
            if state == "running" {
                bar.set_message(message);
            } else {
                bar.finish_with_message(message);
            }
        }
        if until_done && running == 0 && !runs.is_empty() {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// An app that answers each look with the next of `answers` (status, body), counting the looks.
    async fn app(
        answers: Vec<(u16, &'static str)>,
    ) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("address"));
        let looks = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = looks.clone();
        tokio::spawn(async move {
            for (status, body) in answers.into_iter().cycle() {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(answer.as_bytes()).await;
            }
        });
        (url, looks)
    }

    const BUSY: (u16, &str) = (
        503,
        r#"{"error":{"code":"JournalUnreadable","message":"busy"}}"#,
    );

    #[tokio::test]
    async fn the_live_view_rides_out_failed_looks() {
        let done = (
            200,
            r#"{"runs":[{"run":"r1","state":"ready","image":"a/1.0.0","regions":[]}]}"#,
        );
        let (url, looks) = app(vec![BUSY, BUSY, done]).await;
        let client = Client::from_environment(Some(&url)).expect("client");
        let watched = watch(&client, 5, Duration::from_millis(10), true).await;
        assert!(watched.is_ok(), "{watched:?}");
        assert_eq!(looks.load(std::sync::atomic::Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn the_live_view_gives_up_when_the_app_stays_down() {
        let (url, looks) = app(vec![BUSY]).await;
        let client = Client::from_environment(Some(&url)).expect("client");
        let watched = watch(&client, 5, Duration::from_millis(10), true).await;
        assert!(watched.is_err_and(|p| p.passing() && p.cause().contains("busy")));
        assert_eq!(
            looks.load(std::sync::atomic::Ordering::SeqCst),
            MAX_FAILED_LOOKS as usize + 1
        );
    }

    #[test]
    fn a_runs_bar_counts_its_ready_replicas() {
        let run = json!({"regions": [{"name": "westeurope", "state": "ready"}, {"name": "eastus2", "state": "pending"}]});
        assert_eq!(
            replicas(&run),
            (1, 2, "westeurope ready, eastus2 pending".to_owned())
        );
        assert_eq!(replicas(&json!({})), (0, 0, String::new()));
    }
}
