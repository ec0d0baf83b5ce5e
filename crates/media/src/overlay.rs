//! Image overlays (a watermark or a channel bug): a PNG with alpha drawn over every rung,
//! in the chunk encode itself.
//!
//! The image is a second input of the chunk's one ffmpeg run, looped. It is made
//! translucent once, split to every rung, scaled to a share of that rung's width and
//! drawn at the same relative place. No extra decode pass runs: the overlay sits between
//! a rung's scaler and its encoder.
//!
//! Positions are relative to the picture, so every rung shows the image in the same place
//! at the same relative size. They do not depend on where a chunk starts, so the image is
//! identical across chunk joins. A time window is given on the published timeline and
//! moved into each chunk's own clock.
//!
//! The image's bytes travel with the job (read once at ingest, [`MAX_PNG_BYTES`] at most),
//! so a logo replaced later never changes a job already planned.

use serde::{Deserialize, Serialize};

/// The largest overlay image taken, in bytes: a logo, not a picture.
pub const MAX_PNG_BYTES: usize = 512 * 1024;

/// Where on the picture the image sits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Corner {
    /// Top left.
    TopLeft,
    /// Top right (where channel bugs usually sit).
    #[default]
    TopRight,
    /// Bottom left.
    BottomLeft,
    /// Bottom right.
    BottomRight,
    /// Centred.
    Center,
}

impl Corner {
    /// The corner `name` names.
    pub fn parse(name: &str) -> Option<Corner> {
        Some(match name.trim().to_ascii_lowercase().as_str() {
            "top-left" => Corner::TopLeft,
            "top-right" => Corner::TopRight,
            "bottom-left" => Corner::BottomLeft,
            "bottom-right" => Corner::BottomRight,
            "center" | "centre" => Corner::Center,
            _ => return None,
        })
    }

    /// ffmpeg `overlay` position expressions for a margin of `m` pixels.
    fn xy(self, m: u32) -> (String, String) {
        let right = format!("main_w-overlay_w-{m}");
        let bottom = format!("main_h-overlay_h-{m}");
        match self {
            Corner::TopLeft => (m.to_string(), m.to_string()),
            Corner::TopRight => (right, m.to_string()),
            Corner::BottomLeft => (m.to_string(), bottom),
            Corner::BottomRight => (right, bottom),
            Corner::Center => (
                "(main_w-overlay_w)/2".to_string(),
                "(main_h-overlay_h)/2".to_string(),
            ),
        }
    }
}

fn default_margin() -> f64 {
    0.02
}

fn default_width() -> f64 {
    0.15
}

fn default_opacity() -> f64 {
    1.0
}

/// An image drawn over every rung.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overlay {
    /// The image as the upload named it: a deployment overlay's name
    /// (`_vodpipe/overlays/<name>.png`), or the file given on the command line.
    pub image: String,
    /// The PNG itself, once read (base64 in the stored plan; never in the job's record,
    /// which keeps [`Overlay::sha256`] instead).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "png_base64")]
    pub png: Vec<u8>,
    /// The SHA-256 of the image the job was made with (hex): an image read again later
    /// (a retried ingest) must be that one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Where it sits.
    #[serde(default)]
    pub position: Corner,
    /// Distance from the picture's edges, as a share of the picture's width.
    #[serde(default = "default_margin")]
    pub margin: f64,
    /// Its width, as a share of the picture's width (its aspect ratio kept).
    #[serde(default = "default_width")]
    pub width: f64,
    /// 0 (invisible) to 1 (the image's own alpha).
    #[serde(default = "default_opacity")]
    pub opacity: f64,
    /// Shown from this time on the published timeline (seconds); from the start when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_secs: Option<f64>,
    /// Shown until this time on the published timeline; to the end when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_secs: Option<f64>,
}

mod png_base64 {
    use base64::Engine as _;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

impl Overlay {
    /// An overlay of `image` with the defaults (top right, 2 % margin, 15 % wide, opaque,
    /// always).
    pub fn new(image: &str) -> Overlay {
        Overlay {
            image: image.to_string(),
            png: Vec::new(),
            sha256: None,
            position: Corner::default(),
            margin: default_margin(),
            width: default_width(),
            opacity: default_opacity(),
            start_secs: None,
            end_secs: None,
        }
    }

    /// Parses `IMAGE[,position=top-right][,width=0.15][,margin=0.02][,opacity=1][,between=START-END]`
    /// (`--overlay`); the reason names what is wrong.
    pub fn parse_spec(spec: &str) -> Result<Overlay, String> {
        let mut parts = spec.split(',');
        let image = parts.next().unwrap_or_default().trim();
        if image.is_empty() {
            return Err(format!("{spec:?} names no image"));
        }
        let mut o = Overlay::new(image);
        for part in parts {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not KEY=VALUE"))?;
            let num = || {
                v.trim()
                    .parse::<f64>()
                    .map_err(|_| format!("{k}={v:?} is not a number"))
            };
            match k.trim() {
                "position" => {
                    o.position = Corner::parse(v).ok_or_else(|| {
                        format!("position {v:?}: use top-left, top-right, bottom-left, bottom-right or center")
                    })?
                }
                "width" => o.width = num()?,
                "margin" => o.margin = num()?,
                "opacity" => o.opacity = num()?,
                "between" => {
                    let c = crate::clip::Clip::parse(v)?;
                    o.start_secs = Some(c.start_secs);
                    o.end_secs = c.end_secs;
                }
                other => {
                    return Err(format!(
                        "{other:?} is not an overlay setting (position, width, margin, opacity, between)"
                    ))
                }
            }
        }
        o.validate()?;
        Ok(o)
    }

    /// Checks the numbers and, once read, the image.
    pub fn validate(&self) -> Result<(), String> {
        if !(0.01..=1.0).contains(&self.width) {
            return Err(format!(
                "width is {}; use a share of the picture's width, 0.01 to 1",
                self.width
            ));
        }
        if !(0.0..=0.5).contains(&self.margin) {
            return Err(format!("margin is {}; use 0 to 0.5", self.margin));
        }
        if !(0.0..=1.0).contains(&self.opacity) {
            return Err(format!("opacity is {}; use 0 to 1", self.opacity));
        }
        if let (Some(a), Some(b)) = (self.start_secs, self.end_secs) {
            if b <= a {
                return Err(format!("shown from {a} s until {b} s: nothing"));
            }
        }
        if !self.png.is_empty() {
            check_png(&self.png)?;
        }
        Ok(())
    }

    /// This overlay with its image's bytes, checked: the same image it was made with,
    /// when it records one.
    pub fn with_png(mut self, png: Vec<u8>) -> Result<Overlay, String> {
        use sha2::Digest;
        check_png(&png)?;
        let digest = hex::encode(sha2::Sha256::digest(&png));
        if self.sha256.as_ref().is_some_and(|d| *d != digest) {
            return Err(format!(
                "the image {} changed since the job was made; upload the video again for a job with the new one",
                self.image
            ));
        }
        self.sha256 = Some(digest);
        self.png = png;
        Ok(self)
    }

    /// This overlay without its image's bytes (what the job's record keeps).
    pub fn without_png(mut self) -> Overlay {
        self.png = Vec::new();
        self
    }

    /// The filter that makes the looped image input `input` translucent once and splits
    /// it to `rungs` labels `[ol0]`, `[ol1]`, ….
    pub fn logo_chain(&self, input: &str, rungs: usize) -> String {
        let mut s = format!(
            "{input}format=rgba,colorchannelmixer=aa={:.4},split={}",
            self.opacity,
            rungs.max(1)
        );
        for i in 0..rungs.max(1) {
            s.push_str(&format!("[ol{i}]"));
        }
        s
    }

    /// The filter that draws logo label `[ol<i>]` over `base` (a rung of `width` pixels)
    /// into `out`, for a chunk starting `chunk_start_secs` into the published timeline.
    pub fn draw(
        &self,
        i: usize,
        base: &str,
        out: &str,
        width: u32,
        chunk_start_secs: f64,
    ) -> String {
        let logo_w = ((f64::from(width) * self.width / 2.0).round() as u32 * 2).max(2);
        let margin = (f64::from(width) * self.margin).round() as u32;
        let (x, y) = self.position.xy(margin);
        let enable = match (self.start_secs, self.end_secs) {
            (None, None) => String::new(),
            (a, b) => format!(
                ":enable='between(t,{:.6},{:.6})'",
                a.unwrap_or(0.0) - chunk_start_secs,
                b.map_or(1e9, |b| b - chunk_start_secs)
            ),
        };
        format!(
            "[ol{i}]scale={logo_w}:-2[lg{i}];{base}[lg{i}]overlay=x={x}:y={y}:shortest=1{enable},format=yuv420p{out}"
        )
    }
}

/// A PNG (by its signature) no larger than [`MAX_PNG_BYTES`].
fn check_png(png: &[u8]) -> Result<(), String> {
    if png.len() > MAX_PNG_BYTES {
        return Err(format!(
            "the image is {} KiB; an overlay is at most {} KiB",
            png.len() / 1024,
            MAX_PNG_BYTES / 1024
        ));
    }
    if !png.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err("the image is not a PNG".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_names_the_image_and_its_place() {
        let o =
            Overlay::parse_spec("logo.png,position=bottom-left,width=0.2,opacity=0.5,between=5-20")
                .unwrap();
        assert_eq!(o.image, "logo.png");
        assert_eq!(o.position, Corner::BottomLeft);
        assert_eq!((o.width, o.opacity), (0.2, 0.5));
        assert_eq!((o.start_secs, o.end_secs), (Some(5.0), Some(20.0)));
        for bad in [
            "",
            "a.png,width=3",
            "a.png,position=middle",
            "a.png,size=2",
            "a.png,opacity=2",
        ] {
            assert!(Overlay::parse_spec(bad).is_err(), "{bad}");
        }
        assert!(Overlay::new("x").with_png(b"GIF89a".to_vec()).is_err());
        // Stored with its bytes, read back the same.
        let o = o.with_png(b"\x89PNG\r\n\x1a\nrest".to_vec()).unwrap();
        let back: Overlay = serde_json::from_str(&serde_json::to_string(&o).unwrap()).unwrap();
        assert_eq!(back, o);
    }

    #[test]
    fn the_image_is_placed_relative_to_each_rung_and_timed_on_the_published_timeline() {
        let o = Overlay::parse_spec("l.png,position=top-right,width=0.1,margin=0.05,between=5-20")
            .unwrap();
        let f = o.draw(0, "[b0]", "[v0]", 1280, 4.0);
        assert!(
            f.starts_with("[ol0]scale=128:-2[lg0];[b0][lg0]overlay=x=main_w-overlay_w-64:y=64"),
            "{f}"
        );
        assert!(f.contains("enable='between(t,1.000000,16.000000)'"), "{f}");
        // Half the width, half the size and margin: the same place.
        let f = o.draw(1, "[b1]", "[v1]", 640, 4.0);
        assert!(f.contains("scale=64:-2") && f.contains("-32:y=32"), "{f}");
        assert!(!Overlay::new("l.png")
            .draw(0, "[b]", "[v]", 640, 0.0)
            .contains("enable"));
    }
}
