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
use std::time::Duration;

use jiff::civil::{Date, DateTime, Time};
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

mod spec;
#[cfg(test)]
mod tests;
mod weekdays;

pub use spec::ScheduleSpec;
pub use weekdays::Weekdays;

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
