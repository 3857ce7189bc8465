//! Validated names. HTTP and CLI input becomes one of these at the edge; raw strings stop
//! there.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Why a name or description was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the name is empty")]
    Empty,
    /// The name is longer than [`Name::MAX_LEN`] characters.
    #[error("the name is longer than {max} characters")]
    TooLong {
        /// The maximum length.
        max: usize,
    },
    /// The name must start with a letter or a digit.
    #[error("the name must start with a letter or a digit")]
    BadStart,
    /// The name contains a character outside `[A-Za-z0-9._-]`.
    #[error("the name may only contain letters, digits, '.', '_' and '-' (found {found:?})")]
    BadCharacter {
        /// The first offending character.
        found: char,
    },
    /// The name would be ambiguous with an id in `{name_or_id}` paths.
    #[error("the name must not look like an id (a UUID)")]
    LooksLikeId,
    /// The description is too long.
    #[error("the description is longer than {max} characters")]
    DescriptionTooLong {
        /// The maximum length.
        max: usize,
    },
}

/// The name of a principal (user or service account) or of an API key: 1 to 64 characters
/// from `[A-Za-z0-9._-]`, starting with a letter or digit, and not a UUID (paths accept a
/// name or an id in the same place).
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(transparent)]
#[schema(
    pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
    min_length = 1,
    max_length = 64
)]
pub struct Name(
    #[schemars(
        regex(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"),
        length(min = 1, max = 64)
    )]
    String,
);

impl Name {
    /// The longest name accepted.
    pub const MAX_LEN: usize = 64;

    /// Parses a name, refusing anything outside the rules above.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let mut chars = raw.chars();
        let first = chars.next().ok_or(NameError::Empty)?;
        if raw.chars().count() > Self::MAX_LEN {
            return Err(NameError::TooLong { max: Self::MAX_LEN });
        }
        if !first.is_ascii_alphanumeric() {
            return Err(NameError::BadStart);
        }
        if let Some(found) = raw
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(NameError::BadCharacter { found });
        }
        if uuid::Uuid::parse_str(raw).is_ok() {
            return Err(NameError::LooksLikeId);
        }
        Ok(Self(raw.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Name::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for Name {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Free text describing a resource: at most 1,024 characters.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, JsonSchema, utoipa::ToSchema)]
#[serde(transparent)]
#[schema(max_length = 1024)]
pub struct Description(#[schemars(length(max = 1024))] String);

impl Description {
    /// The longest description accepted.
    pub const MAX_LEN: usize = 1024;

    /// Parses a description.
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if raw.chars().count() > Self::MAX_LEN {
            return Err(NameError::DescriptionTooLong { max: Self::MAX_LEN });
        }
        Ok(Self(raw.to_owned()))
    }
}

impl<'de> Deserialize<'de> for Description {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Description::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl AsRef<str> for Description {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["ci-bot", "a", "Nightly_Training.v2", "0day"] {
            assert_eq!(Name::parse(ok).map(|n| n.to_string()), Ok(ok.to_owned()));
        }
    }

    #[test]
    fn refuses_bad_names_with_a_reason() {
        assert_eq!(Name::parse(""), Err(NameError::Empty));
        assert_eq!(Name::parse("-x"), Err(NameError::BadStart));
        assert_eq!(
            Name::parse("a b"),
            Err(NameError::BadCharacter { found: ' ' })
        );
        assert_eq!(
            Name::parse("ci/bot"),
            Err(NameError::BadCharacter { found: '/' })
        );
        assert_eq!(
            Name::parse(&"x".repeat(65)),
            Err(NameError::TooLong { max: 64 })
        );
        assert_eq!(
            Name::parse("6f1c2b9e-2a55-4d0e-9d8e-0c1a5e9f7b21"),
            Err(NameError::LooksLikeId)
        );
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<Name>("\"ok\"").is_ok());
        assert!(serde_json::from_str::<Name>("\"not ok\"").is_err());
        assert!(serde_json::from_str::<Description>(&format!("\"{}\"", "d".repeat(1025))).is_err());
    }
}
