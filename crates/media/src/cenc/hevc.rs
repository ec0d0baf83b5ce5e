//! Where an HEVC slice segment's header ends, so subsample encryption leaves it clear (as
//! [`super::avc`] does for H.264).
//!
//! The header's length depends on the sequence and picture parameter sets (short-term
//! reference picture sets, long-term references, SAO, tiles, weighted prediction, the
//! header extension), so those are read from the `hvcC` record first. Only the fields that
//! decide the header's length are kept; the walk follows ITU-T H.265 (7.3.2.2, 7.3.2.3,
//! 7.3.6 and 7.3.7). Multi-layer, 3D and screen-content extensions are refused.

use super::bits::{bad, Bits, HeaderError, R};
use std::collections::HashMap;

/// One short-term reference picture set: how many pictures it lists, and how many of
/// them the current picture uses (the slice header's `NumPicTotalCurr`).
#[derive(Debug, Clone, Copy, Default)]
struct StRps {
    num_delta_pocs: u32,
    used: u32,
}

/// What a slice segment header's length depends on, from a sequence parameter set.
#[derive(Debug, Clone, Default)]
struct Sps {
    chroma_array_type: u32,
    separate_colour_plane: bool,
    log2_max_poc_lsb: u32,
    pic_size_in_ctbs: u64,
    sao: bool,
    st_rps: Vec<StRps>,
    long_term_present: bool,
    num_long_term_sps: u32,
    temporal_mvp: bool,
}

/// The same, from a picture parameter set.
#[derive(Debug, Clone, Copy, Default)]
struct Pps {
    sps_id: u32,
    dependent_slice_segments: bool,
    output_flag_present: bool,
    num_extra_slice_header_bits: u32,
    cabac_init_present: bool,
    num_ref_idx_l0_default: u32,
    num_ref_idx_l1_default: u32,
    slice_chroma_qp_offsets_present: bool,
    weighted_pred: bool,
    weighted_bipred: bool,
    tiles_or_sync: bool,
    loop_filter_across_slices: bool,
    deblocking_override_enabled: bool,
    deblocking_disabled: bool,
    lists_modification_present: bool,
    header_extension_present: bool,
    chroma_qp_offset_list: bool,
}

/// The parameter sets of one HEVC track, from its `hvcC`.
#[derive(Debug, Clone, Default)]
pub struct HevcParams {
    sps: HashMap<u32, Sps>,
    pps: HashMap<u32, Pps>,
    /// Bytes in each NAL unit's length field (1, 2 or 4).
    pub length_size: usize,
}

/// Ceil(Log2(n)) bits, as the standard sizes its `u(v)` fields.
fn ceil_log2(n: u64) -> u32 {
    if n <= 1 {
        0
    } else {
        64 - (n - 1).leading_zeros()
    }
}

impl HevcParams {
    /// Reads an `HEVCDecoderConfigurationRecord` (the `hvcC` box's body).
    pub fn from_hvcc(c: &[u8]) -> R<HevcParams> {
        if c.len() < 23 {
            return bad("hvcC is too short");
        }
        let mut p = HevcParams {
            length_size: usize::from(c[21] & 3) + 1,
            ..Default::default()
        };
        let arrays = usize::from(c[22]);
        let mut at = 23;
        let short = || HeaderError("hvcC is truncated".into());
        for _ in 0..arrays {
            let n = c.get(at + 1..at + 3).ok_or_else(short)?;
            let n = usize::from(u16::from_be_bytes([n[0], n[1]]));
            at += 3;
            for _ in 0..n {
                let len = c.get(at..at + 2).ok_or_else(short)?;
                let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
                let nal = c.get(at + 2..at + 2 + len).ok_or_else(short)?;
                p.add(nal)?;
                at += 2 + len;
            }
        }
        if p.sps.is_empty() || p.pps.is_empty() {
            return bad("hvcC holds no SPS or no PPS");
        }
        Ok(p)
    }

    /// Reads a parameter set NAL unit (in the `hvcC` or in band); others are ignored.
    pub fn add(&mut self, nal: &[u8]) -> R<()> {
        match nal.first().map(|h| (h >> 1) & 0x3f) {
            Some(33) => {
                let (id, sps) = parse_sps(nal)?;
                self.sps.insert(id, sps);
            }
            Some(34) => {
                let (id, pps) = parse_pps(nal)?;
                self.pps.insert(id, pps);
            }
            _ => {}
        }
        Ok(())
    }

    /// For a slice segment NAL unit (types 0 to 31), the bytes from its start (header
    /// included) through the end of its slice segment header; None for other NAL units.
    pub fn slice_header_len(&self, nal: &[u8]) -> R<Option<usize>> {
        Ok(self.walk(nal)?.map(|r| r.nal_offset()))
    }

    /// For a slice segment NAL unit, its header's length in bits of the payload with the
    /// two NAL header bytes counted (as ffmpeg's `trace_headers` numbers them).
    pub fn slice_header_bits(&self, nal: &[u8]) -> R<Option<usize>> {
        Ok(self.walk(nal)?.map(|r| 16 + r.pos))
    }

    fn walk<'n>(&self, nal: &'n [u8]) -> R<Option<Bits<'n>>> {
        let Some(&h) = nal.first() else {
            return bad("an empty NAL unit");
        };
        let kind = (h >> 1) & 0x3f;
        if kind > 31 {
            return Ok(None);
        }
        if nal.len() < 2 || nal[1] >> 3 != 0 {
            return bad("a slice of a layer other than the base layer");
        }
        let mut r = Bits::new(nal, 2);
        let first = r.flag()?;
        if (16..=23).contains(&kind) {
            r.flag()?;
        }
        let pps_id = r.ue()?;
        let pps = *self
            .pps
            .get(&pps_id)
            .ok_or_else(|| HeaderError(format!("a slice refers to unknown PPS {pps_id}")))?;
        let sps = self.sps.get(&pps.sps_id).ok_or_else(|| {
            HeaderError(format!("PPS {pps_id} refers to unknown SPS {}", pps.sps_id))
        })?;
        let mut dependent = false;
        if !first {
            if pps.dependent_slice_segments {
                dependent = r.flag()?;
            }
            r.u(ceil_log2(sps.pic_size_in_ctbs))?;
        }
        if !dependent {
            self.independent_header(&mut r, kind, &pps, sps)?;
        }
        if pps.tiles_or_sync {
            let n = r.ue()?;
            if n > 0 {
                let len = r.ue()? + 1;
                if len > 32 {
                    return bad(format!("entry point offsets of {len} bits"));
                }
                for _ in 0..n {
                    r.u(len)?;
                }
            }
        }
        if pps.header_extension_present {
            let n = r.ue()?;
            r.skip(n as usize * 8)?;
        }
        // byte_alignment(): a one, then zeros to the byte boundary.
        if !r.flag()? {
            return bad("a slice header whose alignment bit is zero");
        }
        r.align()?;
        Ok(Some(r))
    }

    /// The part of the header a dependent slice segment takes from its slice.
    fn independent_header(&self, r: &mut Bits<'_>, kind: u8, pps: &Pps, sps: &Sps) -> R<()> {
        for _ in 0..pps.num_extra_slice_header_bits {
            r.flag()?;
        }
        let slice_type = r.ue()?;
        let (b, p) = (slice_type == 0, slice_type == 1);
        if slice_type > 2 {
            return bad(format!("slice_type {slice_type}"));
        }
        if pps.output_flag_present {
            r.flag()?;
        }
        if sps.separate_colour_plane {
            r.u(2)?;
        }
        let mut total_curr = 0u32;
        let mut temporal_mvp = false;
        if kind != 19 && kind != 20 {
            r.u(sps.log2_max_poc_lsb)?;
            let num_sets = sps.st_rps.len();
            if !r.flag()? {
                let rps = st_ref_pic_set(r, num_sets, &sps.st_rps, true)?;
                total_curr += rps.used;
            } else {
                let idx = if num_sets > 1 {
                    r.u(ceil_log2(num_sets as u64))? as usize
                } else {
                    0
                };
                total_curr += sps
                    .st_rps
                    .get(idx)
                    .ok_or_else(|| HeaderError(format!("short-term RPS {idx} of {num_sets}")))?
                    .used;
            }
            if sps.long_term_present {
                let num_sps = if sps.num_long_term_sps > 0 {
                    r.ue()?
                } else {
                    0
                };
                let num_pics = r.ue()?;
                if num_sps + num_pics > 32 {
                    return bad("more than 32 long-term references");
                }
                for i in 0..num_sps + num_pics {
                    if i < num_sps {
                        if sps.num_long_term_sps > 1 {
                            r.u(ceil_log2(u64::from(sps.num_long_term_sps)))?;
                        }
                        // Whether an SPS entry is used is in the SPS: count it as used,
                        // which can only lengthen NumPicTotalCurr's field.
                        total_curr += 1;
                    } else {
                        r.u(sps.log2_max_poc_lsb)?;
                        if r.flag()? {
                            total_curr += 1;
                        }
                    }
                    if r.flag()? {
                        r.ue()?;
                    }
                }
            }
            if sps.temporal_mvp {
                temporal_mvp = r.flag()?;
            }
        }
        let (mut sao_luma, mut sao_chroma) = (false, false);
        if sps.sao {
            sao_luma = r.flag()?;
            if sps.chroma_array_type != 0 {
                sao_chroma = r.flag()?;
            }
        }
        if p || b {
            let (mut l0, mut l1) = (pps.num_ref_idx_l0_default, pps.num_ref_idx_l1_default);
            if r.flag()? {
                l0 = r.ue()? + 1;
                if b {
                    l1 = r.ue()? + 1;
                }
            }
            if l0 > 16 || l1 > 16 {
                return bad("more than 16 active references");
            }
            if pps.lists_modification_present && total_curr > 1 {
                let bits = ceil_log2(u64::from(total_curr));
                if r.flag()? {
                    for _ in 0..l0 {
                        r.u(bits)?;
                    }
                }
                if b && r.flag()? {
                    for _ in 0..l1 {
                        r.u(bits)?;
                    }
                }
            }
            if b {
                r.flag()?;
            }
            if pps.cabac_init_present {
                r.flag()?;
            }
            if temporal_mvp {
                let from_l0 = if b { r.flag()? } else { true };
                if (from_l0 && l0 > 1) || (!from_l0 && l1 > 1) {
                    r.ue()?;
                }
            }
            if (pps.weighted_pred && p) || (pps.weighted_bipred && b) {
                pred_weight_table(r, sps.chroma_array_type != 0, l0, if b { l1 } else { 0 })?;
            }
            r.ue()?;
        }
        r.se()?;
        if pps.slice_chroma_qp_offsets_present {
            r.se()?;
            r.se()?;
        }
        if pps.chroma_qp_offset_list {
            r.flag()?;
        }
        let mut override_ = false;
        if pps.deblocking_override_enabled {
            override_ = r.flag()?;
        }
        let mut deblocking_disabled = pps.deblocking_disabled;
        if override_ {
            deblocking_disabled = r.flag()?;
            if !deblocking_disabled {
                r.se()?;
                r.se()?;
            }
        }
        if pps.loop_filter_across_slices && (sao_luma || sao_chroma || !deblocking_disabled) {
            r.flag()?;
        }
        Ok(())
    }
}

/// pred_weight_table() of a single-layer stream (every reference's POC differs from the
/// current picture's, so every flag is present).
fn pred_weight_table(r: &mut Bits<'_>, chroma: bool, l0: u32, l1: u32) -> R<()> {
    r.ue()?;
    if chroma {
        r.se()?;
    }
    for count in [l0, l1].into_iter().filter(|c| *c > 0) {
        let mut luma = Vec::with_capacity(count as usize);
        for _ in 0..count {
            luma.push(r.flag()?);
        }
        let mut chroma_flags = vec![false; count as usize];
        if chroma {
            for f in chroma_flags.iter_mut() {
                *f = r.flag()?;
            }
        }
        for i in 0..count as usize {
            if luma[i] {
                r.se()?;
                r.se()?;
            }
            if chroma_flags[i] {
                for _ in 0..4 {
                    r.se()?;
                }
            }
        }
    }
    Ok(())
}

/// st_ref_pic_set(idx): one short-term reference picture set, explicit or predicted from
/// an earlier one of `sets` (in a slice header, `idx` is the SPS's count).
fn st_ref_pic_set(r: &mut Bits<'_>, idx: usize, sets: &[StRps], in_slice: bool) -> R<StRps> {
    let predicted = idx != 0 && r.flag()?;
    if predicted {
        let delta_idx = if in_slice { r.ue()? as usize + 1 } else { 1 };
        r.flag()?;
        r.ue()?;
        let reference = idx
            .checked_sub(delta_idx)
            .and_then(|i| sets.get(i))
            .ok_or_else(|| {
                HeaderError(format!(
                    "short-term RPS {idx} predicts from a set that does not exist"
                ))
            })?;
        let mut out = StRps::default();
        for _ in 0..=reference.num_delta_pocs {
            let used = r.flag()?;
            let kept = used || r.flag()?;
            if kept {
                out.num_delta_pocs += 1;
            }
            if used {
                out.used += 1;
            }
        }
        return Ok(out);
    }
    let (neg, pos) = (r.ue()?, r.ue()?);
    if neg > 16 || pos > 16 {
        return bad("a short-term RPS of more than 16 pictures a side");
    }
    let mut out = StRps {
        num_delta_pocs: neg + pos,
        used: 0,
    };
    for _ in 0..neg + pos {
        r.ue()?;
        if r.flag()? {
            out.used += 1;
        }
    }
    Ok(out)
}

fn profile_tier_level(r: &mut Bits<'_>, max_sub_layers_minus1: u32) -> R<()> {
    r.skip(2 + 1 + 5 + 32 + 4 + 43 + 1 + 8)?;
    let mut profile = [false; 8];
    let mut level = [false; 8];
    for i in 0..max_sub_layers_minus1 as usize {
        profile[i] = r.flag()?;
        level[i] = r.flag()?;
    }
    if max_sub_layers_minus1 > 0 {
        for _ in max_sub_layers_minus1..8 {
            r.u(2)?;
        }
    }
    for i in 0..max_sub_layers_minus1 as usize {
        if profile[i] {
            r.skip(88)?;
        }
        if level[i] {
            r.skip(8)?;
        }
    }
    Ok(())
}

fn scaling_list_data(r: &mut Bits<'_>) -> R<()> {
    for size_id in 0..4u32 {
        let step = if size_id == 3 { 3 } else { 1 };
        for _ in (0..6).step_by(step) {
            if !r.flag()? {
                r.ue()?;
            } else {
                let coefs = 64.min(1 << (4 + (size_id << 1)));
                if size_id > 1 {
                    r.se()?;
                }
                for _ in 0..coefs {
                    r.se()?;
                }
            }
        }
    }
    Ok(())
}

fn parse_sps(nal: &[u8]) -> R<(u32, Sps)> {
    let mut r = Bits::new(nal, 2);
    r.u(4)?;
    let max_sub_layers_minus1 = r.u(3)?;
    if max_sub_layers_minus1 > 6 {
        return bad("more than 7 sub-layers");
    }
    r.flag()?;
    profile_tier_level(&mut r, max_sub_layers_minus1)?;
    let id = r.ue()?;
    let chroma_format_idc = r.ue()?;
    let mut separate_colour_plane = false;
    if chroma_format_idc == 3 {
        separate_colour_plane = r.flag()?;
    }
    let (width, height) = (r.ue()?, r.ue()?);
    if r.flag()? {
        for _ in 0..4 {
            r.ue()?;
        }
    }
    r.ue()?;
    r.ue()?;
    let log2_max_poc_lsb = r.ue()? + 4;
    if log2_max_poc_lsb > 16 {
        return bad("POC LSB wider than 16 bits");
    }
    let ordering_all = r.flag()?;
    for _ in (if ordering_all {
        0
    } else {
        max_sub_layers_minus1
    })..=max_sub_layers_minus1
    {
        r.ue()?;
        r.ue()?;
        r.ue()?;
    }
    let log2_min_cb = r.ue()? + 3;
    let log2_ctb = log2_min_cb + r.ue()?;
    if log2_ctb > 7 {
        return bad(format!("a coding tree block of 2^{log2_ctb} samples"));
    }
    r.ue()?;
    r.ue()?;
    r.ue()?;
    r.ue()?;
    if r.flag()? && r.flag()? {
        scaling_list_data(&mut r)?;
    }
    r.flag()?;
    let sao = r.flag()?;
    if r.flag()? {
        r.u(4)?;
        r.u(4)?;
        r.ue()?;
        r.ue()?;
        r.flag()?;
    }
    let num_sets = r.ue()? as usize;
    if num_sets > 64 {
        return bad(format!("{num_sets} short-term reference picture sets"));
    }
    let mut st_rps = Vec::with_capacity(num_sets);
    for i in 0..num_sets {
        let s = st_ref_pic_set(&mut r, i, &st_rps, false)?;
        st_rps.push(s);
    }
    let long_term_present = r.flag()?;
    let mut num_long_term_sps = 0;
    if long_term_present {
        num_long_term_sps = r.ue()?;
        if num_long_term_sps > 32 {
            return bad("more than 32 long-term references in the SPS");
        }
        for _ in 0..num_long_term_sps {
            r.u(log2_max_poc_lsb)?;
            r.flag()?;
        }
    }
    let temporal_mvp = r.flag()?;
    let ctb = 1u64 << log2_ctb;
    let pic_size_in_ctbs = u64::from(width).div_ceil(ctb) * u64::from(height).div_ceil(ctb);
    Ok((
        id,
        Sps {
            chroma_array_type: if separate_colour_plane {
                0
            } else {
                chroma_format_idc
            },
            separate_colour_plane,
            log2_max_poc_lsb,
            pic_size_in_ctbs,
            sao,
            st_rps,
            long_term_present,
            num_long_term_sps,
            temporal_mvp,
        },
    ))
}

fn parse_pps(nal: &[u8]) -> R<(u32, Pps)> {
    let mut r = Bits::new(nal, 2);
    let id = r.ue()?;
    let mut p = Pps {
        sps_id: r.ue()?,
        dependent_slice_segments: r.flag()?,
        output_flag_present: r.flag()?,
        num_extra_slice_header_bits: r.u(3)?,
        ..Default::default()
    };
    r.flag()?;
    p.cabac_init_present = r.flag()?;
    p.num_ref_idx_l0_default = r.ue()? + 1;
    p.num_ref_idx_l1_default = r.ue()? + 1;
    r.se()?;
    r.flag()?;
    let transform_skip = r.flag()?;
    if r.flag()? {
        r.ue()?;
    }
    r.se()?;
    r.se()?;
    p.slice_chroma_qp_offsets_present = r.flag()?;
    p.weighted_pred = r.flag()?;
    p.weighted_bipred = r.flag()?;
    r.flag()?;
    let tiles = r.flag()?;
    let sync = r.flag()?;
    p.tiles_or_sync = tiles || sync;
    if tiles {
        let (cols, rows) = (r.ue()?, r.ue()?);
        if cols > 64 || rows > 64 {
            return bad("more than 64 tile columns or rows");
        }
        if !r.flag()? {
            for _ in 0..cols + rows {
                r.ue()?;
            }
        }
        r.flag()?;
    }
    p.loop_filter_across_slices = r.flag()?;
    if r.flag()? {
        p.deblocking_override_enabled = r.flag()?;
        p.deblocking_disabled = r.flag()?;
        if !p.deblocking_disabled {
            r.se()?;
            r.se()?;
        }
    }
    if r.flag()? {
        scaling_list_data(&mut r)?;
    }
    p.lists_modification_present = r.flag()?;
    r.ue()?;
    p.header_extension_present = r.flag()?;
    if r.flag()? {
        let range = r.flag()?;
        if r.flag()? || r.flag()? || r.flag()? {
            return bad("a multi-layer, 3D or screen-content PPS extension");
        }
        r.u(4)?;
        if range {
            if transform_skip {
                r.ue()?;
            }
            r.flag()?;
            p.chroma_qp_offset_list = r.flag()?;
        }
    }
    Ok((id, p))
}
