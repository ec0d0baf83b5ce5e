//! The DRM systems an asset can be signalled for, and the `pssh` boxes that carry each
//! system's initialisation data.

use serde::{Deserialize, Serialize};

/// A DRM system a player may license the asset's key through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// W3C Clear Key (the common system ID): the key itself from a JSON Web Key licence;
    /// no protection, for tests and for checking an asset end to end.
    ClearKey,
    /// Google Widevine.
    Widevine,
    /// Microsoft PlayReady.
    PlayReady,
    /// Apple FairPlay Streaming (HLS and `cbcs` only; no `pssh`).
    FairPlay,
}

impl System {
    /// Every system, in the order manifests list them.
    pub const ALL: [System; 4] = [
        System::ClearKey,
        System::Widevine,
        System::PlayReady,
        System::FairPlay,
    ];

    /// The DASH-IF system ID.
    pub fn id(self) -> [u8; 16] {
        let hex = match self {
            System::ClearKey => "1077efecc0b24d02ace33c1e52e2fb4b",
            System::Widevine => "edef8ba979d64acea3c827dcd51d21ed",
            System::PlayReady => "9a04f07998404286ab92e65be0885f95",
            System::FairPlay => "94ce86fb07ff4f43adb893d2fa968ca2",
        };
        let mut id = [0u8; 16];
        // Constant, valid hex: cannot fail.
        let _ = hex::decode_to_slice(hex, &mut id);
        id
    }

    /// The system ID as a UUID string (DASH `schemeIdUri="urn:uuid:…"`).
    pub fn uuid(self) -> String {
        uuid_string(&self.id())
    }

    /// Its name in settings and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            System::ClearKey => "clearkey",
            System::Widevine => "widevine",
            System::PlayReady => "playready",
            System::FairPlay => "fairplay",
        }
    }

    /// Reads a name as [`System::as_str`] writes it.
    pub fn parse(s: &str) -> Option<System> {
        System::ALL.into_iter().find(|x| x.as_str() == s.trim())
    }
}

/// Formats 16 bytes as a UUID (8-4-4-4-12 lowercase hex): a KID in `cenc:default_KID`.
pub fn uuid_string(b: &[u8; 16]) -> String {
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A `pssh` box: version 1 (with the key IDs) when `kids` is not empty, else version 0.
pub fn pssh_box(system: [u8; 16], kids: &[[u8; 16]], data: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let version: u8 = if kids.is_empty() { 0 } else { 1 };
    body.extend_from_slice(&[version, 0, 0, 0]);
    body.extend_from_slice(&system);
    if version == 1 {
        body.extend_from_slice(&(kids.len() as u32).to_be_bytes());
        for k in kids {
            body.extend_from_slice(k);
        }
    }
    body.extend_from_slice(&(data.len() as u32).to_be_bytes());
    body.extend_from_slice(data);
    crate::mp4::make_box(b"pssh", &body)
}

/// The W3C common-system `pssh` (Clear Key): version 1, the key IDs, no data.
pub fn clearkey_pssh(kids: &[[u8; 16]]) -> Vec<u8> {
    pssh_box(System::ClearKey.id(), kids, &[])
}

/// A Widevine `pssh` whose data is a `WidevinePsshData` message naming the key IDs, the
/// content ID and the protection scheme, as Widevine's packagers write it when no key
/// server supplies one.
pub fn widevine_pssh(kids: &[[u8; 16]], content_id: &str, scheme_fourcc: [u8; 4]) -> Vec<u8> {
    let mut data = Vec::new();
    for k in kids {
        data.push(0x12); // key_id (2), length-delimited
        data.push(16);
        data.extend_from_slice(k);
    }
    if !content_id.is_empty() {
        data.push(0x22); // content_id (4)
        varint(&mut data, content_id.len() as u64);
        data.extend_from_slice(content_id.as_bytes());
    }
    data.push(0x48); // protection_scheme (9), varint
    varint(&mut data, u64::from(u32::from_be_bytes(scheme_fourcc)));
    pssh_box(System::Widevine.id(), &[], &data)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The system ID and data of a `pssh` box (for manifests that carry it, and for tests).
pub fn pssh_system(pssh: &[u8]) -> Option<[u8; 16]> {
    pssh.get(12..28).and_then(|b| b.try_into().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clearkey_pssh_is_version_one_with_the_kids() {
        let kid = [0xabu8; 16];
        let b = clearkey_pssh(&[kid]);
        assert_eq!(&b[4..8], b"pssh");
        assert_eq!(b[8], 1);
        assert_eq!(pssh_system(&b), Some(System::ClearKey.id()));
        assert_eq!(u32::from_be_bytes(b[28..32].try_into().unwrap()), 1);
        assert_eq!(&b[32..48], &kid);
        assert_eq!(&b[48..52], &[0, 0, 0, 0]);
        assert_eq!(b.len(), 52);
        assert_eq!(
            u32::from_be_bytes(b[..4].try_into().unwrap()) as usize,
            b.len()
        );
    }

    #[test]
    fn widevine_data_names_the_key_and_the_scheme() {
        let kid = [0x11u8; 16];
        let b = widevine_pssh(&[kid], "abc", *b"cbcs");
        assert_eq!(b[8], 0);
        let data = &b[32..];
        assert_eq!(&data[..2], &[0x12, 16]);
        assert_eq!(&data[2..18], &kid);
        assert_eq!(&data[18..23], &[0x22, 3, b'a', b'b', b'c']);
        assert_eq!(data[23], 0x48);
        assert_eq!(
            System::Widevine.uuid(),
            "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"
        );
    }
}
