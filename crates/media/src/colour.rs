//! A video's colour description and HDR static metadata: what probing reads of a source,
//! what every HDR rung must carry again, and how each tool spells it.
//!
//! HDR lives in signalling, not in pixels: a 10-bit picture whose transfer is PQ (SMPTE ST
//! 2084) looks washed out on any screen that is told nothing, and a chunked pipeline loses
//! the telling easily (the colour description sits in the stream's VUI and the container's
//! `colr`, the mastering display and light levels in SEI and in `mdcv`/`clli`). So the
//! source's own values are read once, kept with the plan, and written into every chunk's
//! bitstream (encoder options) and every rung's init segment ([`hdr_boxes`]). Nothing is
//! hard-coded: a rung says what its source says.
//!
//! Names follow ffmpeg's (`bt2020`, `smpte2084`, `arib-std-b67`, `bt2020nc`), which is what
//! ffprobe reports and ffmpeg's `-color_*` options take; what a rung's init segment states
//! is read back as ITU-T H.273 numbers ([`Cicp`]), which the manifests signal.

use serde::{Deserialize, Serialize};

/// The dynamic range a rendition is made for, named as HLS's `VIDEO-RANGE` names it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum DynamicRange {
    /// Standard dynamic range (BT.709 or BT.601 transfer).
    #[default]
    Sdr,
    /// HDR10: SMPTE ST 2084, the perceptual quantiser.
    Pq,
    /// Hybrid log-gamma (ARIB STD-B67).
    Hlg,
}

impl DynamicRange {
    /// The transfer characteristic a range is named after, as H.273 numbers it (the `colr`
    /// box's): 16 is PQ, 18 is HLG, anything else is SDR.
    pub fn from_transfer_code(code: u16) -> DynamicRange {
        match code {
            16 => DynamicRange::Pq,
            18 => DynamicRange::Hlg,
            _ => DynamicRange::Sdr,
        }
    }

    /// HLS's name for it (`VIDEO-RANGE`).
    pub fn hls_name(self) -> &'static str {
        match self {
            DynamicRange::Sdr => "SDR",
            DynamicRange::Pq => "PQ",
            DynamicRange::Hlg => "HLG",
        }
    }

    /// Whether this is an HDR range.
    pub fn is_hdr(self) -> bool {
        self != DynamicRange::Sdr
    }
}

/// A chromaticity coordinate in the units of the mastering display SEI and the `mdcv` box:
/// 0.00002 steps (so 50 000 is 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chromaticity {
    /// x, in 0.00002 steps.
    pub x: u16,
    /// y, in 0.00002 steps.
    pub y: u16,
}

/// The mastering display colour volume (SMPTE ST 2086) the source was graded on: what
/// lets a screen map the picture into what it can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasteringDisplay {
    /// Red primary.
    pub red: Chromaticity,
    /// Green primary.
    pub green: Chromaticity,
    /// Blue primary.
    pub blue: Chromaticity,
    /// White point.
    pub white: Chromaticity,
    /// Peak luminance, in 0.0001 cd/m² steps.
    pub max_luminance: u32,
    /// Black level, in 0.0001 cd/m² steps.
    pub min_luminance: u32,
}

/// Content light levels (CTA-861.3): the brightest pixel and the brightest frame average
/// in the whole programme, in cd/m².
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LightLevel {
    /// MaxCLL.
    pub max_cll: u16,
    /// MaxFALL.
    pub max_fall: u16,
}

/// A stream's colour description and HDR static metadata, as the source states them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Colour {
    /// Colour primaries (`bt709`, `bt2020`, …), when stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primaries: Option<String>,
    /// Transfer characteristics (`bt709`, `smpte2084`, `arib-std-b67`, …), when stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer: Option<String>,
    /// Matrix coefficients (`bt709`, `bt2020nc`, …), when stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix: Option<String>,
    /// `tv` (limited) or `pc` (full), when stated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// The mastering display, when the source carries one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mastering: Option<MasteringDisplay>,
    /// The content light levels, when the source carries them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub light: Option<LightLevel>,
}

impl Colour {
    /// The source's dynamic range, from its transfer characteristics.
    pub fn dynamic_range(&self) -> DynamicRange {
        match self.transfer.as_deref() {
            Some("smpte2084") => DynamicRange::Pq,
            Some("arib-std-b67") => DynamicRange::Hlg,
            _ => DynamicRange::Sdr,
        }
    }

    /// Primaries, transfer and matrix, each defaulted to what an HDR source of this range
    /// almost always is (BT.2020 non-constant luminance) when the source leaves one
    /// unstated: the values written into HDR rungs.
    pub fn hdr_triplet(&self) -> (&str, &str, &str) {
        let transfer = match self.dynamic_range() {
            DynamicRange::Hlg => "arib-std-b67",
            _ => "smpte2084",
        };
        (
            self.primaries.as_deref().unwrap_or("bt2020"),
            self.transfer.as_deref().unwrap_or(transfer),
            self.matrix.as_deref().unwrap_or("bt2020nc"),
        )
    }

    /// A one-line description for `vodpipe plan` and job details: `HDR10 (PQ, bt2020,
    /// bt2020nc), mastering 1000 cd/m² … 0.0050, MaxCLL 1000, MaxFALL 400`.
    pub fn describe(&self) -> String {
        let range = self.dynamic_range();
        let name = match range {
            DynamicRange::Sdr => "SDR",
            DynamicRange::Pq => "HDR10",
            DynamicRange::Hlg => "HLG",
        };
        let mut s = format!(
            "{name} ({}, {}, {})",
            self.transfer.as_deref().unwrap_or("transfer unstated"),
            self.primaries.as_deref().unwrap_or("primaries unstated"),
            self.matrix.as_deref().unwrap_or("matrix unstated")
        );
        if let Some(m) = &self.mastering {
            s.push_str(&format!(
                ", mastering display {} to {} cd/m²",
                f64::from(m.min_luminance) / 10_000.0,
                f64::from(m.max_luminance) / 10_000.0
            ));
        }
        if let Some(l) = &self.light {
            s.push_str(&format!(", MaxCLL {}, MaxFALL {}", l.max_cll, l.max_fall));
        }
        s
    }

    /// Reads the mastering display and light level entries of an ffprobe
    /// `side_data_list` (a stream's or a frame's) into `self`, keeping what is already set.
    pub fn read_side_data(&mut self, list: &[serde_json::Value]) {
        for d in list {
            match d.get("side_data_type").and_then(|t| t.as_str()) {
                Some("Mastering display metadata") if self.mastering.is_none() => {
                    self.mastering = mastering_from_json(d);
                }
                Some("Content light level metadata") if self.light.is_none() => {
                    let n = |k: &str| {
                        d.get(k)
                            .and_then(serde_json::Value::as_u64)
                            .and_then(|v| u16::try_from(v).ok())
                    };
                    if let (Some(max_cll), Some(max_fall)) = (n("max_content"), n("max_average")) {
                        self.light = Some(LightLevel { max_cll, max_fall });
                    }
                }
                _ => {}
            }
        }
    }

    /// x265's `-x265-params` entries that put the static metadata in an SEI on every IDR
    /// (`master-display`, `max-cll`), empty when the source has none.
    pub fn x265_params(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(m) = &self.mastering {
            p.push(format!(
                "master-display=G({},{})B({},{})R({},{})WP({},{})L({},{})",
                m.green.x,
                m.green.y,
                m.blue.x,
                m.blue.y,
                m.red.x,
                m.red.y,
                m.white.x,
                m.white.y,
                m.max_luminance,
                m.min_luminance
            ));
        }
        if let Some(l) = &self.light {
            p.push(format!("max-cll={},{}", l.max_cll, l.max_fall));
        }
        if !p.is_empty() {
            p.push("hdr10=1".into());
        }
        p
    }

    /// SVT-AV1's `-svtav1-params` entries for the same metadata (as metadata OBUs on every
    /// key frame). SVT-AV1 takes chromaticities and luminances as decimals.
    pub fn svtav1_params(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Some(m) = &self.mastering {
            let c = |c: Chromaticity| {
                format!(
                    "{:.5},{:.5}",
                    f64::from(c.x) / 50_000.0,
                    f64::from(c.y) / 50_000.0
                )
            };
            p.push(format!(
                "mastering-display=G({})B({})R({})WP({})L({:.4},{:.4})",
                c(m.green),
                c(m.blue),
                c(m.red),
                c(m.white),
                f64::from(m.max_luminance) / 10_000.0,
                f64::from(m.min_luminance) / 10_000.0
            ));
        }
        if let Some(l) = &self.light {
            p.push(format!("content-light={},{}", l.max_cll, l.max_fall));
        }
        p
    }

    /// The zscale options naming this source's colour (input side of a tone-map).
    pub fn zscale_input(&self) -> String {
        let (p, t, m) = self.hdr_triplet();
        let range = match self.range.as_deref() {
            Some("pc") => "full",
            _ => "limited",
        };
        format!(
            "pin={}:tin={}:min={}:rin={range}",
            zscale_name(p),
            zscale_name(t),
            zscale_name(m)
        )
    }
}

/// zscale's spelling of an ffmpeg colour name (where they differ).
fn zscale_name(ffmpeg: &str) -> &str {
    match ffmpeg {
        "bt2020" => "2020",
        "bt2020nc" => "2020_ncl",
        "bt2020c" => "2020_cl",
        "bt709" => "709",
        "smpte170m" => "170m",
        "bt470bg" => "470bg",
        "smpte432" => "smpte432",
        "smpte431" => "smpte431",
        other => other,
    }
}

/// ffprobe states rationals as `"34000/50000"`; this is their value in `unit` steps.
fn steps(v: Option<&serde_json::Value>, unit: f64) -> Option<f64> {
    let s = v?.as_str()?;
    let (n, d) = s.split_once('/')?;
    let (n, d): (f64, f64) = (n.trim().parse().ok()?, d.trim().parse().ok()?);
    (d != 0.0).then(|| (n / d * unit).round())
}

fn mastering_from_json(d: &serde_json::Value) -> Option<MasteringDisplay> {
    let c = |k: &str| -> Option<Chromaticity> {
        let x = steps(d.get(format!("{k}_x").as_str()), 50_000.0)?;
        let y = steps(d.get(format!("{k}_y").as_str()), 50_000.0)?;
        Some(Chromaticity {
            x: x.clamp(0.0, 50_000.0) as u16,
            y: y.clamp(0.0, 50_000.0) as u16,
        })
    };
    let l = |k: &str| -> Option<u32> {
        steps(d.get(k), 10_000.0).map(|v| v.clamp(0.0, f64::from(u32::MAX)) as u32)
    };
    Some(MasteringDisplay {
        red: c("red")?,
        green: c("green")?,
        blue: c("blue")?,
        white: c("white_point")?,
        max_luminance: l("max_luminance")?,
        min_luminance: l("min_luminance")?,
    })
}

/// A sample entry's colour as its `colr` box (`nclx`) states it, in H.273 numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cicp {
    /// ColourPrimaries.
    pub primaries: u16,
    /// TransferCharacteristics.
    pub transfer: u16,
    /// MatrixCoefficients.
    pub matrix: u16,
    /// Full range (`pc`) rather than limited.
    #[serde(default)]
    pub full_range: bool,
}

impl Cicp {
    /// Parses an `nclx` `colr` body (after the box header); `None` for other colour types
    /// (ICC profiles, QuickTime's `nclc` carries the same numbers and is read too).
    pub fn from_colr(body: &[u8]) -> Option<Cicp> {
        let kind = body.get(0..4)?;
        if kind != b"nclx" && kind != b"nclc" {
            return None;
        }
        let n = |at: usize| -> Option<u16> {
            Some(u16::from_be_bytes([*body.get(at)?, *body.get(at + 1)?]))
        };
        Some(Cicp {
            primaries: n(4)?,
            transfer: n(6)?,
            matrix: n(8)?,
            full_range: kind == b"nclx" && body.get(10).is_some_and(|b| b & 0x80 != 0),
        })
    }

    /// The range HLS names this colour's transfer by.
    pub fn dynamic_range(&self) -> DynamicRange {
        DynamicRange::from_transfer_code(self.transfer)
    }
}

/// The `mdcv` and `clli` boxes (ISO/IEC 23001-8 as MP4 carries them: plain boxes, the
/// mastering primaries in the SEI's G, B, R order) for a sample entry, from the source's
/// static metadata; empty when it has none.
pub fn hdr_boxes(colour: &Colour) -> Vec<u8> {
    let mut out = Vec::new();
    if let Some(m) = &colour.mastering {
        out.extend_from_slice(&32u32.to_be_bytes());
        out.extend_from_slice(b"mdcv");
        for c in [m.green, m.blue, m.red, m.white] {
            out.extend_from_slice(&c.x.to_be_bytes());
            out.extend_from_slice(&c.y.to_be_bytes());
        }
        out.extend_from_slice(&m.max_luminance.to_be_bytes());
        out.extend_from_slice(&m.min_luminance.to_be_bytes());
    }
    if let Some(l) = &colour.light {
        out.extend_from_slice(&12u32.to_be_bytes());
        out.extend_from_slice(b"clli");
        out.extend_from_slice(&l.max_cll.to_be_bytes());
        out.extend_from_slice(&l.max_fall.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr10() -> Colour {
        let mut c = Colour {
            primaries: Some("bt2020".into()),
            transfer: Some("smpte2084".into()),
            matrix: Some("bt2020nc".into()),
            range: Some("tv".into()),
            ..Colour::default()
        };
        let side: Vec<serde_json::Value> = serde_json::from_str(
            r#"[{"side_data_type":"Mastering display metadata","red_x":"34000/50000",
            "red_y":"16000/50000","green_x":"13250/50000","green_y":"34500/50000",
            "blue_x":"7500/50000","blue_y":"3000/50000","white_point_x":"15635/50000",
            "white_point_y":"16450/50000","min_luminance":"50/10000",
            "max_luminance":"10000000/10000"},
            {"side_data_type":"Content light level metadata","max_content":1000,"max_average":400}]"#,
        )
        .unwrap();
        c.read_side_data(&side);
        c
    }

    #[test]
    fn ffprobes_side_data_becomes_the_encoders_own_spelling() {
        let c = hdr10();
        assert_eq!(c.dynamic_range(), DynamicRange::Pq);
        assert_eq!(
            c.x265_params(),
            [
                "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)",
                "max-cll=1000,400",
                "hdr10=1"
            ]
        );
        assert_eq!(
            c.svtav1_params(),
            [
                "mastering-display=G(0.26500,0.69000)B(0.15000,0.06000)R(0.68000,0.32000)WP(0.31270,0.32900)L(1000.0000,0.0050)",
                "content-light=1000,400"
            ]
        );
        assert_eq!(
            c.zscale_input(),
            "pin=2020:tin=smpte2084:min=2020_ncl:rin=limited"
        );
        assert!(c
            .describe()
            .starts_with("HDR10 (smpte2084, bt2020, bt2020nc)"));
    }

    #[test]
    fn hdr_boxes_follow_the_mdcv_and_clli_layouts() {
        let b = hdr_boxes(&hdr10());
        assert_eq!(b.len(), 32 + 12);
        assert_eq!(&b[4..8], b"mdcv");
        // G first, as in the SEI.
        assert_eq!(u16::from_be_bytes([b[8], b[9]]), 13250);
        assert_eq!(u32::from_be_bytes([b[24], b[25], b[26], b[27]]), 10_000_000);
        assert_eq!(u32::from_be_bytes([b[28], b[29], b[30], b[31]]), 50);
        assert_eq!(&b[36..40], b"clli");
        assert_eq!(u16::from_be_bytes([b[40], b[41]]), 1000);
        assert!(hdr_boxes(&Colour::default()).is_empty());
    }

    #[test]
    fn colr_bodies_read_as_h273_numbers() {
        let body = [b'n', b'c', b'l', b'x', 0, 9, 0, 18, 0, 9, 0];
        let c = Cicp::from_colr(&body).unwrap();
        assert_eq!((c.primaries, c.transfer, c.matrix), (9, 18, 9));
        assert_eq!(c.dynamic_range(), DynamicRange::Hlg);
        assert!(!c.full_range);
        assert_eq!(Cicp::from_colr(b"prof...."), None);
    }
}
