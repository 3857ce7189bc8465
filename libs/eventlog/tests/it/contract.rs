//! Each contract is an async function over [`Stores`]; `both!` runs it in memory and on
//! Postgres.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_eventlog::feed::{Ack, FeedError};
use gatehouse_eventlog::{
    AppendError, ExpectedVersion, FailureKind, ListQuery, ProjectionRunner, ProjectorError,
    SecretOp, TimeBound, UniqueClaim, ViewDoc,
};
use gatehouse_eventlog::{Delivery, IdempotencyRecord};
use serde_json::json;

use crate::support::{
    CountingProjection, OlderBuild, Stores, VIEW_KIND, append, bumps, deliveries, event,
    new_stream, now,
};

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn in_memory() -> anyhow::Result<()> {
                super::$name(crate::support::Stores::memory()).await
            }
            #[tokio::test]
            async fn on_postgres() -> anyhow::Result<()> {
                super::$name(crate::support::Stores::postgres().await?).await
            }
        }
    };
}

both!(appends_follow_the_expected_version_and_a_refused_append_writes_nothing);
async fn appends_follow_the_expected_version_and_a_refused_append_writes_nothing(
    s: Stores,
) -> anyhow::Result<()> {
    let stream = new_stream();
    let first = s
        .log
        .append(append(&stream, ExpectedVersion::NoStream, bumps(2)))
        .await?;
    assert_eq!(first.version, 2);
    let second = s
        .log
        .append(append(&stream, ExpectedVersion::Exactly(2), bumps(1)))
        .await?;
    assert_eq!(second.version, 3);
    assert!(second.position > first.position);

    let mut stale = append(&stream, ExpectedVersion::Exactly(2), bumps(1));
    stale.claims.push(UniqueClaim::Claim {
        scope: "name".into(),
        value: "stale".into(),
    });
    stale.secrets.push(SecretOp::Put {
        name: "slot".into(),
        value: b"x".to_vec(),
    });
    match s.log.append(stale).await {
        Err(AppendError::WrongExpectedVersion {
            expected: 2,
            actual: 3,
            ..
        }) => {}
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
    let events = s.log.read_stream(&stream, 0).await?;
    assert_eq!(
        events.iter().map(|e| e.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(s.log.claim_holder("name", "stale").await?, None);
    assert_eq!(s.log.read_secret(&stream, "slot").await?, None);
    assert_eq!(s.log.read_stream(&stream, 2).await?.len(), 1);
    // A new stream must not exist yet.
    assert!(matches!(
        s.log
            .append(append(&stream, ExpectedVersion::NoStream, bumps(1)))
            .await,
        Err(AppendError::WrongExpectedVersion { .. })
    ));
    Ok(())
}

both!(of_sixteen_concurrent_appends_at_one_version_exactly_one_wins);
async fn of_sixteen_concurrent_appends_at_one_version_exactly_one_wins(
    s: Stores,
) -> anyhow::Result<()> {
    let stream = new_stream();
    s.log
        .append(append(&stream, ExpectedVersion::NoStream, bumps(1)))
        .await?;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let log = s.log.clone();
        let stream = stream.clone();
        tasks.push(tokio::spawn(async move {
            log.append(append(&stream, ExpectedVersion::Exactly(1), bumps(1)))
                .await
        }));
    }
    let mut wins = 0;
    let mut conflicts = 0;
    for task in tasks {
        match task.await? {
            Ok(_) => wins += 1,
            Err(AppendError::WrongExpectedVersion { .. }) => conflicts += 1,
            Err(other) => panic!("a lost race must be a conflict, got {other:?}"),
        }
    }
    assert_eq!((wins, conflicts), (1, 15));
    let versions: Vec<i64> = s
        .log
        .read_stream(&stream, 0)
        .await?
        .iter()
        .map(|e| e.version)
        .collect();
    assert_eq!(versions, vec![1, 2]);
    Ok(())
}

both!(an_idempotency_key_stores_the_first_outcome_and_refuses_a_second_append);
async fn an_idempotency_key_stores_the_first_outcome_and_refuses_a_second_append(
    s: Stores,
) -> anyhow::Result<()> {
    let stream = new_stream();
    let mut first = append(&stream, ExpectedVersion::NoStream, bumps(1));
    first.idempotency = Some(IdempotencyRecord {
        key: "caller:k1".into(),
        fingerprint: "f".into(),
        response: json!({"id": 7}),
        taken_at: now(),
        expires_at: None,
    });
    let appended = s.log.append(first).await?;

    let other = new_stream();
    let mut retry = append(&other, ExpectedVersion::NoStream, bumps(1));
    retry.idempotency = Some(IdempotencyRecord {
        key: "caller:k1".into(),
        fingerprint: "f".into(),
        response: json!({"id": 8}),
        taken_at: now(),
        expires_at: None,
    });
    assert!(matches!(
        s.log.append(retry).await,
        Err(AppendError::IdempotencyKeyTaken)
    ));
    assert!(
        s.log.read_stream(&other, 0).await?.is_empty(),
        "nothing written by the retry"
    );

    let stored = s
        .log
        .idempotent_outcome("caller:k1")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no outcome"))?;
    assert_eq!(stored.response, json!({"id": 7}));
    assert_eq!(
        (stored.stream_id, stored.version, stored.position),
        (stream, appended.version, appended.position)
    );
    assert_eq!(s.log.idempotent_outcome("caller:other").await?, None);
    Ok(())
}

both!(a_unique_claim_belongs_to_one_stream_until_it_releases_it);
async fn a_unique_claim_belongs_to_one_stream_until_it_releases_it(
    s: Stores,
) -> anyhow::Result<()> {
    let (a, b) = (new_stream(), new_stream());
    let claim = || UniqueClaim::Claim {
        scope: "principal_name".into(),
        value: "ci-bot".into(),
    };
    let release = || UniqueClaim::Release {
        scope: "principal_name".into(),
        value: "ci-bot".into(),
    };
    let mut req = append(&a, ExpectedVersion::NoStream, bumps(1));
    req.claims.push(claim());
    s.log.append(req).await?;

    let mut req = append(&b, ExpectedVersion::NoStream, bumps(1));
    req.claims.push(claim());
    assert!(matches!(
        s.log.append(req).await,
        Err(AppendError::UniqueViolation { .. })
    ));
    assert!(s.log.read_stream(&b, 0).await?.is_empty());

    // A non-holder's release does nothing.
    let mut req = append(&b, ExpectedVersion::NoStream, bumps(1));
    req.claims.push(release());
    s.log.append(req).await?;
    assert_eq!(
        s.log.claim_holder("principal_name", "ci-bot").await?,
        Some(a.clone())
    );

    let mut req = append(&a, ExpectedVersion::Exactly(1), bumps(1));
    req.claims.push(release());
    s.log.append(req).await?;
    let mut req = append(&b, ExpectedVersion::Exactly(1), bumps(1));
    req.claims.push(claim());
    s.log.append(req).await?;
    assert_eq!(
        s.log.claim_holder("principal_name", "ci-bot").await?,
        Some(b)
    );
    Ok(())
}

both!(a_stream_releases_all_it_holds_in_a_scope_without_naming_the_values);
async fn a_stream_releases_all_it_holds_in_a_scope_without_naming_the_values(
    s: Stores,
) -> anyhow::Result<()> {
    let (a, b) = (new_stream(), new_stream());
    let claim = |scope: &str, value: &str| UniqueClaim::Claim {
        scope: scope.into(),
        value: value.into(),
    };
    let release_all = || UniqueClaim::ReleaseAll {
        scope: "user_code".into(),
    };
    let mut req = append(&a, ExpectedVersion::NoStream, bumps(1));
    req.claims.extend([
        claim("user_code", "one"),
        claim("user_code", "two"),
        claim("principal_name", "keep"),
    ]);
    s.log.append(req).await?;
    let mut req = append(&b, ExpectedVersion::NoStream, bumps(1));
    req.claims.push(claim("user_code", "three"));
    s.log.append(req).await?;

    // Another stream's release-all leaves a's claims alone.
    let mut req = append(&b, ExpectedVersion::Exactly(1), bumps(1));
    req.claims.push(release_all());
    s.log.append(req).await?;
    assert_eq!(
        s.log.claim_holder("user_code", "one").await?,
        Some(a.clone())
    );
    assert_eq!(s.log.claim_holder("user_code", "three").await?, None);

    let mut req = append(&a, ExpectedVersion::Exactly(1), bumps(1));
    req.claims.push(release_all());
    s.log.append(req).await?;
    assert_eq!(s.log.claim_holder("user_code", "one").await?, None);
    assert_eq!(s.log.claim_holder("user_code", "two").await?, None);
    assert_eq!(
        s.log.claim_holder("principal_name", "keep").await?,
        Some(a),
        "other scopes are untouched"
    );
    // Released values are free for anyone.
    let mut req = append(&b, ExpectedVersion::Exactly(2), bumps(1));
    req.claims.push(claim("user_code", "one"));
    s.log.append(req).await?;
    assert_eq!(s.log.claim_holder("user_code", "one").await?, Some(b));
    Ok(())
}

both!(secret_slots_change_with_their_append_only);
async fn secret_slots_change_with_their_append_only(s: Stores) -> anyhow::Result<()> {
    let stream = new_stream();
    let mut req = append(&stream, ExpectedVersion::NoStream, bumps(1));
    req.secrets.push(SecretOp::Put {
        name: "password_hash".into(),
        value: b"one".to_vec(),
    });
    s.log.append(req).await?;
    assert_eq!(
        s.log.read_secret(&stream, "password_hash").await?,
        Some(b"one".to_vec())
    );

    let mut req = append(&stream, ExpectedVersion::Exactly(1), bumps(1));
    req.secrets.push(SecretOp::Put {
        name: "password_hash".into(),
        value: b"two".to_vec(),
    });
    s.log.append(req).await?;
    let mut stale = append(&stream, ExpectedVersion::Exactly(1), bumps(1));
    stale.secrets.push(SecretOp::Put {
        name: "password_hash".into(),
        value: b"three".to_vec(),
    });
    assert!(s.log.append(stale).await.is_err());
    assert_eq!(
        s.log.read_secret(&stream, "password_hash").await?,
        Some(b"two".to_vec())
    );

    let mut req = append(&stream, ExpectedVersion::Exactly(2), bumps(1));
    req.secrets.push(SecretOp::Delete {
        name: "password_hash".into(),
    });
    s.log.append(req).await?;
    assert_eq!(s.log.read_secret(&stream, "password_hash").await?, None);
    Ok(())
}

both!(read_all_returns_every_committed_event_in_position_order);
async fn read_all_returns_every_committed_event_in_position_order(s: Stores) -> anyhow::Result<()> {
    for _ in 0..5 {
        s.log
            .append(append(&new_stream(), ExpectedVersion::NoStream, bumps(3)))
            .await?;
    }
    let all = s.log.read_all(0, 100).await?;
    assert_eq!(all.len(), 15);
    assert!(all.windows(2).all(|w| w[0].position < w[1].position));
    let tail = s.log.read_all(all[9].position, 100).await?;
    assert_eq!(tail.len(), 5);
    assert_eq!(s.log.read_all(0, 4).await?.len(), 4);
    Ok(())
}

both!(projections_skip_redeliveries_fill_gaps_from_the_log_and_rebuild_identically);
async fn projections_skip_redeliveries_fill_gaps_from_the_log_and_rebuild_identically(
    s: Stores,
) -> anyhow::Result<()> {
    let runner = ProjectionRunner::new("test-projector", s.views.clone(), s.log.clone())
        .with(Arc::new(CountingProjection));
    let (a, b, c) = (new_stream(), new_stream(), new_stream());
    s.log
        .append(append(&a, ExpectedVersion::NoStream, bumps(2)))
        .await?;
    s.log
        .append(append(
            &b,
            ExpectedVersion::NoStream,
            vec![event("bumped", "b1")],
        ))
        .await?;
    s.log
        .append(append(
            &b,
            ExpectedVersion::Exactly(1),
            vec![event("noted", "-"), event("bumped", "b3")],
        ))
        .await?;
    s.log
        .append(append(&c, ExpectedVersion::NoStream, bumps(1)))
        .await?;
    s.log
        .append(append(
            &c,
            ExpectedVersion::Exactly(1),
            vec![event("deleted", "-")],
        ))
        .await?;
    let all = s.log.read_all(0, 100).await?;

    // Deliver everything, then deliver it all again (a redelivery): nothing changes.
    runner.apply_deliveries(deliveries(&all)).await?;
    let query = ListQuery {
        filters: vec![],
        offset: 0,
        limit: 100,
        ..ListQuery::default()
    };
    let once = s.views.list(VIEW_KIND, &query).await?;
    runner.apply_deliveries(deliveries(&all)).await?;
    let twice = s.views.list(VIEW_KIND, &query).await?;
    assert_eq!(once, twice);
    assert_eq!(once.total, 2, "c was deleted: {once:?}");
    let b_doc = s
        .views
        .get(VIEW_KIND, b.id().unwrap_or_default())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no b"))?;
    assert_eq!(b_doc.doc["count"], 2);
    assert_eq!(b_doc.version, 3);
    assert_eq!(s.views.applied_version(&c).await?, Some(2));

    // A gap: a new stream whose version 1 is never delivered, only version 3.
    let d = new_stream();
    s.log
        .append(append(
            &d,
            ExpectedVersion::NoStream,
            vec![
                event("bumped", "d1"),
                event("bumped", "d2"),
                event("bumped", "d3"),
            ],
        ))
        .await?;
    let d_events = s.log.read_stream(&d, 0).await?;
    runner.apply_deliveries(deliveries(&d_events[2..])).await?;
    let d_doc = s
        .views
        .get(VIEW_KIND, d.id().unwrap_or_default())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no d"))?;
    assert_eq!(
        d_doc.doc["count"], 3,
        "versions 1 and 2 were filled from the log"
    );
    assert_eq!(d_doc.doc["label"], "d3");

    // Drop everything and rebuild from the log: identical rows.
    let before = s.views.list(VIEW_KIND, &query).await?;
    let replayed = runner.rebuild().await?;
    assert_eq!(replayed, 10);
    let after = s.views.list(VIEW_KIND, &query).await?;
    assert_eq!(before, after);
    Ok(())
}

/// One counter per label, each its own stream, projected; their ids in creation order.
async fn counters(s: &Stores, labels: &[&str]) -> anyhow::Result<Vec<uuid::Uuid>> {
    let runner = ProjectionRunner::new("test-projector", s.views.clone(), s.log.clone())
        .with(Arc::new(CountingProjection));
    let mut ids = Vec::new();
    for label in labels {
        let stream = new_stream();
        s.log
            .append(append(
                &stream,
                ExpectedVersion::NoStream,
                vec![event("bumped", label)],
            ))
            .await?;
        ids.push(stream.id().unwrap_or_default());
    }
    runner
        .apply_deliveries(deliveries(&s.log.read_all(0, 100).await?))
        .await?;
    Ok(ids)
}

both!(listing_filters_on_document_fields_in_creation_order);
async fn listing_filters_on_document_fields_in_creation_order(s: Stores) -> anyhow::Result<()> {
    let labels = ["even", "odd", "even", "odd", "even", "odd"];
    let ids = counters(&s, &labels).await?;
    let even = s
        .views
        .list(
            VIEW_KIND,
            &ListQuery {
                filters: vec![("label".into(), json!("even"))],
                offset: 0,
                limit: 2,
                ..ListQuery::default()
            },
        )
        .await?;
    assert_eq!(even.total, 3);
    let ids_found: Vec<_> = even.items.iter().map(|d| d.id).collect();
    assert_eq!(ids_found, vec![ids[0], ids[2]]);
    let past_the_end = s
        .views
        .list(
            VIEW_KIND,
            &ListQuery {
                filters: vec![],
                offset: 10,
                limit: 5,
                ..ListQuery::default()
            },
        )
        .await?;
    assert_eq!((past_the_end.items.len(), past_the_end.total), (0, 6));
    let found = s
        .views
        .find(VIEW_KIND, "label", &json!("odd"))
        .await?
        .ok_or_else(|| anyhow::anyhow!("none"))?;
    assert_eq!(found.id, ids[1]);
    Ok(())
}

both!(listing_bounds_timestamp_fields_and_lists_newest_first);
async fn listing_bounds_timestamp_fields_and_lists_newest_first(s: Stores) -> anyhow::Result<()> {
    // The label is a timestamp (with and without fractional seconds), or not one at all.
    let labels = [
        "2026-01-01T00:00:00Z",
        "2026-01-01T00:00:00.500Z",
        "2026-01-01T00:00:01Z",
        "not a time",
        "2026-01-01T00:00:02.250+00:00",
    ];
    let ids = counters(&s, &labels).await?;
    let at = |s: &str| -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
        Ok(chrono::DateTime::parse_from_rfc3339(s)?.to_utc())
    };
    let list = |time_bounds: Vec<TimeBound>, newest_first: bool, offset: u64, limit: u64| {
        let views = s.views.clone();
        async move {
            let query = ListQuery {
                time_bounds,
                newest_first,
                offset,
                limit,
                ..ListQuery::default()
            };
            let page = views.list(VIEW_KIND, &query).await?;
            anyhow::Ok((
                page.items.iter().map(|d| d.id).collect::<Vec<_>>(),
                page.total,
            ))
        }
    };
    let half = at("2026-01-01T00:00:00.500Z")?;
    let label = || "label".to_owned();

    // At or before: the instant itself included; a field that is no time never matches.
    let (found, total) = list(vec![TimeBound::AtOrBefore(label(), half)], false, 0, 10).await?;
    assert_eq!((found, total), (vec![ids[0], ids[1]], 2));
    // After: the instant excluded.
    let (found, total) = list(vec![TimeBound::After(label(), half)], false, 0, 10).await?;
    assert_eq!((found, total), (vec![ids[2], ids[4]], 2));
    // Both bounds, newest first, paged: the total counts every match.
    let bounds = vec![
        TimeBound::After(label(), at("2025-12-31T23:59:59Z")?),
        TimeBound::AtOrBefore(label(), at("2026-01-01T00:00:02Z")?),
    ];
    let (found, total) = list(bounds.clone(), true, 0, 2).await?;
    assert_eq!((found, total), (vec![ids[2], ids[1]], 3));
    let (found, total) = list(bounds.clone(), true, 2, 2).await?;
    assert_eq!((found, total), (vec![ids[0]], 3));
    let (found, total) = list(bounds, true, 5, 2).await?;
    assert_eq!((found, total), (vec![], 3), "past the end");
    // No bound, newest first: the reverse of creation order.
    let (found, _) = list(vec![], true, 0, 10).await?;
    assert_eq!(found, ids.iter().rev().copied().collect::<Vec<_>>());
    Ok(())
}

both!(concurrent_first_uses_of_an_idempotency_key_store_exactly_one);
async fn concurrent_first_uses_of_an_idempotency_key_store_exactly_one(
    s: Stores,
) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for i in 0..8 {
        let log = s.log.clone();
        tasks.push(tokio::spawn(async move {
            let mut request = append(&new_stream(), ExpectedVersion::NoStream, bumps(1));
            request.idempotency = Some(IdempotencyRecord {
                key: "race".into(),
                fingerprint: "fp".into(),
                response: json!(i),
                taken_at: now(),
                expires_at: None,
            });
            log.append(request).await
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        match task.await? {
            Ok(appended) => winners.push(appended),
            Err(AppendError::IdempotencyKeyTaken) => {}
            Err(other) => panic!("a lost race must be IdempotencyKeyTaken, got {other:?}"),
        }
    }
    assert_eq!(winners.len(), 1);
    let stored = s
        .log
        .idempotent_outcome("race")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no outcome stored"))?;
    assert_eq!(
        (stored.stream_id, stored.version, stored.position),
        (winners[0].stream_id.clone(), 1, winners[0].position)
    );
    Ok(())
}

both!(streams_racing_for_one_unique_value_leave_one_holder);
async fn streams_racing_for_one_unique_value_leave_one_holder(s: Stores) -> anyhow::Result<()> {
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let log = s.log.clone();
        tasks.push(tokio::spawn(async move {
            let stream = new_stream();
            let mut request = append(&stream, ExpectedVersion::NoStream, bumps(1));
            request.claims.push(UniqueClaim::Claim {
                scope: "name".into(),
                value: "contested".into(),
            });
            log.append(request).await.map(|_| stream)
        }));
    }
    let mut winners = Vec::new();
    let mut losers = Vec::new();
    for task in tasks {
        match task.await {
            Ok(Ok(stream)) => winners.push(stream),
            Ok(Err(AppendError::UniqueViolation { .. })) => losers.push(()),
            Ok(Err(other)) => panic!("a lost race must be a unique violation, got {other:?}"),
            Err(join) => return Err(join.into()),
        }
    }
    assert_eq!((winners.len(), losers.len()), (1, 7));
    assert_eq!(
        s.log.claim_holder("name", "contested").await?.as_ref(),
        winners.first()
    );
    assert_eq!(
        s.log.read_all(0, 100).await?.len(),
        1,
        "losers wrote nothing"
    );
    Ok(())
}

both!(waiting_for_a_projection_returns_once_it_is_applied_or_at_the_timeout);
async fn waiting_for_a_projection_returns_once_it_is_applied_or_at_the_timeout(
    s: Stores,
) -> anyhow::Result<()> {
    let runner = ProjectionRunner::new("test-projector", s.views.clone(), s.log.clone())
        .with(Arc::new(CountingProjection));
    let stream = new_stream();
    s.log
        .append(append(&stream, ExpectedVersion::NoStream, bumps(1)))
        .await?;
    assert!(
        !s.views
            .wait_applied(&stream, 1, Duration::from_millis(50))
            .await?
    );

    let waiter = {
        let views = s.views.clone();
        let stream = stream.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let reached = views
                .wait_applied(&stream, 1, Duration::from_secs(10))
                .await?;
            anyhow::Ok((reached, started.elapsed()))
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let events = s.log.read_stream(&stream, 0).await?;
    runner.apply_deliveries(deliveries(&events)).await?;
    let (reached, waited) = waiter.await??;
    assert!(reached);
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    assert!(s.views.wait_applied(&stream, 1, Duration::ZERO).await?);
    Ok(())
}

both!(read_events_finds_committed_events_by_id_and_nothing_else);
async fn read_events_finds_committed_events_by_id_and_nothing_else(
    s: Stores,
) -> anyhow::Result<()> {
    let stream = new_stream();
    s.log
        .append(append(&stream, ExpectedVersion::NoStream, bumps(3)))
        .await?;
    let all = s.log.read_stream(&stream, 0).await?;
    let wanted = [all[2].event_id, uuid::Uuid::new_v4(), all[0].event_id];
    let found = s.log.read_events(&wanted).await?;
    assert_eq!(
        found,
        vec![all[0].clone(), all[2].clone()],
        "in position order"
    );
    assert!(s.log.read_events(&[]).await?.is_empty());
    Ok(())
}

/// A feed that hands out fixed deliveries: what a bus anyone could publish on might deliver.
/// Records the sequences it acknowledges.
#[derive(Clone, Default)]
struct Acks(Arc<std::sync::Mutex<Vec<u64>>>);

impl Acks {
    fn delivery(
        &self,
        event: gatehouse_contracts::envelope::RecordedEvent,
        sequence: u64,
    ) -> Delivery {
        Delivery::new(
            event,
            sequence,
            Some(Box::new(Acked(self.clone(), sequence))),
        )
    }
    fn acked(&self) -> Vec<u64> {
        let mut acked = self.0.lock().unwrap_or_else(|p| p.into_inner()).clone();
        acked.sort_unstable();
        acked
    }
}

struct Acked(Acks, u64);

#[async_trait::async_trait]
impl Ack for Acked {
    async fn ack(self: Box<Self>) -> Result<(), FeedError> {
        self.0
            .0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(self.1);
        Ok(())
    }
}

both!(a_runner_folds_the_logs_copy_and_refuses_what_the_log_does_not_hold);
async fn a_runner_folds_the_logs_copy_and_refuses_what_the_log_does_not_hold(
    s: Stores,
) -> anyhow::Result<()> {
    let runner = ProjectionRunner::new("test-projector", s.views.clone(), s.log.clone())
        .with(Arc::new(CountingProjection));
    let (stream, moved) = (new_stream(), new_stream());
    s.log
        .append(append(&stream, ExpectedVersion::NoStream, bumps(2)))
        .await?;
    s.log
        .append(append(&moved, ExpectedVersion::NoStream, bumps(2)))
        .await?;
    let logged = s.log.read_stream(&stream, 0).await?;
    let moved_logged = s.log.read_stream(&moved, 0).await?;
    // `moved` is projected up to version 1 first.
    let acks = Acks::default();
    runner
        .apply_deliveries(vec![acks.delivery(moved_logged[0].clone(), 1)])
        .await?;

    // As the bus carries it: the JSON envelope, decoded again.
    let genuine: gatehouse_contracts::envelope::RecordedEvent =
        serde_json::from_slice(&serde_json::to_vec(&logged[0])?)?;
    let mut forged = logged[0].clone();
    forged.event_id = uuid::Uuid::new_v4();
    forged.stream_id = new_stream();
    let mut tampered = logged[1].clone();
    tampered.payload = json!({ "label": "edited on the bus" });
    // A real event whose bus copy names a stream of its own choosing.
    let mut redirected = moved_logged[1].clone();
    redirected.stream_id = forged.stream_id.clone();
    redirected.payload = json!({ "label": "redirected" });
    runner
        .apply_deliveries(vec![
            acks.delivery(genuine, 2),
            acks.delivery(forged.clone(), 3),
            acks.delivery(tampered, 4),
            acks.delivery(redirected, 5),
        ])
        .await?;

    let docs = s
        .views
        .list(
            VIEW_KIND,
            &ListQuery {
                limit: 100,
                ..ListQuery::default()
            },
        )
        .await?;
    let mut by_id: Vec<_> = docs.items.iter().map(|d| (d.id, d.doc.clone())).collect();
    by_id.sort_by_key(|(id, _)| *id);
    let mut expected = vec![
        (
            stream.id().unwrap_or_default(),
            json!({ "count": 2, "label": "x", "last_version": 2 }),
        ),
        (
            moved.id().unwrap_or_default(),
            json!({ "count": 2, "label": "x", "last_version": 2 }),
        ),
    ];
    expected.sort_by_key(|(id, _)| *id);
    assert_eq!(
        by_id, expected,
        "the log's copies are folded, onto the log's streams; the forged event folds nothing"
    );
    assert_eq!(
        acks.acked(),
        vec![1, 2, 3, 4, 5],
        "the refused event is acknowledged too, so that it does not come again"
    );
    Ok(())
}

both!(a_first_event_folds_onto_nothing_and_a_copy_claiming_to_be_first_gets_its_document);
/// The runner loads no document for a stream whose only event in a batch is its first
/// (it folds onto nothing); the log's copy decides, though, so a bus copy that claims to be
/// a first event when the log holds a later one gets its stream's document loaded.
async fn a_first_event_folds_onto_nothing_and_a_copy_claiming_to_be_first_gets_its_document(
    s: Stores,
) -> anyhow::Result<()> {
    let runner = ProjectionRunner::new("test-projector", s.views.clone(), s.log.clone())
        .with(Arc::new(CountingProjection));
    let stream = new_stream();
    let id = stream.id().unwrap_or_default();
    s.log
        .append(append(&stream, ExpectedVersion::NoStream, bumps(2)))
        .await?;
    let logged = s.log.read_stream(&stream, 0).await?;
    let acks = Acks::default();
    runner
        .apply_deliveries(vec![acks.delivery(logged[0].clone(), 1)])
        .await?;
    runner
        .apply_deliveries(vec![acks.delivery(logged[1].clone(), 2)])
        .await?;
    let counted = |doc: Option<ViewDoc>| doc.map(|d| (d.version, d.doc["count"].clone()));
    assert_eq!(
        counted(s.views.get(VIEW_KIND, id).await?),
        Some((2, json!(2)))
    );

    // A redelivered first event changes nothing.
    runner
        .apply_deliveries(vec![acks.delivery(logged[0].clone(), 1)])
        .await?;
    assert_eq!(
        counted(s.views.get(VIEW_KIND, id).await?),
        Some((2, json!(2))),
        "a redelivered first event is skipped"
    );

    // Version 3, whose bus copy says it is version 1: folded onto the stored document.
    s.log
        .append(append(&stream, ExpectedVersion::Exactly(2), bumps(1)))
        .await?;
    let third = s.log.read_stream(&stream, 2).await?;
    let mut claims_first = third[0].clone();
    claims_first.version = 1;
    runner
        .apply_deliveries(vec![acks.delivery(claims_first, 3)])
        .await?;
    assert_eq!(
        counted(s.views.get(VIEW_KIND, id).await?),
        Some((3, json!(3))),
        "the log's version 3 is folded onto version 2's document"
    );
    Ok(())
}

both!(an_expired_idempotency_outcome_frees_its_key_and_is_purged);
async fn an_expired_idempotency_outcome_frees_its_key_and_is_purged(
    s: Stores,
) -> anyhow::Result<()> {
    let t0 = now();
    let at = |seconds: i64| t0 + chrono::Duration::seconds(seconds);
    let record = |response: i64, taken_at, expires_at| IdempotencyRecord {
        key: "caller:sealed".into(),
        fingerprint: "f".into(),
        response: json!(response),
        taken_at,
        expires_at,
    };
    let first = new_stream();
    let mut request = append(&first, ExpectedVersion::NoStream, bumps(1));
    request.idempotency = Some(record(1, t0, Some(at(10))));
    s.log.append(request).await?;
    let mut forever = append(&new_stream(), ExpectedVersion::NoStream, bumps(1));
    forever.idempotency = Some(IdempotencyRecord {
        key: "caller:forever".into(),
        ..record(0, t0, None)
    });
    s.log.append(forever).await?;

    // Before its expiry the outcome holds the key.
    let mut early = append(&new_stream(), ExpectedVersion::NoStream, bumps(1));
    early.idempotency = Some(record(2, at(9), Some(at(19))));
    assert!(matches!(
        s.log.append(early).await,
        Err(AppendError::IdempotencyKeyTaken)
    ));
    let stored = s
        .log
        .idempotent_outcome("caller:sealed")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no outcome"))?;
    assert_eq!(
        (stored.response.clone(), stored.expires_at),
        (json!(1), Some(at(10)))
    );
    assert!(stored.live_at(at(9)) && !stored.live_at(at(10)));

    // From its expiry on, it is gone for a new request with the same key...
    let second = new_stream();
    let mut late = append(&second, ExpectedVersion::NoStream, bumps(1));
    late.idempotency = Some(record(3, at(10), Some(at(20))));
    s.log.append(late).await?;
    let stored = s
        .log
        .idempotent_outcome("caller:sealed")
        .await?
        .ok_or_else(|| anyhow::anyhow!("no outcome"))?;
    assert_eq!(
        (stored.response, stored.stream_id, stored.expires_at),
        (json!(3), second, Some(at(20)))
    );

    // ...and a purge deletes what expired, never what is kept for good.
    assert_eq!(s.log.purge_idempotency(at(19)).await?, 0);
    assert_eq!(s.log.purge_idempotency(at(20)).await?, 1);
    assert_eq!(s.log.idempotent_outcome("caller:sealed").await?, None);
    assert!(s.log.idempotent_outcome("caller:forever").await?.is_some());
    Ok(())
}

both!(a_writer_answers_with_the_view_its_write_left_whatever_came_after);
async fn a_writer_answers_with_the_view_its_write_left_whatever_came_after(
    s: Stores,
) -> anyhow::Result<()> {
    let clock = Arc::new(gatehouse_contracts::clock::ManualClock::new(now()));
    let writer = gatehouse_eventlog::CommandWriter::new(s.log.clone(), clock);
    let stream = new_stream();
    let mut events = bumps(2);
    events.push(event("deleted", "gone"));
    s.log
        .append(append(&stream, ExpectedVersion::NoStream, events))
        .await?;

    let at_two: serde_json::Value = writer
        .view_at(&CountingProjection, &stream, Some(2))
        .await?;
    assert_eq!(at_two, json!({"count": 2, "label": "x", "last_version": 2}));
    // The latest state has no view (the stream was deleted): that is a failure, not a
    // stale answer.
    let latest = writer
        .view_at::<serde_json::Value>(&CountingProjection, &stream, None)
        .await;
    assert!(latest.is_err(), "{latest:?}");
    Ok(())
}

both!(a_writer_replays_an_outcome_only_until_it_expires);
async fn a_writer_replays_an_outcome_only_until_it_expires(s: Stores) -> anyhow::Result<()> {
    let t0 = now();
    let clock = Arc::new(gatehouse_contracts::clock::ManualClock::new(t0));
    let writer = gatehouse_eventlog::CommandWriter::new(s.log.clone(), clock.clone());
    let idempotency = gatehouse_eventlog::Idempotency::of(None, Some(&"k".to_owned()), "make", &7)
        .ok_or_else(|| anyhow::anyhow!("no idempotency"))?;
    let stream = new_stream();
    let mut request = append(&stream, ExpectedVersion::NoStream, bumps(1));
    request.idempotency = Some(IdempotencyRecord {
        key: "anonymous:k".into(),
        fingerprint: "make:7".into(),
        response: json!("first"),
        taken_at: t0,
        expires_at: Some(t0 + chrono::Duration::seconds(60)),
    });
    s.log.append(request).await?;

    let replayed = writer.replay::<String>(Some(&idempotency)).await?;
    assert_eq!(replayed.map(|a| a.output), Some("first".to_owned()));
    clock.advance(chrono::Duration::seconds(60));
    assert!(writer.replay::<String>(Some(&idempotency)).await?.is_none());
    Ok(())
}

both!(an_unknown_event_is_skipped_and_recorded_and_its_stream_folded_again_after_an_upgrade);
async fn an_unknown_event_is_skipped_and_recorded_and_its_stream_folded_again_after_an_upgrade(
    s: Stores,
) -> anyhow::Result<()> {
    let older = ProjectionRunner::new("test-projector", s.views.clone(), s.log.clone()).with(
        Arc::new(OlderBuild {
            unknown: &["counter.reshaped"],
        }),
    );
    let (a, b) = (new_stream(), new_stream());
    s.log
        .append(append(
            &a,
            ExpectedVersion::NoStream,
            vec![
                event("bumped", "a1"),
                event("reshaped", "a2"),
                event("bumped", "a3"),
            ],
        ))
        .await?;
    s.log
        .append(append(&b, ExpectedVersion::NoStream, bumps(1)))
        .await?;
    let count = |stream: gatehouse_contracts::envelope::StreamId| {
        let views = s.views.clone();
        async move {
            let doc = views
                .get(VIEW_KIND, stream.id().unwrap_or_default())
                .await?
                .ok_or_else(|| anyhow::anyhow!("no document of {stream}"))?;
            anyhow::Ok((doc.doc["count"].as_i64().unwrap_or(0), doc.version))
        }
    };

    // The older build skips the event it does not know and applies the rest of the batch.
    older
        .apply_deliveries(deliveries(&s.log.read_all(0, 100).await?))
        .await?;
    assert_eq!(count(a.clone()).await?, (2, 3), "a3 applied, a2 skipped");
    assert_eq!(count(b.clone()).await?, (1, 1));
    let skipped = s.views.skipped("test-projector").await?;
    assert_eq!(skipped.len(), 1);
    assert_eq!(
        (
            &skipped[0].stream_id,
            skipped[0].version,
            skipped[0].event_type.as_str()
        ),
        (&a, 2, "counter.reshaped")
    );
    let snapshot = s.views.snapshot(&[VIEW_KIND], "test-projector").await?;
    assert_eq!(snapshot.skipped, skipped);
    // Catching up with the same build changes nothing.
    assert_eq!(older.catch_up().await?, 0);
    assert_eq!(s.views.skipped("test-projector").await?, skipped);

    // A known type with a malformed payload is a bug: the batch stops, nothing moves.
    s.log
        .append(append(
            &b,
            ExpectedVersion::Exactly(1),
            vec![event("malformed", "b2")],
        ))
        .await?;
    let b2 = s.log.read_stream(&b, 1).await?;
    let refused = older.apply_deliveries(deliveries(&b2)).await;
    match refused {
        Err(ProjectorError::Projection(error)) => assert_eq!(error.failure, FailureKind::Bug),
        other => anyhow::bail!("a malformed event did not stop the batch: {other:?}"),
    }
    assert_eq!(s.views.applied_version(&b).await?, Some(1));

    // After the upgrade, the new build folds a's stream again from the log: a2 counts.
    let upgraded = ProjectionRunner::new("test-projector", s.views.clone(), s.log.clone())
        .with(Arc::new(CountingProjection));
    assert_eq!(upgraded.catch_up().await?, 1);
    assert_eq!(count(a.clone()).await?, (3, 3));
    assert_eq!(count(b.clone()).await?, (1, 1), "b was not refolded");
    assert!(s.views.skipped("test-projector").await?.is_empty());
    assert_eq!(upgraded.catch_up().await?, 0);

    Ok(())
}

both!(a_stream_folded_again_keeps_the_records_of_events_still_unknown);
async fn a_stream_folded_again_keeps_the_records_of_events_still_unknown(
    s: Stores,
) -> anyhow::Result<()> {
    let runner = |unknown: &'static [&'static str]| {
        ProjectionRunner::new("test-projector", s.views.clone(), s.log.clone())
            .with(Arc::new(OlderBuild { unknown }))
    };
    let stream = new_stream();
    s.log
        .append(append(
            &stream,
            ExpectedVersion::NoStream,
            vec![
                event("bumped", "1"),
                event("reshaped", "2"),
                event("renamed", "3"),
            ],
        ))
        .await?;
    let oldest = runner(&["counter.reshaped", "counter.renamed"]);
    oldest
        .apply_deliveries(deliveries(&s.log.read_all(0, 100).await?))
        .await?;
    let recorded = |skipped: Vec<gatehouse_eventlog::SkippedEvent>| {
        skipped
            .into_iter()
            .map(|s| (s.version, s.event_type))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        recorded(s.views.skipped("test-projector").await?),
        vec![
            (2, "counter.reshaped".to_owned()),
            (3, "counter.renamed".to_owned())
        ]
    );

    // An upgrade that knows one of the two folds the stream again and keeps the other's
    // record (the commit deletes and re-adds the stream's records in one statement).
    let newer = runner(&["counter.renamed"]);
    assert_eq!(newer.catch_up().await?, 1);
    let doc = s
        .views
        .get(VIEW_KIND, stream.id().unwrap_or_default())
        .await?
        .ok_or_else(|| anyhow::anyhow!("no document"))?;
    assert_eq!((doc.doc["count"].as_i64(), doc.version), (Some(2), 3));
    assert_eq!(
        recorded(s.views.skipped("test-projector").await?),
        vec![(3, "counter.renamed".to_owned())]
    );
    assert_eq!(
        newer.catch_up().await?,
        0,
        "the record left is still unknown"
    );

    let newest = ProjectionRunner::new("test-projector", s.views.clone(), s.log.clone())
        .with(Arc::new(CountingProjection));
    assert_eq!(newest.catch_up().await?, 1);
    assert!(s.views.skipped("test-projector").await?.is_empty());
    Ok(())
}
