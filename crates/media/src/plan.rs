//! Frame-exact chunk planning.
//!
//! Everything here is in frame indices and time-base ticks, never in float seconds, so a
//! 29.97 fps source, a VFR phone clip and a clip shorter than one segment all get exact
//! boundaries. A segment boundary is the first frame at or after `k·S` seconds from the
//! first frame; a chunk is a run of whole segments. Each chunk is later encoded from
//! decoded frames with keyframes forced on exactly its segment boundaries, so the chunks
//! join without a duplicated, missing or shifted frame.

use crate::info::Rational;
use serde::{Deserialize, Serialize};

/// A run of frames that becomes one media segment in every rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    /// Position in the rendition (0-based, across the whole source).
    pub index: u32,
    /// First frame (index into the source's frames, presentation order).
    pub first_frame: u64,
    /// Frame count.
    pub frames: u64,
    /// Offset of the first frame from the source's first frame, in time-base ticks: where
    /// the segment starts on the output timeline, which subtitle segments and thumbnail
    /// tiles are cut to.
    #[serde(default)]
    pub start_ticks: i64,
}

/// A unit of encoding work: whole segments, one ffmpeg process.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    /// Chunk number.
    pub index: u32,
    /// First frame of the chunk.
    pub first_frame: u64,
    /// Frames to encode.
    pub frames: u64,
    /// The segments inside, in order.
    pub segments: Vec<Segment>,
    /// Input seek for ffmpeg, in seconds from the file's start: halfway between the
    /// previous frame and the first frame, so accurate seeking keeps exactly this frame.
    pub seek_secs: f64,
    /// Offset of the chunk's first frame from the source's first frame, in time-base ticks;
    /// added to the chunk's decode timestamps to place it on the one continuous timeline.
    pub start_ticks: i64,
    /// Seconds of source before `seek_secs` that the encode decodes and drops, so that its
    /// input seek lands before the keyframe its first frame depends on: needed where the
    /// container has no seek index ([`set_prerolls`]); 0 elsewhere.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub preroll_secs: f64,
}

fn is_zero(x: &f64) -> bool {
    *x == 0.0
}

impl Chunk {
    /// The one keyframe interval, in frames, that puts a keyframe on every segment start
    /// of this chunk and nowhere else (a chunk of one segment: its length); None when the
    /// segments differ in length. What SVT-AV1, which cannot force a keyframe on a given
    /// frame, is told as its GOP size.
    pub fn keyframe_interval(&self) -> Option<u64> {
        let offsets = self.keyframe_offsets();
        match offsets.as_slice() {
            [] | [_] => Some(self.frames.max(1)),
            [a, b, ..] => {
                let gap = b - a;
                offsets
                    .windows(2)
                    .all(|w| w[1] - w[0] == gap)
                    .then_some(gap)
            }
        }
    }

    /// Frame indices, relative to the chunk's first frame, where a keyframe must start a
    /// segment.
    pub fn keyframe_offsets(&self) -> Vec<u64> {
        self.segments
            .iter()
            .map(|s| s.first_frame - self.first_frame)
            .collect()
    }
}

/// The plan for one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Target segment duration in seconds.
    pub segment_secs: f64,
    /// Total frames in the source.
    pub total_frames: u64,
    /// The source video time base; chunk offsets and segment times are in these units.
    pub time_base: Rational,
    /// All segments.
    pub segments: Vec<Segment>,
    /// All chunks.
    pub chunks: Vec<Chunk>,
    /// Where the last frame ends, in time-base ticks from the first frame: the video's
    /// duration on the output timeline.
    #[serde(default)]
    pub end_ticks: i64,
    /// Set while the source's frame table is still to be read ([`awaiting_index`]): the
    /// options the chunks will be planned with once it is, kept here because the worker
    /// that reads the table plans them, not the ingest that chose them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub awaiting_index: Option<PlanOptions>,
}

impl Plan {
    /// Each segment's start and end in seconds on the output timeline (0 is the first
    /// frame), in order.
    pub fn segment_times(&self) -> Vec<(f64, f64)> {
        let tb = self.time_base.as_f64();
        self.segments
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let end = self
                    .segments
                    .get(i + 1)
                    .map_or(self.end_ticks, |n| n.start_ticks);
                (
                    s.start_ticks as f64 * tb,
                    end.max(s.start_ticks) as f64 * tb,
                )
            })
            .collect()
    }

    /// The chunk the poster is taken from: the one holding the frame a third of the way
    /// in, past opening titles and fades but early enough to spoil nothing.
    pub fn poster_chunk(&self) -> Option<u32> {
        let target = self.total_frames / 3;
        self.chunks
            .iter()
            .find(|c| target < c.first_frame + c.frames)
            .map(|c| c.index)
    }

    /// The most segments any chunk holds: the thumbnail sprite of a chunk has one tile
    /// per segment, and every sprite of a job shares one grid.
    pub fn segments_per_chunk(&self) -> u32 {
        self.chunks
            .iter()
            .map(|c| c.segments.len() as u32)
            .max()
            .unwrap_or(0)
    }
}

/// Planning knobs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Segment duration S, in seconds (default 4).
    pub segment_secs: f64,
    /// Target chunk duration, in seconds; rounded to whole segments (default 20).
    pub chunk_secs: f64,
    /// The part of the source to publish, when not all of it ([`crate::clip`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clip: Option<crate::clip::Clip>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            segment_secs: 4.0,
            chunk_secs: 20.0,
            clip: None,
        }
    }
}

/// The plan of a source without video: no segments and no chunks to cut (its audio tracks
/// are encoded whole and fragmented at the segment duration, as every audio track is).
pub fn audio_only(opts: PlanOptions) -> Plan {
    Plan {
        segment_secs: if opts.segment_secs > 0.0 {
            opts.segment_secs
        } else {
            4.0
        },
        total_frames: 0,
        time_base: Rational { num: 1, den: 1000 },
        segments: Vec::new(),
        chunks: Vec::new(),
        end_ticks: 0,
        awaiting_index: None,
    }
}

/// The plan of a video whose frame table is not read yet: a container without an index
/// (MKV, MPEG-TS, MXF, AVI, fragmented MP4) gives its frames' timestamps only to a scan of
/// every packet, which grows with the source and so runs on a worker, not in the ingest
/// function. No segments and no chunks until then; `opts` are kept to plan them with.
pub fn awaiting_index(time_base: Rational, opts: PlanOptions) -> Plan {
    Plan {
        time_base,
        awaiting_index: Some(opts),
        ..audio_only(opts)
    }
}

/// Plans segments and chunks over `frame_pts` (ascending presentation timestamps in
/// `time_base`). `file_start_secs` is the container's start time, which ffmpeg's `-ss`
/// is relative to.
pub fn plan(
    frame_pts: &[i64],
    time_base: Rational,
    file_start_secs: f64,
    opts: PlanOptions,
) -> Plan {
    let segment_secs = if opts.segment_secs > 0.0 {
        opts.segment_secs
    } else {
        4.0
    };
    let origin = frame_pts.first().copied().unwrap_or(0);
    // Boundary test in integers: (pts - origin) * num / den >= k * S, with S in µs.
    let seg_us = (segment_secs * 1e6).round() as i128;
    let (num, den) = (time_base.num as i128, time_base.den as i128);
    let mut starts: Vec<u64> = vec![0];
    let mut k: i128 = 1;
    for (i, &pts) in frame_pts.iter().enumerate().skip(1) {
        let rel = (pts - origin) as i128 * num * 1_000_000;
        if rel >= k * seg_us * den {
            starts.push(i as u64);
            // A gap longer than S (VFR) crosses several boundaries at one frame.
            while rel >= k * seg_us * den {
                k += 1;
            }
        }
    }
    assemble(
        frame_pts,
        time_base,
        file_start_secs,
        opts,
        segment_secs,
        &starts,
    )
}

/// Plans segments of exactly `frames_per_segment` frames each (the last may be shorter),
/// chunked as [`plan`] does. For encoders that can only place keyframes every N frames
/// (SVT-AV1): every segment then starts on a multiple of N from its chunk's start.
pub fn plan_every(
    frame_pts: &[i64],
    time_base: Rational,
    file_start_secs: f64,
    opts: PlanOptions,
    frames_per_segment: u64,
) -> Plan {
    let n = frames_per_segment.max(1);
    let starts: Vec<u64> = (0..frame_pts.len() as u64).step_by(n as usize).collect();
    let starts = if starts.is_empty() { vec![0] } else { starts };
    let tb = time_base.as_f64();
    let segment_secs = if tb > 0.0 && frame_pts.len() > 1 {
        // The segments' real duration (e.g. 120 frames at 29.97 fps: 4.004 s).
        let last = frame_pts.len() - 1;
        let per_frame = (frame_pts[last] - frame_pts[0]) as f64 * tb / last as f64;
        n as f64 * per_frame
    } else if opts.segment_secs > 0.0 {
        opts.segment_secs
    } else {
        4.0
    };
    assemble(
        frame_pts,
        time_base,
        file_start_secs,
        opts,
        segment_secs,
        &starts,
    )
}

/// How far before the keyframe a chunk depends on its input seek lands: more than any
/// B-frame reorder delay, since the seek compares decode timestamps.
pub const PREROLL_MARGIN_SECS: f64 = 1.0;

/// Moves every chunk's input seek back to [`PREROLL_MARGIN_SECS`] before the last keyframe
/// at or before its first frame (`keyframes`: presentation timestamps of the source's
/// keyframes in `time_base`, any order; `frame_pts` as planned), or to the file's start
/// when there is none; the encode decodes the frames in between and drops them.
///
/// For containers without a seek index (MPEG-TS, MPEG-PS): ffmpeg's input seek there lands
/// on whatever packet is at the target, not on a keyframe, and the frames from there to
/// the next keyframe cannot be decoded. Measured on ffmpeg 5.1 with an H.264 TS: a chunk
/// came out starting at the next keyframe, its frame count made up from the next chunk's
/// frames (a shift the count check cannot see), and the last chunk short.
pub fn set_prerolls(plan: &mut Plan, frame_pts: &[i64], keyframes: &[i64]) {
    let mut keys = keyframes.to_vec();
    keys.sort_unstable();
    let tb = plan.time_base.as_f64();
    for c in plan.chunks.iter_mut().filter(|c| c.seek_secs > 0.0) {
        let Some(&first) = frame_pts.get(c.first_frame as usize) else {
            continue;
        };
        let at = keys.partition_point(|&k| k <= first);
        c.preroll_secs = match at.checked_sub(1).map(|i| keys[i]) {
            Some(key) => ((first - key) as f64 * tb + PREROLL_MARGIN_SECS).min(c.seek_secs),
            None => c.seek_secs,
        };
    }
}

/// Segments starting at `starts` (frame indices, ascending, the first 0), grouped into
/// chunks of about `opts.chunk_secs`.
fn assemble(
    frame_pts: &[i64],
    time_base: Rational,
    file_start_secs: f64,
    opts: PlanOptions,
    segment_secs: f64,
    starts: &[u64],
) -> Plan {
    let total = frame_pts.len() as u64;
    let origin = frame_pts.first().copied().unwrap_or(0);
    let segments: Vec<Segment> = starts
        .iter()
        .enumerate()
        .map(|(n, &first)| {
            let end = starts.get(n + 1).copied().unwrap_or(total);
            Segment {
                index: n as u32,
                first_frame: first,
                frames: end - first,
                start_ticks: frame_pts.get(first as usize).map_or(0, |p| p - origin),
            }
        })
        .filter(|s| s.frames > 0)
        .collect();
    let per_chunk = ((opts.chunk_secs / segment_secs).round() as usize).max(1);
    let tb = time_base.as_f64();
    let chunks = segments
        .chunks(per_chunk)
        .enumerate()
        .map(|(n, segs)| {
            let first_frame = segs[0].first_frame;
            let frames = segs.iter().map(|s| s.frames).sum();
            let f = first_frame as usize;
            let seek_secs = if f == 0 {
                0.0
            } else {
                let mid = (frame_pts[f - 1] + frame_pts[f]) as f64 / 2.0;
                (mid * tb - file_start_secs).max(0.0)
            };
            Chunk {
                index: n as u32,
                first_frame,
                frames,
                segments: segs.to_vec(),
                seek_secs,
                start_ticks: frame_pts.get(f).map_or(0, |p| p - origin),
                preroll_secs: 0.0,
            }
        })
        .collect();
    // The last frame lasts as long as the one before it (or, alone, one nominal frame).
    let end_ticks = match frame_pts {
        [.., a, b] => (b - origin) + (b - a).max(0),
        [_] => ((1.0 / 25.0) / tb).round() as i64,
        [] => 0,
    };
    Plan {
        segment_secs,
        total_frames: total,
        time_base,
        segments,
        chunks,
        end_ticks,
        awaiting_index: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ntsc(frames: i64) -> Vec<i64> {
        (0..frames).map(|i| i * 1001).collect()
    }
    const NTSC_TB: Rational = Rational { num: 1, den: 30000 };

    #[test]
    fn whole_frame_segments_put_every_start_on_a_multiple_of_n() {
        // 30 s at 29.97: clock segments would drift to 119-frame gaps; these never do.
        let p = plan_every(&ntsc(900), NTSC_TB, 0.0, PlanOptions::default(), 120);
        let firsts: Vec<u64> = p.segments.iter().map(|s| s.first_frame).collect();
        assert_eq!(firsts, [0, 120, 240, 360, 480, 600, 720, 840]);
        assert!((p.segment_secs - 4.004).abs() < 1e-9, "{}", p.segment_secs);
        assert_eq!(p.chunks.len(), 2);
        assert_eq!(p.chunks[0].keyframe_interval(), Some(120));
        assert_eq!(p.chunks[1].keyframe_offsets(), [0, 120, 240]);
        assert_eq!(p.chunks[1].keyframe_interval(), Some(120));
        // The clock plan of the same source has an uneven chunk, which AV1 could not follow.
        let clock = plan(&ntsc(2000), NTSC_TB, 0.0, PlanOptions::default());
        assert!(clock.chunks.iter().any(|c| c.keyframe_interval().is_none()));
    }

    #[test]
    fn segment_boundaries_are_the_first_frame_at_or_after_k_s_at_29_97() {
        let p = plan(&ntsc(600), NTSC_TB, 0.0, PlanOptions::default());
        // 4 s = 119.88 frames: the first frame at or after it is frame 120 (4.004 s);
        // 8 s = 239.76 → 240; 12 s = 359.64 → 360; 16 s = 479.52 → 480.
        let firsts: Vec<u64> = p.segments.iter().map(|s| s.first_frame).collect();
        assert_eq!(firsts, [0, 120, 240, 360, 480]);
        assert_eq!(p.segments.iter().map(|s| s.frames).sum::<u64>(), 600);
    }

    #[test]
    fn chunks_are_runs_of_whole_segments_covering_every_frame_once() {
        let p = plan(
            &ntsc(1800),
            NTSC_TB,
            0.0,
            PlanOptions {
                segment_secs: 4.0,
                chunk_secs: 8.0,
                clip: None,
            },
        );
        let mut next = 0;
        for c in &p.chunks {
            assert_eq!(c.first_frame, next);
            assert_eq!(
                c.segments.len(),
                2.min(p.segments.len() - 2 * c.index as usize)
            );
            assert_eq!(c.frames, c.segments.iter().map(|s| s.frames).sum::<u64>());
            next += c.frames;
        }
        assert_eq!(next, 1800);
        assert_eq!(p.chunks[1].start_ticks, 240 * 1001);
        assert_eq!(p.chunks[1].keyframe_offsets(), [0, 120]);
    }

    #[test]
    fn seek_lands_between_the_previous_frame_and_the_chunk_start() {
        let p = plan(
            &ntsc(600),
            NTSC_TB,
            0.0,
            PlanOptions {
                segment_secs: 4.0,
                chunk_secs: 4.0,
                clip: None,
            },
        );
        let c = &p.chunks[1];
        let prev = 119.0 * 1001.0 / 30000.0;
        let first = 120.0 * 1001.0 / 30000.0;
        assert!(c.seek_secs > prev && c.seek_secs < first);
    }

    #[test]
    fn a_clip_shorter_than_one_segment_is_one_chunk() {
        let p = plan(&ntsc(45), NTSC_TB, 0.0, PlanOptions::default());
        assert_eq!(p.segments.len(), 1);
        assert_eq!(p.chunks.len(), 1);
        assert_eq!(p.chunks[0].frames, 45);
    }

    #[test]
    fn vfr_gaps_longer_than_a_segment_do_not_make_empty_segments() {
        // 1 kHz time base, frames at irregular times with a 9 s hole.
        let pts = [0, 40, 80, 100, 9100, 9140, 12000, 12040];
        let p = plan(
            &pts,
            Rational { num: 1, den: 1000 },
            0.0,
            PlanOptions::default(),
        );
        let firsts: Vec<u64> = p.segments.iter().map(|s| s.first_frame).collect();
        assert_eq!(firsts, [0, 4, 6]);
        assert!(p.segments.iter().all(|s| s.frames > 0));
    }

    #[test]
    fn prerolls_reach_back_past_the_keyframe_each_chunk_depends_on() {
        // 10 fps on a 1 kHz clock, keyframes every 4.5 s, chunks of 4 s.
        let pts: Vec<i64> = (0..200).map(|i| i * 100).collect();
        let mut p = plan(
            &pts,
            Rational { num: 1, den: 1000 },
            0.0,
            PlanOptions {
                segment_secs: 4.0,
                chunk_secs: 4.0,
                clip: None,
            },
        );
        let keys: Vec<i64> = (0..5).rev().map(|k| k * 4500).collect();
        set_prerolls(&mut p, &pts, &keys);
        let prerolls: Vec<f64> = p.chunks.iter().map(|c| c.preroll_secs).collect();
        // Chunk 1 starts at 4.0 s: its keyframe is at 0 s, and the seek at 3.95 s cannot
        // go back further than the file's start. Chunk 2 (8.0 s): keyframe 4.5 s.
        // Chunk 3 (12.0 s): keyframe 9.0 s. Chunk 4 (16.0 s): keyframe 13.5 s.
        assert_eq!(prerolls.len(), 5);
        assert_eq!(prerolls[0], 0.0);
        assert!((prerolls[1] - 3.95).abs() < 1e-9, "{prerolls:?}");
        assert!((prerolls[2] - 4.5).abs() < 1e-9, "{prerolls:?}");
        assert!((prerolls[3] - 4.0).abs() < 1e-9, "{prerolls:?}");
        assert!((prerolls[4] - 3.5).abs() < 1e-9, "{prerolls:?}");
        // A chunk starting on a keyframe still seeks the margin before it.
        let mut q = p.clone();
        set_prerolls(&mut q, &pts, &[0, 8000]);
        assert!((q.chunks[2].preroll_secs - PREROLL_MARGIN_SECS).abs() < 1e-9);
    }

    #[test]
    fn seek_is_relative_to_the_container_start() {
        // MPEG-TS streams often start at 1.4 s on the 90 kHz clock.
        let pts: Vec<i64> = (0..300).map(|i| 126_000 + i * 3600).collect();
        let p = plan(
            &pts,
            Rational { num: 1, den: 90000 },
            1.4,
            PlanOptions {
                segment_secs: 4.0,
                chunk_secs: 4.0,
                clip: None,
            },
        );
        assert!(
            (p.chunks[1].seek_secs - (4.0 - 0.02)).abs() < 1e-6,
            "{}",
            p.chunks[1].seek_secs
        );
        assert_eq!(p.chunks[1].start_ticks, 100 * 3600);
    }
}
