//! What arrives: a mix of upload classes (durations, picture sizes, tiers), read from a
//! JSON file or the default, and the ladder each upload gets (the real ladder code).

use rand::Rng;
use serde::{Deserialize, Serialize};
use vodpipe_control::ports::Tier;
use vodpipe_media::ladder::{ladder_for, LadderConfig, Rung};
use vodpipe_media::probe::{FieldOrder, Rational, VideoInfo};

/// One kind of upload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UploadClass {
    /// What it is (`short`, `episode`, `feature`).
    pub name: String,
    /// Share of uploads, relative to the other classes' weights.
    pub weight: f64,
    /// Shortest duration, seconds (durations are uniform between the bounds).
    pub min_secs: f64,
    /// Longest duration, seconds.
    pub max_secs: f64,
    /// Picture width and height of the source.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Frames per second.
    pub fps: f64,
    /// Audio tracks (each one work item, encoded whole).
    #[serde(default = "one")]
    pub audio_tracks: u32,
    /// Share of this class's uploads on each tier.
    #[serde(default)]
    pub tiers: TierShares,
}

fn one() -> u32 {
    1
}

/// How a class's uploads split over the tiers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TierShares {
    /// Premium (On-Demand, first served).
    pub premium: f64,
    /// Standard (Spot).
    pub standard: f64,
    /// Bulk (Spot, served last).
    pub bulk: f64,
}

impl Default for TierShares {
    fn default() -> Self {
        TierShares {
            premium: 0.1,
            standard: 0.6,
            bulk: 0.3,
        }
    }
}

/// The upload mix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mix {
    /// Classes, by weight.
    pub classes: Vec<UploadClass>,
}

impl Default for Mix {
    /// A user-generated-content platform: mostly short phone and camera clips, some
    /// episodes, a few long recordings (mean about 4 minutes).
    fn default() -> Self {
        let class = |name: &str, weight, min_secs, max_secs, (width, height)| UploadClass {
            name: name.into(),
            weight,
            min_secs,
            max_secs,
            width,
            height,
            fps: 30.0,
            audio_tracks: 1,
            tiers: TierShares::default(),
        };
        Mix {
            classes: vec![
                class("short", 0.70, 15.0, 120.0, (1920, 1080)),
                class("clip", 0.25, 120.0, 600.0, (1280, 720)),
                class("long", 0.05, 600.0, 3600.0, (1920, 1080)),
            ],
        }
    }
}

/// One upload as the simulation sees it.
#[derive(Debug, Clone)]
pub struct Upload {
    /// Which class.
    pub class: usize,
    /// Seconds of media.
    pub duration_secs: f64,
    /// Tier.
    pub tier: Tier,
    /// The ladder it gets.
    pub rungs: Vec<Rung>,
    /// Frames per second.
    pub fps: f64,
    /// Audio tracks.
    pub audio_tracks: u32,
}

impl Upload {
    /// Pixels the ladder encodes per second of source: what encode time scales with.
    pub fn ladder_pixel_rate(&self) -> f64 {
        self.rungs
            .iter()
            .map(|r| f64::from(r.width) * f64::from(r.height))
            .sum::<f64>()
            * self.fps
    }
}

impl Mix {
    /// Reads a mix file (the shape of [`Mix`]), refusing an empty or weightless one.
    pub fn from_json(text: &str) -> Result<Mix, String> {
        let mix: Mix = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if mix.classes.is_empty() || mix.classes.iter().all(|c| c.weight <= 0.0) {
            return Err("the mix needs at least one class with a positive weight".into());
        }
        for c in &mix.classes {
            if !(c.min_secs > 0.0 && c.max_secs >= c.min_secs && c.fps > 0.0) {
                return Err(format!(
                    "class {}: needs 0 < min_secs <= max_secs and fps > 0",
                    c.name
                ));
            }
            if c.width < 16 || c.height < 16 {
                return Err(format!("class {}: picture too small", c.name));
            }
        }
        Ok(mix)
    }

    /// Draws one upload.
    pub fn draw(&self, rng: &mut impl Rng, ladder: &LadderConfig) -> Upload {
        let total: f64 = self.classes.iter().map(|c| c.weight.max(0.0)).sum();
        let mut pick = rng.gen::<f64>() * total;
        let mut class = self.classes.len() - 1;
        for (i, c) in self.classes.iter().enumerate() {
            pick -= c.weight.max(0.0);
            if pick < 0.0 {
                class = i;
                break;
            }
        }
        let c = &self.classes[class];
        let duration_secs = c.min_secs + rng.gen::<f64>() * (c.max_secs - c.min_secs);
        let t = c.tiers;
        let r = rng.gen::<f64>() * (t.premium + t.standard + t.bulk).max(f64::MIN_POSITIVE);
        let tier = if r < t.premium {
            Tier::Premium
        } else if r < t.premium + t.standard {
            Tier::Standard
        } else {
            Tier::Bulk
        };
        Upload {
            class,
            duration_secs,
            tier,
            rungs: ladder_for(&video(c), ladder),
            fps: c.fps,
            audio_tracks: c.audio_tracks,
        }
    }
}

/// The probe result of a class's source, as far as the ladder reads it.
fn video(c: &UploadClass) -> VideoInfo {
    VideoInfo {
        index: 0,
        codec: "h264".into(),
        width: c.width,
        height: c.height,
        sar: Rational { num: 1, den: 1 },
        rotation: 0,
        pix_fmt: "yuv420p".into(),
        field_order: FieldOrder::Progressive,
        frame_rate: Rational {
            num: (c.fps * 1000.0).round() as i64,
            den: 1000,
        },
        time_base: Rational { num: 1, den: 90000 },
        vfr: false,
        frame_pts: Vec::new(),
        colour: Default::default(),
        declared_frames: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn the_default_mix_draws_every_class_and_tier_in_proportion() {
        let mix = Mix::default();
        let mut rng = rand::rngs::SmallRng::seed_from_u64(7);
        let ladder = LadderConfig::default();
        let draws: Vec<Upload> = (0..20_000).map(|_| mix.draw(&mut rng, &ladder)).collect();
        let share = |f: &dyn Fn(&Upload) -> bool| {
            draws.iter().filter(|u| f(u)).count() as f64 / draws.len() as f64
        };
        assert!((share(&|u| u.class == 0) - 0.70).abs() < 0.02);
        assert!((share(&|u| u.tier == Tier::Premium) - 0.10).abs() < 0.02);
        assert!((share(&|u| u.tier == Tier::Bulk) - 0.30).abs() < 0.02);
        // 1080p sources get the six-rung ladder, 720p ones five.
        assert!(draws
            .iter()
            .all(|u| u.rungs.len() == if u.class == 1 { 5 } else { 6 }));
        let mean = draws.iter().map(|u| u.duration_secs).sum::<f64>() / draws.len() as f64;
        assert!((200.0..300.0).contains(&mean), "{mean}");
    }

    #[test]
    fn a_mix_file_is_checked() {
        assert!(Mix::from_json(r#"{"classes": []}"#).is_err());
        assert!(Mix::from_json(
            r#"{"classes": [{"name": "x", "weight": 1, "min_secs": 10, "max_secs": 5, "width": 640, "height": 360, "fps": 25}]}"#
        )
        .is_err());
        let m = Mix::from_json(
            r#"{"classes": [{"name": "x", "weight": 1, "min_secs": 5, "max_secs": 10, "width": 640, "height": 360, "fps": 25}]}"#,
        )
        .unwrap();
        assert_eq!(m.classes[0].audio_tracks, 1);
        assert_eq!(m.classes[0].tiers, TierShares::default());
    }
}
