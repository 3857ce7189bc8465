//! How `credentials` prints short-lived credentials: each ecosystem's own format, so that
//! its tools refresh them through their own hook instead of holding a copy that expires.
//!
//! - `env`: `export AWS_...=...` lines for a shell (`eval "$(gatehouse ...)"`).
//! - `aws-process`: the JSON an AWS `credential_process` prints (AWS SDKs and CLI:
//!   `Version` 1, `AccessKeyId`, `SecretAccessKey`, optional `SessionToken`, optional
//!   `Expiration` in RFC 3339; without `Expiration` the SDKs never refresh them).
//! - `kube-exec`: a `client.authentication.k8s.io/v1` `ExecCredential` for kubectl's exec
//!   plugin (`status.token`, `status.expirationTimestamp`).
//! - `docker-helper`: a Docker credential helper's answer to `get`
//!   (`ServerURL`, `Username`, `Secret`).
//!
//! The default table never shows a value, only the field names.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Map, Value, json};

use super::client::IssuedCredentials;
use crate::output::{self, describe};

/// `--format` of `credentials`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CredentialFormat {
    /// `export AWS_ACCESS_KEY_ID=...` lines, shell-quoted, for `eval`.
    Env,
    /// The JSON of an AWS `credential_process`.
    AwsProcess,
    /// A kubectl exec plugin's ExecCredential.
    KubeExec,
    /// A Docker credential helper's `get` answer.
    DockerHelper,
}

impl CredentialFormat {
    /// The name as typed.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialFormat::Env => "env",
            CredentialFormat::AwsProcess => "aws-process",
            CredentialFormat::KubeExec => "kube-exec",
            CredentialFormat::DockerHelper => "docker-helper",
        }
    }

    /// The formats that fit credentials of `resource_type` (or the fields they carry).
    pub fn fitting(credentials: &IssuedCredentials) -> Vec<CredentialFormat> {
        let fields = &credentials.credentials;
        let mut formats = Vec::new();
        if fields.str("aws_access_key_id").is_some() {
            formats.extend([CredentialFormat::Env, CredentialFormat::AwsProcess]);
        }
        if fields.str("token").is_some() {
            formats.push(CredentialFormat::KubeExec);
        }
        if fields.str("password").is_some() {
            formats.push(CredentialFormat::DockerHelper);
        }
        formats
    }
}

/// Why credentials cannot be printed in a format.
#[derive(Debug, thiserror::Error)]
#[error("--format {format} needs {needs}, and credentials for {resource_type} have none{}",
    if fitting.is_empty() { String::new() } else { format!(": use --format {fitting}") })]
pub struct FormatMismatch {
    /// The format asked for.
    pub format: &'static str,
    /// The field it needs.
    pub needs: &'static str,
    /// The resource type of the credentials.
    pub resource_type: String,
    /// The formats that fit, joined with `|`.
    pub fitting: String,
}

fn mismatch(
    format: CredentialFormat,
    needs: &'static str,
    c: &IssuedCredentials,
) -> FormatMismatch {
    FormatMismatch {
        format: format.as_str(),
        needs,
        resource_type: c.resource_type.clone(),
        fitting: CredentialFormat::fitting(c)
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("|"),
    }
}

/// Credentials in `format`, ending in a newline.
pub fn render(format: CredentialFormat, c: &IssuedCredentials) -> Result<String, FormatMismatch> {
    match format {
        CredentialFormat::Env => env(c),
        CredentialFormat::AwsProcess => aws_process(c).map(|v| format!("{v}\n")),
        CredentialFormat::KubeExec => kube_exec(c).map(|v| format!("{v}\n")),
        CredentialFormat::DockerHelper => docker_helper(c, None).map(|v| format!("{v}\n")),
    }
}

/// `'...'` with each `'` written as `'\''`: one word for any POSIX shell, whatever it holds.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn env(c: &IssuedCredentials) -> Result<String, FormatMismatch> {
    let fields = &c.credentials;
    let (Some(key), Some(secret)) = (
        fields.str("aws_access_key_id"),
        fields.str("aws_secret_access_key"),
    ) else {
        return Err(mismatch(CredentialFormat::Env, "AWS keys", c));
    };
    let mut vars = vec![
        ("AWS_ACCESS_KEY_ID", key),
        ("AWS_SECRET_ACCESS_KEY", secret),
    ];
    if let Some(token) = fields.str("aws_session_token") {
        vars.push(("AWS_SESSION_TOKEN", token));
    }
    if let Some(region) = fields.str("region") {
        vars.push(("AWS_DEFAULT_REGION", region));
        vars.push(("AWS_REGION", region));
    }
    if let Some(endpoint) = fields.str("endpoint_url") {
        vars.push(("AWS_ENDPOINT_URL", endpoint));
    }
    Ok(vars
        .iter()
        .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
        .collect())
}

/// An RFC 3339 time in UTC with a `Z` (`2026-12-03T12:00:00Z`), as the AWS SDKs and
/// client-go parse it; `None` when absent or not a time.
fn rfc3339_utc(text: Option<&str>) -> Option<String> {
    let t = DateTime::parse_from_rfc3339(text?).ok()?;
    Some(
        t.with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::Secs, true),
    )
}

/// The AWS `credential_process` JSON.
pub fn aws_process(c: &IssuedCredentials) -> Result<Value, FormatMismatch> {
    let fields = &c.credentials;
    let (Some(key), Some(secret)) = (
        fields.str("aws_access_key_id"),
        fields.str("aws_secret_access_key"),
    ) else {
        return Err(mismatch(CredentialFormat::AwsProcess, "AWS keys", c));
    };
    let mut out = Map::new();
    out.insert("Version".into(), 1.into());
    out.insert("AccessKeyId".into(), key.into());
    out.insert("SecretAccessKey".into(), secret.into());
    if let Some(token) = fields.str("aws_session_token") {
        out.insert("SessionToken".into(), token.into());
    }
    if let Some(expiration) = rfc3339_utc(c.expires_at.as_deref()) {
        out.insert("Expiration".into(), expiration.into());
    }
    Ok(Value::Object(out))
}

/// The `client.authentication.k8s.io/v1` ExecCredential.
pub fn kube_exec(c: &IssuedCredentials) -> Result<Value, FormatMismatch> {
    let Some(token) = c.credentials.str("token") else {
        return Err(mismatch(CredentialFormat::KubeExec, "a token", c));
    };
    let mut status = Map::new();
    status.insert("token".into(), token.into());
    if let Some(expiration) = rfc3339_utc(c.expires_at.as_deref()) {
        status.insert("expirationTimestamp".into(), expiration.into());
    }
    Ok(json!({
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": status,
    }))
}

/// A Docker credential helper's `get` answer; `server_url` is what Docker asked for
/// (default: the registry the credentials name).
pub fn docker_helper(
    c: &IssuedCredentials,
    server_url: Option<&str>,
) -> Result<Value, FormatMismatch> {
    let fields = &c.credentials;
    let (Some(username), Some(secret)) = (fields.str("username"), fields.str("password")) else {
        return Err(mismatch(
            CredentialFormat::DockerHelper,
            "a registry user name and password",
            c,
        ));
    };
    let server = server_url
        .or(fields.str("registry"))
        .or(c.resource_id.as_deref())
        .unwrap_or_default();
    Ok(json!({ "ServerURL": server, "Username": username, "Secret": secret }))
}

/// The default view: what was issued and the field names, never a value.
pub fn table(connector: &str, c: &IssuedCredentials) -> String {
    let resource = match &c.resource_id {
        Some(id) => format!("{} {id}", c.resource_type),
        None => c.resource_type.clone(),
    };
    let mut rows = vec![
        ("lease".to_owned(), c.lease_id.clone()),
        ("connector".to_owned(), connector.to_owned()),
        ("resource".to_owned(), resource),
        (
            "expires".to_owned(),
            output::optional_time_utc(c.expires_at.as_deref(), "never"),
        ),
        ("revocable".to_owned(), output::boolean(c.revocable)),
        (
            "credential fields".to_owned(),
            c.credentials.names().collect::<Vec<_>>().join(", "),
        ),
    ];
    rows.extend(output::extra_fields(&c.extra));
    describe(rows)
}

/// What to run to see the values, after the table (on stderr).
pub fn table_hint(c: &IssuedCredentials) -> String {
    let formats: Vec<&str> = CredentialFormat::fitting(c)
        .iter()
        .map(|f| f.as_str())
        .collect();
    if formats.is_empty() {
        "Values are not shown in a table: use -o json.".to_owned()
    } else {
        format!(
            "Values are not shown in a table: use --format {} (or -o json).",
            formats.join("|")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issued(credentials: Value, expires_at: Option<&str>) -> IssuedCredentials {
        serde_json::from_value(json!({
            "lease_id": "0190f0a8-3b1c-7000-8000-0000000000l1", "connector_id": "c",
            "connector_type": "aws", "auth_method": "iam-role", "resource_type": "s3-bucket",
            "resource_id": "s3://zenfiles", "expires_at": expires_at, "revocable": false,
            "credentials": credentials,
        }))
        .expect("credentials answer")
    }

    fn aws(session: bool) -> Value {
        let mut c = json!({"aws_access_key_id": "ASIAEXAMPLE", "aws_secret_access_key": "wJalr'XUt",
            "region": "eu-west-1"});
        if session {
            c["aws_session_token"] = "FwoGZX".into();
            c["endpoint_url"] = "http://127.0.0.1:5000".into();
        }
        c
    }

    #[test]
    fn env_exports_shell_quoted_aws_variables() {
        let text = render(CredentialFormat::Env, &issued(aws(true), None)).expect("env");
        assert_eq!(
            text,
            "export AWS_ACCESS_KEY_ID='ASIAEXAMPLE'\n\
             export AWS_SECRET_ACCESS_KEY='wJalr'\\''XUt'\n\
             export AWS_SESSION_TOKEN='FwoGZX'\n\
             export AWS_DEFAULT_REGION='eu-west-1'\n\
             export AWS_REGION='eu-west-1'\n\
             export AWS_ENDPOINT_URL='http://127.0.0.1:5000'\n"
        );
        let plain = render(CredentialFormat::Env, &issued(aws(false), None)).expect("env");
        assert!(
            !plain.contains("SESSION_TOKEN") && !plain.contains("ENDPOINT"),
            "{plain}"
        );
    }

    #[test]
    fn shell_quoting_survives_a_real_shell() -> anyhow::Result<()> {
        let nasty = "a'b\"c $HOME `id` \\ ;";
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("printf %s {}", shell_quote(nasty)))
            .output()?;
        assert_eq!(String::from_utf8(out.stdout)?, nasty);
        Ok(())
    }

    #[test]
    fn aws_process_is_version_1_with_optional_token_and_utc_expiration() {
        let with = aws_process(&issued(aws(true), Some("2026-12-03T13:00:00.123+01:00")))
            .expect("aws-process");
        assert_eq!(
            with,
            json!({"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "wJalr'XUt",
                "SessionToken": "FwoGZX", "Expiration": "2026-12-03T12:00:00Z"})
        );
        let without = aws_process(&issued(aws(false), None)).expect("aws-process");
        assert_eq!(
            without,
            json!({"Version": 1, "AccessKeyId": "ASIAEXAMPLE", "SecretAccessKey": "wJalr'XUt"})
        );
    }

    #[test]
    fn kube_exec_is_an_exec_credential() {
        let c = issued(
            json!({"server": "https://k", "certificate_authority_data": "LS0t", "token": "eyJ"}),
            Some("2026-12-03T12:00:00Z"),
        );
        assert_eq!(
            kube_exec(&c).expect("kube-exec"),
            json!({"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                "status": {"token": "eyJ", "expirationTimestamp": "2026-12-03T12:00:00Z"}})
        );
    }

    #[test]
    fn docker_helper_answers_get() {
        let c = issued(
            json!({"username": "AWS", "password": "pw", "registry": "123.dkr.ecr.eu-west-1.amazonaws.com"}),
            None,
        );
        assert_eq!(
            docker_helper(&c, None).expect("docker"),
            json!({"ServerURL": "123.dkr.ecr.eu-west-1.amazonaws.com", "Username": "AWS", "Secret": "pw"})
        );
        assert_eq!(
            docker_helper(&c, Some("https://123.dkr.ecr.eu-west-1.amazonaws.com")).expect("docker")
                ["ServerURL"],
            "https://123.dkr.ecr.eu-west-1.amazonaws.com"
        );
    }

    #[test]
    fn a_format_that_does_not_fit_names_those_that_do() {
        let error =
            render(CredentialFormat::KubeExec, &issued(aws(false), None)).expect_err("no token");
        assert_eq!(
            error.to_string(),
            "--format kube-exec needs a token, and credentials for s3-bucket have none: use \
             --format env|aws-process"
        );
    }

    #[test]
    fn the_table_names_fields_and_never_shows_a_value() {
        let c = issued(aws(true), Some("2026-12-03T12:00:00Z"));
        let text = table("aws-ml", &c);
        for value in ["ASIAEXAMPLE", "wJalr", "FwoGZX"] {
            assert!(!text.contains(value), "{text}");
        }
        assert!(
            text.contains("aws_secret_access_key") && text.contains("s3-bucket s3://zenfiles"),
            "{text}"
        );
        assert!(text.contains("2026-12-03 12:00:00 UTC"), "{text}");
        assert!(table_hint(&c).contains("--format env|aws-process"));
    }
}
