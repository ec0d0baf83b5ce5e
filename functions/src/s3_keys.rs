//! Object keys as S3 events carry them.
//!
//! S3 URL-encodes the key in event notifications the way HTML forms do: a space is `+`,
//! and everything else outside the unreserved set (a literal `+`, `%`, non-ASCII bytes of
//! UTF-8) is a percent escape. Using the raw key finds no object for any name with a
//! space in it, so every key goes through [`decode_key`] first.

use percent_encoding::percent_decode_str;

/// A key that does not decode to UTF-8 (S3 keys are UTF-8, so the event is corrupt).
#[derive(Debug, thiserror::Error)]
#[error("object key {raw:?} does not decode to UTF-8")]
pub struct KeyError {
    /// The key as the event carried it.
    pub raw: String,
}

/// The object key an S3 event's `s3.object.key` names.
pub fn decode_key(raw: &str) -> Result<String, KeyError> {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced)
        .decode_utf8()
        .map(|k| k.into_owned())
        .map_err(|_| KeyError {
            raw: raw.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_a_space_and_an_escaped_plus_is_a_plus() {
        assert_eq!(
            decode_key("uploads/My+Clip+%2B1+%C3%A9.mp4").unwrap(),
            "uploads/My Clip +1 é.mp4"
        );
    }

    #[test]
    fn escapes_of_reserved_characters_decode() {
        assert_eq!(decode_key("a%2Fb%3Fc%25d%26e").unwrap(), "a/b?c%d&e");
        assert_eq!(decode_key("plain/key.mov").unwrap(), "plain/key.mov");
    }

    #[test]
    fn non_utf8_escapes_are_refused() {
        let err = decode_key("bad%FF%FE.mp4").unwrap_err();
        assert_eq!(err.raw, "bad%FF%FE.mp4");
    }
}
