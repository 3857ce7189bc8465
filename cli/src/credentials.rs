//! The saved session: `credentials.json` in the configuration directory.
//!
//! The directory is `$GATEHOUSE_CONFIG_DIR`, else `$XDG_CONFIG_HOME/gatehouse`, else
//! `$HOME/.config/gatehouse`. The file holds a bearer token, so it is private from its
//! first byte: written to a 0600 temporary file in the same directory (0700), then
//! renamed over the old one. The token stays in a [`SecretString`] in memory.
//!
//! After `gatehouse login --api-key` the file also holds the API key itself, so that the
//! CLI can exchange it again when the token expires. `gatehouse logout` removes it.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Name of the file inside the configuration directory.
pub const FILE_NAME: &str = "credentials.json";

/// Who the session belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// Login name.
    pub name: String,
    /// `user` or `service_account`.
    pub kind: String,
}

/// A saved session.
#[derive(Debug, Clone, Deserialize)]
pub struct Credentials {
    /// The gateway's base URL (normalised, no trailing slash).
    pub url: String,
    /// The bearer token.
    pub access_token: SecretString,
    /// When the token expires.
    pub expires_at: DateTime<Utc>,
    /// Who it belongs to.
    pub principal: Principal,
    /// When the token was obtained (absent in files written by older versions).
    #[serde(default)]
    pub obtained_at: Option<DateTime<Utc>>,
    /// The API key the session was made with (`login --api-key`), to renew the token.
    #[serde(default)]
    pub api_key: Option<SecretString>,
    /// The authorized device the session's token belongs to (device login). Device
    /// tokens are not renewed: when one expires, `gatehouse login` approves the device
    /// again.
    #[serde(default)]
    pub device_id: Option<uuid::Uuid>,
}

impl Credentials {
    /// Whether the token has expired at `now`.
    pub fn is_expired(&self, now: DateTime<Utc>) -> bool {
        now >= self.expires_at
    }
}

/// The on-disk form; the only place the token is exposed.
#[derive(Serialize)]
struct OnDisk<'a> {
    url: &'a str,
    access_token: &'a str,
    expires_at: DateTime<Utc>,
    principal: &'a Principal,
    #[serde(skip_serializing_if = "Option::is_none")]
    obtained_at: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_key: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    device_id: Option<uuid::Uuid>,
}

/// Where credentials live.
#[derive(Debug, Clone)]
pub struct CredentialsStore {
    dir: PathBuf,
}

impl CredentialsStore {
    /// The store in the directory the environment names.
    pub fn from_env() -> anyhow::Result<Self> {
        Ok(Self::in_dir(config_dir(|name| std::env::var_os(name))?))
    }

    /// The store in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The credentials file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE_NAME)
    }

    /// The saved session, or `None` when there is none.
    pub fn load(&self) -> anyhow::Result<Option<Credentials>> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        warn_if_readable_by_others(&path);
        let credentials = serde_json::from_slice(&bytes).with_context(|| {
            format!(
                "{} is damaged: run `gatehouse logout`, then `gatehouse login`",
                path.display()
            )
        })?;
        Ok(Some(credentials))
    }

    /// Saves `credentials`, replacing any saved session atomically.
    pub fn save(&self, credentials: &Credentials) -> anyhow::Result<()> {
        let body = serde_json::to_vec_pretty(&OnDisk {
            url: &credentials.url,
            access_token: credentials.access_token.expose_secret(),
            expires_at: credentials.expires_at,
            principal: &credentials.principal,
            obtained_at: credentials.obtained_at,
            api_key: credentials.api_key.as_ref().map(|k| k.expose_secret()),
            device_id: credentials.device_id,
        })?;
        replace_private_file(&self.dir, FILE_NAME, &body)
    }

    /// The configuration directory the store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Removes the saved session; returns whether there was one.
    pub fn clear(&self) -> anyhow::Result<bool> {
        let path = self.path();
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e).with_context(|| format!("removing {}", path.display())),
        }
    }
}

/// The configuration directory, given a way to read environment variables. Empty values
/// count as unset; `XDG_CONFIG_HOME` must be absolute (XDG Base Directory spec).
pub fn config_dir(env: impl Fn(&str) -> Option<OsString>) -> anyhow::Result<PathBuf> {
    let var = |name: &str| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("GATEHOUSE_CONFIG_DIR") {
        return Ok(dir);
    }
    if let Some(xdg) = var("XDG_CONFIG_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("gatehouse"));
    }
    if let Some(home) = var("HOME") {
        return Ok(home.join(".config").join("gatehouse"));
    }
    anyhow::bail!("cannot find a configuration directory: set GATEHOUSE_CONFIG_DIR or HOME")
}

/// Writes `body` to `dir/name`, readable by its owner only from its first byte: a 0600
/// temporary file in the same directory (created 0700 if missing), renamed over the old one.
pub(crate) fn replace_private_file(dir: &Path, name: &str, body: &[u8]) -> anyhow::Result<()> {
    create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let written = write_private(&temp, body).and_then(|()| fs::rename(&temp, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e).with_context(|| format!("writing {}", path.display()));
    }
    // Make the rename durable; not every file system allows syncing a directory.
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}

/// Creates `path` (which must not exist) readable by its owner only, and writes `body`.
fn write_private(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(body)?;
    file.sync_all()
}

#[cfg(unix)]
pub(crate) fn warn_if_readable_by_others(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let loose = fs::metadata(path)
        .map(|meta| meta.permissions().mode() & 0o077 != 0)
        .unwrap_or(false);
    if loose {
        tracing::warn!(path = %path.display(), "the credentials file is readable by other users: chmod 600 it");
    }
}

#[cfg(not(unix))]
pub(crate) fn warn_if_readable_by_others(_path: &Path) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credentials {
        Credentials {
            url: "http://127.0.0.1:8080".into(),
            access_token: SecretString::from("eyJ.secret-token.sig"),
            expires_at: DateTime::parse_from_rfc3339("2030-01-02T03:04:05Z")
                .expect("valid")
                .with_timezone(&Utc),
            principal: Principal {
                name: "alice".into(),
                kind: "user".into(),
            },
            obtained_at: None,
            api_key: None,
            device_id: None,
        }
    }

    #[test]
    fn saved_credentials_round_trip() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = CredentialsStore::in_dir(dir.path().join("nested").join("gatehouse"));
        assert!(store.load()?.is_none());
        store.save(&sample())?;
        let loaded = store.load()?.expect("saved");
        assert_eq!(loaded.url, "http://127.0.0.1:8080");
        assert_eq!(loaded.access_token.expose_secret(), "eyJ.secret-token.sig");
        assert_eq!(loaded.expires_at, sample().expires_at);
        assert_eq!(loaded.principal, sample().principal);
        Ok(())
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_0600_and_the_directory_0700() -> anyhow::Result<()> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir()?;
        let store = CredentialsStore::in_dir(dir.path().join("gatehouse"));
        store.save(&sample())?;
        assert_eq!(
            fs::metadata(store.path())?.permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(dir.path().join("gatehouse"))?
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        // Saving again replaces the file and leaves no temporary file behind.
        store.save(&sample())?;
        assert_eq!(
            fs::metadata(store.path())?.permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_dir(dir.path().join("gatehouse"))?.count(), 1);
        Ok(())
    }

    #[test]
    fn clear_removes_the_file() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = CredentialsStore::in_dir(dir.path());
        assert!(!store.clear()?);
        store.save(&sample())?;
        assert!(store.clear()?);
        assert!(!store.path().exists());
        assert!(store.load()?.is_none());
        Ok(())
    }

    #[test]
    fn the_file_has_the_documented_shape() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = CredentialsStore::in_dir(dir.path());
        store.save(&sample())?;
        let json: serde_json::Value = serde_json::from_slice(&fs::read(store.path())?)?;
        assert_eq!(
            json,
            serde_json::json!({
                "url": "http://127.0.0.1:8080",
                "access_token": "eyJ.secret-token.sig",
                "expires_at": "2030-01-02T03:04:05Z",
                "principal": {"name": "alice", "kind": "user"},
            })
        );
        Ok(())
    }

    #[test]
    fn an_api_key_session_keeps_the_key_and_when_the_token_was_obtained() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = CredentialsStore::in_dir(dir.path());
        let obtained_at = sample().expires_at - chrono::Duration::hours(1);
        let credentials = Credentials {
            obtained_at: Some(obtained_at),
            api_key: Some(SecretString::from("gatehouse_key-for-the-test")),
            principal: Principal {
                name: "ci-bot".into(),
                kind: "service_account".into(),
            },
            ..sample()
        };
        store.save(&credentials)?;
        let json: serde_json::Value = serde_json::from_slice(&fs::read(store.path())?)?;
        assert_eq!(json["api_key"], "gatehouse_key-for-the-test");
        assert_eq!(json["obtained_at"], "2030-01-02T02:04:05Z");
        let loaded = store.load()?.expect("saved");
        assert_eq!(loaded.obtained_at, Some(obtained_at));
        assert_eq!(
            loaded
                .api_key
                .as_ref()
                .map(|k| k.expose_secret().to_owned()),
            Some("gatehouse_key-for-the-test".to_owned())
        );
        assert!(!format!("{loaded:?}").contains("key-for-the-test"));
        Ok(())
    }

    #[test]
    fn a_device_session_keeps_its_device_id() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = CredentialsStore::in_dir(dir.path());
        let id = uuid::Uuid::parse_str("0190f0a8-3b1c-7000-8000-00000000d001")?;
        store.save(&Credentials {
            device_id: Some(id),
            ..sample()
        })?;
        let json: serde_json::Value = serde_json::from_slice(&fs::read(store.path())?)?;
        assert_eq!(json["device_id"], "0190f0a8-3b1c-7000-8000-00000000d001");
        assert!(json.get("api_key").is_none());
        assert_eq!(store.load()?.and_then(|c| c.device_id), Some(id));
        Ok(())
    }

    #[test]
    fn a_damaged_file_is_a_clear_error() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let store = CredentialsStore::in_dir(dir.path());
        fs::write(store.path(), b"{not json")?;
        let error = store.load().expect_err("damaged");
        assert!(
            format!("{error:#}").contains("gatehouse login"),
            "{error:#}"
        );
        Ok(())
    }

    #[test]
    fn debug_never_shows_the_token() {
        let text = format!("{:?}", sample());
        assert!(!text.contains("secret-token"), "{text}");
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let c = sample();
        assert!(!c.is_expired(c.expires_at - chrono::Duration::seconds(1)));
        assert!(c.is_expired(c.expires_at));
    }

    #[test]
    fn the_config_dir_follows_the_environment_in_order() -> anyhow::Result<()> {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            config_dir(env(&[
                ("GATEHOUSE_CONFIG_DIR", "/g"),
                ("XDG_CONFIG_HOME", "/x"),
                ("HOME", "/h")
            ]))?,
            PathBuf::from("/g")
        );
        assert_eq!(
            config_dir(env(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]))?,
            PathBuf::from("/x/gatehouse")
        );
        assert_eq!(
            config_dir(env(&[("GATEHOUSE_CONFIG_DIR", ""), ("HOME", "/h")]))?,
            PathBuf::from("/h/.config/gatehouse")
        );
        assert_eq!(
            config_dir(env(&[("XDG_CONFIG_HOME", "relative"), ("HOME", "/h")]))?,
            PathBuf::from("/h/.config/gatehouse")
        );
        assert!(config_dir(env(&[])).is_err());
        Ok(())
    }
}
