//! The sample cipher: which bytes of a sample are encrypted (subsamples), and AES in the
//! two schemes' modes over them.
//!
//! - `cbcs`: AES-128-CBC from the constant IV at the start of every subsample's protected
//!   range, over a pattern of blocks (video 1 encrypted, 9 clear; audio every block), and a
//!   partial last block stays clear.
//! - `cenc`: AES-128-CTR from the sample's own 8-byte IV (counter in the low 8 bytes),
//!   one keystream across the sample's protected ranges in order.

use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit, StreamCipher};
use aes::Aes128;

use super::Scheme;

/// One run of clear bytes followed by one run of protected bytes, as `senc` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subsample {
    /// Bytes left clear.
    pub clear: u16,
    /// Bytes protected after them.
    pub protected: u32,
}

/// The pattern of a protected range: `crypt` blocks encrypted, then `skip` clear; (0, 0)
/// encrypts every block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    /// Blocks encrypted in each repetition.
    pub crypt: u8,
    /// Blocks left clear in each repetition.
    pub skip: u8,
}

impl Pattern {
    /// The `cbcs` video pattern every FairPlay, Widevine and PlayReady client accepts.
    pub const VIDEO: Pattern = Pattern { crypt: 1, skip: 9 };
    /// Every block (audio, and `cenc`).
    pub const WHOLE: Pattern = Pattern { crypt: 0, skip: 0 };

    fn encrypts(&self, block: usize) -> bool {
        if self.crypt == 0 && self.skip == 0 {
            return true;
        }
        let period = usize::from(self.crypt) + usize::from(self.skip);
        block % period < usize::from(self.crypt)
    }
}

/// Builds the subsample list of a sample: `ranges` are (clear, protected) byte counts in
/// order, merged so that runs of clear bytes share an entry and split where a clear run
/// does not fit in 16 bits.
pub fn subsamples(ranges: &[(usize, usize)]) -> Vec<Subsample> {
    let mut out: Vec<Subsample> = Vec::new();
    let mut clear = 0usize;
    for &(c, p) in ranges {
        clear += c;
        if p == 0 {
            continue;
        }
        while clear > usize::from(u16::MAX) {
            out.push(Subsample {
                clear: u16::MAX,
                protected: 0,
            });
            clear -= usize::from(u16::MAX);
        }
        out.push(Subsample {
            clear: clear as u16,
            protected: p as u32,
        });
        clear = 0;
    }
    while clear > 0 {
        let c = clear.min(usize::from(u16::MAX));
        out.push(Subsample {
            clear: c as u16,
            protected: 0,
        });
        clear -= c;
    }
    out
}

/// The protected byte ranges of a sample of `len` bytes: its subsamples, or the whole
/// sample when it has none.
fn protected_ranges(len: usize, subs: &[Subsample]) -> Vec<std::ops::Range<usize>> {
    if subs.is_empty() {
        return std::iter::once(0..len).collect();
    }
    let mut at = 0;
    let mut out = Vec::with_capacity(subs.len());
    for s in subs {
        at += usize::from(s.clear);
        let end = (at + s.protected as usize).min(len);
        out.push(at..end);
        at = end;
    }
    out
}

/// Encrypts `sample` in place.
pub fn encrypt(
    scheme: Scheme,
    key: &[u8; 16],
    iv: &[u8; 16],
    pattern: Pattern,
    sample: &mut [u8],
    subs: &[Subsample],
) {
    apply(scheme, key, iv, pattern, sample, subs, true);
}

/// Decrypts `sample` in place (the inverse of [`encrypt`]).
pub fn decrypt(
    scheme: Scheme,
    key: &[u8; 16],
    iv: &[u8; 16],
    pattern: Pattern,
    sample: &mut [u8],
    subs: &[Subsample],
) {
    apply(scheme, key, iv, pattern, sample, subs, false);
}

type CbcEnc = cbc::Encryptor<Aes128>;
type CbcDec = cbc::Decryptor<Aes128>;
type Ctr = ctr::Ctr64BE<Aes128>;

fn apply(
    scheme: Scheme,
    key: &[u8; 16],
    iv: &[u8; 16],
    pattern: Pattern,
    sample: &mut [u8],
    subs: &[Subsample],
    encrypting: bool,
) {
    let ranges = protected_ranges(sample.len(), subs);
    match scheme {
        Scheme::Cenc => {
            // The counter runs on across the sample's protected ranges.
            let mut ctr = Ctr::new(key.into(), iv.into());
            for r in ranges {
                ctr.apply_keystream(&mut sample[r]);
            }
        }
        Scheme::Cbcs => {
            for r in ranges {
                let region = &mut sample[r];
                let blocks = region.len() / 16;
                if encrypting {
                    let mut c = CbcEnc::new(key.into(), iv.into());
                    for b in (0..blocks).filter(|&b| pattern.encrypts(b)) {
                        c.encrypt_block_mut(aes::Block::from_mut_slice(
                            &mut region[b * 16..b * 16 + 16],
                        ));
                    }
                } else {
                    let mut c = CbcDec::new(key.into(), iv.into());
                    for b in (0..blocks).filter(|&b| pattern.encrypts(b)) {
                        c.decrypt_block_mut(aes::Block::from_mut_slice(
                            &mut region[b * 16..b * 16 + 16],
                        ));
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clear_runs_merge_and_split_at_sixteen_bits() {
        assert_eq!(
            subsamples(&[(10, 0), (5, 32), (70_000, 0)]),
            vec![
                Subsample {
                    clear: 15,
                    protected: 32
                },
                Subsample {
                    clear: u16::MAX,
                    protected: 0
                },
                Subsample {
                    clear: (70_000 - 65_535) as u16,
                    protected: 0
                },
            ]
        );
    }

    #[test]
    fn cbcs_pattern_touches_one_block_in_ten_and_leaves_the_partial_block() {
        let key = [7u8; 16];
        let iv = [9u8; 16];
        let clear: Vec<u8> = (0..(16 * 21 + 5)).map(|i| i as u8).collect();
        let subs = [Subsample {
            clear: 3,
            protected: (clear.len() - 3) as u32,
        }];
        let mut s = clear.clone();
        encrypt(Scheme::Cbcs, &key, &iv, Pattern::VIDEO, &mut s, &subs);
        let block = |d: &[u8], b: usize| d[3 + b * 16..3 + b * 16 + 16].to_vec();
        for b in 0..21 {
            assert_eq!(block(&s, b) != block(&clear, b), b % 10 == 0, "block {b}");
        }
        assert_eq!(s[..3], clear[..3]);
        assert_eq!(s[3 + 21 * 16..], clear[3 + 21 * 16..]);
        decrypt(Scheme::Cbcs, &key, &iv, Pattern::VIDEO, &mut s, &subs);
        assert_eq!(s, clear);
    }

    #[test]
    fn cenc_keystream_runs_on_across_subsamples() {
        let key = [1u8; 16];
        let iv = [2u8, 3, 4, 5, 6, 7, 8, 9, 0, 0, 0, 0, 0, 0, 0, 0];
        let clear: Vec<u8> = (0..100).map(|i| (i * 7) as u8).collect();
        let subs = [
            Subsample {
                clear: 4,
                protected: 16,
            },
            Subsample {
                clear: 10,
                protected: 70,
            },
        ];
        let mut split = clear.clone();
        encrypt(Scheme::Cenc, &key, &iv, Pattern::WHOLE, &mut split, &subs);
        // The same bytes as one keystream over the protected bytes laid end to end.
        let mut joined: Vec<u8> = clear[4..20]
            .iter()
            .chain(&clear[30..100])
            .copied()
            .collect();
        let mut ctr = Ctr::new((&key).into(), (&iv).into());
        ctr.apply_keystream(&mut joined);
        assert_eq!(&split[4..20], &joined[..16]);
        assert_eq!(&split[30..100], &joined[16..]);
        assert_eq!(&split[..4], &clear[..4]);
        decrypt(Scheme::Cenc, &key, &iv, Pattern::WHOLE, &mut split, &subs);
        assert_eq!(split, clear);
    }
}
