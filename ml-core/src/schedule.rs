//! Polling schedules for ERP streams: a fixed interval, business hours against off hours, a
//! daily close-of-business time, or a cron expression, evaluated in an IANA time zone.
//!
//! A [`Schedule`] answers one question: given the current instant, when should the stream be
//! polled next ([`Schedule::next_after`])? [`Schedule::next_fire`] adds the configured jitter.
//!
//! # Wall-clock schedules and daylight saving time
//!
//! Every schedule except [`Schedule::every`] names *wall-clock* times in a zone: "08:00,
//! 08:15, … in Europe/Berlin". Each wall-clock tick is turned into an instant with jiff's
//! [`Disambiguation::Compatible`](jiff::tz::Disambiguation::Compatible) rule:
//!
//! - a wall time that does not exist (the spring-forward gap, e.g. 02:30 on 2026-03-29 in
//!   Berlin) fires once, shifted forward by the length of the gap (03:30 CEST). When that
//!   instant is also a regular tick (02:00 shifted to 03:00 on an hourly grid), it is one tick;
//! - a wall time that exists twice (the fall-back fold, e.g. 02:30 on 2026-10-25 in Berlin)
//!   fires once, at the earlier of the two instants (02:30 CEST). The repeated hour is
//!   therefore a longer pause on any grid, never a double poll.
//!
//! The same rule holds for every kind, cron included, so `daily_at("02:30")` and the cron
//! expression `30 2 * * *` always agree. [`Schedule::next_after`] returns the earliest such
//! instant strictly after `now`; it is monotone (a later `now` never gives an earlier tick).
//!
//! # Configuration
//!
//! [`ScheduleSpec`] (and [`Schedule`] itself, through it) is (de)serializable, so hosts can
//! read schedules from their configuration files. Durations use jiff's friendly format
//! (`"90s"`, `"15m"`, `"1h 30m"`; ISO 8601 such as `"PT15M"` is accepted too):
//!
//! ```json
//! {"every": "15m", "jitter": "30s"}
//! {"business_hours": "08:00-18:00", "days": "Mon-Fri", "zone": "Europe/Berlin",
//!  "during": "15m", "outside": "1h"}
//! {"daily_at": "17:30", "zone": "America/New_York", "days": "Mon-Fri"}
//! {"cron": "0 */5 * * * *", "zone": "Europe/Berlin"}
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//!
//! use ml_core::schedule::{Schedule, Weekdays};
//!
//! let schedule = Schedule::business_hours(
//!     "Europe/Berlin",
//!     Weekdays::MON_FRI,
//!     "08:00",
//!     "18:00",
//!     Duration::from_secs(15 * 60),
//!     Duration::from_secs(60 * 60),
//! )?;
//! // Monday 2026-03-30, 07:59 in Berlin (CEST, UTC+2): the window opens at 08:00 sharp.
//! let now: jiff::Timestamp = "2026-03-30T05:59:00Z".parse()?;
//! assert_eq!(schedule.next_after(now).to_string(), "2026-03-30T06:00:00Z");
//! assert_eq!(
//!     schedule.to_string(),
//!     "every 15m from 08:00 to 18:00 on Mon-Fri, every 1h otherwise (Europe/Berlin)"
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::ops::BitOr;
use std::str::FromStr;
use std::time::Duration;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::fmt::friendly::{Designator, SpanPrinter};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use crate::clock;
use crate::error::{Error, Result};

const NANOS_PER_SECOND: u128 = 1_000_000_000;
const NANOS_PER_DAY: u128 = 86_400 * NANOS_PER_SECOND;

/// The smallest grid step of a business-hours schedule. Finer grids are not useful for
/// polling an ERP, and the bound keeps [`Schedule::next_after`] cheap in a repeated hour.
const MIN_GRID_STEP: Duration = Duration::from_secs(1);

/// How far back a time zone transition can still matter for the next tick: a spring-forward
/// gap shifts wall times forward by its length, and no real gap is longer than a day.
const LONGEST_GAP: SignedDuration = SignedDuration::from_hours(48);

fn invalid(message: impl Into<String>) -> Error {
    Error::Schedule(message.into())
}

// ---------------------------------------------------------------------------------------------
// Weekdays
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Small parsers and formatters
// ---------------------------------------------------------------------------------------------

/// Parses `H:MM`, `HH:MM` or `HH:MM:SS` (24-hour clock).
fn parse_time_of_day(s: &str) -> Result<Time> {
    let err = |why: &str| {
        invalid(format!(
            "invalid time of day `{s}`: {why} (expected HH:MM or HH:MM:SS)"
        ))
    };
    let field = |part: Option<&str>, name: &str, max: i8, min_len: usize| -> Result<i8> {
        let part = part.ok_or_else(|| err(&format!("missing {name}")))?;
        if part.len() < min_len || part.len() > 2 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(err(&format!("{name} must be two digits")));
        }
        match part.parse::<i8>() {
            Ok(v) if v <= max => Ok(v),
            _ => Err(err(&format!("{name} must be 00-{max}"))),
        }
    };
    let mut parts = s.trim().split(':');
    let hour = field(parts.next(), "hour", 23, 1)?;
    let minute = field(parts.next(), "minute", 59, 2)?;
    let second = match parts.next() {
        Some(p) => field(Some(p), "second", 59, 2)?,
        None => 0,
    };
    if parts.next().is_some() {
        return Err(err("too many `:`"));
    }
    Time::new(hour, minute, second, 0).map_err(|e| err(&e.to_string()))
}

/// `HH:MM`, or `HH:MM:SS` when the seconds are not zero.
fn format_time(t: Time) -> String {
    if t.second() == 0 && t.subsec_nanosecond() == 0 {
        format!("{:02}:{:02}", t.hour(), t.minute())
    } else {
        format!("{:02}:{:02}:{:02}", t.hour(), t.minute(), t.second())
    }
}

/// A duration in jiff's compact friendly format (`15m`, `1h 30m`).
fn format_duration(d: Duration) -> String {
    static PRINTER: SpanPrinter = SpanPrinter::new().designator(Designator::Compact);
    PRINTER.unsigned_duration_to_string(&d)
}

fn parse_zone(name: &str) -> Result<TimeZone> {
    TimeZone::get(name.trim()).map_err(|e| {
        invalid(format!(
            "unknown time zone `{name}` (expected an IANA name such as `Europe/Berlin`): {e}"
        ))
    })
}

fn nanos_of_day(t: Time) -> u128 {
    let seconds = i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second());
    seconds as u128 * NANOS_PER_SECOND + t.subsec_nanosecond() as u128
}

fn time_of_day(nanos: u128) -> Option<Time> {
    let seconds = nanos / NANOS_PER_SECOND;
    Time::new(
        (seconds / 3600) as i8,
        (seconds / 60 % 60) as i8,
        (seconds % 60) as i8,
        (nanos % NANOS_PER_SECOND) as i32,
    )
    .ok()
}

/// The first `base + k * step` (k >= 0) that is strictly after `after` (when given) and not
/// before `floor`.
fn grid_next(base: u128, step: u128, after: Option<u128>, floor: u128) -> u128 {
    let min = after.map_or(floor, |a| floor.max(a + 1));
    if min <= base {
        base
    } else {
        base + (min - base).div_ceil(step) * step
    }
}

// ---------------------------------------------------------------------------------------------
// Schedule
// ---------------------------------------------------------------------------------------------

/// The named arguments of [`Schedule::business`]: on `days`, from `start` to `end`
/// (`HH:MM`, in `zone`), poll every `during`; otherwise every `outside`.
#[derive(Clone, Copy, Debug)]
pub struct BusinessHours<'a> {
    /// The IANA time zone (`Europe/Berlin`).
    pub zone: &'a str,
    /// The business days.
    pub days: Weekdays,
    /// The window start, `HH:MM` (inclusive).
    pub start: &'a str,
    /// The window end, `HH:MM` (exclusive).
    pub end: &'a str,
    /// The interval inside the window.
    pub during: Duration,
    /// The interval outside the window.
    pub outside: Duration,
}

/// When to poll an ERP stream.
///
/// Built with [`Schedule::every`], [`Schedule::business_hours`], [`Schedule::daily_at`],
/// [`Schedule::daily_at_on`] or [`Schedule::cron`], or deserialized (see [`ScheduleSpec`]).
/// Optionally jittered with [`Schedule::with_jitter`]. `Display` describes it in words, for
/// logs.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(try_from = "ScheduleSpec", into = "ScheduleSpec")]
pub struct Schedule {
    kind: Kind,
    jitter: Duration,
}

#[derive(Clone, Debug)]
enum Kind {
    Every(Duration),
    Calendar(Calendar),
}

/// A schedule of wall-clock ticks in a time zone.
#[derive(Clone, Debug)]
struct Calendar {
    zone: String,
    tz: TimeZone,
    rule: Rule,
}

#[derive(Clone, Debug)]
enum Rule {
    BusinessHours {
        days: Weekdays,
        start: Time,
        end: Time,
        during: Duration,
        outside: Duration,
    },
    Daily {
        at: Time,
        days: Weekdays,
    },
    Cron {
        expr: String,
        cron: Box<croner::Cron>,
    },
}

impl Schedule {
    fn calendar(zone: &str, rule: Rule) -> Result<Self> {
        Ok(Self {
            kind: Kind::Calendar(Calendar {
                zone: zone.trim().to_owned(),
                tz: parse_zone(zone)?,
                rule,
            }),
            jitter: Duration::ZERO,
        })
    }

    /// A fixed interval: each poll happens `interval` after the previous one
    /// ([`Schedule::next_after`] is `now + interval`), whatever the wall clock says.
    ///
    /// A zero interval is an error.
    pub fn every(interval: Duration) -> Result<Self> {
        if interval.is_zero() {
            return Err(invalid("the polling interval must not be zero (got `0s`)"));
        }
        Ok(Self {
            kind: Kind::Every(interval),
            jitter: Duration::ZERO,
        })
    }

    /// Business hours against off hours: on `days`, from `start` (inclusive) to `end`
    /// (exclusive), every `during`; at any other time every `outside`. For example every 15
    /// minutes 08:00-18:00 Monday to Friday in Europe/Berlin, hourly otherwise.
    ///
    /// Ticks are aligned to a wall-clock grid in `zone`: inside the window at
    /// `start + k * during`, outside it at local midnight `+ k * outside`. The window start is
    /// always a tick, so the first poll of the business day happens exactly at `start`. The
    /// window end is a tick only when it lies on the `outside` grid (18:00 on an hourly grid).
    ///
    /// `zone` is an IANA name (`Europe/Berlin`); `start` and `end` are `HH:MM` or `HH:MM:SS`,
    /// with `end` after `start` on the same day. `during` and `outside` must be at least one
    /// second, and `days` must not be empty.
    pub fn business_hours(
        zone: &str,
        days: Weekdays,
        start: &str,
        end: &str,
        during: Duration,
        outside: Duration,
    ) -> Result<Self> {
        let start_time = parse_time_of_day(start)?;
        let end_time = parse_time_of_day(end)?;
        if end_time <= start_time {
            return Err(invalid(format!(
                "business hours end `{end}` must be after their start `{start}`"
            )));
        }
        if days.is_empty() {
            return Err(invalid("business hours need at least one weekday"));
        }
        for (name, step) in [("during", during), ("outside", outside)] {
            if step < MIN_GRID_STEP {
                return Err(invalid(format!(
                    "business hours interval `{name}` must be at least 1s (got `{}`)",
                    format_duration(step)
                )));
            }
        }
        Self::calendar(
            zone,
            Rule::BusinessHours {
                days,
                start: start_time,
                end: end_time,
                during,
                outside,
            },
        )
    }

    /// [`Schedule::business_hours`] with named arguments.
    ///
    /// ```
    /// use std::time::Duration;
    /// use ml_core::schedule::{BusinessHours, Schedule, Weekdays};
    ///
    /// let s = Schedule::business(BusinessHours {
    ///     zone: "Europe/Berlin",
    ///     days: Weekdays::MON_FRI,
    ///     start: "08:00",
    ///     end: "18:00",
    ///     during: Duration::from_secs(15 * 60),
    ///     outside: Duration::from_secs(3600),
    /// })?;
    /// assert!(s.to_string().starts_with("every 15m from 08:00 to 18:00"));
    /// # Ok::<(), ml_core::Error>(())
    /// ```
    pub fn business(hours: BusinessHours<'_>) -> Result<Self> {
        Self::business_hours(
            hours.zone,
            hours.days,
            hours.start,
            hours.end,
            hours.during,
            hours.outside,
        )
    }

    /// Once a day at the wall-clock time `at` (`HH:MM` or `HH:MM:SS`) in `zone`: a daily
    /// close-of-business poll.
    pub fn daily_at(zone: &str, at: &str) -> Result<Self> {
        Self::daily_at_on(zone, at, Weekdays::ALL)
    }

    /// Like [`Schedule::daily_at`], but only on `days` (e.g. [`Weekdays::MON_FRI`]).
    pub fn daily_at_on(zone: &str, at: &str, days: Weekdays) -> Result<Self> {
        let at_time = parse_time_of_day(at)?;
        if days.is_empty() {
            return Err(invalid(format!(
                "the daily time `{at}` needs at least one weekday"
            )));
        }
        Self::calendar(zone, Rule::Daily { at: at_time, days })
    }

    /// A cron expression, evaluated on the wall clock of `zone`.
    ///
    /// Five fields (`min hour dom month dow`), or six with leading seconds
    /// (`0 */5 * * * *`), or seven with a trailing year; `@hourly`-style nicknames, `L`, `W`
    /// and `#` are understood (the dialect of the `croner` crate). An expression that can
    /// never match (`0 0 31 2 *`) is an error. Ticks that fall into a DST gap or fold follow
    /// the rule in the [module documentation](self), not croner's own.
    pub fn cron(expr: &str, zone: &str) -> Result<Self> {
        let cron: croner::Cron = expr
            .parse()
            .map_err(|e| invalid(format!("invalid cron expression `{expr}`: {e}")))?;
        let epoch = DateTime::constant(1970, 1, 1, 0, 0, 0, 0);
        if cron.find_next_occurrence(&epoch, true).is_err() {
            return Err(invalid(format!(
                "cron expression `{expr}` never matches a date"
            )));
        }
        Self::calendar(
            zone,
            Rule::Cron {
                expr: expr.trim().to_owned(),
                cron: Box::new(cron),
            },
        )
    }

    /// The same schedule with each fire time pushed back by a random delay, uniform in
    /// `[0, max_jitter]` (see [`Schedule::next_fire`]). Zero turns jitter off.
    ///
    /// Jitter spreads load: many streams on the same schedule, or several replicas of the
    /// connector, would otherwise all hit an ERP in the same second at 08:00:00, tripping its
    /// rate limits and lengthening every poll. Keep it well below the schedule's period.
    pub fn with_jitter(mut self, max_jitter: Duration) -> Self {
        self.jitter = max_jitter;
        self
    }

    /// The largest jitter [`Schedule::next_fire`] adds.
    pub fn max_jitter(&self) -> Duration {
        self.jitter
    }

    /// The time zone of a wall-clock schedule; `None` for [`Schedule::every`].
    pub fn time_zone(&self) -> Option<&TimeZone> {
        match &self.kind {
            Kind::Every(_) => None,
            Kind::Calendar(cal) => Some(&cal.tz),
        }
    }

    /// The first tick strictly after `now`, without jitter.
    ///
    /// For [`Schedule::every`] this is `now + interval` (intervals count from the previous
    /// poll). For wall-clock schedules it is the earliest tick after `now`, with DST gaps and
    /// folds handled as the [module documentation](self) describes. The result is always
    /// later than `now` and never decreases as `now` increases; the only exception is the end
    /// of time: when no tick is left (a cron expression restricted to past years, or `now` at
    /// the end of jiff's range) the answer is [`Timestamp::MAX`].
    pub fn next_after(&self, now: Timestamp) -> Timestamp {
        match &self.kind {
            Kind::Every(interval) => clock::add(now, *interval),
            Kind::Calendar(cal) => cal.next_after(now),
        }
    }

    /// When to poll next: [`Schedule::next_after`] plus a random jitter, uniform in
    /// `[0, max_jitter]` and drawn from `rng` (no draw when jitter is off).
    pub fn next_fire<R: rand::Rng + ?Sized>(&self, now: Timestamp, rng: &mut R) -> Timestamp {
        let tick = self.next_after(now);
        if self.jitter.is_zero() {
            return tick;
        }
        let max = u64::try_from(self.jitter.as_nanos()).unwrap_or(u64::MAX);
        clock::add(tick, Duration::from_nanos(rng.random_range(0..=max)))
    }

    /// The ticks after `now`, in order, without jitter: `next_after(now)`, then the tick
    /// after that, and so on, ending when no tick is left. Useful to show the upcoming polls.
    pub fn ticks_after(&self, now: Timestamp) -> impl Iterator<Item = Timestamp> + '_ {
        std::iter::successors(Some(now), move |&t| {
            let next = self.next_after(t);
            (next > t && next < Timestamp::MAX).then_some(next)
        })
        .skip(1)
    }

    /// The serializable description of this schedule.
    pub fn spec(&self) -> ScheduleSpec {
        let jitter = (!self.jitter.is_zero()).then_some(self.jitter);
        match &self.kind {
            Kind::Every(interval) => ScheduleSpec::Every {
                interval: *interval,
                jitter,
            },
            Kind::Calendar(cal) => {
                let zone = cal.zone.clone();
                match &cal.rule {
                    Rule::BusinessHours {
                        days,
                        start,
                        end,
                        during,
                        outside,
                    } => ScheduleSpec::BusinessHours {
                        zone,
                        days: *days,
                        start: format_time(*start),
                        end: format_time(*end),
                        during: *during,
                        outside: *outside,
                        jitter,
                    },
                    Rule::Daily { at, days } => ScheduleSpec::DailyAt {
                        zone,
                        at: format_time(*at),
                        days: *days,
                        jitter,
                    },
                    Rule::Cron { expr, .. } => ScheduleSpec::Cron {
                        expr: expr.clone(),
                        zone,
                        jitter,
                    },
                }
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Every(interval) => write!(f, "every {}", format_duration(*interval))?,
            Kind::Calendar(cal) => {
                match &cal.rule {
                    Rule::BusinessHours {
                        days,
                        start,
                        end,
                        during,
                        outside,
                    } => write!(
                        f,
                        "every {} from {} to {} on {days}, every {} otherwise",
                        format_duration(*during),
                        format_time(*start),
                        format_time(*end),
                        format_duration(*outside),
                    )?,
                    Rule::Daily { at, days } if *days == Weekdays::ALL => {
                        write!(f, "daily at {}", format_time(*at))?;
                    }
                    Rule::Daily { at, days } => {
                        write!(f, "at {} on {days}", format_time(*at))?;
                    }
                    Rule::Cron { expr, .. } => write!(f, "cron `{expr}`")?,
                }
                write!(f, " ({})", cal.zone)?;
            }
        }
        if !self.jitter.is_zero() {
            write!(f, ", jitter up to {}", format_duration(self.jitter))?;
        }
        Ok(())
    }
}

impl Calendar {
    /// The earliest instant, strictly after `now`, of any wall-clock tick (each resolved with
    /// the compatible rule).
    ///
    /// Resolution is increasing in wall-clock order except inside a spring-forward gap, whose
    /// times are shifted forward past later ones. So the ticks are walked in wall-clock order
    /// from a point before any candidate, and the walk stops at the first tick outside a gap
    /// that lands after `now`: no later tick, in a gap or not, can land earlier.
    fn next_after(&self, now: Timestamp) -> Timestamp {
        let mut cursor = self.civil_lower_bound(now);
        let mut best: Option<Timestamp> = None;
        while let Some(civil) = self.rule.next_civil_after(cursor) {
            cursor = civil;
            let ambiguous = self.tz.to_ambiguous_timestamp(civil);
            let in_gap = matches!(ambiguous.offset(), AmbiguousOffset::Gap { .. });
            let Ok(instant) = ambiguous.compatible() else {
                break;
            };
            if instant > now {
                best = Some(best.map_or(instant, |b| b.min(instant)));
                if !in_gap {
                    break;
                }
            }
        }
        best.unwrap_or(Timestamp::MAX)
    }

    /// A wall-clock time before every tick that could resolve to an instant after `now`.
    ///
    /// That is `now` on the wall clock, except just after a spring-forward gap: a tick inside
    /// the gap resolves with the offset from before the gap, so it can lie up to the gap's
    /// length behind `now` on today's wall clock and still land after `now`.
    fn civil_lower_bound(&self, now: Timestamp) -> DateTime {
        let mut offset = self.tz.to_offset(now);
        let horizon = now.checked_sub(LONGEST_GAP).unwrap_or(Timestamp::MIN);
        let from = now
            .checked_add(SignedDuration::from_nanos(1))
            .unwrap_or(now);
        for transition in self.tz.preceding(from) {
            let at = transition.timestamp();
            if at <= horizon {
                break;
            }
            if let Ok(just_before) = at.checked_sub(SignedDuration::from_nanos(1)) {
                offset = offset.min(self.tz.to_offset(just_before));
            }
        }
        offset.to_datetime(now)
    }
}

impl Rule {
    /// The first wall-clock tick strictly after `civil`, or `None` past the end of time.
    fn next_civil_after(&self, civil: DateTime) -> Option<DateTime> {
        if let Self::Cron { cron, .. } = self {
            return cron.find_next_occurrence(&civil, false).ok();
        }
        let mut date = civil.date();
        let mut after = Some(nanos_of_day(civil.time()));
        // A daily rule on a single weekday finds its next tick within eight dates.
        for _ in 0..8 {
            if let Some(nanos) = self.tick_in_day(date, after) {
                return Some(date.to_datetime(time_of_day(nanos)?));
            }
            date = date.tomorrow().ok()?;
            after = None;
        }
        None
    }

    /// The first tick on `date` strictly after the time of day `after` (nanoseconds since
    /// midnight; `None` means from midnight inclusive), for the day-based rules.
    fn tick_in_day(&self, date: Date, after: Option<u128>) -> Option<u128> {
        match self {
            Self::BusinessHours {
                days,
                start,
                end,
                during,
                outside,
            } => {
                let outside = outside.as_nanos();
                if !days.contains(date.weekday()) {
                    return Some(grid_next(0, outside, after, 0)).filter(|&t| t < NANOS_PER_DAY);
                }
                let (start, end) = (nanos_of_day(*start), nanos_of_day(*end));
                let before_window = grid_next(0, outside, after, 0);
                let in_window = grid_next(start, during.as_nanos(), after, start);
                let after_window = grid_next(0, outside, after, end);
                [
                    (before_window < start).then_some(before_window),
                    (in_window < end).then_some(in_window),
                    (after_window < NANOS_PER_DAY).then_some(after_window),
                ]
                .into_iter()
                .flatten()
                .min()
            }
            Self::Daily { at, days } => {
                let at = nanos_of_day(*at);
                (days.contains(date.weekday()) && after.is_none_or(|a| at > a)).then_some(at)
            }
            Self::Cron { .. } => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Serde
// ---------------------------------------------------------------------------------------------

/// The serializable form of a [`Schedule`], as written in configuration files.
///
/// One object with exactly one of the keys `every`, `business_hours`, `daily_at` or `cron`,
/// plus the keys that kind takes; `jitter` is optional everywhere. Durations are strings in
/// jiff's friendly format (`"90s"`, `"15m"`, `"1h"`) or ISO 8601 (`"PT15M"`); weekdays as
/// [`Weekdays`] parses them. Unknown keys are rejected.
///
/// | kind             | JSON                                                                          |
/// |------------------|-------------------------------------------------------------------------------|
/// | `Every`          | `{"every": "15m"}`                                                            |
/// | `BusinessHours`  | `{"business_hours": "08:00-18:00", "days": "Mon-Fri", "zone": "Europe/Berlin", "during": "15m", "outside": "1h"}` |
/// | `DailyAt`        | `{"daily_at": "17:30", "zone": "Europe/Berlin", "days": "Mon-Fri"}` (`days` optional) |
/// | `Cron`           | `{"cron": "0 */5 * * * *", "zone": "Europe/Berlin"}`                          |
///
/// Deserializing checks the shape; [`Schedule::try_from`] checks the values (zone, times,
/// cron expression). Deserializing a [`Schedule`] directly does both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawSpec", into = "RawSpec")]
#[non_exhaustive]
pub enum ScheduleSpec {
    /// [`Schedule::every`].
    Every {
        /// The polling interval (key `every`).
        interval: Duration,
        /// The largest jitter, if any.
        jitter: Option<Duration>,
    },
    /// [`Schedule::business_hours`].
    BusinessHours {
        /// The IANA time zone.
        zone: String,
        /// The business days.
        days: Weekdays,
        /// The window start, `HH:MM` (key `business_hours`, `"start-end"`).
        start: String,
        /// The window end, `HH:MM`.
        end: String,
        /// The interval inside the window.
        during: Duration,
        /// The interval outside the window.
        outside: Duration,
        /// The largest jitter, if any.
        jitter: Option<Duration>,
    },
    /// [`Schedule::daily_at_on`].
    DailyAt {
        /// The IANA time zone.
        zone: String,
        /// The time of day, `HH:MM` (key `daily_at`).
        at: String,
        /// The days it fires on ([`Weekdays::ALL`] when the key is absent).
        days: Weekdays,
        /// The largest jitter, if any.
        jitter: Option<Duration>,
    },
    /// [`Schedule::cron`].
    Cron {
        /// The cron expression (key `cron`).
        expr: String,
        /// The IANA time zone.
        zone: String,
        /// The largest jitter, if any.
        jitter: Option<Duration>,
    },
}

/// The flat wire form of [`ScheduleSpec`]: every key optional, so that a missing or misplaced
/// key gets a precise error instead of "data did not match any variant".
#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "jiff::fmt::serde::unsigned_duration::friendly::compact::optional"
    )]
    every: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    business_hours: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    daily_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cron: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    days: Option<Weekdays>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "jiff::fmt::serde::unsigned_duration::friendly::compact::optional"
    )]
    during: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "jiff::fmt::serde::unsigned_duration::friendly::compact::optional"
    )]
    outside: Option<Duration>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "jiff::fmt::serde::unsigned_duration::friendly::compact::optional"
    )]
    jitter: Option<Duration>,
}

const KIND_KEYS: &str = "`every`, `business_hours`, `daily_at` or `cron`";

fn required<T>(value: Option<T>, key: &str, kind: &str) -> Result<T> {
    value.ok_or_else(|| invalid(format!("a `{kind}` schedule needs `{key}`")))
}

fn not_allowed(present: bool, key: &str, kind: &str) -> Result<()> {
    if present {
        Err(invalid(format!(
            "`{key}` does not apply to a `{kind}` schedule"
        )))
    } else {
        Ok(())
    }
}

impl TryFrom<RawSpec> for ScheduleSpec {
    type Error = Error;

    fn try_from(raw: RawSpec) -> Result<Self> {
        let kinds: Vec<&str> = [
            ("every", raw.every.is_some()),
            ("business_hours", raw.business_hours.is_some()),
            ("daily_at", raw.daily_at.is_some()),
            ("cron", raw.cron.is_some()),
        ]
        .into_iter()
        .filter_map(|(key, present)| present.then_some(key))
        .collect();
        let jitter = raw.jitter;
        match kinds.as_slice() {
            [] => Err(invalid(format!("a schedule needs one of {KIND_KEYS}"))),
            ["every"] => {
                let kind = "every";
                not_allowed(raw.zone.is_some(), "zone", kind)?;
                not_allowed(raw.days.is_some(), "days", kind)?;
                not_allowed(raw.during.is_some(), "during", kind)?;
                not_allowed(raw.outside.is_some(), "outside", kind)?;
                Ok(Self::Every {
                    interval: required(raw.every, kind, kind)?,
                    jitter,
                })
            }
            ["business_hours"] => {
                let kind = "business_hours";
                let hours = required(raw.business_hours, kind, kind)?;
                let (start, end) = hours.split_once('-').ok_or_else(|| {
                    invalid(format!(
                        "invalid business hours `{hours}`: expected `HH:MM-HH:MM`"
                    ))
                })?;
                Ok(Self::BusinessHours {
                    zone: required(raw.zone, "zone", kind)?,
                    days: required(raw.days, "days", kind)?,
                    start: start.trim().to_owned(),
                    end: end.trim().to_owned(),
                    during: required(raw.during, "during", kind)?,
                    outside: required(raw.outside, "outside", kind)?,
                    jitter,
                })
            }
            ["daily_at"] => {
                let kind = "daily_at";
                not_allowed(raw.during.is_some(), "during", kind)?;
                not_allowed(raw.outside.is_some(), "outside", kind)?;
                Ok(Self::DailyAt {
                    zone: required(raw.zone, "zone", kind)?,
                    at: required(raw.daily_at, kind, kind)?,
                    days: raw.days.unwrap_or(Weekdays::ALL),
                    jitter,
                })
            }
            ["cron"] => {
                let kind = "cron";
                not_allowed(raw.days.is_some(), "days", kind)?;
                not_allowed(raw.during.is_some(), "during", kind)?;
                not_allowed(raw.outside.is_some(), "outside", kind)?;
                Ok(Self::Cron {
                    expr: required(raw.cron, kind, kind)?,
                    zone: required(raw.zone, "zone", kind)?,
                    jitter,
                })
            }
            many => Err(invalid(format!(
                "a schedule has exactly one of {KIND_KEYS}, got `{}`",
                many.join("` and `")
            ))),
        }
    }
}

impl From<ScheduleSpec> for RawSpec {
    fn from(spec: ScheduleSpec) -> Self {
        match spec {
            ScheduleSpec::Every { interval, jitter } => Self {
                every: Some(interval),
                jitter,
                ..Self::default()
            },
            ScheduleSpec::BusinessHours {
                zone,
                days,
                start,
                end,
                during,
                outside,
                jitter,
            } => Self {
                business_hours: Some(format!("{start}-{end}")),
                zone: Some(zone),
                days: Some(days),
                during: Some(during),
                outside: Some(outside),
                jitter,
                ..Self::default()
            },
            ScheduleSpec::DailyAt {
                zone,
                at,
                days,
                jitter,
            } => Self {
                daily_at: Some(at),
                zone: Some(zone),
                days: (days != Weekdays::ALL).then_some(days),
                jitter,
                ..Self::default()
            },
            ScheduleSpec::Cron { expr, zone, jitter } => Self {
                cron: Some(expr),
                zone: Some(zone),
                jitter,
                ..Self::default()
            },
        }
    }
}

impl TryFrom<ScheduleSpec> for Schedule {
    type Error = Error;

    fn try_from(spec: ScheduleSpec) -> Result<Self> {
        let (schedule, jitter) = match spec {
            ScheduleSpec::Every { interval, jitter } => (Self::every(interval)?, jitter),
            ScheduleSpec::BusinessHours {
                zone,
                days,
                start,
                end,
                during,
                outside,
                jitter,
            } => (
                Self::business_hours(&zone, days, &start, &end, during, outside)?,
                jitter,
            ),
            ScheduleSpec::DailyAt {
                zone,
                at,
                days,
                jitter,
            } => (Self::daily_at_on(&zone, &at, days)?, jitter),
            ScheduleSpec::Cron { expr, zone, jitter } => (Self::cron(&expr, &zone)?, jitter),
        };
        Ok(schedule.with_jitter(jitter.unwrap_or_default()))
    }
}

impl From<Schedule> for ScheduleSpec {
    fn from(schedule: Schedule) -> Self {
        schedule.spec()
    }
}

impl From<&Schedule> for ScheduleSpec {
    fn from(schedule: &Schedule) -> Self {
        schedule.spec()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("timestamp")
    }

    fn mins(n: u64) -> Duration {
        Duration::from_secs(n * 60)
    }

    /// `count` instants from `start`, `step_min` minutes apart.
    fn series(start: &str, step_min: i64, count: i64) -> Vec<Timestamp> {
        (0..count)
            .map(|k| ts(start) + SignedDuration::from_mins(step_min * k))
            .collect()
    }

    /// The ticks in `(from, to]`.
    fn ticks(s: &Schedule, from: Timestamp, to: Timestamp) -> Vec<Timestamp> {
        s.ticks_after(from).take_while(|t| *t <= to).collect()
    }

    fn assert_strictly_increasing(ticks: &[Timestamp]) {
        for pair in ticks.windows(2) {
            assert!(
                pair[0] < pair[1],
                "not increasing: {} then {}",
                pair[0],
                pair[1]
            );
        }
    }

    fn berlin_business() -> Schedule {
        Schedule::business_hours(
            "Europe/Berlin",
            Weekdays::MON_FRI,
            "08:00",
            "18:00",
            mins(15),
            HOUR,
        )
        .expect("schedule")
    }

    fn schedule_err(r: Result<Schedule>) -> String {
        match r {
            Err(Error::Schedule(message)) => message,
            Err(other) => panic!("expected Error::Schedule, got {other:?}"),
            Ok(s) => panic!("expected an error, got {s}"),
        }
    }

    // --- business hours ----------------------------------------------------------------------

    #[test]
    fn business_hours_over_a_weekend_with_spring_forward() {
        let s = berlin_business();
        // Friday 2026-03-27 16:59 CET to Monday 2026-03-30 09:00 CEST; the clocks jump from
        // 02:00 to 03:00 on Sunday 2026-03-29.
        let got = ticks(&s, ts("2026-03-27T15:59:00Z"), ts("2026-03-30T07:00:00Z"));
        let mut want = Vec::new();
        want.extend(series("2026-03-27T16:00:00Z", 15, 4)); // Fri 17:00-17:45 CET
        want.extend(series("2026-03-27T17:00:00Z", 60, 6)); // Fri 18:00-23:00 CET
        want.extend(series("2026-03-27T23:00:00Z", 60, 24)); // Sat, hourly
        want.extend(series("2026-03-28T23:00:00Z", 60, 2)); // Sun 00:00, 01:00 CET
        want.extend(series("2026-03-29T01:00:00Z", 60, 21)); // Sun 03:00-23:00 CEST
        want.extend(series("2026-03-29T22:00:00Z", 60, 8)); // Mon 00:00-07:00 CEST
        want.extend(series("2026-03-30T06:00:00Z", 15, 5)); // Mon 08:00-09:00 CEST
        assert_eq!(got, want);
        assert_eq!(got.len(), 70);
    }

    #[test]
    fn business_hours_over_a_weekend_with_fall_back() {
        let s = berlin_business();
        // Saturday 2026-10-24 23:30 CEST to Monday 2026-10-26 08:30 CET; 02:00-03:00 happens
        // twice on Sunday 2026-10-25 (00:00Z-01:00Z CEST, then 01:00Z-02:00Z CET).
        let got = ticks(&s, ts("2026-10-24T21:30:00Z"), ts("2026-10-26T07:30:00Z"));
        let mut want = Vec::new();
        want.extend(series("2026-10-24T22:00:00Z", 60, 3)); // Sun 00:00-02:00 CEST
        want.extend(series("2026-10-25T02:00:00Z", 60, 21)); // Sun 03:00-23:00 CET
        want.extend(series("2026-10-25T23:00:00Z", 60, 8)); // Mon 00:00-07:00 CET
        want.extend(series("2026-10-26T07:00:00Z", 15, 3)); // Mon 08:00-08:30 CET
        assert_eq!(got, want);
        // 02:00 fires once, at its first occurrence.
        assert!(!got.contains(&ts("2026-10-25T01:00:00Z")));
        assert_eq!(
            s.next_after(ts("2026-10-25T00:00:00Z")),
            ts("2026-10-25T02:00:00Z")
        );
    }

    #[test]
    fn business_hours_inside_and_at_the_edges_of_the_window() {
        let s = berlin_business();
        // Wednesday 2026-06-17, CEST (UTC+2).
        assert_eq!(
            s.next_after(ts("2026-06-17T05:59:59.999999999Z")),
            ts("2026-06-17T06:00:00Z")
        );
        assert_eq!(
            s.next_after(ts("2026-06-17T06:00:00Z")),
            ts("2026-06-17T06:15:00Z")
        );
        assert_eq!(
            s.next_after(ts("2026-06-17T10:07:13Z")),
            ts("2026-06-17T10:15:00Z")
        );
        assert_eq!(
            s.next_after(ts("2026-06-17T15:45:00Z")),
            ts("2026-06-17T16:00:00Z")
        );
        assert_eq!(
            s.next_after(ts("2026-06-17T16:00:00Z")),
            ts("2026-06-17T17:00:00Z")
        );
    }

    #[test]
    fn window_start_is_never_skipped_by_the_outside_grid() {
        // A 7h grid outside (00:00, 07:00, 14:00, 21:00) still opens the window at 08:00.
        let s = Schedule::business_hours(
            "Europe/Berlin",
            Weekdays::MON_FRI,
            "08:00",
            "18:00",
            mins(15),
            Duration::from_secs(7 * 3600),
        )
        .expect("schedule");
        let got = ticks(&s, ts("2026-06-16T21:59:00Z"), ts("2026-06-17T06:30:00Z"));
        let want = [
            "2026-06-16T22:00:00Z", // 00:00
            "2026-06-17T05:00:00Z", // 07:00
            "2026-06-17T06:00:00Z", // 08:00, window start
            "2026-06-17T06:15:00Z",
            "2026-06-17T06:30:00Z",
        ]
        .map(ts);
        assert_eq!(got, want);
        // After the window the outside grid resumes: 18:00 is not on it, 21:00 is.
        assert_eq!(
            s.next_after(ts("2026-06-17T15:45:00Z")),
            ts("2026-06-17T19:00:00Z")
        );

        // A 90-minute grid: ..., 06:00, 07:30, then 08:00 (window start), 08:20, ...
        let s = Schedule::business_hours(
            "Europe/Berlin",
            Weekdays::MON_FRI,
            "08:00",
            "09:00",
            mins(20),
            mins(90),
        )
        .expect("schedule");
        let got = ticks(&s, ts("2026-06-17T03:59:00Z"), ts("2026-06-17T08:30:00Z"));
        let want = [
            "2026-06-17T04:00:00Z", // 06:00
            "2026-06-17T05:30:00Z", // 07:30
            "2026-06-17T06:00:00Z", // 08:00
            "2026-06-17T06:20:00Z",
            "2026-06-17T06:40:00Z",
            "2026-06-17T07:00:00Z", // 09:00 = 6 * 90m, on the outside grid
            "2026-06-17T08:30:00Z", // 10:30
        ]
        .map(ts);
        assert_eq!(got, want);
    }

    // --- daily -------------------------------------------------------------------------------

    /// The ticks of `s` whose local date in its zone is `date`.
    fn ticks_on(s: &Schedule, date: &str) -> Vec<Timestamp> {
        let tz = s.time_zone().expect("zone").clone();
        let day: Date = date.parse().expect("date");
        let start = day.to_zoned(tz.clone()).expect("start").timestamp();
        let end = day
            .tomorrow()
            .expect("tomorrow")
            .to_zoned(tz)
            .expect("end")
            .timestamp();
        s.ticks_after(start - SignedDuration::from_nanos(1))
            .take_while(|t| *t < end)
            .collect()
    }

    #[test]
    fn daily_at_in_berlin_across_dst() {
        let s = Schedule::daily_at("Europe/Berlin", "02:30").expect("schedule");
        // 02:30 does not exist on 2026-03-29: once, at 03:30 CEST.
        assert_eq!(ticks_on(&s, "2026-03-29"), [ts("2026-03-29T01:30:00Z")]);
        // 02:30 exists twice on 2026-10-25: once, at 02:30 CEST.
        assert_eq!(ticks_on(&s, "2026-10-25"), [ts("2026-10-25T00:30:00Z")]);
        // Normal days, winter and summer.
        assert_eq!(ticks_on(&s, "2026-03-28"), [ts("2026-03-28T01:30:00Z")]);
        assert_eq!(ticks_on(&s, "2026-06-15"), [ts("2026-06-15T00:30:00Z")]);
        assert_eq!(ticks_on(&s, "2026-10-26"), [ts("2026-10-26T01:30:00Z")]);
        // From inside the repeated hour (02:00 CET, the second pass) the next tick is the
        // next day's: the earlier 02:30 is past and the later one is not a tick.
        assert_eq!(
            s.next_after(ts("2026-10-25T01:00:00Z")),
            ts("2026-10-26T01:30:00Z")
        );
        // Inside the gap's shadow: 03:10 CEST is after the gap, 03:30 CEST is still to come.
        assert_eq!(
            s.next_after(ts("2026-03-29T01:10:00Z")),
            ts("2026-03-29T01:30:00Z")
        );
        let got = ticks(&s, ts("2026-03-27T12:00:00Z"), ts("2026-03-31T12:00:00Z"));
        assert_eq!(
            got,
            [
                "2026-03-28T01:30:00Z",
                "2026-03-29T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z",
            ]
            .map(ts)
        );
    }

    #[test]
    fn daily_at_in_new_york_across_dst() {
        // 2026-03-08: 02:00 EST jumps to 03:00 EDT.
        let s = Schedule::daily_at("America/New_York", "02:30").expect("schedule");
        assert_eq!(ticks_on(&s, "2026-03-07"), [ts("2026-03-07T07:30:00Z")]);
        assert_eq!(ticks_on(&s, "2026-03-08"), [ts("2026-03-08T07:30:00Z")]); // 03:30 EDT
        assert_eq!(ticks_on(&s, "2026-03-09"), [ts("2026-03-09T06:30:00Z")]);
        // 2026-11-01: 01:00-02:00 happens twice (EDT, then EST).
        let s = Schedule::daily_at("America/New_York", "01:30").expect("schedule");
        assert_eq!(ticks_on(&s, "2026-11-01"), [ts("2026-11-01T05:30:00Z")]); // 01:30 EDT
        assert_eq!(ticks_on(&s, "2026-11-02"), [ts("2026-11-02T06:30:00Z")]);
        assert_eq!(
            s.next_after(ts("2026-11-01T06:00:00Z")), // 01:00 EST, the second pass
            ts("2026-11-02T06:30:00Z")
        );
        // A normal day.
        let s = Schedule::daily_at("America/New_York", "17:30").expect("schedule");
        assert_eq!(ticks_on(&s, "2026-07-01"), [ts("2026-07-01T21:30:00Z")]);
    }

    #[test]
    fn daily_at_on_weekdays_only() {
        let s =
            Schedule::daily_at_on("Europe/Berlin", "17:30", Weekdays::MON_FRI).expect("schedule");
        // Friday 2026-06-19 after 17:30 CEST: next is Monday 2026-06-22.
        assert_eq!(
            s.next_after(ts("2026-06-19T15:30:00Z")),
            ts("2026-06-22T15:30:00Z")
        );
        let s = Schedule::daily_at_on("Europe/Berlin", "06:00:30", Weekday::Wednesday.into())
            .expect("schedule");
        assert_eq!(
            s.next_after(ts("2026-06-17T04:00:30Z")),
            ts("2026-06-24T04:00:30Z")
        );
        assert_eq!(s.to_string(), "at 06:00:30 on Wed (Europe/Berlin)");
    }

    // --- cron --------------------------------------------------------------------------------

    #[test]
    fn cron_every_30_minutes_across_spring_forward() {
        let s = Schedule::cron("0 */30 * * * *", "Europe/Berlin").expect("schedule");
        // 48 wall-clock hours from 2026-03-28 00:00 CET to 2026-03-30 00:00 CEST are 47 real
        // hours: 02:00 and 02:30 on the 29th are shifted onto 03:00 and 03:30 (one tick each).
        let got = ticks(&s, ts("2026-03-27T23:00:00Z"), ts("2026-03-29T22:00:00Z"));
        assert_eq!(got.len(), 94);
        assert_strictly_increasing(&got);
        assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), got.len());
        assert_eq!(got, series("2026-03-27T23:30:00Z", 30, 94));
    }

    #[test]
    fn cron_every_30_minutes_across_fall_back() {
        let s = Schedule::cron("*/30 * * * *", "Europe/Berlin").expect("schedule");
        // 48 wall-clock hours from 2026-10-24 00:00 CEST to 2026-10-26 00:00 CET are 49 real
        // hours; 02:00 and 02:30 on the 25th fire once, so there are 96 ticks and one
        // 90-minute pause (02:30 CEST to 03:00 CET).
        let got = ticks(&s, ts("2026-10-23T22:00:00Z"), ts("2026-10-25T23:00:00Z"));
        assert_eq!(got.len(), 96);
        assert_strictly_increasing(&got);
        let mut want = series("2026-10-23T22:30:00Z", 30, 53); // up to 02:30 CEST
        want.extend(series("2026-10-25T02:00:00Z", 30, 43)); // from 03:00 CET
        assert_eq!(got, want);
        let long_gaps: Vec<_> = got
            .windows(2)
            .filter(|w| w[1].duration_since(w[0]) != SignedDuration::from_mins(30))
            .collect();
        assert_eq!(
            long_gaps,
            [&[ts("2026-10-25T00:30:00Z"), ts("2026-10-25T02:00:00Z")][..]]
        );
    }

    #[test]
    fn cron_fixed_time_agrees_with_daily_at_in_a_gap() {
        // croner alone would fire `30 2 * * *` at 03:00 on 2026-03-29; the compatible
        // rule (and daily_at) says 03:30.
        let cron = Schedule::cron("30 2 * * *", "Europe/Berlin").expect("schedule");
        let daily = Schedule::daily_at("Europe/Berlin", "02:30").expect("schedule");
        let from = ts("2026-03-20T00:00:00Z");
        let a: Vec<_> = cron.ticks_after(from).take(20).collect();
        let b: Vec<_> = daily.ticks_after(from).take(20).collect();
        assert_eq!(a, b);
        assert!(a.contains(&ts("2026-03-29T01:30:00Z")));
        let from = ts("2026-10-20T00:00:00Z");
        let a: Vec<_> = cron.ticks_after(from).take(20).collect();
        let b: Vec<_> = daily.ticks_after(from).take(20).collect();
        assert_eq!(a, b);
    }

    #[test]
    fn cron_with_seconds_nicknames_and_exhaustion() {
        let s = Schedule::cron("15 */5 * * * *", "UTC").expect("schedule");
        assert_eq!(
            s.next_after(ts("2026-06-01T10:00:15Z")),
            ts("2026-06-01T10:05:15Z")
        );
        assert_eq!(
            s.next_after(ts("2026-06-01T10:00:14.5Z")),
            ts("2026-06-01T10:00:15Z")
        );
        let s = Schedule::cron("@hourly", "Asia/Kolkata").expect("schedule");
        assert_eq!(
            s.next_after(ts("2026-06-01T10:00:00Z")),
            ts("2026-06-01T10:30:00Z")
        );
        // A pattern restricted to a past year is valid but has no tick left.
        let s = Schedule::cron("0 0 0 1 1 * 2020", "UTC").expect("schedule");
        assert_eq!(s.next_after(ts("2026-06-01T10:00:00Z")), Timestamp::MAX);
        assert_eq!(s.ticks_after(ts("2026-06-01T10:00:00Z")).count(), 0);
    }

    // --- every -------------------------------------------------------------------------------

    #[test]
    fn every_is_relative_to_now() {
        let s = Schedule::every(mins(15)).expect("schedule");
        let now = ts("2026-03-29T00:59:59.5Z");
        assert_eq!(s.next_after(now), ts("2026-03-29T01:14:59.5Z"));
        assert!(s.time_zone().is_none());
        assert_eq!(s.to_string(), "every 15m");
        assert_eq!(s.next_after(Timestamp::MAX), Timestamp::MAX);
    }

    // --- properties --------------------------------------------------------------------------

    /// An independent description of a wall-clock schedule, to check `next_after` against a
    /// brute-force enumeration of its wall-clock ticks.
    enum Reference {
        Business {
            days: Weekdays,
            start: (i8, i8),
            end: (i8, i8),
            during: i64,
            outside: i64,
        },
        Daily {
            at: (i8, i8),
            days: Weekdays,
        },
        Cron(&'static str, Box<croner::Cron>),
    }

    impl Reference {
        /// All wall-clock ticks on `date`.
        fn civil_ticks(&self, date: Date) -> Vec<DateTime> {
            let midnight = date.to_datetime(Time::midnight());
            let at = |h: i8, m: i8| date.to_datetime(Time::constant(h, m, 0, 0));
            let day_end = date
                .tomorrow()
                .expect("tomorrow")
                .to_datetime(Time::midnight());
            let grid = |from: DateTime, step: i64, until: DateTime| {
                let mut out = Vec::new();
                let mut t = from;
                while t < until {
                    out.push(t);
                    t = t.checked_add(SignedDuration::from_secs(step)).expect("add");
                }
                out
            };
            match self {
                Self::Business {
                    days,
                    start,
                    end,
                    during,
                    outside,
                } => {
                    let all_outside = grid(midnight, *outside, day_end);
                    if !days.contains(date.weekday()) {
                        return all_outside;
                    }
                    let (start, end) = (at(start.0, start.1), at(end.0, end.1));
                    let mut out: Vec<_> = all_outside
                        .into_iter()
                        .filter(|t| *t < start || *t >= end)
                        .collect();
                    out.extend(grid(start, *during, end));
                    out
                }
                Self::Daily { at: (h, m), days } => {
                    if days.contains(date.weekday()) {
                        vec![at(*h, *m)]
                    } else {
                        vec![]
                    }
                }
                Self::Cron(_, cron) => cron
                    .iter_from(midnight, croner::Direction::Forward)
                    .take_while(|t| *t < day_end)
                    .collect(),
            }
        }

        /// Brute force: every tick from the day before `now` to the day after the first day
        /// with a tick after `now`, resolved with the compatible rule; the earliest after
        /// `now`.
        fn next_after(&self, tz: &TimeZone, now: Timestamp) -> Timestamp {
            let today = now.to_zoned(tz.clone()).date();
            let mut best = Timestamp::MAX;
            let mut found_on = None;
            for offset in -1..=9 {
                if found_on.is_some_and(|day| offset > day + 1) {
                    break;
                }
                let date = today
                    .checked_add(SignedDuration::from_hours(24 * offset))
                    .expect("date");
                for civil in self.civil_ticks(date) {
                    let t = tz.to_ambiguous_timestamp(civil).compatible().expect("t");
                    if t > now && t < best {
                        best = t;
                        found_on.get_or_insert(offset);
                    }
                }
            }
            best
        }
    }

    fn build(zone: &str, r: &Reference) -> Schedule {
        let hm = |(h, m): (i8, i8)| format!("{h:02}:{m:02}");
        match r {
            Reference::Business {
                days,
                start,
                end,
                during,
                outside,
            } => Schedule::business_hours(
                zone,
                *days,
                &hm(*start),
                &hm(*end),
                Duration::from_secs(*during as u64),
                Duration::from_secs(*outside as u64),
            ),
            Reference::Daily { at, days } => Schedule::daily_at_on(zone, &hm(*at), *days),
            Reference::Cron(expr, _) => Schedule::cron(expr, zone),
        }
        .expect("schedule")
    }

    fn cron(expr: &'static str) -> Reference {
        Reference::Cron(expr, Box::new(expr.parse().expect("cron")))
    }

    fn reference_cases() -> Vec<(&'static str, Reference)> {
        let mon_wed_fri: Weekdays = "Mon,Wed,Fri".parse().expect("days");
        vec![
            (
                "Europe/Berlin",
                Reference::Business {
                    days: Weekdays::MON_FRI,
                    start: (8, 0),
                    end: (18, 0),
                    during: 900,
                    outside: 3600,
                },
            ),
            (
                "America/New_York",
                Reference::Business {
                    days: mon_wed_fri,
                    start: (7, 30),
                    end: (17, 15),
                    during: 1200,
                    outside: 5400,
                },
            ),
            (
                // DST moves by 30 minutes at 02:00, inside this window.
                "Australia/Lord_Howe",
                Reference::Business {
                    days: Weekdays::ALL,
                    start: (1, 0),
                    end: (3, 0),
                    during: 420,
                    outside: 2700,
                },
            ),
            (
                // DST starts at midnight: 00:00 does not exist on that day.
                "America/Santiago",
                Reference::Business {
                    days: Weekdays::ALL,
                    start: (0, 0),
                    end: (6, 0),
                    during: 600,
                    outside: 3600,
                },
            ),
            (
                "Europe/Berlin",
                Reference::Daily {
                    at: (2, 30),
                    days: Weekdays::ALL,
                },
            ),
            (
                "America/New_York",
                Reference::Daily {
                    at: (1, 30),
                    days: mon_wed_fri,
                },
            ),
            (
                "America/Santiago",
                Reference::Daily {
                    at: (0, 0),
                    days: Weekdays::WEEKEND,
                },
            ),
            ("Europe/Berlin", cron("0 */30 * * * *")),
            ("America/New_York", cron("15 1-3 * * *")),
            ("Australia/Lord_Howe", cron("*/10 1-2 * * *")),
            ("Europe/Berlin", cron("0 30 2 * * SUN")),
            ("America/Santiago", cron("0 0 * * *")),
        ]
    }

    /// Random instants in 2026: half uniform, half within three hours of a DST transition
    /// of `tz`.
    fn sample_instants(tz: &TimeZone, rng: &mut StdRng, n: usize) -> Vec<Timestamp> {
        let year_start = ts("2026-01-01T00:00:00Z");
        let year_end = ts("2027-01-01T00:00:00Z");
        let transitions: Vec<Timestamp> = tz
            .following(year_start)
            .map(|t| t.timestamp())
            .take_while(|t| *t < year_end)
            .collect();
        let span = year_end.as_nanosecond() - year_start.as_nanosecond();
        (0..n)
            .map(|i| {
                if i % 2 == 0 || transitions.is_empty() {
                    let nanos = rng.random_range(0..span);
                    year_start + SignedDuration::from_nanos(nanos as i64)
                } else {
                    let t = transitions[rng.random_range(0..transitions.len())];
                    // Whole minutes half of the time, to land exactly on ticks.
                    let secs = rng.random_range(-3 * 3600..=3 * 3600_i64);
                    let secs = if rng.random_bool(0.5) {
                        secs / 60 * 60
                    } else {
                        secs
                    };
                    t + SignedDuration::from_secs(secs)
                }
            })
            .collect()
    }

    fn assert_monotone(s: &Schedule, mut nows: Vec<Timestamp>) {
        nows.sort();
        let mut previous: Option<Timestamp> = None;
        for now in nows {
            let next = s.next_after(now);
            assert!(next > now, "{s}: next_after({now}) = {next}");
            if let Some(p) = previous {
                assert!(next >= p, "{s}: not monotone at {now}: {next} < {p}");
            }
            previous = Some(next);
        }
    }

    #[test]
    fn next_after_matches_brute_force_and_is_monotone() {
        let mut rng = StdRng::seed_from_u64(0x5EED_2026);
        for (zone, reference) in reference_cases() {
            let s = build(zone, &reference);
            let tz = s.time_zone().expect("zone").clone();
            let nows = sample_instants(&tz, &mut rng, 300);
            for &now in &nows {
                let next = s.next_after(now);
                assert_eq!(next, reference.next_after(&tz, now), "{s} after {now}");
                // Nothing is skipped: `next` is also the next tick from just before it.
                assert_eq!(s.next_after(next - SignedDuration::from_nanos(1)), next);
            }
            assert_monotone(&s, nows);
            // Consecutive ticks around every transition are strictly increasing.
            for t in tz
                .following(ts("2026-01-01T00:00:00Z"))
                .take_while(|t| t.timestamp() < ts("2027-01-01T00:00:00Z"))
            {
                let around: Vec<_> = s
                    .ticks_after(t.timestamp() - SignedDuration::from_hours(30))
                    .take(50)
                    .collect();
                assert_strictly_increasing(&around);
            }
        }
        let every = Schedule::every(Duration::from_secs(90)).expect("schedule");
        assert_monotone(&every, sample_instants(&TimeZone::UTC, &mut rng, 1000));
    }

    #[test]
    fn dense_grids_stay_consistent_through_the_repeated_hour() {
        // One-second grid in a window containing the fall-back fold.
        let s = Schedule::business_hours(
            "Europe/Berlin",
            Weekdays::ALL,
            "01:00",
            "04:00",
            Duration::from_secs(1),
            HOUR,
        )
        .expect("schedule");
        // 02:10 CET, the second pass: the next tick is after the repeated hour, 03:00 CET.
        assert_eq!(
            s.next_after(ts("2026-10-25T01:10:00Z")),
            ts("2026-10-25T02:00:00Z")
        );
        // 02:10 CEST, the first pass: one second later.
        assert_eq!(
            s.next_after(ts("2026-10-25T00:10:00Z")),
            ts("2026-10-25T00:10:01Z")
        );
        let s = Schedule::cron("* * * * * *", "Europe/Berlin").expect("schedule");
        assert_eq!(
            s.next_after(ts("2026-10-25T01:10:00Z")),
            ts("2026-10-25T02:00:00Z")
        );
        assert_eq!(
            s.next_after(ts("2026-03-29T01:00:00Z")),
            ts("2026-03-29T01:00:01Z")
        );
    }

    // --- errors ------------------------------------------------------------------------------

    #[test]
    fn invalid_inputs_name_the_bad_value() {
        let m = schedule_err(Schedule::daily_at("Mars/Olympus_Mons", "17:30"));
        assert!(m.contains("`Mars/Olympus_Mons`"), "{m}");
        let m = schedule_err(Schedule::cron("0 */5 * * * *", "Europe/Berln"));
        assert!(m.contains("`Europe/Berln`"), "{m}");
        let m = schedule_err(Schedule::cron("61 * * * *", "UTC"));
        assert!(m.contains("`61 * * * *`"), "{m}");
        let m = schedule_err(Schedule::cron("* * *", "UTC"));
        assert!(m.contains("`* * *`"), "{m}");
        let m = schedule_err(Schedule::cron("0 0 31 2 *", "UTC"));
        assert!(m.contains("`0 0 31 2 *`") && m.contains("never"), "{m}");
        let m = schedule_err(Schedule::business_hours(
            "Europe/Berlin",
            Weekdays::MON_FRI,
            "18:00",
            "08:00",
            mins(15),
            HOUR,
        ));
        assert!(m.contains("`08:00`") && m.contains("`18:00`"), "{m}");
        let m = schedule_err(Schedule::business_hours(
            "Europe/Berlin",
            Weekdays::MON_FRI,
            "08:00",
            "08:00",
            mins(15),
            HOUR,
        ));
        assert!(m.contains("after"), "{m}");
        let m = schedule_err(Schedule::business_hours(
            "Europe/Berlin",
            Weekdays::MON_FRI,
            "08:00",
            "25:00",
            mins(15),
            HOUR,
        ));
        assert!(m.contains("`25:00`") && m.contains("hour"), "{m}");
        let m = schedule_err(Schedule::business_hours(
            "Europe/Berlin",
            Weekdays::NONE,
            "08:00",
            "18:00",
            mins(15),
            HOUR,
        ));
        assert!(m.contains("weekday"), "{m}");
        let m = schedule_err(Schedule::business_hours(
            "Europe/Berlin",
            Weekdays::MON_FRI,
            "08:00",
            "18:00",
            Duration::ZERO,
            HOUR,
        ));
        assert!(m.contains("`during`") && m.contains("`0s`"), "{m}");
        let m = schedule_err(Schedule::every(Duration::ZERO));
        assert!(m.contains("zero"), "{m}");
        for bad in [
            "25:00",
            "8",
            "08:60",
            "08:00:60",
            "8:5",
            "08:00:00:00",
            "noon",
            "",
        ] {
            let m = schedule_err(Schedule::daily_at("UTC", bad));
            assert!(m.contains(&format!("`{bad}`")), "{m}");
        }
        let e = Schedule::daily_at("UTC", "24:00").expect_err("24:00");
        assert_eq!(e.class(), crate::error::ErrorClass::Permanent);
        assert!(e.to_string().starts_with("invalid schedule: "), "{e}");
    }

    #[test]
    fn accepted_times_of_day() {
        for (text, shown) in [
            ("8:05", "08:05"),
            ("08:05", "08:05"),
            ("23:59:59", "23:59:59"),
        ] {
            let s = Schedule::daily_at("UTC", text).expect("schedule");
            assert_eq!(s.to_string(), format!("daily at {shown} (UTC)"));
        }
    }

    // --- jitter ------------------------------------------------------------------------------

    #[test]
    fn jitter_stays_within_bounds() {
        let mut rng = StdRng::seed_from_u64(7);
        let now = ts("2026-06-17T10:07:13Z");
        let s = berlin_business();
        assert_eq!(s.max_jitter(), Duration::ZERO);
        for _ in 0..100 {
            assert_eq!(s.next_fire(now, &mut rng), s.next_after(now));
        }
        let max = Duration::from_secs(30);
        let s = s.with_jitter(max);
        let tick = s.next_after(now);
        let mut seen_low = false;
        let mut seen_high = false;
        for _ in 0..2000 {
            let fire = s.next_fire(now, &mut rng);
            let jitter = clock::until(tick, fire);
            assert!(fire >= tick && jitter <= max, "{fire}");
            seen_low |= jitter < Duration::from_secs(3);
            seen_high |= jitter > Duration::from_secs(27);
        }
        assert!(seen_low && seen_high, "jitter is not spread over [0, max]");
        let s = Schedule::every(mins(1))
            .expect("schedule")
            .with_jitter(Duration::from_nanos(1));
        let fire = s.next_fire(now, &mut rng);
        assert!(
            fire == now + SignedDuration::from_mins(1) || fire == now + SignedDuration::new(60, 1)
        );
    }

    // --- weekdays, display, serde ------------------------------------------------------------

    #[test]
    fn weekdays_parse_and_display() {
        let cases = [
            ("Mon-Fri", "Mon-Fri"),
            ("mon-FRI", "Mon-Fri"),
            ("monday, wednesday,Fri", "Mon,Wed,Fri"),
            ("Sat-Sun", "Sat,Sun"),
            ("Fri-Mon", "Mon,Fri-Sun"),
            ("*", "Mon-Sun"),
            ("Tue-Thu,Sun", "Tue-Thu,Sun"),
            ("Wed-Wed", "Wed"),
            ("none", "none"),
        ];
        for (text, shown) in cases {
            let days: Weekdays = text.parse().expect(text);
            assert_eq!(days.to_string(), shown, "{text}");
            assert_eq!(shown.parse::<Weekdays>().expect(shown), days);
        }
        assert_eq!(
            "Mon-Fri".parse::<Weekdays>().expect("days"),
            Weekdays::MON_FRI
        );
        assert_eq!(Weekdays::MON_FRI.len(), 5);
        assert_eq!(
            Weekdays::WEEKEND.iter().collect::<Vec<_>>(),
            [Weekday::Saturday, Weekday::Sunday]
        );
        assert_eq!(Weekdays::MON_FRI | Weekdays::WEEKEND, Weekdays::ALL);
        assert_eq!(
            [Weekday::Saturday, Weekday::Sunday]
                .into_iter()
                .collect::<Weekdays>(),
            Weekdays::WEEKEND
        );
        for bad in ["", "Mon-Fryday", "Mon,,Tue", "weekdays"] {
            let e = bad.parse::<Weekdays>().expect_err(bad);
            assert!(matches!(e, Error::Schedule(_)), "{e}");
        }
        let e = "Mon-Fryday".parse::<Weekdays>().expect_err("bad");
        assert!(e.to_string().contains("`Fryday`"), "{e}");
    }

    #[test]
    fn display_in_words() {
        assert_eq!(
            berlin_business().to_string(),
            "every 15m from 08:00 to 18:00 on Mon-Fri, every 1h otherwise (Europe/Berlin)"
        );
        let s = Schedule::daily_at("Europe/Berlin", "17:30").expect("schedule");
        assert_eq!(s.to_string(), "daily at 17:30 (Europe/Berlin)");
        let s = Schedule::daily_at_on("America/New_York", "17:30", Weekdays::MON_FRI)
            .expect("schedule");
        assert_eq!(s.to_string(), "at 17:30 on Mon-Fri (America/New_York)");
        let s = Schedule::cron("0 */5 * * * *", "Europe/Berlin")
            .expect("schedule")
            .with_jitter(Duration::from_secs(90));
        assert_eq!(
            s.to_string(),
            "cron `0 */5 * * * *` (Europe/Berlin), jitter up to 1m 30s"
        );
    }

    fn from_json(json: &str) -> Result<Schedule, String> {
        serde_json::from_str::<Schedule>(json).map_err(|e| e.to_string())
    }

    #[test]
    fn serde_round_trip() {
        let cases = [
            (r#"{"every":"15m"}"#, "every 15m"),
            (
                r#"{"every":"1h 30m","jitter":"30s"}"#,
                "every 1h 30m, jitter up to 30s",
            ),
            (
                r#"{"business_hours":"08:00-18:00","zone":"Europe/Berlin","days":"Mon-Fri","during":"15m","outside":"1h"}"#,
                "every 15m from 08:00 to 18:00 on Mon-Fri, every 1h otherwise (Europe/Berlin)",
            ),
            (
                r#"{"daily_at":"17:30","zone":"Europe/Berlin"}"#,
                "daily at 17:30 (Europe/Berlin)",
            ),
            (
                r#"{"daily_at":"17:30","zone":"America/New_York","days":"Mon-Fri","jitter":"2m"}"#,
                "at 17:30 on Mon-Fri (America/New_York), jitter up to 2m",
            ),
            (
                r#"{"cron":"0 */5 * * * *","zone":"Europe/Berlin"}"#,
                "cron `0 */5 * * * *` (Europe/Berlin)",
            ),
        ];
        for (json, words) in cases {
            let s = from_json(json).expect(json);
            assert_eq!(s.to_string(), words);
            // Serializing gives the same object back (keys in canonical order).
            let back = serde_json::to_value(&s).expect("serialize");
            let original: serde_json::Value = serde_json::from_str(json).expect("json");
            assert_eq!(back, original, "{json}");
            let again: Schedule = serde_json::from_value(back).expect("reparse");
            assert_eq!(again.spec(), s.spec());
        }
        // Other spellings of durations are accepted.
        let s = from_json(r#"{"every":"PT90S"}"#).expect("iso");
        assert_eq!(s.to_string(), "every 1m 30s");
        let s = from_json(r#"{"every":"90 seconds"}"#).expect("verbose");
        assert_eq!(
            s.spec(),
            ScheduleSpec::Every {
                interval: Duration::from_secs(90),
                jitter: None,
            }
        );
    }

    #[test]
    fn serde_errors_are_precise() {
        let cases = [
            (r"{}", "needs one of"),
            (
                r#"{"every":"15m","cron":"* * * * *"}"#,
                "`every` and `cron`",
            ),
            (r#"{"cron":"* * * * *"}"#, "needs `zone`"),
            (r#"{"every":"15m","zone":"UTC"}"#, "`zone` does not apply"),
            (r#"{"every":"0s"}"#, "must not be zero"),
            (r#"{"evry":"15m"}"#, "unknown field `evry`"),
            (r#"{"every":"-5m"}"#, "negative"),
            (
                r#"{"business_hours":"08:00","zone":"UTC","days":"*","during":"1m","outside":"1h"}"#,
                "`08:00`",
            ),
            (
                r#"{"business_hours":"08:00-18:00","zone":"UTC","during":"1m","outside":"1h"}"#,
                "needs `days`",
            ),
            (
                r#"{"daily_at":"17:30","zone":"Europe/Nowhere"}"#,
                "`Europe/Nowhere`",
            ),
            (r#"{"daily_at":"17:30","zone":"UTC","days":"Fun"}"#, "`Fun`"),
            (r#"{"cron":"0 0 31 2 *","zone":"UTC"}"#, "never matches"),
        ];
        for (json, needle) in cases {
            let e = from_json(json).expect_err(json);
            assert!(e.contains(needle), "{json}: {e}");
        }
        // The spec alone checks the shape, not the values.
        let spec: ScheduleSpec =
            serde_json::from_str(r#"{"daily_at":"25:00","zone":"UTC"}"#).expect("shape");
        let e = Schedule::try_from(spec).expect_err("value");
        assert!(e.to_string().contains("`25:00`"), "{e}");
    }
}
