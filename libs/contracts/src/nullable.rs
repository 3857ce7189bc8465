//! `Option<Option<T>>` fields that tell an absent field (leave alone) from `null`
//! (remove): `#[serde(default, skip_serializing_if = "Option::is_none", deserialize_with =
//! "gatehouse_contracts::nullable::deserialize")]`. Plain serde reads both as `None`.

use serde::{Deserialize, Deserializer};

/// Reads a present field, `null` included, as `Some(..)`; `#[serde(default)]` makes an
/// absent one `None`.
pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}
