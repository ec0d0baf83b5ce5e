//! Encoding: one ffmpeg process per chunk for the whole ladder, and one per audio track
//! for the whole source.
//!
//! A chunk is decoded once and `split` to every rung's scaler and encoder. Keyframes are
//! forced on exactly the planned segment boundaries (by frame number, not time, so no
//! rounding can move them) and nowhere else (no scene-cut IDRs, closed GOPs). Each rung is
//! written as a fragmented MP4 that fragments at keyframes, so one fragment is one planned
//! segment. The result is then distrusted: frame and segment counts are checked against
//! the plan and every segment must start with a keyframe; a mismatch fails the attempt.
//!
//! Audio is never chunked (per-chunk AAC would put ~21 ms of priming silence at every
//! join): each track is encoded once and fragmented at the segment duration.
//!
//! Stills cost no extra decode: two more branches of the chunk's `split` write the chunk's
//! thumbnail sprite (each segment's first frame, tiled in a row) and, in the chunk holding
//! the frame a third of the way in, the poster: of the first 30 frames from that one on
//! that are not dark, the one nearest their average colour histogram. Captions
//! the source carries in its pictures (CEA-608/708 in ATSC A/53 SEI) ride along to every
//! rung (`-a53cc`).

use crate::error::{Error, Result};
use crate::info::{FieldOrder, MediaInfo, VideoInfo};
use crate::ladder::{LadderConfig, Rung, VideoCodec};
use crate::mp4::{self, Fragment};
use crate::plan::{Chunk, Plan};
use crate::probe::input_args;
use crate::process::ToolRun;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

/// Samples of priming ffmpeg's native AAC encoder puts before the first real sample.
pub const AAC_PRIMING_SAMPLES: i64 = 1024;
/// Output audio sample rate: one rate for every track keeps the audio timeline simple.
pub const AUDIO_RATE: u32 = 48000;

/// What a chunk or audio encode needs besides the plan.
#[derive(Clone)]
pub struct EncodeContext<'a> {
    /// ffmpeg binary.
    pub ffmpeg: &'a str,
    /// The source file (local path; on AWS, a downloaded or presigned copy).
    pub source: &'a Path,
    /// Probe result.
    pub media: &'a MediaInfo,
    /// The chunk plan (segment duration for audio fragments).
    pub plan: &'a Plan,
    /// Rungs to produce.
    pub rungs: &'a [Rung],
    /// Encoder settings.
    pub config: &'a LadderConfig,
    /// Scratch directory for ffmpeg's outputs.
    pub scratch: &'a Path,
    /// Run-time cap per ffmpeg process.
    pub timeout: Duration,
    /// Set to stop the encode (lost lease).
    pub cancel: Arc<AtomicBool>,
    /// The process-wide shutdown flag: watched directly, so a SIGTERM kills ffmpeg
    /// within milliseconds whatever else the worker is doing.
    pub shutdown: Arc<AtomicBool>,
    /// For a subtitle item: which stream of `source` (or a sidecar file as `source`).
    pub text: Option<crate::captions::TextInput>,
}

/// One rung of an encoded chunk (or one audio track): the init segment and the media
/// segments, already placed on the source's timeline.
#[derive(Debug, Clone)]
pub struct TrackOutput {
    /// Rung name, or `audio_<n>`.
    pub name: String,
    /// Init segment bytes.
    pub init: Vec<u8>,
    /// Media segments in order.
    pub segments: Vec<Fragment>,
    /// Track timescale (ticks per second).
    pub timescale: u32,
    /// How the track was encrypted, once it is ([`crate::cenc`]).
    pub protection: Option<crate::cenc::Signalling>,
}

/// What one work item produced: fMP4 tracks, and for a video chunk its stills, or for a
/// subtitle item its WebVTT.
#[derive(Debug, Clone, Default)]
pub struct Encoded {
    /// Rungs of a chunk, or renditions of an audio track.
    pub tracks: Vec<TrackOutput>,
    /// The chunk's thumbnail sprite and, from the poster chunk, the poster.
    pub stills: Stills,
    /// A subtitle rendition.
    pub text: Option<crate::captions::TextOutput>,
}

impl From<Vec<TrackOutput>> for Encoded {
    fn from(tracks: Vec<TrackOutput>) -> Self {
        Encoded {
            tracks,
            ..Default::default()
        }
    }
}

/// A chunk's stills, as JPEG bytes.
#[derive(Debug, Clone, Default)]
pub struct Stills {
    /// One tile per segment (the segment's first frame), left to right, on a grid of
    /// [`crate::plan::Plan::segments_per_chunk`] columns and one row, every tile
    /// [`thumbnail_size`]; a short last chunk leaves the rest of the row blank.
    pub sprite: Option<Vec<u8>>,
    /// The poster: a representative frame from a third of the way in that is not dark, at
    /// [`poster_size`].
    pub poster: Option<Vec<u8>>,
}

/// Width of a scrubbing thumbnail, in pixels (what players' seek bars show).
pub const THUMB_WIDTH: u32 = 160;
/// Mean luma (8-bit, limited range: black is 16) a frame must exceed to be a poster.
const POSTER_MIN_LUMA: u32 = 32;
/// How many bright frames the poster is chosen among (the one nearest their average
/// colour histogram: ffmpeg's `thumbnail`); buffered at poster size.
const POSTER_CANDIDATES: u64 = 30;

/// A thumbnail tile's size: [`THUMB_WIDTH`] wide, the display aspect ratio kept, even.
pub fn thumbnail_size(video: &VideoInfo) -> (u32, u32) {
    let (w, h) = video.display_size();
    let h = (f64::from(THUMB_WIDTH) * f64::from(h) / f64::from(w.max(1))).round() as u32;
    (THUMB_WIDTH, h.div_ceil(2) * 2)
}

/// Widest poster, in pixels: a poster is a page image, and its candidates are buffered.
pub const POSTER_MAX_WIDTH: u32 = 1280;

/// The poster's size: the largest rung's, at most [`POSTER_MAX_WIDTH`] wide (even, aspect
/// kept).
pub fn poster_size(rungs: &[Rung]) -> Option<(u32, u32)> {
    rungs
        .iter()
        .max_by_key(|r| u64::from(r.width) * u64::from(r.height))
        .map(|r| {
            if r.width <= POSTER_MAX_WIDTH {
                (r.width, r.height)
            } else {
                let h = (f64::from(POSTER_MAX_WIDTH) * f64::from(r.height) / f64::from(r.width))
                    .round() as u32;
                (POSTER_MAX_WIDTH, h.div_ceil(2) * 2)
            }
        })
}

/// Where a chunk encode writes its stills.
#[derive(Debug, Clone)]
pub struct StillPaths {
    /// The sprite.
    pub sprite: PathBuf,
    /// The poster, for the poster chunk.
    pub poster: Option<PathBuf>,
}

/// The video track timescale: the source time base's denominator, so source timestamps and
/// chunk offsets map to output ticks exactly (× the time base numerator).
pub fn video_timescale(v: &VideoInfo) -> u32 {
    u32::try_from(v.time_base.den).unwrap_or(90000)
}

/// The ffmpeg arguments for one chunk; pure so it can be inspected and tested.
pub fn chunk_args(
    ctx: &EncodeContext<'_>,
    video: &VideoInfo,
    chunk: &Chunk,
    outputs: &[PathBuf],
    stills: Option<&StillPaths>,
) -> Vec<String> {
    let mut a: Vec<String> = [
        "-hide_banner",
        "-nostdin",
        "-nostats",
        "-loglevel",
        "error",
        "-progress",
        "pipe:1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(chunk_input(ctx, chunk));
    let overlay = ctx.config.overlay.as_ref().filter(|o| !o.png.is_empty());
    if overlay.is_some() {
        // The image, looped, as input 1 (written beside the outputs by `encode_chunk`).
        a.extend([
            "-loop".into(),
            "1".into(),
            "-i".into(),
            overlay_path(ctx, chunk).display().to_string(),
        ]);
    }
    let mut pre: Vec<String> = preroll_filter(chunk).into_iter().collect();
    pre.push("setpts=PTS-STARTPTS".to_string());
    if video.field_order == FieldOrder::Interlaced {
        pre.push("bwdif=mode=send_frame:parity=auto:deint=all".into());
    }
    let n = ctx.rungs.len();
    let still_count = stills.map_or(0, |s| 1 + usize::from(s.poster.is_some()));
    let source_range = video.colour.dynamic_range();
    // An HDR source's SDR rungs and stills come from one tone-mapped branch (tone-mapped
    // once, at the largest size any of them needs); its HDR rungs keep 10 bits.
    let sdr_rungs: Vec<usize> = (0..n).filter(|&i| !ctx.rungs[i].range.is_hdr()).collect();
    let tone_map = source_range.is_hdr() && sdr_rungs.len() + still_count > 0;
    // Label of each rung's input, and of each still's.
    let mut rung_in: Vec<String> = vec![String::new(); n];
    let mut still_in: Vec<String> = Vec::new();
    let mut top: Vec<String> = Vec::new();
    let mut tm_graph = String::new();
    if tone_map {
        for (i, label) in rung_in.iter_mut().enumerate() {
            if ctx.rungs[i].range.is_hdr() {
                *label = format!("[s{i}]");
                top.push(label.clone());
            }
        }
        top.push("[tm]".into());
        let (tw, th) = tone_map_size(
            ctx.rungs,
            &sdr_rungs,
            stills.and_then(|s| s.poster.as_ref()).is_some(),
        );
        let outs = sdr_rungs.len() + still_count;
        tm_graph = format!(
            ";[tm]scale={tw}:{th}:flags=bicubic,{},split={outs}",
            tone_map_filter(&video.colour)
        );
        for &i in &sdr_rungs {
            rung_in[i] = format!("[t{i}]");
            tm_graph.push_str(&rung_in[i]);
        }
        for k in 0..still_count {
            let l = format!("[ts{k}]");
            tm_graph.push_str(&l);
            still_in.push(l);
        }
    } else {
        for (i, label) in rung_in.iter_mut().enumerate() {
            *label = format!("[s{i}]");
            top.push(label.clone());
        }
        for k in 0..still_count {
            let l = format!("[s{}]", n + k);
            top.push(l.clone());
            still_in.push(l);
        }
    }
    let mut graph = format!(
        "[0:{}]{},split={}{}",
        video.index,
        pre.join(","),
        top.len(),
        top.concat()
    );
    graph.push_str(&tm_graph);
    if let Some(o) = overlay {
        graph.push_str(&format!(";{}", o.logo_chain("[1:v]", n)));
    }
    let chunk_start = chunk.start_ticks as f64 * video.time_base.as_f64();
    for (i, r) in ctx.rungs.iter().enumerate() {
        let format = if r.range.is_hdr() {
            "yuv420p10le"
        } else {
            "yuv420p"
        };
        let scaled = format!(
            ";{}scale={}:{}:flags=bicubic,setsar=1,format={format}",
            rung_in[i], r.width, r.height
        );
        match overlay {
            Some(o) => {
                graph.push_str(&format!("{scaled}[b{i}];"));
                graph.push_str(&o.draw(
                    i,
                    &format!("[b{i}]"),
                    &format!("[v{i}]"),
                    r.width,
                    chunk_start,
                ));
            }
            None => graph.push_str(&format!("{scaled}[v{i}]")),
        }
    }
    // Stills come from frames the chunk decodes anyway. Each still branch ends with the
    // chunk (trim), so the sprite of a short last chunk is written when its frames end.
    let mut still_outputs: Vec<(&'static str, &PathBuf, &'static str)> = Vec::new();
    if let Some(st) = stills {
        let (tw, th) = thumbnail_size(video);
        graph.push_str(&format!(
            ";{}trim=end_frame={},select='{}',scale={tw}:{th}:flags=bicubic,setsar=1,tile={}x1[sprite]",
            still_in[0],
            chunk.frames,
            frame_set_expr(&chunk.keyframe_offsets()),
            ctx.plan.segments_per_chunk().max(1)
        ));
        still_outputs.push(("[sprite]", &st.sprite, "5"));
        if let (Some(path), Some((pw, ph))) = (&st.poster, poster_size(ctx.rungs)) {
            // Candidates start at the frame a third of the way into the source (this chunk
            // holds it) and run to the chunk's end.
            let from = (ctx.plan.total_frames / 3)
                .saturating_sub(chunk.first_frame)
                .min(chunk.frames.saturating_sub(1));
            graph.push_str(&format!(
                ";{}trim=start_frame={from}:end_frame={},scale={pw}:{ph}:flags=bicubic,setsar=1,signalstats,metadata=mode=select:key=lavfi.signalstats.YAVG:value={POSTER_MIN_LUMA}:function=greater,thumbnail=n={}[poster]",
                still_in[1],
                chunk.frames,
                POSTER_CANDIDATES.min(chunk.frames - from).max(2)
            ));
            still_outputs.push(("[poster]", path, "3"));
        }
    }
    a.extend(["-filter_complex".into(), graph]);
    let kf = frame_set_expr(&chunk.keyframe_offsets());
    let timescale = video_timescale(video).to_string();
    for (i, (r, out)) in ctx.rungs.iter().zip(outputs).enumerate() {
        a.extend([
            "-map".into(),
            format!("[v{i}]"),
            "-frames:v".into(),
            chunk.frames.to_string(),
        ]);
        let hdr = r.range.is_hdr().then_some(&video.colour);
        a.extend(encoder_args(ctx.config, r, chunk, &kf, hdr));
        a.extend(colour_args(r, &video.colour));
        a.extend([
            "-fps_mode".into(),
            "passthrough".into(),
            "-enc_time_base:v".into(),
            "-1".into(),
            "-video_track_timescale".into(),
            timescale.clone(),
            "-an".into(),
            "-sn".into(),
            "-dn".into(),
            "-map_metadata".into(),
            "-1".into(),
            "-max_muxing_queue_size".into(),
            "4096".into(),
            "-f".into(),
            "mp4".into(),
            "-movflags".into(),
            "+frag_keyframe+empty_moov+default_base_moof+skip_trailer".into(),
            "-y".into(),
            out.display().to_string(),
        ]);
    }
    for (label, path, quality) in still_outputs {
        a.extend(jpeg_output(label, quality, path));
    }
    a
}

/// Where a chunk's encode finds its overlay image (written by [`encode_chunk`]).
fn overlay_path(ctx: &EncodeContext<'_>, chunk: &Chunk) -> PathBuf {
    ctx.scratch
        .join(format!("chunk{:05}_overlay.png", chunk.index))
}

/// An ffmpeg expression true on exactly the frame numbers `offsets` (ascending): for
/// `select` and `-force_key_frames expr:`. ffmpeg's parser refuses more than 100 terms in
/// one sum, which a long chunk's segment starts exceed (a 10-minute chunk of 4 s segments
/// has 150), so evenly spaced runs become one `between(n,a,b)*not(mod(n-a,step))` term
/// each (a constant frame rate's segments are a single run) and the terms are summed in
/// parenthesised groups of at most 50.
pub fn frame_set_expr(offsets: &[u64]) -> String {
    let mut terms = Vec::new();
    let mut i = 0;
    while i < offsets.len() {
        let start = offsets[i];
        let step = offsets.get(i + 1).map(|n| n - start);
        let mut end = i;
        if let Some(step) = step.filter(|s| *s > 0) {
            while end + 1 < offsets.len() && offsets[end + 1] - offsets[end] == step {
                end += 1;
            }
            if end - i >= 2 {
                terms.push(format!(
                    "between(n,{start},{})*not(mod(n-{start},{step}))",
                    offsets[end]
                ));
                i = end + 1;
                continue;
            }
        }
        terms.push(format!("eq(n,{start})"));
        i += 1;
    }
    if terms.is_empty() {
        return "0".into();
    }
    terms
        .chunks(50)
        .map(|group| format!("({})", group.join("+")))
        .collect::<Vec<_>>()
        .join("+")
}

/// The largest picture an HDR source's tone-mapped branch must give: its SDR rungs' and,
/// with a poster, the poster's.
fn tone_map_size(rungs: &[Rung], sdr: &[usize], poster: bool) -> (u32, u32) {
    let mut sizes: Vec<(u32, u32)> = sdr
        .iter()
        .map(|&i| (rungs[i].width, rungs[i].height))
        .collect();
    if poster {
        sizes.extend(poster_size(rungs));
    }
    if sizes.is_empty() {
        // Only the sprite: its tiles are small, the smallest rung is plenty.
        sizes.extend(
            rungs
                .iter()
                .map(|r| (r.width, r.height))
                .min_by_key(|(w, h)| w * h),
        );
    }
    sizes
        .into_iter()
        .max_by_key(|(w, h)| u64::from(*w) * u64::from(*h))
        .unwrap_or((THUMB_WIDTH, THUMB_WIDTH))
}

/// The filters that tone-map an HDR picture (PQ or HLG, as `colour` states) to BT.709 SDR,
/// 8-bit limited range: zimg to linear light (100 cd/m² as 1.0), BT.709 primaries, the
/// Möbius curve (linear through the shadows and mid-tones, so a picture graded near SDR
/// white keeps its brightness, with highlights rolled off rather than clipped; Hable's
/// curve darkened such pictures by a third), BT.709 transfer and matrix.
pub fn tone_map_filter(colour: &crate::colour::Colour) -> String {
    format!(
        "zscale={}:t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=tonemap=mobius:desat=0,zscale=t=bt709:m=bt709:r=tv,format=yuv420p",
        colour.zscale_input()
    )
}

/// The colour a rung states, in its bitstream (VUI) and its `colr` box: an HDR rung its
/// source's own description, an SDR rung of an HDR source BT.709 (it was tone-mapped). An
/// SDR source's rungs get nothing new: they publish exactly as they always have.
fn colour_args(r: &Rung, source: &crate::colour::Colour) -> Vec<String> {
    // HDR rungs keep the source's pixels and so its range; tone-mapped ones are limited.
    let (p, t, m, range) = if r.range.is_hdr() {
        let (p, t, m) = source.hdr_triplet();
        (p, t, m, source.range.as_deref().unwrap_or("tv"))
    } else if source.dynamic_range().is_hdr() {
        ("bt709", "bt709", "bt709", "tv")
    } else {
        return Vec::new();
    };
    [
        "-color_primaries",
        p,
        "-color_trc",
        t,
        "-colorspace",
        m,
        "-color_range",
        range,
    ]
    .map(String::from)
    .to_vec()
}

/// The encoder options of one rung: capped constant quality, keyframes on exactly the
/// chunk's segment starts (`kf`: a [`frame_set_expr`]) and nowhere else, closed GOPs.
///
/// `hdr` is the source's colour when the rung is HDR: its static metadata goes into an SEI
/// (x265) or a metadata OBU (SVT-AV1) on every key frame.
fn encoder_args(
    cfg: &LadderConfig,
    r: &Rung,
    chunk: &Chunk,
    kf: &str,
    hdr: Option<&crate::colour::Colour>,
) -> Vec<String> {
    let force = format!("expr:{kf}");
    let cap = [
        "-maxrate".to_string(),
        format!("{}k", r.max_kbps),
        "-bufsize".into(),
        format!("{}k", r.max_kbps * 2),
    ];
    let mut a: Vec<String> = Vec::new();
    match r.codec {
        VideoCodec::H264 => {
            a.extend(["-c:v", "libx264", "-preset"].map(String::from));
            a.push(cfg.preset.clone());
            a.extend(cfg.tune_args());
            a.extend(["-crf".into(), r.crf(cfg.crf).to_string()]);
            a.extend(cap);
            a.extend(
                [
                    "-profile:v",
                    "high",
                    "-bf",
                    "3",
                    "-x264-params",
                    "keyint=infinite:scenecut=0:open-gop=0:b-pyramid=normal",
                    "-forced-idr",
                    "1",
                    // CEA-608/708 captions the source carries in its pictures (ATSC A/53
                    // SEI) go into the same pictures of every H.264 rung.
                    "-a53cc",
                    "1",
                    "-force_key_frames",
                ]
                .map(String::from),
            );
            a.push(force);
        }
        VideoCodec::Hevc => {
            a.extend(["-c:v", "libx265", "-preset"].map(String::from));
            a.push(cfg.hevc_preset.clone());
            a.extend(cfg.tune_args());
            a.extend(["-crf".into(), r.crf(cfg.hevc_crf).to_string()]);
            a.extend(cap);
            let mut params = String::from(
                "keyint=-1:min-keyint=1:scenecut=0:open-gop=0:bframes=3:repeat-headers=0:info=0:log-level=error",
            );
            for p in hdr
                .map(crate::colour::Colour::x265_params)
                .unwrap_or_default()
            {
                params.push(':');
                params.push_str(&p);
            }
            a.extend([
                "-profile:v".into(),
                if hdr.is_some() { "main10" } else { "main" }.into(),
                // Parameter sets in the sample entry only: what Apple's players need.
                "-tag:v".into(),
                "hvc1".into(),
                "-x265-params".into(),
                params,
                "-forced-idr".into(),
                "1".into(),
                "-force_key_frames".into(),
            ]);
            a.push(force);
        }
        VideoCodec::Av1 => {
            // SVT-AV1 cannot put a keyframe on a chosen frame, only every N frames: the
            // plan gives AV1 jobs segments of equal frame counts (and the result is
            // verified like every rung's).
            let gop = chunk.keyframe_interval().unwrap_or(chunk.frames.max(1));
            a.extend(["-c:v", "libsvtav1", "-preset"].map(String::from));
            a.push(cfg.av1_preset.to_string());
            a.extend(["-crf".into(), r.av1_crf(cfg.av1_crf).to_string()]);
            a.extend(cap);
            a.extend([
                "-g".into(),
                gop.to_string(),
                // Closed GOPs (real key frames, not forward keyframes), no scene-cut
                // keyframes; an HDR rung's static metadata on every key frame.
                "-svtav1-params".into(),
                std::iter::once("irefresh-type=2:scd=0".to_string())
                    .chain(
                        hdr.map(crate::colour::Colour::svtav1_params)
                            .unwrap_or_default(),
                    )
                    .collect::<Vec<_>>()
                    .join(":"),
            ]);
        }
    }
    a
}

/// The input of a chunk's encode: the source, sought to just before the chunk's first
/// frame (accurate seeking keeps exactly that frame first), or, with a preroll, that much
/// earlier ([`preroll_filter`] then drops the frames before the chunk).
fn chunk_input(ctx: &EncodeContext<'_>, chunk: &Chunk) -> Vec<String> {
    let mut a = Vec::new();
    let seek = chunk.seek_secs - chunk.preroll_secs;
    if seek > 0.0 {
        a.extend(["-ss".into(), format!("{seek:.6}")]);
    }
    a.extend(input_args(ctx.source));
    a
}

/// The filter that drops a chunk's preroll (the frames decoded between where its input
/// seek landed and its first frame), if it has one. Timestamps enter the graph relative
/// to the seek, so the chunk's first frame is the first at or after the preroll: the seek
/// lies halfway between it and the frame before.
fn preroll_filter(chunk: &Chunk) -> Option<String> {
    (chunk.preroll_secs > 0.0).then(|| format!("trim=start={:.6}", chunk.preroll_secs))
}

/// Output options writing one JPEG from `label` of the filter graph.
fn jpeg_output(label: &str, quality: &str, path: &Path) -> Vec<String> {
    [
        "-map",
        label,
        "-frames:v",
        "1",
        "-fps_mode",
        "passthrough",
        "-c:v",
        "mjpeg",
        "-q:v",
        quality,
        "-map_metadata",
        "-1",
        "-update",
        "1",
        "-f",
        "image2",
        "-y",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([path.display().to_string()])
    .collect()
}

/// Arguments that take the chunk's first frame as the poster: for a poster chunk with no
/// frame bright enough (a dark scene), so the job still gets one.
fn first_frame_poster_args(
    ctx: &EncodeContext<'_>,
    video: &VideoInfo,
    chunk: &Chunk,
    size: (u32, u32),
    path: &Path,
) -> Vec<String> {
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(chunk_input(ctx, chunk));
    let trim = preroll_filter(chunk).map_or(String::new(), |t| format!("{t},"));
    let tone_map = if video.colour.dynamic_range().is_hdr() {
        format!(",{}", tone_map_filter(&video.colour))
    } else {
        String::new()
    };
    a.extend([
        "-filter_complex".into(),
        format!(
            "[0:{}]{trim}scale={}:{}:flags=bicubic,setsar=1{tone_map}[poster]",
            video.index, size.0, size.1
        ),
    ]);
    a.extend(jpeg_output("[poster]", "3", path));
    a
}

/// Encodes one chunk into every rung, verifies it against the plan and shifts its
/// segments onto the source timeline. `on_frames` receives progress (frames done).
pub fn encode_chunk(
    ctx: &EncodeContext<'_>,
    chunk: &Chunk,
    mut on_frames: impl FnMut(u64) + Send,
) -> Result<Encoded> {
    let video = ctx
        .media
        .video
        .as_ref()
        .ok_or_else(|| Error::Rejected("source has no video stream".into()))?;
    std::fs::create_dir_all(ctx.scratch).map_err(|e| Error::io("creating scratch dir", e))?;
    let outputs: Vec<PathBuf> = ctx
        .rungs
        .iter()
        .map(|r| {
            ctx.scratch
                .join(format!("chunk{:05}_{}.mp4", chunk.index, r.name))
        })
        .collect();
    // A plan made before segments knew their times (end_ticks 0) cannot place tiles.
    let stills = (ctx.config.thumbnails && ctx.plan.end_ticks > 0).then(|| StillPaths {
        sprite: ctx
            .scratch
            .join(format!("chunk{:05}_sprite.jpg", chunk.index)),
        poster: (ctx.plan.poster_chunk() == Some(chunk.index)).then(|| {
            ctx.scratch
                .join(format!("chunk{:05}_poster.jpg", chunk.index))
        }),
    });
    let overlay_png = ctx
        .config
        .overlay
        .as_ref()
        .filter(|o| !o.png.is_empty())
        .map(|o| (overlay_path(ctx, chunk), &o.png));
    if let Some((path, png)) = &overlay_png {
        std::fs::write(path, png).map_err(|e| Error::io("writing the overlay image", e))?;
    }
    let args = chunk_args(ctx, video, chunk, &outputs, stills.as_ref());
    let step = format!("encode chunk {}", chunk.index);
    let run = ToolRun::new(ctx.ffmpeg, args, step.clone())
        .timeout(ctx.timeout)
        .cancel_on(ctx.cancel.clone())
        .cancel_on(ctx.shutdown.clone())
        .on_line(|line| {
            if let Some(n) = line
                .strip_prefix("frame=")
                .and_then(|v| v.trim().parse().ok())
            {
                on_frames(n);
            }
        })
        .run();
    if let Some((path, _)) = &overlay_png {
        let _ = std::fs::remove_file(path);
    }
    run?;
    let offset = u64::try_from(chunk.start_ticks * video.time_base.num).map_err(|_| {
        Error::PlanMismatch(format!("chunk {} starts before the source", chunk.index))
    })?;
    let mut tracks = Vec::with_capacity(outputs.len());
    for (rung, path) in ctx.rungs.iter().zip(&outputs) {
        let what = format!("chunk {} rung {}", chunk.index, rung.name);
        let data =
            std::fs::read(path).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        let _ = std::fs::remove_file(path);
        let mut f = mp4::split(&data, &what)?;
        verify_chunk(&f.fragments, chunk, &what)?;
        // ffmpeg starts the chunk's decode time at 0 and presents its first frame after
        // the B-frame reorder delay. Make the first frame present at its decode time
        // (signed composition offsets), then move the chunk to its place on the source
        // timeline: its first frame's exact offset from the source's first frame.
        let first = &f.fragments[0];
        let (base, reorder) = (first.base_decode_time, first.first_cts_offset);
        for frag in &mut f.fragments {
            mp4::shift_composition(frag, reorder, &what)?;
            let rel = frag.base_decode_time - base;
            mp4::shift_decode_time(frag, offset + rel - frag.base_decode_time, &what)?;
        }
        if rung.range.is_hdr() {
            // ffmpeg writes the colour (`colr`) but not the static metadata: the rung's
            // init carries the source's `mdcv` and `clli` too.
            f.init =
                mp4::add_to_sample_entry(&f.init, &crate::colour::hdr_boxes(&video.colour), &what)?;
        }
        tracks.push(TrackOutput {
            name: rung.name.clone(),
            timescale: mp4::timescale(&f.init, &what)?,
            init: f.init,
            segments: f.fragments,
            protection: None,
        });
    }
    let mut out = Encoded::from(tracks);
    if let Some(st) = &stills {
        // Stills are best effort: a chunk without its sprite still counts (the stitch then
        // publishes no thumbnail track), and a poster falls back to the first frame.
        out.stills.sprite = match read_still(&st.sprite, &step) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(chunk = chunk.index, error = %e, "no thumbnail sprite");
                None
            }
        };
        if let (Some(path), Some(size)) = (&st.poster, poster_size(ctx.rungs)) {
            let bright = read_still(path, &step).ok();
            out.stills.poster = Some(match bright {
                Some(p) => p,
                None => {
                    ToolRun::new(
                        ctx.ffmpeg,
                        first_frame_poster_args(ctx, video, chunk, size, path),
                        "poster",
                    )
                    .timeout(ctx.timeout)
                    .cancel_on(ctx.cancel.clone())
                    .cancel_on(ctx.shutdown.clone())
                    .run()?;
                    read_still(path, "poster")?
                }
            });
        }
    }
    Ok(out)
}

/// A still the encode wrote (and removes it); an error when it wrote none.
fn read_still(path: &Path, step: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|e| Error::Tool {
        step: step.to_string(),
        detail: format!("no still at {}: {e}", path.display()),
    })?;
    let _ = std::fs::remove_file(path);
    if bytes.is_empty() {
        return Err(Error::Tool {
            step: step.to_string(),
            detail: format!("empty still at {}", path.display()),
        });
    }
    Ok(bytes)
}

/// The distrust step: every planned segment is there with its exact frame count and
/// starts with a keyframe.
pub fn verify_chunk(fragments: &[Fragment], chunk: &Chunk, what: &str) -> Result<()> {
    let got: u64 = fragments.iter().map(|f| f.samples).sum();
    if got != chunk.frames {
        return Err(Error::PlanMismatch(format!(
            "{what}: encoded {got} frames, the plan says {}",
            chunk.frames
        )));
    }
    if fragments.len() != chunk.segments.len() {
        return Err(Error::PlanMismatch(format!(
            "{what}: {} segments, the plan says {}",
            fragments.len(),
            chunk.segments.len()
        )));
    }
    for (f, s) in fragments.iter().zip(&chunk.segments) {
        if f.samples != s.frames || !f.starts_with_sync {
            return Err(Error::PlanMismatch(format!(
                "{what}: segment {} has {} frames (plan {}), starts with keyframe: {}",
                s.index, f.samples, s.frames, f.starts_with_sync
            )));
        }
    }
    Ok(())
}

/// ffmpeg arguments for audio track `track` (index into `media.audio`) as a `channels`
/// rendition (2: the stereo downmix; 6: 5.1), plus the tfdt offset to apply, at
/// [`AUDIO_RATE`].
pub fn audio_args(
    ctx: &EncodeContext<'_>,
    track: usize,
    channels: u32,
    out: &Path,
) -> Result<(Vec<String>, u64)> {
    let audio = ctx
        .media
        .audio
        .get(track)
        .ok_or_else(|| Error::PlanMismatch(format!("no audio track {track}")))?;
    let rate = f64::from(AUDIO_RATE);
    // Where the encoder's first output sample must be presented, in output samples: the
    // first real sample's offset from the first video frame (the timeline's 0), minus the
    // priming the encoder puts in front of it. If that is before 0, the same number of
    // source samples is trimmed instead, so sample n still plays at n / rate.
    let lead = ((audio.start_secs - ctx.media.video_start_secs) * rate).round() as i64
        - AAC_PRIMING_SAMPLES;
    let (trim, offset) = if lead >= 0 {
        (0, lead as u64)
    } else {
        ((-lead) as u64, 0)
    };
    let mut a: Vec<String> = ["-hide_banner", "-nostdin", "-nostats", "-loglevel", "error"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(input_args(ctx.source));
    let mut filter = format!("asetpts=PTS-STARTPTS,aresample={AUDIO_RATE}");
    if trim > 0 {
        filter.push_str(&format!(",atrim=start_sample={trim},asetpts=PTS-STARTPTS"));
    }
    if let Some(end) = ctx.media.end_secs {
        // A clip's end: the last sample kept is the one presented just before it on the
        // output timeline, where sample n of what is left plays at (priming + lead + n) /
        // rate.
        let keep = ((end - ctx.media.video_start_secs) * rate).round() as i64
            - AAC_PRIMING_SAMPLES
            - lead.max(0);
        filter.push_str(&format!(",atrim=end_sample={}", keep.max(1)));
    }
    if let Some(lufs) = ctx.config.loudness_lufs {
        // loudnorm works at 192 kHz; back to the output rate after it.
        filter.push_str(&format!(
            ",loudnorm=I={lufs}:TP=-1.5:LRA=11,aresample={AUDIO_RATE}"
        ));
    }
    if channels == 6 {
        // 5.1(side) and 5.1 both become the layout AAC signals for six channels.
        filter.push_str(",aformat=channel_layouts=5.1");
    }
    let kbps = if channels == 6 {
        ctx.config.audio_kbps * 3
    } else {
        ctx.config.audio_kbps
    };
    a.extend([
        "-map".into(),
        format!("0:{}", audio.index),
        "-af".into(),
        filter,
        "-c:a".into(),
        "aac".into(),
        "-profile:a".into(),
        "aac_low".into(),
        "-b:a".into(),
        format!("{kbps}k"),
        "-ac".into(),
        channels.to_string(),
        "-ar".into(),
        AUDIO_RATE.to_string(),
        "-vn".into(),
        "-sn".into(),
        "-dn".into(),
        "-map_metadata".into(),
        "-1".into(),
        "-f".into(),
        "mp4".into(),
        "-movflags".into(),
        "+empty_moov+default_base_moof+skip_trailer".into(),
        "-frag_duration".into(),
        ((ctx.plan.segment_secs * 1e6).round() as u64).to_string(),
        "-y".into(),
        out.display().to_string(),
    ]);
    Ok((a, offset))
}

/// Encodes audio track `track` of the source once per rendition, fragmented at the segment
/// duration, and places it on the video's timeline: the stereo downmix (`audio_<n>`)
/// always, and a 5.1 rendition (`audio_<n>_51`) when the ladder asks for surround and the
/// track has six or more channels.
pub fn encode_audio(ctx: &EncodeContext<'_>, track: usize) -> Result<Vec<TrackOutput>> {
    let channels = ctx.media.audio.get(track).map_or(2, |a| a.channels);
    let mut out = vec![encode_audio_as(ctx, track, 2)?];
    if ctx.config.surround && channels >= 6 {
        out.push(encode_audio_as(ctx, track, 6)?);
    }
    Ok(out)
}

/// Converts the subtitle track `ctx.text` names into a WebVTT rendition cut on the
/// plan's video segments (for a source without video, on segment-length pieces of its
/// duration).
pub fn encode_text(ctx: &EncodeContext<'_>) -> Result<Encoded> {
    use crate::captions::{webvtt_rendition, Limits, TextInput};
    let what = ctx
        .text
        .ok_or_else(|| Error::PlanMismatch("a subtitle item without its input".into()))?;
    // A stream's cues are on the container's clock; a sidecar's start at the container's
    // start (where a player showing the file starts its clock).
    let offset = match what {
        TextInput::Stream(_) => ctx.media.video_start_secs,
        TextInput::Sidecar => ctx.media.video_start_secs - ctx.media.start_secs,
    };
    let mut bounds = ctx.plan.segment_times();
    if bounds.is_empty() {
        let total = (ctx.media.duration_secs.unwrap_or(0.0)
            - (ctx.media.video_start_secs - ctx.media.start_secs))
            .max(0.0);
        let step = ctx.plan.segment_secs.max(1.0);
        let mut t = 0.0;
        while t < total {
            bounds.push((t, (t + step).min(total)));
            t += step;
        }
    }
    let text = webvtt_rendition(
        ctx.ffmpeg,
        ctx.source,
        what,
        offset,
        &bounds,
        ctx.scratch,
        &Limits {
            timeout: ctx.timeout,
            cancel: vec![ctx.cancel.clone(), ctx.shutdown.clone()],
            until_secs: ctx.media.end_secs.map(|e| e - ctx.media.video_start_secs),
        },
    )?;
    Ok(Encoded {
        text: Some(text),
        ..Default::default()
    })
}

/// The name of track `track`'s rendition with `channels` channels.
pub fn audio_rendition_name(track: usize, channels: u32) -> String {
    match channels {
        6 => format!("audio_{track}_51"),
        _ => format!("audio_{track}"),
    }
}

fn encode_audio_as(ctx: &EncodeContext<'_>, track: usize, channels: u32) -> Result<TrackOutput> {
    std::fs::create_dir_all(ctx.scratch).map_err(|e| Error::io("creating scratch dir", e))?;
    let name = audio_rendition_name(track, channels);
    let out = ctx.scratch.join(format!("{name}.mp4"));
    let (args, offset) = audio_args(ctx, track, channels, &out)?;
    let what = format!("audio track {track} ({channels} channels)");
    ToolRun::new(ctx.ffmpeg, args, what.clone())
        .timeout(ctx.timeout)
        .cancel_on(ctx.cancel.clone())
        .cancel_on(ctx.shutdown.clone())
        .run()?;
    let data =
        std::fs::read(&out).map_err(|e| Error::io(format!("reading {}", out.display()), e))?;
    let _ = std::fs::remove_file(&out);
    let mut f = mp4::split(&data, &what)?;
    if f.fragments.is_empty() {
        return Err(Error::PlanMismatch(format!(
            "{what}: the encoder produced no audio"
        )));
    }
    for frag in &mut f.fragments {
        mp4::shift_decode_time(frag, offset, &what)?;
    }
    Ok(TrackOutput {
        name,
        timescale: mp4::timescale(&f.init, &what)?,
        init: f.init,
        segments: f.fragments,
        protection: None,
    })
}

/// Encrypts an encoded track in place, its init segment and every fragment ([`crate::cenc`]):
/// what a protected job's worker does to each rung and audio rendition before storing it.
pub fn protect_track(track: &mut TrackOutput, p: &crate::cenc::Protection) -> Result<()> {
    let ctx = format!("protecting {}", track.name);
    let (init, mut protector) = crate::cenc::protect_init(&track.init, p, &ctx)?;
    track.init = init;
    for f in &mut track.segments {
        protector.protect(f, &ctx)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The frame numbers ffmpeg's `select` keeps of the first `frames` of a 1 fps source.
    fn selected(expr: &str, frames: u64) -> Vec<u64> {
        let out = std::process::Command::new("ffmpeg")
            .args(["-hide_banner", "-f", "lavfi", "-i"])
            .arg(format!("testsrc=size=16x16:rate=1:duration={frames}"))
            .args([
                "-vf",
                &format!("select='{expr}',showinfo"),
                "-f",
                "null",
                "-",
            ])
            .output()
            .expect("ffmpeg is required: run `make test` (it installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter_map(|l| l.split("pts:").nth(1))
            .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
            .collect()
    }

    #[test]
    fn a_long_chunks_frame_sets_stay_within_what_ffmpeg_parses() {
        // A 10-minute chunk's 4 s segments at 1 fps: 150 starts, one evenly spaced run.
        let even: Vec<u64> = (0..150).map(|i| i * 4).collect();
        let expr = frame_set_expr(&even);
        assert!(expr.len() < 100, "{expr}");
        assert_eq!(selected(&expr, 600), even);
        // Uneven spacing (a variable frame rate): 120 starts, no run of three.
        let mut uneven = vec![0u64];
        for i in 0..119 {
            let last = *uneven.last().unwrap_or(&0);
            uneven.push(last + 3 + (i % 2));
        }
        let expr = frame_set_expr(&uneven);
        assert_eq!(selected(&expr, 420), uneven);
        assert_eq!(frame_set_expr(&[]), "0");
    }

    #[test]
    fn the_contents_tuning_reaches_x264_and_x265_and_not_svt_av1() {
        use crate::ladder::Tune;
        let cfg = LadderConfig {
            tune: Some(Tune::Grain),
            ..LadderConfig::default()
        };
        let chunk = Chunk {
            index: 0,
            first_frame: 0,
            frames: 50,
            segments: Vec::new(),
            seek_secs: 0.0,
            start_ticks: 0,
            preroll_secs: 0.0,
        };
        let rung = |codec| Rung {
            name: "r".into(),
            width: 320,
            height: 180,
            max_kbps: 500,
            codec,
            crf_offset: 0,
            range: Default::default(),
        };
        let args = |codec| encoder_args(&cfg, &rung(codec), &chunk, "0", None).join(" ");
        for codec in [VideoCodec::H264, VideoCodec::Hevc] {
            let a = args(codec);
            assert!(a.contains(" -tune grain "), "{a}");
            // Nothing the rung sets explicitly (ffmpeg applies those after the tuning)
            // undoes what the tuning is for: deblocking, psychovisual weights, AQ, SAO.
            for undo in ["deblock", "psy", "aq-", "aq_", "sao", "no-sao"] {
                let params = a
                    .split_whitespace()
                    .skip_while(|w| !w.ends_with("-params"))
                    .nth(1)
                    .unwrap_or_default();
                assert!(!params.contains(undo), "{undo} in {params}");
                assert!(!a.contains(&format!("-{undo}")), "{a}");
            }
        }
        let untuned = LadderConfig::default();
        let plain = encoder_args(&untuned, &rung(VideoCodec::H264), &chunk, "0", None);
        assert!(!plain.iter().any(|w| w == "-tune"), "{plain:?}");
        assert!(!args(VideoCodec::Av1).contains("-tune"));
    }
}
