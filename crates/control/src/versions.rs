//! The order of one source's versions: by upload, never by when their ingests ran, and a
//! re-packaged version where the encoded version it descends from stands, after it.

use crate::domain::JobRecord;

/// Whether `a` was uploaded after `b` (two versions of one source): by their S3 event
/// sequencers when both have one, else by when their jobs were created (a local file's
/// modification time stands in for a sequencer).
pub fn uploaded_later(a: &JobRecord, b: &JobRecord) -> bool {
    let sequencer = |j: &JobRecord| j.settings.as_ref().and_then(|s| s.source_sequencer.clone());
    let by_upload = match (sequencer(a), sequencer(b)) {
        (Some(x), Some(y)) => crate::job::sequencer_order(&x, &y),
        _ => upload_time(a).total_cmp(&upload_time(b)),
    };
    // Re-packaged versions of one upload share its sequencer: the later re-packaging is
    // the newer version (and of two made at once, the one made later).
    by_upload
        .then_with(|| revision(a).cmp(&revision(b)))
        .then_with(|| a.created_at.total_cmp(&b.created_at))
        == std::cmp::Ordering::Greater
}

/// When the upload `job` publishes was made into a job: a re-packaged version stands where
/// the encoded version it descends from stands.
pub(crate) fn upload_time(job: &JobRecord) -> f64 {
    job.settings
        .as_ref()
        .and_then(|s| s.repackage.as_ref())
        .map_or(job.created_at, |r| r.base_created_at)
}

/// How many re-packagings since the last encode `job` is (0 for an encoded version).
pub(crate) fn revision(job: &JobRecord) -> u32 {
    job.settings
        .as_ref()
        .and_then(|s| s.repackage.as_ref())
        .map_or(0, |r| r.revision)
}
