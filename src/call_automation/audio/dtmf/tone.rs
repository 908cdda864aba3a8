//! DTMF tones by their ACS names (`"zero"`…`"nine"`, `"asterisk"`, `"pound"`, `"a"`…`"d"`) and
//! their RFC 4733 event codes. `"flash"` (event 16) is included for completeness; the ACS SDKs'
//! `DtmfTone` enums do not list it, so the API layer may prefer not to report it.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One DTMF tone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    Zero,
    One,
    Two,
    Three,
    Four,
    Five,
    Six,
    Seven,
    Eight,
    Nine,
    Asterisk,
    Pound,
    A,
    B,
    C,
    D,
    Flash,
}

/// In RFC 4733 event-code order: `ALL[code]` is the tone of event `code`.
const ALL: [Tone; 17] = [
    Tone::Zero,
    Tone::One,
    Tone::Two,
    Tone::Three,
    Tone::Four,
    Tone::Five,
    Tone::Six,
    Tone::Seven,
    Tone::Eight,
    Tone::Nine,
    Tone::Asterisk,
    Tone::Pound,
    Tone::A,
    Tone::B,
    Tone::C,
    Tone::D,
    Tone::Flash,
];

impl Tone {
    /// Every tone, in event-code order.
    pub const ALL: [Tone; 17] = ALL;

    /// The RFC 4733 event code (0–16).
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The tone of an event code; `None` for events that are not DTMF (17 and up).
    pub fn from_code(code: u8) -> Option<Tone> {
        ALL.get(usize::from(code)).copied()
    }

    /// The ACS name.
    pub fn name(self) -> &'static str {
        match self {
            Tone::Zero => "zero",
            Tone::One => "one",
            Tone::Two => "two",
            Tone::Three => "three",
            Tone::Four => "four",
            Tone::Five => "five",
            Tone::Six => "six",
            Tone::Seven => "seven",
            Tone::Eight => "eight",
            Tone::Nine => "nine",
            Tone::Asterisk => "asterisk",
            Tone::Pound => "pound",
            Tone::A => "a",
            Tone::B => "b",
            Tone::C => "c",
            Tone::D => "d",
            Tone::Flash => "flash",
        }
    }
}

impl fmt::Display for Tone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A tone name that ACS does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown DTMF tone {0:?}")]
pub struct UnknownTone(pub String);

impl FromStr for Tone {
    type Err = UnknownTone;

    /// ACS names, case-insensitively (the SDKs' enums are).
    fn from_str(s: &str) -> Result<Tone, UnknownTone> {
        ALL.into_iter().find(|t| t.name().eq_ignore_ascii_case(s)).ok_or_else(|| UnknownTone(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_names_and_serde_agree() {
        for (code, tone) in Tone::ALL.into_iter().enumerate() {
            assert_eq!(usize::from(tone.code()), code);
            assert_eq!(Tone::from_code(code as u8), Some(tone));
            assert_eq!(tone.to_string().parse::<Tone>(), Ok(tone));
            assert_eq!(serde_json::to_string(&tone).expect("a tone serializes"), format!("\"{tone}\""));
            assert_eq!(serde_json::from_str::<Tone>(&format!("\"{tone}\"")).expect("its own name"), tone);
        }
        assert_eq!(Tone::from_code(17), None);
        assert_eq!((Tone::Asterisk.code(), Tone::Pound.code(), Tone::A.code(), Tone::D.code()), (10, 11, 12, 15));
        assert_eq!("POUND".parse::<Tone>(), Ok(Tone::Pound));
        assert_eq!("#".parse::<Tone>(), Err(UnknownTone("#".into())));
        assert!(serde_json::from_str::<Tone>("\"star\"").is_err());
    }
}
