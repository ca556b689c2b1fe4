//! Service Bus: sends facts to the topic through the REST API (the only way to set `MessageId`,
//! `CorrelationId` and `ScheduledEnqueueTimeUtc` from a custom handler), with a bearer token.

use chrono::{DateTime, Utc};
use reqwest::Url;
use serde_json::json;

use super::{AzureError, Tokens, classify};
use crate::events::Fact;

const SERVICE: &str = "Service Bus";

#[derive(Clone, Debug)]
pub struct Bus {
    http: reqwest::Client,
    /// `https://<namespace>/<topic>/messages`
    send_url: Url,
    tokens: Tokens,
}

impl Bus {
    /// `namespace` is the fully qualified namespace (`contoso.servicebus.windows.net`, or `127.0.0.1:7445`
    /// locally), as in the `ServiceBusConnection__fullyQualifiedNamespace` setting.
    pub fn new(
        http: reqwest::Client,
        namespace: &str,
        topic: &str,
        tokens: Tokens,
    ) -> Result<Bus, url::ParseError> {
        let base = if namespace.contains("://") {
            namespace.trim_end_matches('/').to_owned()
        } else {
            format!("https://{}", namespace.trim_end_matches('/'))
        };
        let send_url = Url::parse(&format!("{base}/{topic}/messages"))?;
        Ok(Bus {
            http,
            send_url,
            tokens,
        })
    }

    /// Sends `fact`, now or at `at`. The message id is the fact id, so a retried step's duplicate is dropped
    /// by duplicate detection; the type travels as the application property `type` for subscription rules.
    pub async fn send(&self, fact: &Fact, at: Option<DateTime<Utc>>) -> Result<(), AzureError> {
        self.send_as(fact, at, fact.id()).await
    }

    /// Sends `fact` as message `message_id` (an operator's resubmission of a dead-lettered fact: the fact
    /// keeps its id, the message gets a new one so duplicate detection does not drop it).
    pub async fn send_as(
        &self,
        fact: &Fact,
        at: Option<DateTime<Utc>>,
        message_id: &str,
    ) -> Result<(), AzureError> {
        let mut broker = json!({"MessageId": message_id, "Label": fact.cloud_event_type()});
        if let Some(correlation) = fact.correlation_id() {
            broker["CorrelationId"] = correlation.into();
        }
        if let Some(at) = at {
            broker["ScheduledEnqueueTimeUtc"] = scheduled_time(at).into();
        }
        let token = self
            .tokens
            .bearer(&self.tokens.audiences().service_bus)
            .await?;
        let body = serde_json::to_vec(&fact.to_json())
            .map_err(|e| AzureError::permanent(SERVICE, "Unserializable", e.to_string()))?;
        let response = self
            .http
            .post(self.send_url.clone())
            .header("Authorization", token)
            .header(
                "Content-Type",
                "application/cloudevents+json; charset=utf-8",
            )
            .header("BrokerProperties", broker.to_string())
            .header("type", format!("\"{}\"", fact.cloud_event_type()))
            .body(body)
            .send()
            .await
            .map_err(|e| AzureError::unreachable(SERVICE, &e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = response.headers().clone();
        let bytes = response.bytes().await.unwrap_or_default();
        Err(classify(SERVICE, status, &headers, &bytes))
    }
}

/// `ScheduledEnqueueTimeUtc` as the broker properties carry it: an HTTP date, whole seconds. A fraction is
/// rounded up, never down: a look scheduled for "after Retry-After" must not arrive before it.
pub fn scheduled_time(at: DateTime<Utc>) -> String {
    let whole = at.timestamp() + i64::from(at.timestamp_subsec_nanos() > 0);
    DateTime::<Utc>::from_timestamp(whole, 0)
        .unwrap_or(at)
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_scheduled_time_is_rounded_up_to_the_whole_second() {
        let at = |ms| {
            Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 59)
                .single()
                .map(|t| t + chrono::Duration::milliseconds(ms))
                .unwrap_or_default()
        };
        assert_eq!(scheduled_time(at(0)), "Tue, 01 Dec 2026 10:00:59 GMT");
        assert_eq!(scheduled_time(at(1)), "Tue, 01 Dec 2026 10:01:00 GMT");
        assert_eq!(scheduled_time(at(999)), "Tue, 01 Dec 2026 10:01:00 GMT");
    }
}
