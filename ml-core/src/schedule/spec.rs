//! [`ScheduleSpec`]: the (de)serializable form of a [`Schedule`], as written in
//! configuration files.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Schedule, Weekdays, invalid};
use crate::error::{Error, Result};

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
