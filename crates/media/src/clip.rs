//! Input clipping: publish one range of the source, frame-exact.
//!
//! A clip is applied to the probe's facts before anything is planned. The frame table
//! keeps only the frames from START up to, not including, END. The video's start moves to
//! the first kept frame, and the source's end to END. After that the ordinary machinery
//! publishes exactly that range and nothing else:
//!
//! - the planner cuts chunks inside it, so nothing outside is encoded, and each chunk
//!   seeks to its own first frame by its timestamp;
//! - the audio's placement counts from the new start, and it is cut at the new end;
//! - subtitle cues shift by the new start and stop at the new end.
//!
//! The output timeline starts at 0 on the clip's first frame.
//!
//! Times are seconds from the source's first video frame, where a player's clock starts
//! on the whole source, so a range read off a player is the range published.

use crate::error::{Error, Result};
use crate::info::MediaInfo;
use serde::{Deserialize, Serialize};

/// The part of the source to publish: from `start_secs` up to `end_secs` (to the end
/// when none), seconds from its first video frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Clip {
    /// The first published frame is the first at or after this.
    pub start_secs: f64,
    /// The last published frame is the last before this; none: the source's last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_secs: Option<f64>,
}

/// One time: seconds (`75.5`), or `MM:SS(.mmm)`, or `HH:MM:SS(.mmm)`.
fn parse_time(s: &str) -> Option<f64> {
    let parts: Vec<&str> = s.trim().split(':').collect();
    if parts.len() > 3 || parts.iter().any(|p| p.trim().is_empty()) {
        return None;
    }
    let mut secs = 0.0;
    for (i, p) in parts.iter().enumerate() {
        let v: f64 = p.trim().parse().ok()?;
        // Minutes and seconds below hours run 0 to 59.
        if !v.is_finite() || v < 0.0 || (i > 0 && v >= 60.0) {
            return None;
        }
        secs = secs * 60.0 + v;
    }
    Some(secs)
}

impl Clip {
    /// Parses `START-END` or `START-` (to the end), each time as seconds or
    /// `HH:MM:SS.mmm`; the reason names what is wrong.
    pub fn parse(spec: &str) -> std::result::Result<Clip, String> {
        let (a, b) = spec.split_once('-').ok_or_else(|| {
            format!("{spec:?} is not START-END (e.g. 10-25.5 or 00:01:00-00:02:30.5)")
        })?;
        let start = parse_time(a)
            .ok_or_else(|| format!("{spec:?}: {a:?} is not a time (seconds, or HH:MM:SS.mmm)"))?;
        let end = if b.trim().is_empty() {
            None
        } else {
            Some(parse_time(b).ok_or_else(|| {
                format!("{spec:?}: {b:?} is not a time (seconds, or HH:MM:SS.mmm)")
            })?)
        };
        let clip = Clip {
            start_secs: start,
            end_secs: end,
        };
        clip.validate()?;
        Ok(clip)
    }

    /// Checks what a settings file could get wrong.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !self.start_secs.is_finite() || self.start_secs < 0.0 {
            return Err(format!(
                "starts at {}; use 0 or more seconds",
                self.start_secs
            ));
        }
        if let Some(e) = self.end_secs {
            if !e.is_finite() || e <= self.start_secs {
                return Err(format!(
                    "ends at {e} s, not after its start at {} s",
                    self.start_secs
                ));
            }
        }
        Ok(())
    }

    /// `10.000-25.500 s` (or `10.000 s-the end`), for status and errors.
    pub fn describe(&self) -> String {
        match self.end_secs {
            Some(e) => format!("{:.3}-{e:.3} s", self.start_secs),
            None => format!("{:.3} s-the end", self.start_secs),
        }
    }

    /// Keeps only the clip of `media`'s video: its frame table cut to the range, its start
    /// moved to the first kept frame, its end to the clip's ([`MediaInfo::end_secs`]), its
    /// duration the clip's. The frame table must be read. A range that holds no frame, or
    /// a source without video, is an [`Error::Rejected`] with the reason.
    pub fn apply(&self, media: &mut MediaInfo) -> Result<()> {
        let Some(v) = media.video.as_mut() else {
            return Err(Error::Rejected(
                "a clip needs a video stream; this source has audio only".into(),
            ));
        };
        let Some(&origin) = v.frame_pts.first() else {
            return Err(Error::PlanMismatch(
                "a clip is applied to a frame table that is not read yet".into(),
            ));
        };
        let whole = v.duration_secs();
        // In integers, as the planner compares: (pts - origin) * num / den against µs.
        let (num, den) = (i128::from(v.time_base.num), i128::from(v.time_base.den));
        let us = |secs: f64| (secs * 1e6).round() as i128;
        let at_or_after =
            |pts: i64, secs: f64| i128::from(pts - origin) * num * 1_000_000 >= us(secs) * den;
        let kept: Vec<i64> = v
            .frame_pts
            .iter()
            .copied()
            .filter(|&p| {
                at_or_after(p, self.start_secs) && self.end_secs.is_none_or(|e| !at_or_after(p, e))
            })
            .collect();
        let (Some(&first), Some(_)) = (kept.first(), kept.last()) else {
            return Err(Error::Rejected(format!(
                "the clip {} holds no frame of this {whole:.3} s source",
                self.describe()
            )));
        };
        let tb = v.time_base.as_f64();
        // The source's frame before the clip's first, which the first chunk's seek must
        // fall after: halfway to it, whatever the frame rate does there.
        let before = v.frame_pts.iter().copied().filter(|&p| p < first).max();
        media.first_seek_secs =
            before.map(|b| ((b + first) as f64 / 2.0 * tb - media.start_secs).max(0.0));
        v.frame_pts = kept;
        // The header's count was for the whole source.
        v.declared_frames = None;
        media.video_start_secs = first as f64 * tb;
        media.end_secs = self.end_secs.map(|e| origin as f64 * tb + e);
        media.duration_secs = Some(v.duration_secs());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::info::{FieldOrder, Rational, VideoInfo};

    fn media(frames: i64) -> MediaInfo {
        MediaInfo {
            format_name: "mov,mp4".into(),
            duration_secs: Some(frames as f64 / 25.0),
            size_bytes: 1,
            video: Some(VideoInfo {
                index: 0,
                codec: "h264".into(),
                width: 64,
                height: 64,
                sar: Rational { num: 1, den: 1 },
                rotation: 0,
                pix_fmt: "yuv420p".into(),
                field_order: FieldOrder::Progressive,
                frame_rate: Rational { num: 25, den: 1 },
                // 25 fps in 1/12800 ticks, starting at 0.1 s on the container's clock.
                time_base: Rational { num: 1, den: 12800 },
                vfr: false,
                frame_pts: (0..frames).map(|i| 1280 + i * 512).collect(),
                colour: Default::default(),
                declared_frames: Some(frames as u64),
            }),
            audio: vec![],
            subtitles: vec![],
            video_start_secs: 0.1,
            start_secs: 0.0,
            end_secs: None,
            first_seek_secs: None,
        }
    }

    #[test]
    fn ranges_parse_as_seconds_or_clock_times() {
        assert_eq!(
            Clip::parse("10-25.5").unwrap(),
            Clip {
                start_secs: 10.0,
                end_secs: Some(25.5)
            }
        );
        let c = Clip::parse("00:01:00-00:02:30.250").unwrap();
        assert_eq!((c.start_secs, c.end_secs), (60.0, Some(150.25)));
        assert_eq!(Clip::parse("1:30-").unwrap().end_secs, None);
        for bad in ["10", "a-b", "20-10", "5-5", "00:61:00-00:62:00", "-3"] {
            assert!(Clip::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_clip_keeps_the_frames_from_its_start_up_to_not_including_its_end() {
        let mut m = media(250);
        // 2 s to 4 s: frames 50..100 (frame 100 is at exactly 4 s and is not kept).
        Clip::parse("2-4").unwrap().apply(&mut m).unwrap();
        let v = m.video.as_ref().unwrap();
        assert_eq!(v.frame_pts.len(), 50);
        assert_eq!(v.frame_pts[0], 1280 + 50 * 512);
        assert!((m.video_start_secs - 2.1).abs() < 1e-9);
        assert!((m.end_secs.unwrap() - 4.1).abs() < 1e-9);
        assert!((m.duration_secs.unwrap() - 2.0).abs() < 1e-9);
        // Halfway between frame 49 (2.06 s) and frame 50 (2.1 s) on the file's clock.
        assert!((m.first_seek_secs.unwrap() - 2.08).abs() < 1e-9);
        assert_eq!(v.declared_frames, None);
        // A start between frames begins at the next one; an open end runs to the last.
        let mut m = media(250);
        Clip::parse("2.01-").unwrap().apply(&mut m).unwrap();
        assert_eq!(m.video.as_ref().unwrap().frame_pts.len(), 199);
        assert_eq!(m.end_secs, None);
        // Outside the source: refused with the reason.
        let e = Clip::parse("20-30")
            .unwrap()
            .apply(&mut media(250))
            .unwrap_err();
        assert!(
            e.is_permanent()
                && e.to_string()
                    .contains("holds no frame of this 10.000 s source"),
            "{e}"
        );
        let mut audio_only = media(1);
        audio_only.video = None;
        assert!(Clip::parse("0-1").unwrap().apply(&mut audio_only).is_err());
    }
}
