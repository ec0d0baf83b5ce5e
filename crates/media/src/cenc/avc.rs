//! Where an H.264 slice's header ends, so subsample encryption leaves it clear.
//!
//! Common encryption (ISO/IEC 23001-7) keeps each NAL unit's length field and header clear,
//! and, for slice NAL units, the slice header: a secure decoder parses it before the slice
//! data is decrypted, and FairPlay's `cbcs` requires it. The header's length depends on the
//! sequence and picture parameter sets (field widths and which fields are present), so
//! those are read from the `avcC` record first. Only the fields that decide the header's
//! length are kept; the walk follows H.264 (ITU-T H.264, 7.3.2.1, 7.3.2.2 and 7.3.3).

use super::bits::{bad, Bits, HeaderError, R};
use std::collections::HashMap;

/// What a slice header's length depends on, from a sequence parameter set.
#[derive(Debug, Clone, Copy)]
struct Sps {
    chroma_array_type: u32,
    separate_colour_plane: bool,
    log2_max_frame_num: u32,
    poc_type: u32,
    log2_max_poc_lsb: u32,
    delta_pic_order_always_zero: bool,
    frame_mbs_only: bool,
}

/// The same, from a picture parameter set.
#[derive(Debug, Clone, Copy)]
struct Pps {
    sps_id: u32,
    entropy_coding_mode: bool,
    bottom_field_pic_order_in_frame_present: bool,
    num_ref_idx_l0_default: u32,
    num_ref_idx_l1_default: u32,
    weighted_pred: bool,
    weighted_bipred_idc: u32,
    deblocking_filter_control_present: bool,
    redundant_pic_cnt_present: bool,
}

/// The parameter sets of one H.264 track, from its `avcC`.
#[derive(Debug, Clone, Default)]
pub struct AvcParams {
    sps: HashMap<u32, Sps>,
    pps: HashMap<u32, Pps>,
    /// Bytes in each NAL unit's length field (1, 2 or 4).
    pub length_size: usize,
}

impl AvcParams {
    /// Reads an `AVCDecoderConfigurationRecord` (the `avcC` box's body).
    pub fn from_avcc(c: &[u8]) -> R<AvcParams> {
        if c.len() < 7 {
            return bad("avcC is too short");
        }
        let mut p = AvcParams {
            length_size: usize::from(c[4] & 3) + 1,
            ..Default::default()
        };
        let mut at = 5;
        let sets = |at: &mut usize, count: usize, p: &mut AvcParams| -> R<()> {
            for _ in 0..count {
                let len = c
                    .get(*at..*at + 2)
                    .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
                    .ok_or_else(|| HeaderError("avcC is truncated".into()))?;
                let nal = c
                    .get(*at + 2..*at + 2 + len)
                    .ok_or_else(|| HeaderError("avcC is truncated".into()))?;
                p.add(nal)?;
                *at += 2 + len;
            }
            Ok(())
        };
        let n_sps = usize::from(c[at] & 0x1f);
        at += 1;
        sets(&mut at, n_sps, &mut p)?;
        let n_pps = usize::from(
            *c.get(at)
                .ok_or_else(|| HeaderError("avcC has no PPS count".into()))?,
        );
        at += 1;
        sets(&mut at, n_pps, &mut p)?;
        if p.sps.is_empty() || p.pps.is_empty() {
            return bad("avcC holds no SPS or no PPS");
        }
        Ok(p)
    }

    /// Reads a parameter set NAL unit (in the `avcC` or in band); other units are ignored.
    pub fn add(&mut self, nal: &[u8]) -> R<()> {
        match nal.first().map(|h| h & 0x1f) {
            Some(7) => {
                let (id, sps) = parse_sps(nal)?;
                self.sps.insert(id, sps);
            }
            Some(8) => {
                let (id, pps) = parse_pps(nal)?;
                self.pps.insert(id, pps);
            }
            _ => {}
        }
        Ok(())
    }

    /// For a slice NAL unit (types 1 and 5), the bytes from its start (header included)
    /// through the end of its slice header; None for other NAL units.
    pub fn slice_header_len(&self, nal: &[u8]) -> R<Option<usize>> {
        Ok(self.walk(nal)?.map(|r| r.nal_offset()))
    }

    /// For a slice NAL unit, its slice header's length in bits of the payload with the
    /// NAL header byte counted (as ffmpeg's `trace_headers` numbers them): what the tests
    /// compare against a reference parser.
    pub fn slice_header_bits(&self, nal: &[u8]) -> R<Option<usize>> {
        Ok(self.walk(nal)?.map(|r| 8 + r.pos))
    }

    fn walk<'n>(&self, nal: &'n [u8]) -> R<Option<Bits<'n>>> {
        let Some(&h) = nal.first() else {
            return bad("an empty NAL unit");
        };
        let (ref_idc, kind) = ((h >> 5) & 3, h & 0x1f);
        if kind != 1 && kind != 5 {
            return Ok(None);
        }
        let idr = kind == 5;
        let mut r = Bits::new(nal, 1);
        let _first_mb = r.ue()?;
        let slice_type = r.ue()? % 5;
        let pps_id = r.ue()?;
        let pps = *self
            .pps
            .get(&pps_id)
            .ok_or_else(|| HeaderError(format!("a slice refers to unknown PPS {pps_id}")))?;
        let sps = *self.sps.get(&pps.sps_id).ok_or_else(|| {
            HeaderError(format!("PPS {pps_id} refers to unknown SPS {}", pps.sps_id))
        })?;
        let (p, b, i, sp, si) = (
            slice_type == 0,
            slice_type == 1,
            slice_type == 2,
            slice_type == 3,
            slice_type == 4,
        );
        if sps.separate_colour_plane {
            r.u(2)?;
        }
        r.u(sps.log2_max_frame_num)?;
        let mut field_pic = false;
        if !sps.frame_mbs_only {
            field_pic = r.flag()?;
            if field_pic {
                r.flag()?;
            }
        }
        if idr {
            r.ue()?;
        }
        if sps.poc_type == 0 {
            r.u(sps.log2_max_poc_lsb)?;
            if pps.bottom_field_pic_order_in_frame_present && !field_pic {
                r.se()?;
            }
        }
        if sps.poc_type == 1 && !sps.delta_pic_order_always_zero {
            r.se()?;
            if pps.bottom_field_pic_order_in_frame_present && !field_pic {
                r.se()?;
            }
        }
        if pps.redundant_pic_cnt_present {
            r.ue()?;
        }
        if b {
            r.flag()?;
        }
        let (mut l0, mut l1) = (pps.num_ref_idx_l0_default, pps.num_ref_idx_l1_default);
        if (p || sp || b) && r.flag()? {
            l0 = r.ue()? + 1;
            if b {
                l1 = r.ue()? + 1;
            }
        }
        // ref_pic_list_modification()
        if !i && !si {
            for _list in 0..if b { 2 } else { 1 } {
                if r.flag()? {
                    loop {
                        let idc = r.ue()?;
                        match idc {
                            0..=2 => {
                                r.ue()?;
                            }
                            3 => break,
                            _ => return bad(format!("modification_of_pic_nums_idc {idc}")),
                        }
                    }
                }
            }
        }
        if (pps.weighted_pred && (p || sp)) || (pps.weighted_bipred_idc == 1 && b) {
            // pred_weight_table()
            r.ue()?;
            let chroma = sps.chroma_array_type != 0;
            if chroma {
                r.ue()?;
            }
            for count in [Some(l0), b.then_some(l1)].into_iter().flatten() {
                if count > 32 {
                    return bad(format!("{count} reference pictures"));
                }
                for _ in 0..count {
                    if r.flag()? {
                        r.se()?;
                        r.se()?;
                    }
                    if chroma && r.flag()? {
                        for _ in 0..4 {
                            r.se()?;
                        }
                    }
                }
            }
        }
        if ref_idc != 0 {
            // dec_ref_pic_marking()
            if idr {
                r.flag()?;
                r.flag()?;
            } else if r.flag()? {
                loop {
                    let op = r.ue()?;
                    match op {
                        0 => break,
                        1 | 2 | 4 | 6 => {
                            r.ue()?;
                        }
                        3 => {
                            r.ue()?;
                            r.ue()?;
                        }
                        5 => {}
                        _ => return bad(format!("memory_management_control_operation {op}")),
                    }
                }
            }
        }
        if pps.entropy_coding_mode && !i && !si {
            r.ue()?;
        }
        r.se()?;
        if sp || si {
            if sp {
                r.flag()?;
            }
            r.se()?;
        }
        if pps.deblocking_filter_control_present && r.ue()? != 1 {
            r.se()?;
            r.se()?;
        }
        Ok(Some(r))
    }
}

fn parse_sps(nal: &[u8]) -> R<(u32, Sps)> {
    let mut r = Bits::new(nal, 1);
    let profile = r.u(8)?;
    r.u(16)?;
    let id = r.ue()?;
    let (mut chroma_format_idc, mut separate_colour_plane) = (1, false);
    if matches!(
        profile,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    ) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc == 3 {
            separate_colour_plane = r.flag()?;
        }
        r.ue()?;
        r.ue()?;
        r.flag()?;
        if r.flag()? {
            for i in 0..if chroma_format_idc == 3 { 12 } else { 8 } {
                if r.flag()? {
                    // scaling_list(): deltas until the list ends or repeats.
                    let size = if i < 6 { 16 } else { 64 };
                    let (mut last, mut next) = (8i32, 8i32);
                    for _ in 0..size {
                        if next != 0 {
                            next = (last + r.se()? + 256) % 256;
                        }
                        if next != 0 {
                            last = next;
                        }
                    }
                }
            }
        }
    }
    let log2_max_frame_num = r.ue()? + 4;
    let poc_type = r.ue()?;
    let (mut log2_max_poc_lsb, mut delta_pic_order_always_zero) = (0, false);
    match poc_type {
        0 => log2_max_poc_lsb = r.ue()? + 4,
        1 => {
            delta_pic_order_always_zero = r.flag()?;
            r.se()?;
            r.se()?;
            let n = r.ue()?;
            if n > 255 {
                return bad(format!("{n} reference frames in a POC cycle"));
            }
            for _ in 0..n {
                r.se()?;
            }
        }
        2 => {}
        t => return bad(format!("pic_order_cnt_type {t}")),
    }
    if log2_max_frame_num > 16 || log2_max_poc_lsb > 16 {
        return bad("frame_num or POC LSB wider than 16 bits");
    }
    r.ue()?;
    r.flag()?;
    r.ue()?;
    r.ue()?;
    let frame_mbs_only = r.flag()?;
    Ok((
        id,
        Sps {
            chroma_array_type: if separate_colour_plane {
                0
            } else {
                chroma_format_idc
            },
            separate_colour_plane,
            log2_max_frame_num,
            poc_type,
            log2_max_poc_lsb,
            delta_pic_order_always_zero,
            frame_mbs_only,
        },
    ))
}

fn parse_pps(nal: &[u8]) -> R<(u32, Pps)> {
    let mut r = Bits::new(nal, 1);
    let id = r.ue()?;
    let sps_id = r.ue()?;
    let entropy_coding_mode = r.flag()?;
    let bottom_field_pic_order_in_frame_present = r.flag()?;
    if r.ue()? != 0 {
        return bad("slice groups (FMO) are not supported");
    }
    let num_ref_idx_l0_default = r.ue()? + 1;
    let num_ref_idx_l1_default = r.ue()? + 1;
    let weighted_pred = r.flag()?;
    let weighted_bipred_idc = r.u(2)?;
    r.se()?;
    r.se()?;
    r.se()?;
    let deblocking_filter_control_present = r.flag()?;
    r.flag()?;
    let redundant_pic_cnt_present = r.flag()?;
    Ok((
        id,
        Pps {
            sps_id,
            entropy_coding_mode,
            bottom_field_pic_order_in_frame_present,
            num_ref_idx_l0_default,
            num_ref_idx_l1_default,
            weighted_pred,
            weighted_bipred_idc,
            deblocking_filter_control_present,
            redundant_pic_cnt_present,
        },
    ))
}
