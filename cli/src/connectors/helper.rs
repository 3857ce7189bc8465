//! The CLI as `docker-credential-gatehouse`, a Docker credential helper (the protocol of
//! docker/docker-credential-helpers): Docker runs it with one verb and writes the input on
//! stdin.
//!
//! - `get`: stdin holds a registry's server URL; the answer is
//!   `{"ServerURL","Username","Secret"}` for that registry, fresh from the connector and
//!   resource `service-connector login` recorded for it. An unknown registry gets the
//!   protocol's "credentials not found in native keychain" (Docker then goes on without).
//! - `store`, `erase`: refused (exit 1): these credentials come from Gatehouse and are not
//!   kept anywhere.
//! - `list`: the recorded registries, `{"<registry>": "<connector>"}`.
//!
//! As the protocol wants, errors go to stdout, and the exit status is 1.

use std::io::Read as _;
use std::process::ExitCode;

use super::client::CredentialsRequest;
use super::formats::docker_helper;
use super::integrations::{DOCKER_HELPER_PROGRAM, RegistryLogins};
use crate::commands::{Context, Globals, OutputFormat, error_text};
use crate::credentials::CredentialsStore;

/// The message Docker reads as "no credentials for this registry".
pub const NOT_FOUND: &str = "credentials not found in native keychain";

/// Whether the program was started under the helper's name (argv\[0\] basename).
pub fn invoked_as_helper(argv0: Option<&std::ffi::OsStr>) -> bool {
    argv0
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .and_then(|n| n.to_str())
        .is_some_and(|n| n == DOCKER_HELPER_PROGRAM)
}

/// Runs the helper for `verb`, with stdin as the protocol's input.
pub fn main(verb: Option<&str>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            println!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut input = String::new();
    if matches!(verb, Some("get" | "store" | "erase"))
        && let Err(e) = std::io::stdin().read_to_string(&mut input)
    {
        println!("reading stdin: {e}");
        return ExitCode::FAILURE;
    }
    match runtime.block_on(answer(verb, &input)) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("{}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// The helper's answer to `verb` with `input`, or its error.
async fn answer(verb: Option<&str>, input: &str) -> anyhow::Result<String> {
    match verb {
        Some("get") => {
            let store = CredentialsStore::from_env()?;
            let logins = RegistryLogins::load(store.dir())?;
            let server = input.trim();
            let Some(login) = logins.find(server) else {
                anyhow::bail!(NOT_FOUND);
            };
            let globals = Globals {
                url: std::env::var("GATEHOUSE_URL")
                    .ok()
                    .filter(|u| !u.is_empty()),
                output: OutputFormat::Table,
            };
            let client = Context::new(&globals)?.client().await?;
            let issued = client
                .connector_credentials(
                    &login.connector,
                    &CredentialsRequest {
                        resource_type: Some(login.resource_type.clone()),
                        resource_id: login.resource_id.clone(),
                        expiration_seconds: None,
                    },
                )
                .await?;
            Ok(docker_helper(&issued, Some(server))?.to_string())
        }
        Some("list") => {
            let store = CredentialsStore::from_env()?;
            let logins = RegistryLogins::load(store.dir())?;
            let listed: serde_json::Map<String, serde_json::Value> = logins
                .registries
                .iter()
                .map(|(host, login)| (host.clone(), login.connector.clone().into()))
                .collect();
            Ok(serde_json::Value::Object(listed).to_string())
        }
        Some(verb @ ("store" | "erase")) => anyhow::bail!(
            "{DOCKER_HELPER_PROGRAM} does not {verb} credentials: they come fresh from \
             Gatehouse each time (`gatehouse service-connector login` sets a registry up)"
        ),
        Some("version") => Ok(format!(
            "{DOCKER_HELPER_PROGRAM} (gatehouse {})",
            env!("CARGO_PKG_VERSION")
        )),
        _ => anyhow::bail!("usage: {DOCKER_HELPER_PROGRAM} <get|store|erase|list|version>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_helper_name_is_recognised_by_basename() {
        use std::ffi::OsStr;
        assert!(invoked_as_helper(Some(OsStr::new(
            "/usr/local/bin/docker-credential-gatehouse"
        ))));
        assert!(invoked_as_helper(Some(OsStr::new(
            "docker-credential-gatehouse"
        ))));
        assert!(!invoked_as_helper(Some(OsStr::new("/usr/bin/gatehouse"))));
        assert!(!invoked_as_helper(None));
    }

    #[tokio::test]
    async fn store_and_erase_are_refused_and_unknown_verbs_show_usage() {
        for verb in ["store", "erase"] {
            let error = answer(Some(verb), "{}").await.expect_err(verb);
            assert!(error.to_string().contains("does not"), "{error}");
        }
        let usage = answer(Some("frobnicate"), "").await.expect_err("usage");
        assert!(usage.to_string().starts_with("usage:"), "{usage}");
    }
}
