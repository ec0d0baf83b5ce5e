//! The contract every job store and work queue must honour, written once and run against
//! every backend (the embedded SQLite one, the AWS one on an emulator).
//!
//! Each check takes `connect`, which opens another handle on the *same*, fresh store:
//! concurrency checks give each thread its own handle, as separate worker processes have.
//! Checks panic with a message naming the broken promise.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;
use vodpipe_control::domain::Transition;
use vodpipe_control::job::JobStatus;
use vodpipe_control::ports::{
    Acquired, Completion, ItemKind, ItemRef, JobStore, Message, PortError, Queue, Release, Tier,
    WorkQueue,
};
use vodpipe_control::records::{Change, Cond, Fields, Index, Key, RecordStore, Value, Write};
use vodpipe_control::settings::{JobSettings, SettingsPolicy};

/// A backend's state half: records (and through them jobs and leases) and queues.
pub trait StateBackend: RecordStore + WorkQueue {}
impl<T: RecordStore + WorkQueue> StateBackend for T {}

/// Opens another handle on the store under test.
pub type Connect<'a> = &'a (dyn Fn() -> Box<dyn StateBackend> + Sync);

/// The dead-letter limit the backend under test must be configured with.
pub const MAX_RECEIVES: u32 = 3;

fn item(job: &str, index: u32) -> ItemRef {
    ItemRef {
        job_id: job.into(),
        kind: ItemKind::Video,
        index,
    }
}

/// The settings a job for `key` on `tier` records (the deployment's defaults).
fn chosen(key: &str, tier: Tier) -> JobSettings {
    let policy = SettingsPolicy {
        default_tier: tier,
        ..SettingsPolicy::default()
    };
    vodpipe_control::settings::fallback(
        key,
        &policy,
        4.0,
        &vodpipe_media::ladder::LadderConfig::default(),
        None,
    )
}

/// A job in PROBING, as an ingest leaves it before saving the plan.
fn probing_job(s: &dyn StateBackend, id: &str) {
    let source = format!("src/{id}.mp4");
    s.create_job(
        id,
        &source,
        id,
        Tier::Standard,
        &chosen(&source, Tier::Standard),
    )
    .unwrap();
    assert!(s.transition(id, Transition::Claim, None).unwrap());
}

/// A job in ENCODING with `n` video items.
fn encoding_job(s: &dyn StateBackend, id: &str, n: u32) -> Vec<ItemRef> {
    probing_job(s, id);
    let items: Vec<(ItemRef, u64)> = (0..n).map(|i| (item(id, i), 10)).collect();
    assert!(s
        .save_plan(id, "{}", 1.0, 10 * u64::from(n), 1, 0.0, &items)
        .unwrap());
    items.into_iter().map(|(i, _)| i).collect()
}

fn lease(a: Acquired) -> vodpipe_control::ports::Lease {
    match a {
        Acquired::Lease(l) => l,
        other => panic!("expected a lease, got {other:?}"),
    }
}

/// The holder of `old` can neither heartbeat nor commit any more.
fn assert_fenced_out(s: &dyn StateBackend, old: &vodpipe_control::ports::Lease, who: &str) {
    assert!(
        matches!(
            s.heartbeat(old, Duration::from_secs(60), 1),
            Err(PortError::Conflict(_))
        ),
        "{who} heartbeat accepted"
    );
    assert!(
        matches!(s.commit(old, "{}", 1.0), Err(PortError::Conflict(_))),
        "{who} commit accepted"
    );
}

/// Many workers creating the same job at once: exactly one creates it.
pub fn create_if_absent_is_race_free(connect: Connect<'_>) {
    let created: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    usize::from(
                        connect()
                            .create_job(
                                "race",
                                "src.mp4",
                                "src",
                                Tier::Bulk,
                                &chosen("src.mp4", Tier::Bulk),
                            )
                            .unwrap()
                            .1,
                    )
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(
        created, 1,
        "create-if-absent created the job {created} times"
    );
    let s = connect();
    assert_eq!(s.jobs_by_source("src.mp4").unwrap().len(), 1);
    assert_eq!(s.jobs_by_status(Some(JobStatus::Queued)).unwrap().len(), 1);
}

/// Many workers leasing one item at once: exactly one wins; the rest see it held.
pub fn one_lease_wins_under_contention(connect: Connect<'_>) {
    encoding_job(&*connect(), "lease", 1);
    let winners: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8)
            .map(|w| {
                s.spawn(move || {
                    match connect()
                        .acquire(&item("lease", 0), &format!("w{w}"), Duration::from_secs(60))
                        .unwrap()
                    {
                        Acquired::Lease(_) => 1,
                        Acquired::HeldByOther => 0,
                        other => panic!("item reported {other:?}"),
                    }
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1, "{winners} workers hold the same lease");
}

/// After a lease expires and is taken again, the old holder can neither heartbeat, release
/// nor commit: its fencing token is stale.
pub fn stale_fencing_tokens_are_rejected(connect: Connect<'_>) {
    let s = connect();
    encoding_job(&*s, "fence", 1);
    let old = lease(
        s.acquire(&item("fence", 0), "zombie", Duration::from_millis(1))
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(20));
    let new = lease(
        s.acquire(&item("fence", 0), "fresh", Duration::from_secs(60))
            .unwrap(),
    );
    assert!(
        new.token > old.token,
        "token did not grow: {} then {}",
        old.token,
        new.token
    );
    assert!(new.attempt > old.attempt, "attempt did not grow");
    assert_fenced_out(&*s, &old, "stale");
    assert!(
        matches!(
            s.release_lease(&old, Release::Interrupted, 1.0),
            Err(PortError::Conflict(_))
        ),
        "stale release accepted"
    );
    assert_eq!(s.commit(&new, "{\"ok\":1}", 1.0).unwrap(), Completion::Last);
    assert_eq!(
        s.commit(&new, "{}", 1.0).unwrap(),
        Completion::AlreadyDone,
        "a repeated commit must be harmless"
    );
    assert!(matches!(
        s.acquire(&item("fence", 0), "late", Duration::from_secs(60))
            .unwrap(),
        Acquired::Finished
    ));
    let results = s.results("fence").unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0].1, new.attempt,
        "the committed attempt is the fresh one"
    );
}

/// Released leases count interruptions and failures, with the last reason kept.
pub fn releases_are_counted(connect: Connect<'_>) {
    let s = connect();
    encoding_job(&*s, "rel", 1);
    let l = lease(
        s.acquire(&item("rel", 0), "w", Duration::from_secs(60))
            .unwrap(),
    );
    s.release_lease(&l, Release::Interrupted, 2.0).unwrap();
    let l = lease(
        s.acquire(&item("rel", 0), "w", Duration::from_secs(60))
            .unwrap(),
    );
    assert_eq!((l.interruptions, l.failures), (1, 0));
    s.release_lease(&l, Release::Failed("boom"), 3.0).unwrap();
    let st = s.item_state(&item("rel", 0)).unwrap().unwrap();
    assert_eq!((st.attempts, st.failures, st.interruptions), (2, 1, 1));
    assert_eq!(st.last_error.as_deref(), Some("boom"));
    let j = s.job("rel").unwrap().unwrap();
    assert!(
        (j.wasted_secs - 5.0).abs() < 1e-9,
        "wasted seconds {}",
        j.wasted_secs
    );
}

/// Exactly one of many concurrent final commits sees "last", and the job is STITCHING.
pub fn last_item_done_fires_exactly_once(connect: Connect<'_>) {
    let items = encoding_job(&*connect(), "last", 24);
    let lasts: usize = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|w| {
                let items = &items;
                s.spawn(move || {
                    let st = connect();
                    let mut lasts = 0;
                    for it in items.iter().skip(w).step_by(4) {
                        let l = lease(
                            st.acquire(it, &format!("w{w}"), Duration::from_secs(60))
                                .unwrap(),
                        );
                        if st.commit(&l, "{}", 0.1).unwrap() == Completion::Last {
                            lasts += 1;
                        }
                    }
                    lasts
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(lasts, 1, "'last item done' fired {lasts} times");
    let j = connect().job("last").unwrap().unwrap();
    assert_eq!((j.status, j.done, j.total), (JobStatus::Stitching, 24, 24));
    let s = connect();
    assert!(s
        .publish("last", "a/master.m3u8", "a/manifest.mpd", &[])
        .unwrap());
    assert!(
        !s.publish("last", "a/master.m3u8", "a/manifest.mpd", &[])
            .unwrap(),
        "publishing twice must be refused"
    );
}

/// A received message is hidden until its visibility ends, then delivered again with a
/// higher receive count. (Whether a stale receipt is refused differs between queues; the
/// leases' fencing tokens, not receipts, are what keep work safe.)
pub fn invisible_messages_come_back_after_visibility(connect: Connect<'_>) {
    let q = connect();
    let m = Message::Item(item("vis", 0));
    q.send(Queue::Work(Tier::Standard), &m).unwrap();
    let first = q
        .receive(&[Queue::Work(Tier::Standard)], Duration::from_secs(2))
        .unwrap()
        .expect("a message");
    assert_eq!(first.message, m);
    assert_eq!(first.receive_count, 1);
    assert!(
        q.receive(&[Queue::Work(Tier::Standard)], Duration::from_secs(5))
            .unwrap()
            .is_none(),
        "an in-flight message was delivered twice"
    );
    std::thread::sleep(Duration::from_millis(3200));
    let second = q
        .receive(&[Queue::Work(Tier::Standard)], Duration::from_secs(5))
        .unwrap()
        .expect("redelivery");
    assert_eq!(second.receive_count, 2);
    q.release(&second, Duration::ZERO).unwrap();
    let third = q
        .receive(&[Queue::Work(Tier::Standard)], Duration::from_secs(5))
        .unwrap()
        .expect("released at once");
    q.delete(&third).unwrap();
    assert!(
        q.receive(&[Queue::Work(Tier::Standard)], Duration::ZERO)
            .unwrap()
            .is_none(),
        "deleted message came back"
    );
    assert_eq!(q.depth(Queue::Work(Tier::Standard)).unwrap(), 0);
}

/// A batch send delivers every message once, whatever its size against the queue's
/// batch limit (SQS takes ten per request), and on the queue named.
pub fn a_batch_send_delivers_every_message_once(connect: Connect<'_>) {
    let q = connect();
    q.send_many(Queue::Work(Tier::Bulk), &[]).unwrap();
    let sent: Vec<Message> = (0..23).map(|i| Message::Item(item("batch", i))).collect();
    q.send_many(Queue::Work(Tier::Bulk), &sent).unwrap();
    assert_eq!(q.depth(Queue::Work(Tier::Bulk)).unwrap(), 23);
    assert_eq!(q.depth(Queue::Work(Tier::Standard)).unwrap(), 0);
    let mut got = Vec::new();
    while let Some(d) = q
        .receive(&[Queue::Work(Tier::Bulk)], Duration::from_secs(30))
        .unwrap()
    {
        assert_eq!(d.receive_count, 1, "{:?} delivered twice", d.message);
        got.push(d.message.clone());
        q.delete(&d).unwrap();
    }
    let index = |m: &Message| match m {
        Message::Item(i) => i.index,
        other => panic!("not an item: {other:?}"),
    };
    let mut indices: Vec<u32> = got.iter().map(index).collect();
    indices.sort_unstable();
    assert_eq!(indices, (0..23).collect::<Vec<u32>>(), "lost or doubled");
}

/// Queues are tried in the order asked.
pub fn receive_follows_the_queue_order(connect: Connect<'_>) {
    let q = connect();
    q.send(Queue::Work(Tier::Bulk), &Message::Item(item("b", 0)))
        .unwrap();
    q.send(Queue::Work(Tier::Premium), &Message::Item(item("p", 0)))
        .unwrap();
    let d = q
        .receive(
            &[Queue::Work(Tier::Premium), Queue::Work(Tier::Bulk)],
            Duration::from_secs(5),
        )
        .unwrap()
        .unwrap();
    assert_eq!(d.queue, Queue::Work(Tier::Premium));
    let d = q
        .receive(
            &[Queue::Work(Tier::Premium), Queue::Work(Tier::Bulk)],
            Duration::from_secs(5),
        )
        .unwrap()
        .unwrap();
    assert_eq!(d.queue, Queue::Work(Tier::Bulk));
    assert!(q
        .receive(&[Queue::Stitch], Duration::from_secs(5))
        .unwrap()
        .is_none());
}

/// A message received [`MAX_RECEIVES`] times without being deleted goes to the dead-letter
/// queue and is no longer delivered.
pub fn messages_dead_letter_after_max_receives(connect: Connect<'_>) {
    let q = connect();
    let m = Message::Item(item("dlq", 7));
    q.send(Queue::Work(Tier::Premium), &m).unwrap();
    for n in 1..=MAX_RECEIVES {
        let d = q
            .receive(&[Queue::Work(Tier::Premium)], Duration::from_secs(5))
            .unwrap()
            .expect("delivery");
        assert_eq!(d.receive_count, n);
        q.release(&d, Duration::ZERO).unwrap();
    }
    assert!(
        q.receive(&[Queue::Work(Tier::Premium)], Duration::from_secs(5))
            .unwrap()
            .is_none(),
        "delivered past the receive limit"
    );
    let dead = q
        .receive_dead(Duration::from_secs(5))
        .unwrap()
        .expect("a dead letter");
    assert_eq!(dead.message, m);
    assert!(
        dead.receive_count >= MAX_RECEIVES,
        "dead letter after {} receives",
        dead.receive_count
    );
    q.delete(&dead).unwrap();
    assert!(q.receive_dead(Duration::ZERO).unwrap().is_none());
}

/// A FAILED job hands out no more work.
pub fn failed_jobs_hand_out_no_work(connect: Connect<'_>) {
    let s = connect();
    encoding_job(&*s, "dead", 2);
    assert!(s
        .transition("dead", Transition::FailEncode, Some("chunk 0 failed"))
        .unwrap());
    assert!(matches!(
        s.acquire(&item("dead", 1), "w", Duration::from_secs(60))
            .unwrap(),
        Acquired::Finished
    ));
    assert!(!s.transition("dead", Transition::Complete, None).unwrap());
    assert_eq!(
        s.job("dead").unwrap().unwrap().error.as_deref(),
        Some("chunk 0 failed")
    );
}

/// After a FAILED job is reset and planned again, tokens and attempts continue above the
/// old ones: a worker still busy with the old plan can neither heartbeat nor commit, and
/// never shares an attempt directory with the new plan.
pub fn a_reset_job_fences_out_its_old_workers(connect: Connect<'_>) {
    let s = connect();
    encoding_job(&*s, "reset", 1);
    let old = lease(
        s.acquire(&item("reset", 0), "zombie", Duration::from_secs(60))
            .unwrap(),
    );
    assert!(s
        .transition("reset", Transition::FailEncode, Some("x"))
        .unwrap());
    assert!(s.reset_failed("reset").unwrap());
    assert!(s.transition("reset", Transition::Claim, None).unwrap());
    assert!(s
        .save_plan("reset", "{}", 1.0, 10, 1, 0.0, &[(item("reset", 0), 10)])
        .unwrap());
    assert_fenced_out(&*s, &old, "old worker's");
    let new = lease(
        s.acquire(&item("reset", 0), "fresh", Duration::from_secs(60))
            .unwrap(),
    );
    assert!(
        new.token > old.token && new.attempt > old.attempt,
        "old {old:?} new {new:?}"
    );
    assert_eq!(s.commit(&new, "{}", 1.0).unwrap(), Completion::Last);
}

/// A job whose ladder waits for its analysis hands out no chunk until the analysis's
/// current holder revises the plan, in one fenced write: a holder fenced out cannot revise,
/// a second revision changes nothing, and the chunks then lease under the revised plan.
pub fn chunks_wait_for_the_ladder_analysis(connect: Connect<'_>) {
    let s = connect();
    let id = "ladder";
    probing_job(&*s, id);
    let analysis = ItemRef {
        job_id: id.into(),
        kind: ItemKind::Analysis,
        index: 0,
    };
    let items = vec![(item(id, 0), 10), (item(id, 1), 10), (analysis.clone(), 0)];
    assert!(s
        .save_plan(id, r#"{"provisional":true}"#, 1.0, 20, 4, 0.25, &items)
        .unwrap());
    // The plan's estimate is kept with the job, for status.
    assert_eq!(
        s.job(id).unwrap().unwrap().planned_cost_usd,
        Some(0.25),
        "the planned cost"
    );
    assert_eq!(
        s.acquire(&item(id, 0), "early", Duration::from_secs(60))
            .unwrap(),
        Acquired::Early,
        "a chunk was handed out before its ladder was chosen"
    );
    let listed: Vec<ItemKind> = s
        .items(id)
        .unwrap()
        .into_iter()
        .map(|(i, _)| i.kind)
        .collect();
    assert_eq!(listed[0], ItemKind::Analysis, "items list {listed:?}");
    // A holder whose lease expired and was taken is fenced out of the revision.
    let stale = lease(
        s.acquire(&analysis, "stale", Duration::from_millis(1))
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(20));
    let holder = lease(
        s.acquire(&analysis, "holder", Duration::from_secs(60))
            .unwrap(),
    );
    assert!(
        matches!(
            s.revise_plan(&stale, r#"{"stale":true}"#, 9),
            Err(PortError::Conflict(_))
        ),
        "a fenced-out analysis revised the plan"
    );
    assert_eq!(s.plan_doc(id).unwrap(), r#"{"provisional":true}"#);
    let before = s.job(id).unwrap().unwrap().plan_id;
    let revised = big_doc(3 * vodpipe_control::lifecycle::PAGE_BYTES / 2, "revised");
    assert!(s.revise_plan(&holder, &revised, 3).unwrap());
    let job = s.job(id).unwrap().unwrap();
    assert_eq!(
        s.plan_doc(id).unwrap(),
        revised,
        "the revised plan reads back whole"
    );
    assert_eq!(job.rungs, 3, "rungs count of the revised ladder");
    assert_ne!(
        job.plan_id, before,
        "a revised plan keeps the old plan's id"
    );
    assert!(
        !s.revise_plan(&holder, r#"{"again":true}"#, 5).unwrap(),
        "a plan was revised twice"
    );
    assert_eq!(s.plan_doc(id).unwrap(), revised);
    let chunk = lease(
        s.acquire(&item(id, 0), "w", Duration::from_secs(60))
            .unwrap(),
    );
    let chunk_plan = chunk.job.as_ref().and_then(|j| j.plan_id.clone());
    assert_eq!(
        chunk_plan, job.plan_id,
        "the chunk's lease names the revised plan"
    );
    assert_eq!(s.commit(&chunk, "[]", 1.0).unwrap(), Completion::More);
    assert_eq!(s.commit(&holder, "[]", 1.0).unwrap(), Completion::More);
    let last = lease(
        s.acquire(&item(id, 1), "w", Duration::from_secs(60))
            .unwrap(),
    );
    assert_eq!(s.commit(&last, "[]", 1.0).unwrap(), Completion::Last);
}

/// `items` lists every item with whether it is done and whether a live lease holds it,
/// and the timeline of its latest attempt: who worked it, when it was leased and
/// committed (the console's per-item view).
pub fn items_report_done_and_leased(connect: Connect<'_>) {
    let s = connect();
    encoding_job(&*s, "items", 3);
    let before = vodpipe_media::process::now_secs();
    let l = lease(
        s.acquire(&item("items", 0), "w1", Duration::from_secs(60))
            .unwrap(),
    );
    s.heartbeat(&l, Duration::from_secs(60), 7).unwrap();
    s.commit(&l, "{}", 1.5).unwrap();
    let held = lease(
        s.acquire(&item("items", 1), "w2", Duration::from_secs(60))
            .unwrap(),
    );
    s.heartbeat(&held, Duration::from_secs(60), 4).unwrap();
    let lost = lease(
        s.acquire(&item("items", 2), "w3", Duration::from_secs(60))
            .unwrap(),
    );
    s.release_lease(&lost, Release::Interrupted, 0.5).unwrap();
    let after = vodpipe_media::process::now_secs();
    let items = s.items("items").unwrap();
    let states: Vec<(bool, bool)> = items.iter().map(|(_, st)| (st.done, st.leased)).collect();
    assert_eq!(states, [(true, false), (false, true), (false, false)]);
    let workers: Vec<Option<&str>> = items.iter().map(|(_, st)| st.worker.as_deref()).collect();
    assert_eq!(workers, [Some("w1"), Some("w2"), Some("w3")]);
    let done = &items[0].1;
    let (leased, committed) = (done.leased_at.unwrap(), done.done_at.unwrap());
    assert!(before <= leased && leased <= committed && committed <= after);
    assert_eq!(done.encode_secs, 1.5);
    assert!(done.frames > 0);
    assert!(items[1].1.leased_at.is_some() && items[1].1.done_at.is_none());
    assert_eq!(items[1].1.frames, 4, "a live attempt's progress");
    assert_eq!(items[2].1.wasted_secs, 0.5);
}

/// What an upload chose (and where each setting came from) is stored with its job, and a
/// second create (a duplicate event) neither changes nor loses it.
pub fn a_job_keeps_the_settings_it_was_created_with(connect: Connect<'_>) {
    let s = connect();
    let mut settings = chosen("premium/film.mov", Tier::Premium);
    settings.tier.from = vodpipe_control::settings::Origin::Metadata;
    settings.segment_seconds.value = 6.0;
    let (job, created) = s
        .create_job(
            "with-settings",
            "premium/film.mov",
            "premium/film",
            Tier::Premium,
            &settings,
        )
        .unwrap();
    assert!(created);
    assert_eq!(job.settings.as_ref(), Some(&settings));
    let other = chosen("premium/film.mov", Tier::Bulk);
    let (again, created) = s
        .create_job(
            "with-settings",
            "premium/film.mov",
            "premium/film",
            Tier::Bulk,
            &other,
        )
        .unwrap();
    assert!(!created);
    assert_eq!(again.tier, Tier::Premium);
    assert_eq!(again.settings, Some(settings));
}

/// A document of `bytes` bytes that reads as JSON and differs at every position, so a page
/// lost, repeated or reordered shows.
fn big_doc(bytes: usize, tag: &str) -> String {
    let mut doc = format!("{{\"{tag}\":[");
    let mut i = 0u64;
    while doc.len() < bytes {
        doc.push_str(&format!("{{\"i\":{i},\"t\":\"ünïcødé {tag}\"}},"));
        i += 1;
    }
    doc.push_str("0]}");
    doc
}

/// A feature-length job keeps its plan (hundreds of KB at six hours) and its largest
/// results (an audio track's table) exactly, whatever the store's record size limit; a
/// worker reads the job brief with the same plan id each time and needs no sums for it.
pub fn feature_length_documents_round_trip(connect: Connect<'_>) {
    let s = connect();
    let id = "feature";
    let source = "src/feature.mov";
    s.create_job(
        id,
        source,
        id,
        Tier::Standard,
        &chosen(source, Tier::Standard),
    )
    .unwrap();
    assert!(s.transition(id, Transition::Claim, None).unwrap());
    // What the plan of a 6-hour source weighs (every segment, twice).
    let plan = big_doc(700 * 1024, "plan");
    let mut items: Vec<(ItemRef, u64)> = (0..3).map(|i| (item(id, i), 500)).collect();
    items.push((
        ItemRef {
            job_id: id.into(),
            kind: ItemKind::Audio,
            index: 0,
        },
        0,
    ));
    assert!(s
        .save_plan(id, &plan, 6.0 * 3600.0, 1500, 4, 0.0, &items)
        .unwrap());
    assert!(
        s.plan_doc(id).unwrap() == plan,
        "the plan came back changed"
    );
    let brief = s.job_brief(id).unwrap().unwrap();
    assert_eq!((brief.status, brief.total), (JobStatus::Encoding, 4));
    assert_eq!(s.job_brief(id).unwrap().unwrap().plan_id, brief.plan_id);
    let audio = big_doc(300 * 1024, "audio");
    let mut docs = Vec::new();
    for (i, (it, _)) in items.iter().enumerate() {
        let l = lease(s.acquire(it, "w", Duration::from_secs(60)).unwrap());
        let doc = if it.kind == ItemKind::Audio {
            audio.clone()
        } else {
            format!("{{\"chunk\":{i}}}")
        };
        let done = s.commit(&l, &doc, 1.0).unwrap();
        assert_eq!(
            done == Completion::Last,
            i == items.len() - 1,
            "commit {i} said {done:?}"
        );
        docs.push((it.clone(), doc));
    }
    let results = s.results(id).unwrap();
    assert_eq!(results.len(), docs.len());
    for (it, doc) in &docs {
        let (_, _, got) = results
            .iter()
            .find(|(r, _, _)| r == it)
            .unwrap_or_else(|| panic!("no result for {}", it.describe()));
        assert!(got == doc, "{} result came back changed", it.describe());
    }
}

/// A job just claimed for probing cannot be taken over; one left longer than the stale
/// time is taken over by exactly one of many callers, which renews the claim.
pub fn an_abandoned_probe_is_taken_over_once(connect: Connect<'_>) {
    let s = connect();
    let source = "src/claim.mp4";
    s.create_job(
        "claim",
        source,
        "claim",
        Tier::Standard,
        &chosen(source, Tier::Standard),
    )
    .unwrap();
    assert!(
        !s.claim_probe("claim", 0.0).unwrap(),
        "a QUEUED job is not claimed"
    );
    assert!(s.transition("claim", Transition::Claim, None).unwrap());
    assert!(
        !s.claim_probe("claim", 60.0).unwrap(),
        "a job probing for less than the stale time was taken over"
    );
    std::thread::sleep(Duration::from_millis(1100));
    let winners: usize = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|_| sc.spawn(|| usize::from(connect().claim_probe("claim", 1.0).unwrap())))
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(winners, 1, "{winners} callers took the probe over");
    assert!(
        !s.claim_probe("claim", 1.0).unwrap(),
        "the claim was not renewed"
    );
}

/// One output name, one source: the first source to claim a name keeps it, every other
/// source is told who holds it, and a source asking again (a new version) still has it.
pub fn an_asset_name_belongs_to_one_source(connect: Connect<'_>) {
    let holders: Vec<String> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..6)
            .map(|i| {
                sc.spawn(move || {
                    connect()
                        .claim_asset("shows/a_b", &format!("src/{i}/a b.mp4"))
                        .unwrap()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(
        holders.windows(2).all(|w| w[0] == w[1]),
        "the name went to several sources: {holders:?}"
    );
    let s = connect();
    assert_eq!(s.claim_asset("shows/a_b", &holders[0]).unwrap(), holders[0]);
    assert_eq!(
        s.claim_asset("shows/other", "src/x.mov").unwrap(),
        "src/x.mov"
    );
}

/// A job whose last commit moved it to STITCHING, but whose stitch request was never sent
/// (the worker died in between), gets it from the sweep once it is stale, and not before,
/// and never a second one while the first is on the queue.
pub fn a_job_stranded_in_stitching_is_stitched_again(connect: Connect<'_>) {
    let s = connect();
    let items = encoding_job(&*s, "stranded", 2);
    for (n, i) in items.iter().enumerate() {
        let l = lease(s.acquire(i, "w", Duration::from_secs(60)).unwrap());
        let expected = if n == 1 {
            Completion::Last
        } else {
            Completion::More
        };
        assert_eq!(s.commit(&l, "{}", 1.0).unwrap(), expected);
    }
    assert_eq!(
        s.job("stranded").unwrap().unwrap().status,
        JobStatus::Stitching
    );
    let sweep = vodpipe_control::sweep::restitch_stranded;
    assert!(
        sweep(&*s, &*s, 3600.0, false).unwrap().is_empty(),
        "a fresh STITCHING job was stitched again"
    );
    // A dry run says it would, and sends nothing.
    assert_eq!(sweep(&*s, &*s, 0.0, true).unwrap(), ["stranded"]);
    assert_eq!(
        s.depth(Queue::Stitch).unwrap(),
        0,
        "a dry run sent a request"
    );
    assert_eq!(sweep(&*s, &*s, 0.0, false).unwrap(), ["stranded"]);
    // The repair is claimed: no tick repeats it while the request may still be pending.
    assert!(
        !s.claim_repair("stranded", JobStatus::Stitching, 3600.0)
            .unwrap(),
        "the stitch could be requested twice in a row"
    );
    // With its request on the queue, no second one is sent, however stale the job: one
    // request outstanding per job, never a backlog of repeats.
    assert!(
        sweep(&*s, &*s, 0.0, false).unwrap().is_empty(),
        "a second stitch request while one was outstanding"
    );
    assert_eq!(s.depth(Queue::Stitch).unwrap(), 1);
    let d = s
        .receive(&[Queue::Stitch], Duration::from_secs(30))
        .unwrap()
        .expect("the stitch request is on the queue");
    assert_eq!(
        d.message,
        Message::Stitch {
            job_id: "stranded".into()
        }
    );
}

/// A source without an index is planned by its index item: the plan saved under that
/// item's lease, once (a retry finds it saved), the chunks made where absent (one a worker
/// already finished is never reset), and the job finished only by the last of its items,
/// however late the index item commits.
pub fn an_index_item_plans_the_chunks_once_and_finishes_last(connect: Connect<'_>) {
    let s = connect();
    probing_job(&*s, "idx");
    let index = ItemRef {
        job_id: "idx".into(),
        kind: vodpipe_control::ports::ItemKind::Index,
        index: 0,
    };
    assert!(s
        .save_plan("idx", "{}", 0.0, 0, 0, 0.0, &[(index.clone(), 0)])
        .unwrap());
    let held = lease(
        s.acquire(&index, "indexer", Duration::from_secs(60))
            .unwrap(),
    );
    let chunks: Vec<(ItemRef, u64)> = (0..3).map(|i| (item("idx", i), 100)).collect();
    assert!(s
        .save_index(&held, "{\"indexed\": true}", 12.0, 300, 2, 0.0, &chunks)
        .unwrap());
    let job = s.job("idx").unwrap().unwrap();
    assert_eq!(job.total, 4, "three chunks and the index itself");
    // The first attempt makes one chunk, which another worker finishes.
    s.create_items(&held, &chunks[..1]).unwrap();
    let first = lease(
        s.acquire(&chunks[0].0, "w", Duration::from_secs(60))
            .unwrap(),
    );
    assert_eq!(s.commit(&first, "{}", 1.0).unwrap(), Completion::More);
    // The retry finds the plan saved, and makes only what is missing.
    assert!(
        !s.save_index(&held, "{}", 12.0, 300, 2, 0.0, &chunks)
            .unwrap(),
        "the plan was saved twice"
    );
    s.create_items(&held, &chunks).unwrap();
    let listed = s.items("idx").unwrap();
    assert_eq!(listed.len(), 4, "{listed:?}");
    assert!(
        listed.iter().any(|(i, st)| *i == chunks[0].0 && st.done),
        "a finished chunk was made again"
    );
    assert_eq!(s.plan_doc("idx").unwrap(), "{\"indexed\": true}");
    for (i, _) in &chunks[1..] {
        let l = lease(s.acquire(i, "w", Duration::from_secs(60)).unwrap());
        assert_eq!(s.commit(&l, "{}", 1.0).unwrap(), Completion::More);
    }
    assert_eq!(s.job("idx").unwrap().unwrap().status, JobStatus::Encoding);
    assert_eq!(s.commit(&held, "{}", 1.0).unwrap(), Completion::Last);
}

/// A job ENCODING whose messages are gone (lost, or never sent by an ingest that died) has
/// its unfinished items queued again by the sweep once it has stalled, and only those: not
/// the item done, not the item a live worker holds. A dry run sends nothing; the repair is
/// claimed, so overlapping sweeps never send twice.
pub fn a_job_whose_messages_are_gone_is_queued_again(connect: Connect<'_>) {
    let s = connect();
    let items = encoding_job(&*s, "stalled", 4);
    s.all_queued("stalled").unwrap();
    let done = lease(s.acquire(&items[0], "w", Duration::from_secs(60)).unwrap());
    assert_eq!(s.commit(&done, "{}", 1.0).unwrap(), Completion::More);
    let _held = lease(s.acquire(&items[1], "w", Duration::from_secs(600)).unwrap());
    let cfg = vodpipe_control::pipeline::Config::new(std::env::temp_dir());
    let sweep = vodpipe_control::sweep::requeue_stalled;
    let now = vodpipe_media::process::now_secs();
    let until = std::time::Instant::now() + Duration::from_secs(60);
    assert!(
        sweep(&*s, &*s, &cfg, now, until, false).unwrap().is_empty(),
        "a job moving a moment ago was taken for stalled"
    );
    let later = now + vodpipe_control::sweep::STALL_BUSY_SECS + 1.0;
    assert_eq!(
        sweep(&*s, &*s, &cfg, later, until, true).unwrap(),
        [("stalled".to_string(), 2)]
    );
    assert_eq!(
        s.depth(Queue::Work(Tier::Standard)).unwrap(),
        0,
        "a dry run sent work"
    );
    assert_eq!(
        sweep(&*s, &*s, &cfg, later, until, false).unwrap(),
        [("stalled".to_string(), 2)]
    );
    let mut got = Vec::new();
    while let Some(d) = s
        .receive(&[Queue::Work(Tier::Standard)], Duration::from_secs(30))
        .unwrap()
    {
        got.push(d.message);
    }
    let want: Vec<Message> = items[2..].iter().cloned().map(Message::Item).collect();
    assert_eq!(got, want, "only the items neither done nor held come back");
    assert!(
        sweep(&*s, &*s, &cfg, later, until, false)
            .unwrap()
            .is_empty(),
        "a second sweep queued the same items again at once"
    );
}

fn fields(pairs: &[(&str, Value)]) -> Fields {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), v.clone()))
        .collect()
}

/// Every kind of condition, on records with and without the attributes it names, decided
/// by the backend exactly as [`Cond::holds`] decides it: the one definition the lifecycle
/// is written against.
pub fn conditions_mean_what_the_lifecycle_says(connect: Connect<'_>) {
    let s = connect();
    let record = fields(&[
        ("status", Value::str("ENCODING")),
        ("done", Value::num(3)),
        ("last_index", Value::num(4)),
        ("flag", Value::Bool(false)),
        ("at", Value::num(10.5)),
    ]);
    let conds = vec![
        Cond::Exists,
        Cond::Eq("status", Value::str("ENCODING")),
        Cond::Eq("status", Value::str("FAILED")),
        Cond::Eq("flag", Value::Bool(false)),
        Cond::Eq("flag", Value::Bool(true)),
        Cond::Eq("nothing", Value::num(0)),
        Cond::Ne("status", Value::str("ENCODING")),
        Cond::Ne("status", Value::str("FAILED")),
        Cond::Ne("nothing", Value::str("FAILED")),
        Cond::In("status", vec![Value::str("QUEUED"), Value::str("ENCODING")]),
        Cond::In("status", vec![Value::str("QUEUED")]),
        Cond::In("status", vec![]),
        Cond::Lt("at", Value::num(11)),
        Cond::Lt("at", Value::num(10.5)),
        Cond::Le("at", Value::num(10.5)),
        Cond::Lt("nothing", Value::num(11)),
        Cond::LtAttr("done", "last_index"),
        Cond::LtAttr("last_index", "done"),
        Cond::LtAttr("done", "nothing"),
        Cond::Missing("nothing"),
        Cond::Missing("done"),
        Cond::All(vec![]),
        Cond::Any(vec![]),
        Cond::All(vec![Cond::Exists, Cond::Missing("nothing")]),
        Cond::All(vec![Cond::Exists, Cond::Missing("done")]),
        Cond::Any(vec![Cond::Missing("done"), Cond::Lt("at", Value::num(11))]),
        Cond::Any(vec![
            Cond::Lt("since", Value::num(5)),
            Cond::All(vec![Cond::Missing("since"), Cond::Lt("at", Value::num(20))]),
        ]),
    ];
    for (i, cond) in conds.iter().enumerate() {
        let key = Key::new("CONTRACT#cond", format!("R#{i:03}"));
        assert!(s.create(&key, &record).unwrap());
        let expected = cond.holds(Some(&record));
        let written = s
            .update(&Write {
                key: key.clone(),
                when: cond.clone(),
                changes: vec![Change::Set("touched", Value::Bool(true))],
            })
            .unwrap_or_else(|e| panic!("{cond:?}: {e}"));
        assert_eq!(
            written.is_some(),
            expected,
            "the backend decided {cond:?} differently from the lifecycle"
        );
        let stored = s.get(&key).unwrap().unwrap();
        assert_eq!(
            stored.contains_key("touched"),
            expected,
            "{cond:?}: the record does not show the decision"
        );
        // No write ever creates a record, whatever its condition.
        let absent = Key::new("CONTRACT#cond", format!("ABSENT#{i:03}"));
        assert!(s
            .update(&Write {
                key: absent.clone(),
                when: cond.clone(),
                changes: vec![Change::Set("touched", Value::Bool(true))],
            })
            .unwrap()
            .is_none());
        assert!(
            s.get(&absent).unwrap().is_none(),
            "{cond:?} created a record"
        );
    }
    assert!(
        !s.create(&Key::new("CONTRACT#cond", "R#000"), &record)
            .unwrap(),
        "create replaced an existing record"
    );
}

/// Every kind of change has the effect [`Change::apply_all`] gives it (values read from the
/// record as it was before the write), and an update returns the record as written.
pub fn changes_mean_what_the_lifecycle_says(connect: Connect<'_>) {
    let s = connect();
    let key = Key::new("CONTRACT#change", "R");
    let mut record = fields(&[
        ("frames", Value::num(250)),
        ("token", Value::num(7)),
        ("since", Value::num(1)),
        ("owner", Value::str("w1")),
        ("secs", Value::num(1.25)),
    ]);
    assert!(s.create(&key, &record).unwrap());
    let changes = vec![
        Change::Set("status", Value::str("STITCHING")),
        Change::Set("done", Value::Bool(true)),
        Change::Add("token", 1.0),
        Change::Add("fresh", 2.0),
        Change::Add("secs", 0.5),
        Change::SetIfMissing("since", Value::num(9)),
        Change::SetIfMissing("queued_at", Value::num(9)),
        Change::Remove("owner"),
        Change::Remove("nothing"),
        Change::Copy("frames_done", "frames"),
        // Changed in the same write as the copy above reads it: the copy sees 250.
        Change::Set("frames", Value::num(300)),
    ];
    Change::apply_all(&changes, &mut record).unwrap();
    let written = s
        .update(&Write {
            key: key.clone(),
            when: Cond::Exists,
            changes,
        })
        .unwrap()
        .expect("the update applies");
    assert_eq!(written, record, "the update returned another record");
    assert_eq!(
        s.get(&key).unwrap().unwrap(),
        record,
        "the stored record differs"
    );
}

/// A transaction whose last write's condition fails changes nothing; one whose every
/// condition holds changes every record.
pub fn a_transaction_is_all_or_nothing(connect: Connect<'_>) {
    let s = connect();
    let a = Key::new("CONTRACT#tx", "A");
    let b = Key::new("CONTRACT#tx", "B");
    for k in [&a, &b] {
        assert!(s.create(k, &fields(&[("n", Value::num(0))])).unwrap());
    }
    let bump = |k: &Key, when: Cond| Write {
        key: k.clone(),
        when,
        changes: vec![Change::Add("n", 1.0)],
    };
    assert!(!s
        .transact(&[
            bump(&a, Cond::Eq("n", Value::num(0))),
            bump(&b, Cond::Eq("n", Value::num(5))),
        ])
        .unwrap());
    for k in [&a, &b] {
        assert_eq!(
            s.get(k).unwrap().unwrap().get("n"),
            Some(&Value::num(0)),
            "a refused transaction wrote {k:?}"
        );
    }
    assert!(s
        .transact(&[
            bump(&a, Cond::Eq("n", Value::num(0))),
            bump(&b, Cond::Eq("n", Value::num(0))),
        ])
        .unwrap());
    for k in [&a, &b] {
        assert_eq!(s.get(k).unwrap().unwrap().get("n"), Some(&Value::num(1)));
    }
    // A write to a record that does not exist refuses the whole transaction.
    assert!(!s
        .transact(&[
            bump(&a, Cond::Exists),
            bump(&Key::new("CONTRACT#tx", "C"), Cond::Exists)
        ])
        .unwrap());
    assert_eq!(s.get(&a).unwrap().unwrap().get("n"), Some(&Value::num(1)));
}

/// A partition's records by sort-key prefix come back in sort-key order; job records are
/// found by state and by source in creation order; a deleted record is gone.
pub fn records_are_found_by_prefix_and_index(connect: Connect<'_>) {
    let s = connect();
    for sk in [
        "ITEM#video#000002",
        "ITEM#audio#000000",
        "ITEM#video#000000",
        "PLAN#x#0000",
        "JOB",
    ] {
        s.put(&Key::new("JOB#q1", sk), &fields(&[("n", Value::num(1))]))
            .unwrap();
    }
    let found: Vec<String> = s
        .query("JOB#q1", "ITEM#")
        .unwrap()
        .into_iter()
        .map(|(sk, _)| sk)
        .collect();
    assert_eq!(
        found,
        [
            "ITEM#audio#000000",
            "ITEM#video#000000",
            "ITEM#video#000002"
        ]
    );
    assert_eq!(s.query("JOB#q1", "").unwrap().len(), 5);
    s.remove(&Key::new("JOB#q1", "PLAN#x#0000")).unwrap();
    s.remove(&Key::new("JOB#q1", "PLAN#x#0000")).unwrap();
    assert!(s.query("JOB#q1", "PLAN#").unwrap().is_empty());
    for (id, at) in [("i2", 20), ("i1", 10), ("i3", 30)] {
        s.put(
            &Key::new(format!("JOB#{id}"), "JOB"),
            &fields(&[
                ("status", Value::str("INDEXED")),
                ("source", Value::str("src/indexed.mp4")),
                ("created_at", Value::num(at)),
            ]),
        )
        .unwrap();
    }
    // An index may lag its table by moments (DynamoDB's does).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let by_status = s.index(Index::Status, "INDEXED", false).unwrap();
        if by_status.len() == 3 || std::time::Instant::now() > deadline {
            assert_eq!(by_status, ["JOB#i1", "JOB#i2", "JOB#i3"]);
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        s.index(Index::Source, "src/indexed.mp4", true).unwrap(),
        ["JOB#i3", "JOB#i2", "JOB#i1"]
    );
}

/// Generates one `#[test]` per contract check, each on a fresh store from `$fresh` (a
/// function returning a connector), so every backend runs the same list.
#[macro_export]
macro_rules! contract_suite {
    ($fresh:path) => {
        $crate::contract_suite!(@each $fresh;
            create_if_absent_is_race_free,
            one_lease_wins_under_contention,
            stale_fencing_tokens_are_rejected,
            releases_are_counted,
            last_item_done_fires_exactly_once,
            invisible_messages_come_back_after_visibility,
            receive_follows_the_queue_order,
            a_batch_send_delivers_every_message_once,
            messages_dead_letter_after_max_receives,
            failed_jobs_hand_out_no_work,
            a_reset_job_fences_out_its_old_workers,
            chunks_wait_for_the_ladder_analysis,
            items_report_done_and_leased,
            a_job_keeps_the_settings_it_was_created_with,
            feature_length_documents_round_trip,
            an_abandoned_probe_is_taken_over_once,
            an_asset_name_belongs_to_one_source,
            conditions_mean_what_the_lifecycle_says,
            changes_mean_what_the_lifecycle_says,
            a_transaction_is_all_or_nothing,
            records_are_found_by_prefix_and_index,
            a_job_stranded_in_stitching_is_stitched_again,
            a_job_whose_messages_are_gone_is_queued_again,
            an_index_item_plans_the_chunks_once_and_finishes_last,
        );
    };
    (@each $fresh:path; $($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                let connect = $fresh();
                $crate::$name(&*connect);
            }
        )*
    };
}
