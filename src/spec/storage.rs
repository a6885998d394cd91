//! The optional `storage:` block: how to reach object stores (endpoints, addressing,
//! retries, timeouts). Never credentials: those follow each cloud's own conventions
//! (`AWS_*` variables, shared profiles, instance and pod identity), so a pipeline file
//! can be committed and shared without leaking a secret.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings for remote stores. Every field is optional; the environment fills the rest.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    /// Endpoint of an S3-compatible store (MinIO, Ceph, R2, a local server), e.g.
    /// `http://127.0.0.1:9000`. Default: `AWS_ENDPOINT_URL`, else AWS itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    /// Region of the bucket. Default: `AWS_REGION`, the profile's region, else `us-east-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Path-style addressing (`endpoint/bucket/key`) instead of virtual-hosted style
    /// (`bucket.endpoint/key`). Default `true`, what MinIO and Ceph expect; AWS accepts both.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_style: Option<bool>,
    /// Allow plain `http://` endpoints (a local server). Default `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_http: Option<bool>,
    /// Retries of failed requests (5xx, SlowDown, timeouts, reset connections), with
    /// exponential backoff and jitter.
    #[serde(default)]
    pub retry: Retry,
    /// Time allowed for one request, from connect to the last byte of the response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<Duration>,
    /// Time allowed to open a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
}

/// Retry settings (object_store's `RetryConfig`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retry {
    /// Retries of one request before giving up; 0 disables retries.
    #[serde(default = "default_max_retries")]
    pub max_retries: usize,
    /// Wait before the first retry; each later wait is up to twice the previous one,
    /// with full jitter.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: Duration,
    /// Longest wait between two retries.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: Duration,
    /// No retry starts later than this after the first attempt of a request.
    #[serde(default = "default_retry_timeout")]
    pub timeout: Duration,
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            max_retries: default_max_retries(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            timeout: default_retry_timeout(),
        }
    }
}

const fn default_max_retries() -> usize {
    10
}
const fn default_initial_backoff() -> Duration {
    Duration(std::time::Duration::from_millis(100))
}
const fn default_max_backoff() -> Duration {
    Duration(std::time::Duration::from_secs(15))
}
const fn default_retry_timeout() -> Duration {
    Duration(std::time::Duration::from_secs(180))
}

/// A duration written as `100ms`, `30s`, `3m` or `1h 30m` (humantime syntax).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn get(self) -> std::time::Duration {
        self.0
    }
}

impl std::fmt::Display for Duration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim())
            .map(Duration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "`{s}` is not a duration like `100ms`, `30s` or `3m`: {e}"
                ))
            })
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "a duration such as `100ms`, `30s`, `3m`",
            "type": "string"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        let d: Duration = serde_json::from_str("\"250ms\"").expect("duration");
        assert_eq!(d.get(), std::time::Duration::from_millis(250));
        let d: Duration = serde_json::from_str("\"3m\"").expect("duration");
        assert_eq!(d.get(), std::time::Duration::from_secs(180));
        assert!(serde_json::from_str::<Duration>("\"soon\"").is_err());
    }
}
