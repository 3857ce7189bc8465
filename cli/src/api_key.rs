//! API keys on the client side: checking a key's shape before sending it anywhere, and the
//! token cache that lets `GATEHOUSE_API_KEY` work without a login step.
//!
//! The cache keeps the access token an API key was exchanged for, one file per
//! (gateway URL, whole key) in `<config dir>/tokens/`, named by a SHA-256 of the two. The
//! whole key, not its id: after a rotation the old and the new secret share the key id,
//! and a stale secret must not ride on the token the new one cached. The file
//! holds the token and its lifetime, never the key: whoever can read it can act as the
//! service account until the token expires (an hour by default), not for the key's life.
//! Files are private (0600, in a 0700 directory) like the credentials file.
//! `GATEHOUSE_TOKEN_CACHE=off` keeps tokens in memory only (one exchange per command).

use std::path::PathBuf;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Utc};
use gatehouse_tokens::{API_KEY_LEN, API_KEY_PREFIX, ApiKeyFormatError, parse_api_key};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::client::TokenResponse;
use crate::credentials::{replace_private_file, warn_if_readable_by_others};

/// The environment variable holding an API key for every command.
pub const API_KEY_ENV: &str = "GATEHOUSE_API_KEY";
/// The environment variable that turns the token cache off (`off`).
pub const TOKEN_CACHE_ENV: &str = "GATEHOUSE_TOKEN_CACHE";
/// The token cache's directory inside the configuration directory.
pub const CACHE_DIR: &str = "tokens";
/// A token is renewed when less than this is left of it...
pub const MIN_REMAINING: TimeDelta = TimeDelta::seconds(60);
/// ...or less than this share (1/N) of its lifetime.
pub const MIN_REMAINING_SHARE: i32 = 10;

/// An API key whose shape (prefix, length, characters, checksum) is right. `Debug` hides
/// the key.
#[derive(Debug, Clone)]
pub struct CheckedApiKey {
    key: SecretString,
}

impl CheckedApiKey {
    /// Checks `input` (surrounding whitespace ignored) locally, without any request.
    /// `source` names where the key came from, for the error message; the message never
    /// quotes the key.
    pub fn parse(input: &str, source: &str) -> anyhow::Result<Self> {
        let trimmed = input.trim();
        parse_api_key(trimmed).map_err(|e| {
            let why = match e {
                ApiKeyFormatError::WrongPrefix => {
                    format!("Gatehouse API keys start with `{API_KEY_PREFIX}`")
                }
                ApiKeyFormatError::WrongLength => format!(
                    "it has {} characters where a Gatehouse API key has {API_KEY_LEN}: was it cut \
                     off, or copied with something else?",
                    trimmed.chars().count()
                ),
                ApiKeyFormatError::InvalidCharacter => {
                    "it contains a character that cannot appear at its place in a Gatehouse API \
                     key"
                    .to_owned()
                }
                ApiKeyFormatError::BadChecksum => {
                    "its checksum does not match: a character was mistyped or changed".to_owned()
                }
            };
            anyhow::anyhow!(
                "{source} is not a well-formed API key: {why} (nothing was sent to the server)"
            )
        })?;
        Ok(Self {
            key: SecretString::from(trimmed.to_owned()),
        })
    }

    /// The key, to send to the token endpoint.
    pub fn secret(&self) -> &SecretString {
        &self.key
    }
}

/// Whether a token obtained at `obtained_at` and expiring at `expires_at` is still good
/// to use at `now`: at least [`MIN_REMAINING`] and a tenth of its lifetime left.
pub fn is_fresh(obtained_at: DateTime<Utc>, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    let remaining = expires_at - now;
    let lifetime = (expires_at - obtained_at).max(TimeDelta::zero());
    remaining >= MIN_REMAINING && remaining >= lifetime / MIN_REMAINING_SHARE
}

/// When a token answered at `now` with `expires_in` seconds expires.
pub fn expiry(token: &TokenResponse, now: DateTime<Utc>) -> anyhow::Result<DateTime<Utc>> {
    i64::try_from(token.expires_in)
        .ok()
        .and_then(TimeDelta::try_seconds)
        .and_then(|ttl| now.checked_add_signed(ttl))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the server answered an unusable expires_in of {} s",
                token.expires_in
            )
        })
}

/// A token in the cache.
#[derive(Debug, Clone, Deserialize)]
pub struct CachedToken {
    /// The gateway it is for.
    pub url: String,
    /// The bearer token.
    pub access_token: SecretString,
    /// When it was obtained.
    pub obtained_at: DateTime<Utc>,
    /// When it expires.
    pub expires_at: DateTime<Utc>,
}

impl CachedToken {
    /// A token answered at `now` by `url`.
    pub fn new(url: &str, token: &TokenResponse, now: DateTime<Utc>) -> anyhow::Result<Self> {
        Ok(Self {
            url: url.to_owned(),
            access_token: token.access_token.clone(),
            obtained_at: now,
            expires_at: expiry(token, now)?,
        })
    }

    /// See [`is_fresh`].
    pub fn is_fresh(&self, now: DateTime<Utc>) -> bool {
        is_fresh(self.obtained_at, self.expires_at, now)
    }
}

#[derive(Serialize)]
struct OnDisk<'a> {
    url: &'a str,
    access_token: &'a str,
    obtained_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
}

/// The token cache in one configuration directory.
#[derive(Debug, Clone)]
pub struct TokenCache {
    dir: PathBuf,
}

impl TokenCache {
    /// The cache in `<config_dir>/tokens`.
    pub fn in_config_dir(config_dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: config_dir.into().join(CACHE_DIR),
        }
    }

    /// The file name for the token of `key` at gateway `url`: a hash of the URL and the
    /// whole key (secret included), so that only this exact key finds the token, and
    /// neither the key nor the URL can be read off the directory listing.
    pub fn file_name(url: &str, key: &CheckedApiKey) -> String {
        let mut hash = Sha256::new();
        hash.update(b"gatehouse token cache v2\n");
        hash.update(url.trim_end_matches('/').as_bytes());
        hash.update(b"\n");
        hash.update(key.secret().expose_secret().as_bytes());
        let digest = hash.finalize();
        let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        format!("{hex}.json")
    }

    /// The file of `key` at gateway `url`.
    pub fn path(&self, url: &str, key: &CheckedApiKey) -> PathBuf {
        self.dir.join(Self::file_name(url, key))
    }

    /// The cached token, or `None` when there is none or it is unreadable (it is then
    /// simply replaced).
    pub fn load(&self, url: &str, key: &CheckedApiKey) -> Option<CachedToken> {
        let path = self.path(url, key);
        let bytes = std::fs::read(&path).ok()?;
        warn_if_readable_by_others(&path);
        match serde_json::from_slice::<CachedToken>(&bytes) {
            Ok(token) if token.url.trim_end_matches('/') == url.trim_end_matches('/') => {
                Some(token)
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "ignoring a damaged token cache file");
                None
            }
        }
    }

    /// Saves `token` for `key`, replacing the previous one atomically.
    pub fn save(&self, key: &CheckedApiKey, token: &CachedToken) -> anyhow::Result<()> {
        let body = serde_json::to_vec_pretty(&OnDisk {
            url: &token.url,
            access_token: token.access_token.expose_secret(),
            obtained_at: token.obtained_at,
            expires_at: token.expires_at,
        })?;
        replace_private_file(&self.dir, &Self::file_name(&token.url, key), &body)
            .context("saving the token cache")
    }
}

/// Whether `GATEHOUSE_TOKEN_CACHE` turns the cache off (`off`, `0`, `false`, `no`).
pub fn cache_disabled(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "off" | "0" | "false" | "no"
        )
    })
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    /// A well-formed key (made with the server's own generator).
    fn sample_key() -> (SecretString, Uuid) {
        let id = Uuid::parse_str("0190f0a8-3b1c-7000-8000-00000000abcd").expect("uuid");
        let generated = gatehouse_tokens::generate_api_key(id);
        (generated.full, id)
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("valid")
            .with_timezone(&Utc)
    }

    #[test]
    fn a_well_formed_key_is_accepted_and_its_id_read() -> anyhow::Result<()> {
        let (key, id) = sample_key();
        let checked = CheckedApiKey::parse(&format!("  {}\n", key.expose_secret()), "the key")?;
        assert_eq!(parse_api_key(checked.secret().expose_secret())?.key_id, id);
        assert_eq!(checked.secret().expose_secret(), key.expose_secret());
        assert!(!format!("{checked:?}").contains(key.expose_secret()));
        Ok(())
    }

    #[test]
    fn malformed_keys_are_refused_locally_with_the_reason_and_without_quoting_them() {
        let (key, _) = sample_key();
        let key = key.expose_secret().to_owned();
        let mut typo = key.clone().into_bytes();
        let last = typo.len() - 10;
        typo[last] = if typo[last] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(typo).expect("ascii");
        let cases = [
            ("ghp_0123456789".to_owned(), "start with `gatehouse_`"),
            (
                key[..60].to_owned(),
                "has 60 characters where a Gatehouse API key has 92",
            ),
            (format!("{key}x"), "has 93 characters"),
            (
                key.replace('_', "-")
                    .replacen("gatehouse-", "gatehouse_", 1),
                "cannot appear",
            ),
            (typo.clone(), "checksum does not match"),
        ];
        for (input, expected) in cases {
            let error = CheckedApiKey::parse(&input, "GATEHOUSE_API_KEY")
                .expect_err(&input)
                .to_string();
            assert!(
                error.starts_with("GATEHOUSE_API_KEY is not a well-formed API key"),
                "{error}"
            );
            assert!(error.contains(expected), "{input}: {error}");
            assert!(error.contains("nothing was sent"), "{error}");
            assert!(
                !error.contains(&input[10..]),
                "the message quotes the key: {error}"
            );
        }
    }

    #[test]
    fn a_token_is_fresh_until_a_minute_or_a_tenth_of_its_lifetime_is_left() {
        let obtained = at("2030-01-01T00:00:00Z");
        // One hour: a tenth is 6 minutes, more than the minute.
        let expires = at("2030-01-01T01:00:00Z");
        assert!(is_fresh(obtained, expires, obtained));
        assert!(is_fresh(obtained, expires, at("2030-01-01T00:54:00Z")));
        assert!(!is_fresh(obtained, expires, at("2030-01-01T00:54:01Z")));
        assert!(!is_fresh(obtained, expires, expires));
        assert!(!is_fresh(obtained, expires, at("2030-01-01T02:00:00Z")));
        // Five minutes: a tenth is 30 s, so the minute decides.
        let short = at("2030-01-01T00:05:00Z");
        assert!(is_fresh(obtained, short, at("2030-01-01T00:04:00Z")));
        assert!(!is_fresh(obtained, short, at("2030-01-01T00:04:01Z")));
        // A token that lives less than a minute is never fresh.
        assert!(!is_fresh(obtained, at("2030-01-01T00:00:30Z"), obtained));
    }

    fn token_response(token: &str, expires_in: u64) -> TokenResponse {
        serde_json::from_value(serde_json::json!({
            "access_token": token, "token_type": "Bearer", "expires_in": expires_in,
        }))
        .expect("token response")
    }

    fn checked(key: &SecretString) -> CheckedApiKey {
        CheckedApiKey::parse(key.expose_secret(), "the key").expect("well-formed")
    }

    #[test]
    fn file_names_hash_url_and_the_whole_key_and_reveal_neither() {
        let (key, id) = sample_key();
        let key = checked(&key);
        // A second secret of the same key id, as after a rotation.
        let rotated = checked(&gatehouse_tokens::generate_api_key(id).full);
        let name = TokenCache::file_name("https://gh.example", &key);
        assert_eq!(name.len(), 64 + ".json".len());
        assert!(
            name.trim_end_matches(".json")
                .chars()
                .all(|c| c.is_ascii_hexdigit())
        );
        assert!(!name.contains(&id.simple().to_string()) && !name.contains("gh.example"));
        // Stable, and a trailing slash on the URL does not matter...
        assert_eq!(name, TokenCache::file_name("https://gh.example/", &key));
        // ...but the URL and the secret do, not only the key id.
        assert_ne!(name, TokenCache::file_name("https://other.example", &key));
        assert_ne!(name, TokenCache::file_name("https://gh.example", &rotated));
    }

    #[test]
    fn the_cache_file_is_private_and_never_holds_the_key() -> anyhow::Result<()> {
        let dir = tempfile::tempdir()?;
        let cache = TokenCache::in_config_dir(dir.path().join("gatehouse"));
        let (key, id) = sample_key();
        let checked_key = checked(&key);
        let now = at("2030-01-01T00:00:00Z");
        let token = CachedToken::new(
            "http://127.0.0.1:8080",
            &token_response("eyJ.the-access-token.sig", 3600),
            now,
        )?;
        cache.save(&checked_key, &token)?;
        let path = cache.path("http://127.0.0.1:8080", &checked_key);
        let text = std::fs::read_to_string(&path)?;
        assert!(text.contains("eyJ.the-access-token.sig"), "{text}");
        let key = key.expose_secret();
        let secret_part = &key[API_KEY_PREFIX.len() + 33..];
        assert!(!text.contains(key) && !text.contains(secret_part), "{text}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(
                std::fs::metadata(&path)?.permissions().mode() & 0o777,
                0o600
            );
            assert_eq!(
                std::fs::metadata(dir.path().join("gatehouse").join(CACHE_DIR))?
                    .permissions()
                    .mode()
                    & 0o777,
                0o700
            );
        }
        let loaded = cache
            .load("http://127.0.0.1:8080", &checked_key)
            .expect("cached");
        assert_eq!(
            loaded.access_token.expose_secret(),
            "eyJ.the-access-token.sig"
        );
        assert_eq!(loaded.obtained_at, now);
        assert_eq!(loaded.expires_at, at("2030-01-01T01:00:00Z"));
        assert!(loaded.is_fresh(now) && !loaded.is_fresh(at("2030-01-01T00:55:00Z")));
        // Another key, another secret of the same key (a rotation) or another gateway has
        // no token; a damaged file is no token either.
        let other = checked(&gatehouse_tokens::generate_api_key(Uuid::new_v4()).full);
        let rotated = checked(&gatehouse_tokens::generate_api_key(id).full);
        assert!(cache.load("http://127.0.0.1:8080", &other).is_none());
        assert!(cache.load("http://127.0.0.1:8080", &rotated).is_none());
        assert!(cache.load("http://127.0.0.1:9090", &checked_key).is_none());
        std::fs::write(&path, b"{damaged")?;
        assert!(cache.load("http://127.0.0.1:8080", &checked_key).is_none());
        Ok(())
    }

    #[test]
    fn only_explicit_values_turn_the_cache_off() {
        assert!(cache_disabled(Some("off")) && cache_disabled(Some(" OFF ")));
        assert!(cache_disabled(Some("0")) && cache_disabled(Some("false")));
        assert!(!cache_disabled(None) && !cache_disabled(Some("")) && !cache_disabled(Some("on")));
    }
}
