//! Tests of the schedules: every kind, daylight saving time, configuration.

use std::collections::BTreeSet;

use jiff::civil::Weekday;
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
    let s = Schedule::daily_at_on("Europe/Berlin", "17:30", Weekdays::MON_FRI).expect("schedule");
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
    assert!(fire == now + SignedDuration::from_mins(1) || fire == now + SignedDuration::new(60, 1));
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
    let s =
        Schedule::daily_at_on("America/New_York", "17:30", Weekdays::MON_FRI).expect("schedule");
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
