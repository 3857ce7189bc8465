//! The JSON Schemas under `schemas/events/` are generated from the Rust event types and
//! checked in: they are the public contract of the event feed. This test fails when the
//! code and the files drift apart; regenerate with
//! `GATEHOUSE_UPDATE_SCHEMAS=1 cargo test -p gatehouse-readmodels --test schemas`. The
//! list of events is every registered service's (`gatehouse_readmodels::SERVICES`).

use std::collections::BTreeMap;
use std::path::PathBuf;

fn generated() -> BTreeMap<String, String> {
    let mut files = BTreeMap::new();
    for (event_type, version, schema) in gatehouse_readmodels::event_schemas() {
        let mut value = serde_json::to_value(&schema).expect("a schema serializes");
        if let Some(object) = value.as_object_mut() {
            object.insert(
                "title".into(),
                serde_json::Value::String(event_type.to_owned()),
            );
            object.insert(
                "$comment".into(),
                serde_json::Value::String(format!(
                    "Payload of gatehouse.events.{event_type} (schema version {version}); generated from the Rust types, do not edit."
                )),
            );
        }
        let mut text = serde_json::to_string_pretty(&value).expect("json");
        text.push('\n');
        files.insert(format!("{event_type}.v{version}.json"), text);
    }
    files
}

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas/events")
}

#[test]
fn checked_in_event_schemas_match_the_code() {
    let generated = generated();
    if std::env::var_os("GATEHOUSE_UPDATE_SCHEMAS").is_some() {
        std::fs::create_dir_all(dir()).expect("create schemas/events");
        for entry in std::fs::read_dir(dir())
            .expect("read schemas/events")
            .flatten()
        {
            std::fs::remove_file(entry.path()).expect("remove stale schema");
        }
        for (name, text) in &generated {
            std::fs::write(dir().join(name), text).expect("write schema");
        }
        return;
    }
    let mut on_disk = BTreeMap::new();
    for entry in std::fs::read_dir(dir())
        .expect("schemas/events exists")
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        on_disk.insert(
            name,
            std::fs::read_to_string(entry.path()).expect("read schema"),
        );
    }
    let missing: Vec<_> = generated
        .keys()
        .filter(|k| !on_disk.contains_key(*k))
        .collect();
    let stale: Vec<_> = on_disk
        .keys()
        .filter(|k| !generated.contains_key(*k))
        .collect();
    let changed: Vec<_> = generated
        .iter()
        .filter(|(k, v)| on_disk.get(*k).is_some_and(|d| d != *v))
        .map(|(k, _)| k)
        .collect();
    assert!(
        missing.is_empty() && stale.is_empty() && changed.is_empty(),
        "schemas/events drifted from the code (missing {missing:?}, stale {stale:?}, changed {changed:?}); \
         event schemas are a public contract: add a new schema version rather than changing one, then run \
         GATEHOUSE_UPDATE_SCHEMAS=1 cargo test -p gatehouse-readmodels --test schemas"
    );
}

#[test]
fn every_event_type_is_named_after_an_aggregate_of_its_service() {
    for service in gatehouse_readmodels::SERVICES {
        let aggregates: Vec<&str> = (service.projections)()
            .iter()
            .map(|p| p.aggregate())
            .collect();
        for (event_type, _, _) in (service.events)() {
            let aggregate = event_type.split('.').next().unwrap_or_default();
            assert!(
                aggregates.contains(&aggregate),
                "{event_type} of {} is not under one of its aggregates {aggregates:?}",
                service.service
            );
        }
    }
}
