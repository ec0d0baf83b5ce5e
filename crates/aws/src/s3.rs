//! The object store on S3: the output bucket for everything vodpipe writes, and presigned
//! GETs so ffmpeg reads sources and segments with range requests instead of downloads.
//!
//! Segments and per-job manifests are immutable (`Cache-Control: max-age=31536000,
//! immutable`); the pointer manifests live seconds in caches. Every object is written with
//! server-side encryption.

use crate::backend;
use crate::config::Bridge;
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{
    CompletedMultipartUpload, CompletedPart, ServerSideEncryption, Tag, Tagging,
};
use aws_sdk_s3::Client;
use std::sync::Arc;
use std::time::Duration;
use vodpipe_control::ports::{Cacheability, ObjectStore, PortError, PortResult};

/// Runs `op` on every item with at most `PARALLEL_UPLOADS` in flight and waits for all of
/// them; the first error, if any (the rest still run to the end, so nothing is left
/// half-done in the background).
async fn bounded<T, F, Fut>(items: Vec<T>, what: &str, op: F) -> PortResult<()>
where
    T: Send + 'static,
    F: Fn(T) -> Fut,
    Fut: std::future::Future<Output = PortResult<()>> + Send + 'static,
{
    let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL_UPLOADS));
    let mut set = tokio::task::JoinSet::new();
    for item in items {
        let (limit, fut) = (limit.clone(), op(item));
        set.spawn(async move {
            let _permit = limit
                .acquire_owned()
                .await
                .map_err(|e| PortError::Backend(e.to_string()))?;
            fut.await
        });
    }
    let mut first = None;
    while let Some(done) = set.join_next().await {
        let r = done
            .map_err(|e| PortError::Backend(format!("{what} task: {e}")))
            .and_then(|r| r);
        if let (Err(e), None) = (r, &first) {
            first = Some(e);
        }
    }
    first.map_or(Ok(()), Err)
}

/// The object tag that marks a superseded job directory; the output bucket's lifecycle
/// rule expires objects carrying it (`infra/template.yaml`, `vodpipe aws bootstrap`).
pub const SUPERSEDED_TAG: &str = "vodpipe-superseded";

/// The lifecycle rule's age for superseded objects. S3 counts it from each object's
/// creation, not from its tagging, so a job directory older than this goes at the next
/// lifecycle run after it is superseded (within about a day), a younger one when it
/// reaches this age.
pub const SUPERSEDED_EXPIRY_DAYS: i32 = 7;

/// The user metadata naming the write that stored a pointer (see `put_if`).
const WRITE_ID_META: &str = "vodpipe-write";

/// Objects above this size are uploaded in parts.
pub const MULTIPART_THRESHOLD: usize = 32 * 1024 * 1024;
/// Part size for multipart uploads.
const PART_SIZE: usize = 16 * 1024 * 1024;
/// Uploads in flight at once in `put_many`.
const PARALLEL_UPLOADS: usize = 8;

/// Uploads one object: a single PUT, or a multipart upload above the threshold (aborted
/// on failure so no parts linger).
/// A single-request PUT of `key` with the headers every object gets: its content type,
/// `Cache-Control` for `cache`, and SSE.
fn put_request(
    client: &Client,
    bucket: &str,
    key: &str,
    bytes: Vec<u8>,
    cache: Cacheability,
) -> aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder {
    client
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(bytes))
        .content_type(content_type(key))
        .cache_control(cache_control(cache))
        .server_side_encryption(ServerSideEncryption::Aes256)
}

async fn upload(
    client: Client,
    bucket: String,
    key: String,
    bytes: Vec<u8>,
    cache: Cacheability,
) -> PortResult<()> {
    if bytes.len() <= MULTIPART_THRESHOLD {
        put_request(&client, &bucket, &key, bytes, cache)
            .send()
            .await
            .map_err(|e| backend(&format!("s3 put {key}"), e))?;
        return Ok(());
    }
    let created = client
        .create_multipart_upload()
        .bucket(&bucket)
        .key(&key)
        .content_type(content_type(&key))
        .cache_control(cache_control(cache))
        .server_side_encryption(ServerSideEncryption::Aes256)
        .send()
        .await
        .map_err(|e| backend(&format!("s3 multipart start {key}"), e))?;
    let upload_id = created.upload_id().unwrap_or_default().to_string();
    let result: PortResult<Vec<CompletedPart>> = async {
        let mut parts = Vec::new();
        for (n, chunk) in bytes.chunks(PART_SIZE).enumerate() {
            let number = n as i32 + 1;
            let out = client
                .upload_part()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&upload_id)
                .part_number(number)
                .body(ByteStream::from(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| backend(&format!("s3 part {number} of {key}"), e))?;
            parts.push(
                CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(out.e_tag().map(str::to_string))
                    .build(),
            );
        }
        Ok(parts)
    }
    .await;
    match result {
        Ok(parts) => {
            client
                .complete_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&upload_id)
                .multipart_upload(
                    CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                )
                .send()
                .await
                .map_err(|e| backend(&format!("s3 multipart complete {key}"), e))?;
            Ok(())
        }
        Err(e) => {
            let _ = client
                .abort_multipart_upload()
                .bucket(&bucket)
                .key(&key)
                .upload_id(&upload_id)
                .send()
                .await;
            Err(e)
        }
    }
}

/// How ffmpeg and ffprobe are handed a source object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SourceAccess {
    /// A presigned HTTPS GET: for ffmpeg builds with TLS (the workers, the CLI).
    #[default]
    Presigned,
    /// A URL on 127.0.0.1 served by this process ([`crate::loopback`]): for the Lambda
    /// layer's ffprobe, which has no TLS.
    Loopback,
}

impl SourceAccess {
    /// `VODPIPE_SOURCE_ACCESS`: `presigned` (the default) or `loopback`.
    pub fn from_env() -> PortResult<Self> {
        match std::env::var("VODPIPE_SOURCE_ACCESS").as_deref() {
            Err(_) | Ok("") | Ok("presigned") => Ok(SourceAccess::Presigned),
            Ok("loopback") => Ok(SourceAccess::Loopback),
            Ok(other) => Err(PortError::Backend(format!(
                "VODPIPE_SOURCE_ACCESS is {other:?}; use presigned or loopback"
            ))),
        }
    }
}

/// The S3 object store over one output bucket.
pub struct S3Objects {
    client: Client,
    bridge: Arc<Bridge>,
    bucket: String,
    access: SourceAccess,
    /// Started on the first source opened through it.
    loopback: std::sync::Mutex<Option<Arc<crate::loopback::Loopback>>>,
    /// The bucket the deployment's ladder profiles live in (the ingest bucket).
    profiles_bucket: Option<String>,
}

/// Content-Type by extension, as players and CDNs expect.
pub fn content_type(key: &str) -> &'static str {
    match key.rsplit('.').next() {
        Some("m3u8") => "application/vnd.apple.mpegurl",
        Some("mpd") => "application/dash+xml",
        Some("m4s") => "video/iso.segment",
        Some("mp4") => "video/mp4",
        Some("json") => "application/json",
        Some("vtt") => "text/vtt",
        Some("jpg") => "image/jpeg",
        _ => "application/octet-stream",
    }
}

/// Cache-Control for a cacheability class.
pub fn cache_control(c: Cacheability) -> &'static str {
    match c {
        Cacheability::Immutable => "public, max-age=31536000, immutable",
        Cacheability::ShortLived => "public, max-age=5, must-revalidate",
    }
}

/// Splits `s3://bucket/key`.
pub fn parse_s3_uri(uri: &str) -> Option<(&str, &str)> {
    uri.strip_prefix("s3://")?
        .split_once('/')
        .filter(|(b, k)| !b.is_empty() && !k.is_empty())
}

impl S3Objects {
    /// Every key under `prefix` in `bucket`, sorted.
    fn list_in(&self, bucket: &str, prefix: &str) -> PortResult<Vec<String>> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .bridge
                .run(
                    self.client
                        .list_objects_v2()
                        .bucket(bucket)
                        .prefix(prefix)
                        .set_continuation_token(token.take())
                        .send(),
                )
                .map_err(|e| backend("s3 list", e))?;
            keys.extend(
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            match out.next_continuation_token() {
                Some(t) if out.is_truncated().unwrap_or(false) => token = Some(t.to_string()),
                _ => break,
            }
        }
        keys.sort();
        Ok(keys)
    }

    /// The store over `bucket`. Path-style addressing keeps emulators and dotted bucket
    /// names working.
    pub fn new(bridge: Arc<Bridge>, sdk: &aws_config::SdkConfig, bucket: &str) -> Self {
        let conf = aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build();
        S3Objects {
            client: Client::from_conf(conf),
            bridge,
            bucket: bucket.to_string(),
            access: SourceAccess::Presigned,
            loopback: std::sync::Mutex::new(None),
            profiles_bucket: None,
        }
    }

    /// The same store, reading ladder profiles from `bucket`
    /// (`_vodpipe/profiles/<name>.json`).
    pub fn with_profiles_in(mut self, bucket: &str) -> Self {
        self.profiles_bucket = Some(bucket.to_string());
        self
    }

    /// `HEAD` of an `s3://` URI; a missing object is `NotFound`.
    fn head_object(
        &self,
        uri: &str,
        version: Option<&str>,
    ) -> PortResult<aws_sdk_s3::operation::head_object::HeadObjectOutput> {
        let (bucket, key) = parse_s3_uri(uri)
            .ok_or_else(|| PortError::NotFound(format!("{uri} is not an s3:// URI")))?;
        self.bridge
            .run(
                self.client
                    .head_object()
                    .bucket(bucket)
                    .key(key)
                    .set_version_id(version.map(str::to_string))
                    .send(),
            )
            .map_err(|e| {
                if e.as_service_error().is_some_and(|se| se.is_not_found()) {
                    PortError::NotFound(uri.to_string())
                } else {
                    backend("s3 head", e)
                }
            })
    }

    /// An object's bytes (at most the first `limit`), or `None` when it does not exist.
    fn get_optional(
        &self,
        bucket: &str,
        key: &str,
        limit: Option<usize>,
    ) -> PortResult<Option<Vec<u8>>> {
        let mut get = self.client.get_object().bucket(bucket).key(key);
        if let Some(n) = limit {
            get = get.range(format!("bytes=0-{}", n.saturating_sub(1)));
        }
        let out = match self.bridge.run(get.send()) {
            Ok(out) => out,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Ok(None)
            }
            // No range of an empty object is satisfiable: the object is empty.
            Err(e)
                if limit.is_some()
                    && e.raw_response().is_some_and(|r| r.status().as_u16() == 416) =>
            {
                return Ok(Some(Vec::new()))
            }
            Err(e) => return Err(backend(&format!("s3 get {key}"), e)),
        };
        let body = self
            .bridge
            .run(out.body.collect())
            .map_err(|e| backend("s3 read body", e))?;
        Ok(Some(body.into_bytes().to_vec()))
    }

    /// The same store, handing sources out as `access` says.
    pub fn with_source_access(mut self, access: SourceAccess) -> Self {
        self.access = access;
        self
    }

    fn loopback(&self) -> PortResult<Arc<crate::loopback::Loopback>> {
        let mut slot = self
            .loopback
            .lock()
            .map_err(|_| PortError::Backend("loopback server lock poisoned".into()))?;
        if let Some(server) = slot.as_ref().filter(|s| s.is_alive()) {
            return Ok(server.clone());
        }
        let server = Arc::new(crate::loopback::Loopback::start(
            self.bridge.clone(),
            self.client.clone(),
        )?);
        *slot = Some(server.clone());
        Ok(server)
    }

    fn presign_in(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
        ttl: Duration,
    ) -> PortResult<String> {
        let conf = PresigningConfig::expires_in(ttl).map_err(|e| backend("presign config", e))?;
        let req = self
            .bridge
            .run(
                self.client
                    .get_object()
                    .bucket(bucket)
                    .key(key)
                    .set_version_id(version.map(str::to_string))
                    .presigned(conf),
            )
            .map_err(|e| backend("s3 presign", e))?;
        Ok(req.uri().to_string())
    }
}

impl S3Objects {
    /// The bucket this store writes to.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The source's identity (version id, else ETag) for job ids, its size for the size
    /// cap, and its version id when the bucket keeps versions (for reads to pin).
    pub fn head(&self, uri: &str) -> PortResult<(String, u64, Option<String>)> {
        self.head_at(uri, None)
    }

    /// [`Self::head`] of one version (the latest when `None`).
    pub fn head_at(
        &self,
        uri: &str,
        version: Option<&str>,
    ) -> PortResult<(String, u64, Option<String>)> {
        let out = self.head_object(uri, version)?;
        let version_id = out
            .version_id()
            .filter(|v| *v != "null")
            .map(str::to_string);
        let identity = version_id
            .clone()
            .or(out.e_tag().map(str::to_string))
            .unwrap_or_default();
        Ok((
            identity,
            out.content_length().unwrap_or(0).max(0) as u64,
            version_id,
        ))
    }

    /// Tags one version of a source (the latest when `None`) with `key=value`, replacing
    /// its tags: what the bucket's lifecycle rules select by.
    pub fn tag(&self, uri: &str, version: Option<&str>, key: &str, value: &str) -> PortResult<()> {
        let (bucket, object) = parse_s3_uri(uri)
            .ok_or_else(|| PortError::Backend(format!("{uri} is not an s3://BUCKET/KEY URI")))?;
        let tagging = aws_sdk_s3::types::Tagging::builder()
            .tag_set(
                aws_sdk_s3::types::Tag::builder()
                    .key(key)
                    .value(value)
                    .build()
                    .map_err(|e| backend("s3 tag", e))?,
            )
            .build()
            .map_err(|e| backend("s3 tagging", e))?;
        self.bridge
            .run(
                self.client
                    .put_object_tagging()
                    .bucket(bucket)
                    .key(object)
                    .set_version_id(version.map(str::to_string))
                    .tagging(tagging)
                    .send(),
            )
            .map_err(|e| backend(&format!("s3 tag {uri}"), e))?;
        Ok(())
    }
}

impl ObjectStore for S3Objects {
    fn get_tagged(&self, key: &str) -> PortResult<Option<(Vec<u8>, String)>> {
        let out = match self.bridge.run(
            self.client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send(),
        ) {
            Ok(o) => o,
            Err(e) if e.as_service_error().is_some_and(|se| se.is_no_such_key()) => {
                return Ok(None)
            }
            Err(e) => return Err(backend(&format!("s3 get {key}"), e)),
        };
        let etag = out.e_tag().unwrap_or_default().to_string();
        let bytes = self
            .bridge
            .run(out.body.collect())
            .map_err(|e| backend(&format!("s3 read {key}"), e))?
            .into_bytes()
            .to_vec();
        Ok(Some((bytes, etag)))
    }

    fn put_if(
        &self,
        key: &str,
        bytes: &[u8],
        cache: Cacheability,
        expected: Option<&str>,
    ) -> PortResult<bool> {
        // The object carries this write's id: a retry after a lost response meets the
        // object it wrote itself (412) and recognises it by the id, instead of reporting
        // that another writer got there first.
        let wid = crate::dynamo::random_token();
        let mut req = put_request(&self.client, &self.bucket, key, bytes.to_vec(), cache)
            .metadata(WRITE_ID_META, &wid);
        req = match expected {
            Some(etag) => req.if_match(etag),
            None => req.if_none_match("*"),
        };
        match self.bridge.run(req.send()) {
            Ok(_) => Ok(true),
            // 412: the object changed (or appeared); 409: a concurrent conditional write.
            Err(e)
                if e.raw_response()
                    .is_some_and(|r| matches!(r.status().as_u16(), 412 | 409)) =>
            {
                let uri = self.locate(key);
                let ours = match self.head_object(&uri, None) {
                    Ok(head) => head
                        .metadata()
                        .and_then(|m| m.get(WRITE_ID_META))
                        .is_some_and(|w| *w == wid),
                    Err(PortError::NotFound(_)) => false,
                    Err(e) => return Err(e),
                };
                Ok(ours)
            }
            Err(e) => Err(backend(&format!("s3 conditional put {key}"), e)),
        }
    }

    fn put(&self, key: &str, bytes: &[u8], cache: Cacheability) -> PortResult<()> {
        self.bridge.run(upload(
            self.client.clone(),
            self.bucket.clone(),
            key.to_string(),
            bytes.to_vec(),
            cache,
        ))
    }

    fn put_many(&self, objects: &[(String, &[u8])], cache: Cacheability) -> PortResult<()> {
        let jobs: Vec<_> = objects
            .iter()
            .map(|(k, b)| (k.clone(), b.to_vec()))
            .collect();
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        self.bridge
            .run(bounded(jobs, "upload", move |(key, bytes)| {
                upload(client.clone(), bucket.clone(), key, bytes, cache)
            }))
    }

    fn get(&self, key: &str) -> PortResult<Vec<u8>> {
        self.get_optional(&self.bucket, key, None)?
            .ok_or_else(|| PortError::NotFound(key.to_string()))
    }

    fn locate(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.bucket)
    }

    fn list(&self, prefix: &str) -> PortResult<Vec<String>> {
        self.list_in(&self.bucket, prefix)
    }

    fn source_siblings(&self, source: &str) -> PortResult<Vec<String>> {
        let (bucket, key) = parse_s3_uri(source)
            .ok_or_else(|| PortError::NotFound(format!("source {source} is not an s3:// URI")))?;
        let (dir, name) = key.rsplit_once('/').map_or(("", key), |(d, n)| (d, n));
        let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
        let prefix = if dir.is_empty() {
            format!("{stem}.")
        } else {
            format!("{dir}/{stem}.")
        };
        Ok(self
            .list_in(bucket, &prefix)?
            .into_iter()
            .filter(|k| k != key && !k[prefix.len()..].contains('/'))
            .map(|k| format!("s3://{bucket}/{k}"))
            .collect())
    }

    fn retire(&self, prefix: &str) -> PortResult<u32> {
        let keys = self.list(prefix)?;
        let n = keys.len() as u32;
        let (client, bucket) = (self.client.clone(), self.bucket.clone());
        // One tagging call per object (S3 has no prefix-wide tagging), PARALLEL_UPLOADS in
        // flight: a feature film's ten thousand segments take seconds, not minutes.
        let tagged = bounded(keys, "tagging", move |key| {
            let (client, bucket) = (client.clone(), bucket.clone());
            async move {
                let tag = Tag::builder()
                    .key(SUPERSEDED_TAG)
                    .value("true")
                    .build()
                    .map_err(|e| backend("s3 tag", e))?;
                let tagging = Tagging::builder()
                    .tag_set(tag)
                    .build()
                    .map_err(|e| backend("s3 tagging", e))?;
                client
                    .put_object_tagging()
                    .bucket(bucket)
                    .key(&key)
                    .tagging(tagging)
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| backend(&format!("s3 put object tagging {key}"), e))
            }
        });
        self.bridge.run(tagged).map(|()| n)
    }

    fn delete(&self, key: &str) -> PortResult<()> {
        self.bridge
            .run(
                self.client
                    .delete_object()
                    .bucket(&self.bucket)
                    .key(key)
                    .send(),
            )
            .map_err(|e| backend(&format!("s3 delete {key}"), e))?;
        Ok(())
    }

    fn presign(&self, key: &str, ttl: Duration) -> PortResult<String> {
        self.presign_in(&self.bucket, key, None, ttl)
    }

    fn source_metadata(
        &self,
        source: &str,
        version: Option<&str>,
    ) -> PortResult<std::collections::BTreeMap<String, String>> {
        Ok(self
            .head_object(source, version)?
            .metadata()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                    .collect()
            })
            .unwrap_or_default())
    }

    fn source_settings_file(&self, source: &str) -> PortResult<Option<Vec<u8>>> {
        let (bucket, key) = parse_s3_uri(source)
            .ok_or_else(|| PortError::NotFound(format!("source {source} is not an s3:// URI")))?;
        // One byte past the limit, so a file too large is seen to be and refused.
        self.get_optional(
            bucket,
            &vodpipe_control::settings::settings_key(key),
            Some(vodpipe_control::settings::MAX_SETTINGS_FILE_BYTES + 1),
        )
    }

    fn profile(&self, name: &str) -> PortResult<Option<Vec<u8>>> {
        match &self.profiles_bucket {
            Some(bucket) => {
                self.get_optional(bucket, &vodpipe_control::settings::profile_key(name), None)
            }
            None => Ok(None),
        }
    }

    fn overlay(&self, name: &str) -> PortResult<Option<Vec<u8>>> {
        match &self.profiles_bucket {
            Some(bucket) => self.get_optional(
                bucket,
                &vodpipe_control::settings::overlay_key(name),
                Some(vodpipe_media::overlay::MAX_PNG_BYTES + 1),
            ),
            None => Ok(None),
        }
    }

    fn open_source(
        &self,
        source: &str,
        version: Option<&str>,
        ttl: Duration,
    ) -> PortResult<String> {
        let (bucket, key) = parse_s3_uri(source)
            .ok_or_else(|| PortError::NotFound(format!("source {source} is not an s3:// URI")))?;
        match self.access {
            SourceAccess::Presigned => self.presign_in(bucket, key, version, ttl),
            SourceAccess::Loopback => self.loopback()?.url(bucket, key, version, ttl),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_uris_split_into_bucket_and_key() {
        assert_eq!(
            parse_s3_uri("s3://b/dir/a b+c.mp4"),
            Some(("b", "dir/a b+c.mp4"))
        );
        assert_eq!(parse_s3_uri("s3://b/"), None);
        assert_eq!(parse_s3_uri("/local/file"), None);
    }

    #[test]
    fn segments_are_immutable_and_pointers_short_lived() {
        assert!(cache_control(Cacheability::Immutable).contains("immutable"));
        assert!(cache_control(Cacheability::ShortLived).contains("max-age=5"));
        assert_eq!(
            content_type("a/master.m3u8"),
            "application/vnd.apple.mpegurl"
        );
        assert_eq!(
            content_type("a/j/c00001.1/720p/00004.m4s"),
            "video/iso.segment"
        );
    }
}
