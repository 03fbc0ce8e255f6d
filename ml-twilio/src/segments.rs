//! SMS length: GSM-7 vs UCS-2 encoding, segment counting and truncation.
//!
//! GSM-7 (GSM 03.38 basic table) fits 160 septets in one segment and 153 per segment of a
//! concatenated message; characters of the extension table (`€ [ ] { } ^ ~ | \` and form
//! feed) cost two septets. One character outside both tables switches the whole message to
//! UCS-2: 70 UTF-16 code units in one segment, 67 per concatenated segment (a character
//! outside the Basic Multilingual Plane, such as an emoji, is a surrogate pair: two units).
//! A character is never split across two segments, as handsets reassemble per character.

/// The GSM 03.38 basic character table (the escape code excluded).
const GSM7_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?\
¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";

/// The GSM 03.38 extension table (each costs an escape plus the character: 2 septets).
const GSM7_EXTENSION: &str = "\u{0C}^{}\\[~]|€";

/// Twilio's hard limit on `Body` (characters).
pub const MAX_BODY_CHARS: usize = 1600;

/// How an SMS body is encoded on the air.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// The GSM 03.38 7-bit alphabet.
    Gsm7,
    /// UCS-2 (UTF-16 code units).
    Ucs2,
}

impl Encoding {
    /// Units (septets or UTF-16 code units) in a single-segment message.
    pub fn single_capacity(self) -> usize {
        match self {
            Self::Gsm7 => 160,
            Self::Ucs2 => 70,
        }
    }

    /// Units per segment of a concatenated message (the rest is the 6-byte UDH).
    pub fn multi_capacity(self) -> usize {
        match self {
            Self::Gsm7 => 153,
            Self::Ucs2 => 67,
        }
    }
}

/// The length of an SMS body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SmsLength {
    /// The encoding the whole message needs.
    pub encoding: Encoding,
    /// Characters (Unicode scalar values).
    pub chars: usize,
    /// Encoded units: septets (GSM-7) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Segments the message is billed and sent as (0 for an empty body).
    pub segments: usize,
}

/// The GSM-7 cost of a character in septets, or `None` when it is not in GSM-7.
pub fn gsm7_cost(c: char) -> Option<usize> {
    if c.is_ascii() {
        // Fast path: every printable ASCII character but the backtick is in one table.
        return match c {
            '\n' | '\r' | ' '..='Z' | '_' | 'a'..='z' => Some(1),
            '[' | '\\' | ']' | '^' | '{' | '|' | '}' | '~' | '\u{0C}' => Some(2),
            _ => None,
        };
    }
    if GSM7_BASIC.contains(c) {
        Some(1)
    } else if GSM7_EXTENSION.contains(c) {
        Some(2)
    } else {
        None
    }
}

/// The encoding `text` needs.
pub fn encoding_of(text: &str) -> Encoding {
    if text.chars().all(|c| gsm7_cost(c).is_some()) {
        Encoding::Gsm7
    } else {
        Encoding::Ucs2
    }
}

fn cost(c: char, encoding: Encoding) -> usize {
    match encoding {
        Encoding::Gsm7 => gsm7_cost(c).unwrap_or(1),
        Encoding::Ucs2 => c.len_utf16(),
    }
}

/// Segments needed for `units` made of characters of the given costs, packed greedily
/// without splitting a character.
fn segments_for(text: &str, encoding: Encoding) -> (usize, usize) {
    let units: usize = text.chars().map(|c| cost(c, encoding)).sum();
    if units == 0 {
        return (0, 0);
    }
    if units <= encoding.single_capacity() {
        return (units, 1);
    }
    let cap = encoding.multi_capacity();
    let mut segments = 1;
    let mut used = 0;
    for c in text.chars() {
        let k = cost(c, encoding);
        if used + k > cap {
            segments += 1;
            used = 0;
        }
        used += k;
    }
    (units, segments)
}

/// Measures an SMS body.
pub fn measure(text: &str) -> SmsLength {
    let encoding = encoding_of(text);
    let (units, segments) = segments_for(text, encoding);
    SmsLength {
        encoding,
        chars: text.chars().count(),
        units,
        segments,
    }
}

/// What the SMS sink does with a body longer than allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthPolicy {
    /// Cut the body so it fits `max_segments` (and Twilio's 1,600 characters), ending it
    /// with a marker (`...`, or `…` when the body is UCS-2 anyway).
    Truncate {
        /// The most segments a message may take (at least 1).
        max_segments: usize,
    },
    /// Refuse the message (a permanent error) when it needs more than `max_segments`.
    Refuse {
        /// The most segments a message may take (at least 1).
        max_segments: usize,
    },
}

impl Default for LengthPolicy {
    /// Truncate to 3 segments (459 GSM-7 / 201 UCS-2 characters); Twilio recommends
    /// staying under 320 characters.
    fn default() -> Self {
        Self::Truncate { max_segments: 3 }
    }
}

/// The body actually sent and how it was fitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fitted {
    /// The body.
    pub body: String,
    /// Its length.
    pub length: SmsLength,
    /// Whether it was cut.
    pub truncated: bool,
}

/// Fits `text` plus an unremovable `suffix` (the reconcile marker) within `max_segments`,
/// cutting `text` and marking the cut when needed. Returns `None` when even the suffix
/// and the marker alone do not fit.
pub fn truncate_to(text: &str, suffix: &str, max_segments: usize) -> Option<Fitted> {
    let max_segments = max_segments.max(1);
    let fits = |s: &str| {
        let l = measure(s);
        l.segments <= max_segments && l.chars <= MAX_BODY_CHARS
    };
    let whole = format!("{text}{suffix}");
    if fits(&whole) {
        return Some(Fitted {
            length: measure(&whole),
            body: whole,
            truncated: false,
        });
    }
    let marker = if encoding_of(&whole) == Encoding::Gsm7 {
        "..."
    } else {
        "…"
    };
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let candidate = |n: usize| {
        let end = chars.get(n).map_or(text.len(), |(i, _)| *i);
        format!("{}{marker}{suffix}", text[..end].trim_end())
    };
    // Binary search the longest prefix (in characters) that fits.
    let (mut lo, mut hi) = (0usize, chars.len());
    if !fits(&candidate(0)) {
        return None;
    }
    while lo < hi {
        let mid = (lo + hi).div_ceil(2);
        if fits(&candidate(mid)) {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let body = candidate(lo);
    Some(Fitted {
        length: measure(&body),
        body,
        truncated: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_fast_path_agrees_with_the_tables() {
        for b in 0u8..128 {
            let c = char::from(b);
            let slow = if GSM7_BASIC.contains(c) {
                Some(1)
            } else if GSM7_EXTENSION.contains(c) {
                Some(2)
            } else {
                None
            };
            assert_eq!(gsm7_cost(c), slow, "{b:#04x}");
        }
    }

    #[test]
    fn gsm7_single_and_concatenated() {
        let l = measure(&"a".repeat(160));
        assert_eq!((l.encoding, l.units, l.segments), (Encoding::Gsm7, 160, 1));
        assert_eq!(measure(&"a".repeat(161)).segments, 2);
        assert_eq!(measure(&"a".repeat(306)).segments, 2);
        assert_eq!(measure(&"a".repeat(307)).segments, 3);
        assert_eq!(measure("").segments, 0);
    }

    #[test]
    fn extension_characters_cost_two() {
        let l = measure(&"€".repeat(80));
        assert_eq!((l.encoding, l.units, l.segments), (Encoding::Gsm7, 160, 1));
        assert_eq!(measure(&"€".repeat(81)).segments, 2);
        // 152 septets + one 2-septet char does not split: second segment.
        let s = format!("{}€", "a".repeat(152));
        assert_eq!(measure(&format!("{s}{}", "a".repeat(10))).segments, 2);
        let l = measure("[x]{y}^~|\\");
        assert_eq!(l.units, 18);
    }

    #[test]
    fn accented_names_stay_gsm7_or_force_ucs2() {
        assert_eq!(encoding_of("Müller GmbH"), Encoding::Gsm7);
        assert_eq!(encoding_of("Zürich Präzision"), Encoding::Gsm7);
        assert_eq!(encoding_of("Ñandú São"), Encoding::Ucs2); // ú, ã are not GSM-7
        assert_eq!(encoding_of("Łódź"), Encoding::Ucs2);
        assert_eq!(encoding_of("Société"), Encoding::Gsm7);
        assert_eq!(encoding_of("Çava"), Encoding::Gsm7);
        assert_eq!(encoding_of("ç"), Encoding::Ucs2); // only capital Ç is in the table
    }

    #[test]
    fn ucs2_counts_utf16_units() {
        let l = measure(&"Ł".repeat(70));
        assert_eq!((l.encoding, l.units, l.segments), (Encoding::Ucs2, 70, 1));
        assert_eq!(measure(&"Ł".repeat(71)).segments, 2);
        assert_eq!(measure(&"Ł".repeat(134)).segments, 2);
        assert_eq!(measure(&"Ł".repeat(135)).segments, 3);
        let emoji = measure(&"😀".repeat(35));
        assert_eq!((emoji.chars, emoji.units, emoji.segments), (35, 70, 1));
        // 66 units + a surrogate pair does not split.
        let s = format!("{}😀{}", "Ł".repeat(66), "Ł".repeat(10));
        assert_eq!(measure(&s).segments, 2);
    }

    #[test]
    fn truncation_fits_and_marks() {
        let long = "a".repeat(1000);
        let f = truncate_to(&long, " [7]", 2).expect("fits");
        assert!(f.truncated);
        assert_eq!(f.length.segments, 2);
        assert!(f.body.ends_with("... [7]"));
        assert_eq!(f.length.units, 306);
        let short = truncate_to("hello", "", 1).expect("fits");
        assert!(!short.truncated);
        assert_eq!(short.body, "hello");
        let u = truncate_to(&"Ł".repeat(500), "", 1).expect("fits");
        assert!(u.body.ends_with('…'));
        assert_eq!(u.length.segments, 1);
        assert_eq!(u.length.units, 70);
        assert!(truncate_to("abc", &"x".repeat(200), 1).is_none());
        let capped = truncate_to(&"a".repeat(5000), "", 100).expect("fits");
        assert!(capped.length.chars <= MAX_BODY_CHARS);
    }
}
