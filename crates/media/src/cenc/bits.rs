//! A bit reader over a NAL unit's payload, for walking H.264 and HEVC headers.

/// Why a header could not be walked: the encryption refuses the sample rather than guess.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderError(pub String);

pub(crate) type R<T> = std::result::Result<T, HeaderError>;

pub(crate) fn bad<T>(why: impl Into<String>) -> R<T> {
    Err(HeaderError(why.into()))
}

/// Reads bits of a NAL unit's payload with emulation prevention bytes (`00 00 03`) removed,
/// and maps a payload bit position back to a byte offset in the NAL unit as stored.
pub(crate) struct Bits<'a> {
    nal: &'a [u8],
    /// The payload (RBSP), and for each of its bytes the offset of that byte in `nal`.
    rbsp: Vec<u8>,
    at_nal: Vec<usize>,
    pub(crate) pos: usize,
}

impl<'a> Bits<'a> {
    /// Starts after `skip` bytes of `nal` (the NAL unit header).
    pub(crate) fn new(nal: &'a [u8], skip: usize) -> Bits<'a> {
        let mut rbsp = Vec::with_capacity(nal.len());
        let mut at_nal = Vec::with_capacity(nal.len());
        let mut zeros = 0;
        for (i, &b) in nal.iter().enumerate().skip(skip) {
            if zeros >= 2 && b == 3 {
                zeros = 0;
                continue;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            rbsp.push(b);
            at_nal.push(i);
        }
        Bits {
            nal,
            rbsp,
            at_nal,
            pos: 0,
        }
    }

    fn bit(&mut self) -> R<u32> {
        let byte = self.rbsp.get(self.pos / 8).copied();
        let Some(byte) = byte else {
            return bad("the slice header runs past its NAL unit");
        };
        let b = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(u32::from(b))
    }

    pub(crate) fn u(&mut self, n: u32) -> R<u32> {
        let mut v = 0u32;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Ok(v)
    }

    pub(crate) fn flag(&mut self) -> R<bool> {
        Ok(self.bit()? == 1)
    }

    /// ue(v): Exp-Golomb, unsigned.
    pub(crate) fn ue(&mut self) -> R<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return bad("an Exp-Golomb code longer than 32 bits");
            }
        }
        let rest = self.u(zeros)?;
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// se(v): Exp-Golomb, signed.
    pub(crate) fn se(&mut self) -> R<i32> {
        let k = i64::from(self.ue()?);
        Ok(if k % 2 == 1 {
            ((k + 1) / 2) as i32
        } else {
            (-(k / 2)) as i32
        })
    }

    /// Skips `n` bits.
    pub(crate) fn skip(&mut self, n: usize) -> R<()> {
        if (self.pos + n).div_ceil(8) > self.rbsp.len() {
            return bad("a header runs past its NAL unit");
        }
        self.pos += n;
        Ok(())
    }

    /// Reads to the next byte boundary (a header's `byte_alignment()`).
    pub(crate) fn align(&mut self) -> R<()> {
        let rest = (8 - self.pos % 8) % 8;
        self.skip(rest)
    }

    /// The byte offset in the NAL unit just past the last bit read (a partly read byte
    /// counts as read).
    pub(crate) fn nal_offset(&self) -> usize {
        let bytes = self.pos.div_ceil(8);
        match bytes.checked_sub(1).and_then(|i| self.at_nal.get(i)) {
            Some(&last) => (last + 1).min(self.nal.len()),
            None => self.at_nal.first().copied().unwrap_or(self.nal.len()),
        }
    }
}
