//! Connections for the `aws` type over moto; the admin side is `gatehouse_testsupport::aws`.

use gatehouse_connectors::types::{Connection, Secrets};
use gatehouse_testsupport::aws::AccessKey;
pub use gatehouse_testsupport::aws::{Admin, REGION, allow, s3_with_issued};
use serde_json::{Map, Value, json};

/// A connector as the broker would hand it to the type.
pub struct Connector {
    pub auth_method: &'static str,
    pub configuration: Map<String, Value>,
    pub secrets: Secrets,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl Connector {
    pub fn new(auth_method: &'static str, configuration: Value, secrets: &[(&str, &str)]) -> Self {
        Connector {
            auth_method,
            configuration: configuration.as_object().cloned().expect("an object"),
            secrets: Secrets::new(
                secrets
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned().into())),
            ),
            expires_at: None,
        }
    }

    /// A connector of `keys` on moto.
    pub fn with_keys(auth_method: &'static str, url: &str, keys: &AccessKey, extra: Value) -> Self {
        let mut configuration = json!({"region": REGION, "endpoint_url": url});
        if let (Some(c), Some(e)) = (configuration.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        Self::new(
            auth_method,
            configuration,
            &[
                ("aws_access_key_id", keys.id.as_str()),
                ("aws_secret_access_key", keys.secret.as_str()),
            ],
        )
    }

    pub fn connection(&self) -> Connection<'_> {
        Connection {
            auth_method: self.auth_method,
            configuration: &self.configuration,
            secrets: &self.secrets,
            expires_at: self.expires_at,
        }
    }
}
