//! [`Weekdays`]: a set of days of the week, written `Mon-Fri` or `Sat,Sun`.

use std::fmt;
use std::ops::BitOr;
use std::str::FromStr;

use jiff::civil::Weekday;
use serde::{Deserialize, Serialize};

use super::invalid;
use crate::error::{Error, Result};

const DAYS: [Weekday; 7] = [
    Weekday::Monday,
    Weekday::Tuesday,
    Weekday::Wednesday,
    Weekday::Thursday,
    Weekday::Friday,
    Weekday::Saturday,
    Weekday::Sunday,
];

const DAY_NAMES: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// A set of days of the week, such as [`Weekdays::MON_FRI`].
///
/// Parses from and displays as a short list: `"Mon-Fri"`, `"Mon,Wed,Fri"`, `"Sat,Sun"`,
/// `"Fri-Mon"` (ranges may wrap around the week), `"*"` for every day. Day names are
/// case-insensitive, three-letter or full (`"monday"`). Serialized as that string.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Weekdays(u8);

impl Weekdays {
    /// No day at all.
    pub const NONE: Self = Self(0);
    /// Every day of the week.
    pub const ALL: Self = Self(0b111_1111);
    /// Monday to Friday.
    pub const MON_FRI: Self = Self(0b001_1111);
    /// Saturday and Sunday.
    pub const WEEKEND: Self = Self(0b110_0000);

    fn bit(day: Weekday) -> u8 {
        1 << day.to_monday_zero_offset()
    }

    /// True when `day` is in the set.
    pub fn contains(self, day: Weekday) -> bool {
        self.0 & Self::bit(day) != 0
    }

    /// The set with `day` added.
    pub fn with(self, day: Weekday) -> Self {
        Self(self.0 | Self::bit(day))
    }

    /// True when the set holds no day.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// How many days the set holds.
    pub fn len(self) -> usize {
        self.0.count_ones() as usize
    }

    /// The days in the set, Monday first.
    pub fn iter(self) -> impl Iterator<Item = Weekday> {
        DAYS.into_iter().filter(move |d| self.contains(*d))
    }
}

impl From<Weekday> for Weekdays {
    fn from(day: Weekday) -> Self {
        Self::NONE.with(day)
    }
}

impl FromIterator<Weekday> for Weekdays {
    fn from_iter<I: IntoIterator<Item = Weekday>>(iter: I) -> Self {
        iter.into_iter().fold(Self::NONE, Self::with)
    }
}

impl BitOr for Weekdays {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl fmt::Display for Weekdays {
    /// The canonical short form: runs of three or more days as ranges (`Mon-Fri`), others
    /// listed (`Sat,Sun`); `none` for the empty set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("none");
        }
        let mut first = true;
        let mut i = 0;
        while i < DAYS.len() {
            if !self.contains(DAYS[i]) {
                i += 1;
                continue;
            }
            let mut j = i;
            while j + 1 < DAYS.len() && self.contains(DAYS[j + 1]) {
                j += 1;
            }
            let sep = if first { "" } else { "," };
            first = false;
            match j - i {
                0 => write!(f, "{sep}{}", DAY_NAMES[i])?,
                1 => write!(f, "{sep}{},{}", DAY_NAMES[i], DAY_NAMES[j])?,
                _ => write!(f, "{sep}{}-{}", DAY_NAMES[i], DAY_NAMES[j])?,
            }
            i = j + 1;
        }
        Ok(())
    }
}

impl fmt::Debug for Weekdays {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Weekdays({self})")
    }
}

/// The Monday-based index (0-6) of a day name, case-insensitive.
fn parse_day(name: &str) -> Option<usize> {
    let index = match name.trim().to_ascii_lowercase().as_str() {
        "mon" | "monday" => 0,
        "tue" | "tues" | "tuesday" => 1,
        "wed" | "wednesday" => 2,
        "thu" | "thur" | "thurs" | "thursday" => 3,
        "fri" | "friday" => 4,
        "sat" | "saturday" => 5,
        "sun" | "sunday" => 6,
        _ => return None,
    };
    Some(index)
}

impl FromStr for Weekdays {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let text = s.trim();
        if text == "*" {
            return Ok(Self::ALL);
        }
        if text.eq_ignore_ascii_case("none") {
            return Ok(Self::NONE);
        }
        if text.is_empty() {
            return Err(invalid(
                "empty list of weekdays; expected e.g. `Mon-Fri` or `Mon,Wed,Fri`",
            ));
        }
        let day = |name: &str| {
            parse_day(name).ok_or_else(|| {
                invalid(format!(
                    "invalid weekdays `{s}`: unknown day `{}` (expected Mon, Tue, Wed, Thu, \
                     Fri, Sat or Sun)",
                    name.trim()
                ))
            })
        };
        let mut set = Self::NONE;
        for part in text.split(',') {
            if let Some((from, to)) = part.split_once('-') {
                let (from, to) = (day(from)?, day(to)?);
                let mut i = from;
                loop {
                    set = set.with(DAYS[i]);
                    if i == to {
                        break;
                    }
                    i = (i + 1) % DAYS.len();
                }
            } else {
                set = set.with(DAYS[day(part)?]);
            }
        }
        Ok(set)
    }
}

impl TryFrom<String> for Weekdays {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<Weekdays> for String {
    fn from(days: Weekdays) -> Self {
        days.to_string()
    }
}
