//! `service-connector register NAME --type aws --auto-configure`: a connector from the
//! local AWS configuration, found as the AWS CLI and SDKs find it.
//!
//! The standard chain, as far as a connector can use it:
//! 1. the environment: `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`,
//!    `AWS_CREDENTIAL_EXPIRATION`);
//! 2. else the profile `AWS_PROFILE` (else `AWS_DEFAULT_PROFILE`, else `default`) of the
//!    shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else `~/.aws/credentials`)
//!    and the shared config file (`AWS_CONFIG_FILE`, else `~/.aws/config`); a profile with
//!    `role_arn` takes its keys from its `source_profile`.
//!
//! The region comes from `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the profile; the
//! endpoint from `AWS_ENDPOINT_URL`, else the profile's `endpoint_url`.
//!
//! What is found decides the auth method (unless `--auth-method` is given): a role becomes
//! `iam-role`, temporary keys (a session token) `sts-token` with their expiry when known,
//! long-lived keys `session-token` (the server hands out STS session tokens, never the
//! keys). Sources a connector cannot hold (SSO sessions, instance metadata, a
//! `credential_process`) are refused with a message that says so.
//!
//! Why not the `aws-config` crate: it resolves credentials *for this process* (it would
//! run SSO, IMDS and processes, and answers with credentials, not with where they came
//! from or which role they assume), and it brings the SDK's HTTP stack into the CLI. What
//! a connector needs is the configuration itself: two INI files and a few variables.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use secrecy::SecretString;

/// What the local AWS configuration gives for a connector.
#[derive(Debug, Clone)]
pub struct LocalAws {
    /// The auth method it fits.
    pub auth_method: String,
    /// The fields found (`aws_access_key_id`, `aws_secret_access_key`,
    /// `aws_session_token`, `region`, `role_arn`, `external_id`, `endpoint_url`), each
    /// kept secret until the catalogue says which are configuration.
    pub fields: BTreeMap<String, SecretString>,
    /// When the keys expire, for temporary ones, when known (RFC 3339).
    pub expires_at: Option<String>,
    /// Where they came from, for people.
    pub source: String,
}

/// An INI file as sections of lower-cased keys. Indented lines (a nested block such as
/// `s3 =` followed by its settings) and comments are skipped.
pub fn parse_ini(text: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut sections: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with(';') {
            continue;
        }
        if let Some(inner) = t.strip_prefix('[').and_then(|r| r.split_once(']')) {
            let name = inner.0.split_whitespace().collect::<Vec<_>>().join(" ");
            sections.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let (Some(section), Some((key, value))) = (&current, t.split_once('=')) else {
            continue;
        };
        sections
            .entry(section.clone())
            .or_default()
            .insert(key.trim().to_ascii_lowercase(), value.trim().to_owned());
    }
    sections
}

/// Reads a file that may be missing.
fn read(path: &PathBuf) -> anyhow::Result<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The two shared files, parsed.
struct SharedFiles {
    credentials: BTreeMap<String, BTreeMap<String, String>>,
    config: BTreeMap<String, BTreeMap<String, String>>,
    credentials_path: PathBuf,
    config_path: PathBuf,
}

impl SharedFiles {
    /// Profile `name`'s settings: the credentials file's over the config file's.
    fn profile(&self, name: &str) -> Option<BTreeMap<String, String>> {
        let config_section = if name == "default" {
            "default".to_owned()
        } else {
            format!("profile {name}")
        };
        let from_config = self.config.get(&config_section);
        let from_credentials = self.credentials.get(name);
        if from_config.is_none() && from_credentials.is_none() {
            return None;
        }
        let mut merged = from_config.cloned().unwrap_or_default();
        merged.extend(from_credentials.cloned().unwrap_or_default());
        Some(merged)
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

/// Reads the local AWS configuration; `env` reads a variable (tests pass their own).
pub fn discover(env: &dyn Fn(&str) -> Option<String>) -> anyhow::Result<LocalAws> {
    let var = |name: &str| non_empty(env(name));
    let home = || {
        var("HOME")
            .map(PathBuf::from)
            .context("HOME is not set: cannot find the AWS configuration files")
    };
    let credentials_path = match var("AWS_SHARED_CREDENTIALS_FILE") {
        Some(p) => PathBuf::from(p),
        None => home()?.join(".aws").join("credentials"),
    };
    let config_path = match var("AWS_CONFIG_FILE") {
        Some(p) => PathBuf::from(p),
        None => home()?.join(".aws").join("config"),
    };
    let files = SharedFiles {
        credentials: parse_ini(&read(&credentials_path)?),
        config: parse_ini(&read(&config_path)?),
        credentials_path,
        config_path,
    };
    let profile_name = var("AWS_PROFILE")
        .or_else(|| var("AWS_DEFAULT_PROFILE"))
        .unwrap_or_else(|| "default".to_owned());
    let profile = files.profile(&profile_name);

    let mut fields: BTreeMap<String, String> = BTreeMap::new();
    let mut expires_at = None;
    let source;
    let mut auth_method;
    if let (Some(key), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
        fields.insert("aws_access_key_id".into(), key);
        fields.insert("aws_secret_access_key".into(), secret);
        if let Some(token) = var("AWS_SESSION_TOKEN") {
            fields.insert("aws_session_token".into(), token);
            expires_at = var("AWS_CREDENTIAL_EXPIRATION");
        }
        source = "the environment (AWS_ACCESS_KEY_ID)".to_owned();
        auth_method = "session-token";
    } else {
        let Some(profile) = &profile else {
            anyhow::bail!(
                "no AWS credentials found: neither AWS_ACCESS_KEY_ID and \
                 AWS_SECRET_ACCESS_KEY are set, nor a profile {profile_name:?} in {} or {}",
                files.credentials_path.display(),
                files.config_path.display()
            );
        };
        source = format!("the AWS profile {profile_name:?}");
        let keys_from = match profile.get("role_arn") {
            Some(role) => {
                fields.insert("role_arn".into(), role.clone());
                if let Some(external) = profile.get("external_id") {
                    fields.insert("external_id".into(), external.clone());
                }
                let Some(source_profile) = profile.get("source_profile") else {
                    anyhow::bail!(
                        "the AWS profile {profile_name:?} assumes {role} with credentials from \
                         {} (not a source profile): a connector cannot use the server's or an \
                         instance's identity that way; give it a source_profile, or register \
                         with --auth-method and --secret",
                        profile
                            .get("credential_source")
                            .map(String::as_str)
                            .unwrap_or("somewhere else"),
                    );
                };
                files.profile(source_profile).with_context(|| {
                    format!(
                        "the AWS profile {profile_name:?} names source_profile \
                         {source_profile:?}, which is in neither file"
                    )
                })?
            }
            None => profile.clone(),
        };
        unsupported_source(&profile_name, &keys_from)?;
        let (Some(key), Some(secret)) = (
            keys_from.get("aws_access_key_id"),
            keys_from.get("aws_secret_access_key"),
        ) else {
            anyhow::bail!(
                "the AWS profile {profile_name:?} has no aws_access_key_id and \
                 aws_secret_access_key (in its own or its source profile's settings)"
            );
        };
        fields.insert("aws_access_key_id".into(), key.clone());
        fields.insert("aws_secret_access_key".into(), secret.clone());
        if let Some(token) = keys_from.get("aws_session_token").filter(|t| !t.is_empty()) {
            fields.insert("aws_session_token".into(), token.clone());
            expires_at = ["aws_credential_expiration", "expiration"]
                .iter()
                .find_map(|k| keys_from.get(*k).cloned());
        }
        auth_method = "session-token";
        if fields.contains_key("role_arn") {
            auth_method = "iam-role";
        }
    }
    if auth_method != "iam-role" && fields.contains_key("aws_session_token") {
        auth_method = "sts-token";
    }
    let from_profile = |key: &str| profile.as_ref().and_then(|p| p.get(key).cloned());
    if let Some(region) = var("AWS_REGION")
        .or_else(|| var("AWS_DEFAULT_REGION"))
        .or_else(|| from_profile("region"))
    {
        fields.insert("region".into(), region);
    }
    if let Some(endpoint) = var("AWS_ENDPOINT_URL").or_else(|| from_profile("endpoint_url")) {
        fields.insert("endpoint_url".into(), endpoint);
    }
    Ok(LocalAws {
        auth_method: auth_method.to_owned(),
        fields: fields
            .into_iter()
            .map(|(k, v)| (k, SecretString::from(v)))
            .collect(),
        expires_at,
        source,
    })
}

/// Refuses profiles whose credentials only exist through a login or a program.
fn unsupported_source(profile: &str, settings: &BTreeMap<String, String>) -> anyhow::Result<()> {
    let has_keys = settings.contains_key("aws_access_key_id");
    for (key, what) in [
        ("sso_session", "an SSO session"),
        ("sso_start_url", "an SSO session"),
        ("credential_process", "a credential_process"),
        ("web_identity_token_file", "a web identity token"),
    ] {
        if settings.contains_key(key) && !has_keys {
            anyhow::bail!(
                "the AWS profile {profile:?} gets its credentials from {what}, which a \
                 connector cannot hold: register with --auth-method and --secret instead"
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret as _;

    use super::*;

    fn env_of(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn field(found: &LocalAws, name: &str) -> Option<String> {
        found.fields.get(name).map(|v| v.expose_secret().to_owned())
    }

    struct Files {
        _dir: tempfile::TempDir,
        credentials: String,
        config: String,
    }

    fn files(credentials: &str, config: &str) -> anyhow::Result<Files> {
        let dir = tempfile::tempdir()?;
        let c = dir.path().join("credentials");
        let f = dir.path().join("config");
        std::fs::write(&c, credentials)?;
        std::fs::write(&f, config)?;
        Ok(Files {
            credentials: c.to_string_lossy().into_owned(),
            config: f.to_string_lossy().into_owned(),
            _dir: dir,
        })
    }

    #[test]
    fn long_lived_keys_from_the_environment_become_session_token() -> anyhow::Result<()> {
        let f = files("", "[default]\nregion = eu-west-1\n")?;
        let found = discover(&env_of(vec![
            ("AWS_ACCESS_KEY_ID", "AKIAEXAMPLE".into()),
            ("AWS_SECRET_ACCESS_KEY", "wJalr".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", f.credentials.clone()),
            ("AWS_CONFIG_FILE", f.config.clone()),
        ]))?;
        assert_eq!(found.auth_method, "session-token");
        assert_eq!(
            field(&found, "aws_access_key_id").as_deref(),
            Some("AKIAEXAMPLE")
        );
        assert_eq!(
            field(&found, "aws_secret_access_key").as_deref(),
            Some("wJalr")
        );
        // No region variable: the default profile's.
        assert_eq!(field(&found, "region").as_deref(), Some("eu-west-1"));
        assert!(found.source.contains("environment"));
        assert!(!format!("{found:?}").contains("wJalr"));
        Ok(())
    }

    #[test]
    fn temporary_keys_from_the_environment_become_sts_token_with_their_expiry() -> anyhow::Result<()>
    {
        let f = files("", "")?;
        let found = discover(&env_of(vec![
            ("AWS_ACCESS_KEY_ID", "ASIAEXAMPLE".into()),
            ("AWS_SECRET_ACCESS_KEY", "wJalr".into()),
            ("AWS_SESSION_TOKEN", "FwoG".into()),
            ("AWS_CREDENTIAL_EXPIRATION", "2026-12-03T18:00:00Z".into()),
            ("AWS_REGION", "us-east-2".into()),
            ("AWS_DEFAULT_REGION", "us-east-1".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", f.credentials.clone()),
            ("AWS_CONFIG_FILE", f.config.clone()),
        ]))?;
        assert_eq!(found.auth_method, "sts-token");
        assert_eq!(field(&found, "aws_session_token").as_deref(), Some("FwoG"));
        assert_eq!(found.expires_at.as_deref(), Some("2026-12-03T18:00:00Z"));
        assert_eq!(field(&found, "region").as_deref(), Some("us-east-2"));
        Ok(())
    }

    #[test]
    fn a_role_profile_becomes_iam_role_with_its_source_profiles_keys() -> anyhow::Result<()> {
        let f = files(
            "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = d\n\n\
             [base]\naws_access_key_id = AKIABASE\naws_secret_access_key = baseSecret\n",
            "[default]\nregion = us-east-1\n\n# ML account\n[profile ml]\n\
             role_arn = arn:aws:iam::123456789012:role/ml\nsource_profile = base\n\
             region = eu-central-1\ns3 =\n  addressing_style = path\n",
        )?;
        let found = discover(&env_of(vec![
            ("AWS_PROFILE", "ml".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", f.credentials.clone()),
            ("AWS_CONFIG_FILE", f.config.clone()),
        ]))?;
        assert_eq!(found.auth_method, "iam-role");
        assert_eq!(
            field(&found, "role_arn").as_deref(),
            Some("arn:aws:iam::123456789012:role/ml")
        );
        assert_eq!(
            field(&found, "aws_access_key_id").as_deref(),
            Some("AKIABASE")
        );
        assert_eq!(
            field(&found, "aws_secret_access_key").as_deref(),
            Some("baseSecret")
        );
        assert_eq!(field(&found, "region").as_deref(), Some("eu-central-1"));
        assert!(found.source.contains("\"ml\""), "{}", found.source);
        Ok(())
    }

    #[test]
    fn a_profile_with_a_session_token_is_sts_token() -> anyhow::Result<()> {
        let f = files(
            "[tmp]\naws_access_key_id = ASIA\naws_secret_access_key = s\naws_session_token = t\n",
            "[profile tmp]\nregion = ap-south-1\nendpoint_url = http://127.0.0.1:5000\n",
        )?;
        let found = discover(&env_of(vec![
            ("AWS_PROFILE", "tmp".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", f.credentials.clone()),
            ("AWS_CONFIG_FILE", f.config.clone()),
        ]))?;
        assert_eq!(found.auth_method, "sts-token");
        assert_eq!(found.expires_at, None);
        assert_eq!(
            field(&found, "endpoint_url").as_deref(),
            Some("http://127.0.0.1:5000")
        );
        Ok(())
    }

    #[test]
    fn what_a_connector_cannot_hold_is_refused_clearly() -> anyhow::Result<()> {
        let f = files(
            "",
            "[profile sso]\nsso_session = corp\n\n[profile imds]\n\
             role_arn = arn:aws:iam::1:role/r\ncredential_source = Ec2InstanceMetadata\n",
        )?;
        let run = |profile: &'static str| {
            discover(&env_of(vec![
                ("AWS_PROFILE", profile.into()),
                ("AWS_SHARED_CREDENTIALS_FILE", f.credentials.clone()),
                ("AWS_CONFIG_FILE", f.config.clone()),
            ]))
            .map(|_| ())
            .expect_err(profile)
            .to_string()
        };
        assert!(run("sso").contains("an SSO session"), "{}", run("sso"));
        assert!(
            run("imds").contains("Ec2InstanceMetadata"),
            "{}",
            run("imds")
        );
        assert!(
            run("missing").contains("no AWS credentials found"),
            "{}",
            run("missing")
        );
        Ok(())
    }

    #[test]
    fn ini_sections_skip_comments_and_nested_blocks() {
        let parsed = parse_ini("; top\n[ profile  a ]\nKey = v = w\n  nested = x\n# c\n[b]\nk=1\n");
        assert_eq!(parsed["profile a"]["key"], "v = w");
        assert!(!parsed["profile a"].contains_key("nested"));
        assert_eq!(parsed["b"]["k"], "1");
    }
}
