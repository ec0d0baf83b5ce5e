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

use crate::error::{Error, Result};
use crate::ladder::{LadderConfig, Rung};
use crate::mp4::{self, Fragment};
use crate::plan::{Chunk, Plan};
use crate::probe::{input_args, FieldOrder, MediaInfo, VideoInfo};
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
    if chunk.seek_secs > 0.0 {
        a.extend(["-ss".into(), format!("{:.6}", chunk.seek_secs)]);
    }
    a.extend(input_args(ctx.source));
    let mut pre = vec!["setpts=PTS-STARTPTS".to_string()];
    if video.field_order == FieldOrder::Interlaced {
        pre.push("bwdif=mode=send_frame:parity=auto:deint=all".into());
    }
    let n = ctx.rungs.len();
    let mut graph = format!("[0:{}]{},split={n}", video.index, pre.join(","));
    for i in 0..n {
        graph.push_str(&format!("[s{i}]"));
    }
    for (i, r) in ctx.rungs.iter().enumerate() {
        graph.push_str(&format!(
            ";[s{i}]scale={}:{}:flags=bicubic,setsar=1,format=yuv420p[v{i}]",
            r.width, r.height
        ));
    }
    a.extend(["-filter_complex".into(), graph]);
    let kf: Vec<String> = chunk
        .keyframe_offsets()
        .iter()
        .map(|o| format!("eq(n,{o})"))
        .collect();
    let timescale = video_timescale(video).to_string();
    for (i, (r, out)) in ctx.rungs.iter().zip(outputs).enumerate() {
        a.extend([
            "-map".into(),
            format!("[v{i}]"),
            "-frames:v".into(),
            chunk.frames.to_string(),
            "-c:v".into(),
            "libx264".into(),
            "-preset".into(),
            ctx.config.preset.clone(),
            "-crf".into(),
            ctx.config.crf.to_string(),
            "-maxrate".into(),
            format!("{}k", r.max_kbps),
            "-bufsize".into(),
            format!("{}k", r.max_kbps * 2),
            "-profile:v".into(),
            "high".into(),
            "-bf".into(),
            "3".into(),
            "-x264-params".into(),
            "keyint=infinite:scenecut=0:open-gop=0:b-pyramid=normal".into(),
            "-forced-idr".into(),
            "1".into(),
            "-force_key_frames".into(),
            format!("expr:{}", kf.join("+")),
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
    a
}

/// Encodes one chunk into every rung, verifies it against the plan and shifts its
/// segments onto the source timeline. `on_frames` receives progress (frames done).
pub fn encode_chunk(
    ctx: &EncodeContext<'_>,
    chunk: &Chunk,
    mut on_frames: impl FnMut(u64) + Send,
) -> Result<Vec<TrackOutput>> {
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
    let args = chunk_args(ctx, video, chunk, &outputs);
    let step = format!("encode chunk {}", chunk.index);
    ToolRun::new(ctx.ffmpeg, args, step.clone())
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
        .run()?;
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
        tracks.push(TrackOutput {
            name: rung.name.clone(),
            timescale: mp4::timescale(&f.init, &what)?,
            init: f.init,
            segments: f.fragments,
        });
    }
    Ok(tracks)
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
    })
}
