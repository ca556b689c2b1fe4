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
    loop {
        let body = client.get(&format!("api/runs?limit={limit}")).await?;
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
