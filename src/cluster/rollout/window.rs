//! Maintenance windows, pure: on which days, from when to when, in which IANA time zone new
//! nodes may start.
//!
//! Times are wall-clock times in the zone. A window whose end is not after its start crosses
//! midnight and belongs to the day it starts on (`days: [Fri]`, 22:00-02:00 is Friday 22:00 to
//! Saturday 02:00); equal times make a 24-hour window. On daylight-saving days the times resolve
//! as jiff's "compatible" rule does: a time in the skipped hour moves forward by the gap (02:30
//! on a spring-forward night is 03:30), a time in the repeated hour is its first occurrence.
//! So a window is shorter or longer by that hour on those two nights, never skipped.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

use super::crd::RolloutWindow;

/// A checked window.
#[derive(Clone, Debug)]
pub struct Window {
    /// Monday first; all true when `days` is empty.
    days: [bool; 7],
    start: (i8, i8),
    end: (i8, i8),
    zone: TimeZone,
}

/// The day names, Monday first (as the CRD's enum has them).
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

impl Window {
    /// Checks a spec's window: day names (`Mon` ... `Sun`), `HH:MM` times, a time zone the
    /// database knows (default UTC).
    pub fn parse(spec: &RolloutWindow) -> Result<Self, String> {
        let mut days = [spec.days.is_empty(); 7];
        for (i, day) in spec.days.iter().enumerate() {
            let Some(index) = DAYS.iter().position(|d| d == day) else {
                return Err(format!("spec.window.days[{i}]: {day:?} is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"));
            };
            days[index] = true;
        }
        let start = clock(&spec.start).map_err(|e| format!("spec.window.start: {e}"))?;
        let end = clock(&spec.end).map_err(|e| format!("spec.window.end: {e}"))?;
        let name = spec.time_zone.as_deref().unwrap_or("UTC");
        let zone = jiff::tz::db()
            .get(name)
            .map_err(|e| format!("spec.window.timeZone: {name:?} is not a time zone the database knows: {e}"))?;
        Ok(Self { days, start, end, zone })
    }

    /// Whether new nodes may start at `now`.
    pub fn contains(&self, now: Timestamp) -> bool {
        self.intervals(now).any(|(start, end)| start <= now && now < end)
    }

    /// The next opening after `now`, within a week (None when no day is allowed).
    pub fn next_open(&self, now: Timestamp) -> Option<Timestamp> {
        self.intervals(now).map(|(start, _)| start).find(|start| *start > now)
    }

    /// The windows that start from the day before `now` (local) to a week after, in order.
    fn intervals(&self, now: Timestamp) -> impl Iterator<Item = (Timestamp, Timestamp)> + '_ {
        let today = now.to_zoned(self.zone.clone()).date();
        (-1..=7).filter_map(move |offset| {
            let day = today.checked_add(jiff::Span::new().days(offset)).ok()?;
            if !self.days[day.weekday().to_monday_zero_offset() as usize] {
                return None;
            }
            let end_day = if self.end <= self.start { day.tomorrow().ok()? } else { day };
            Some((self.at(day, self.start)?, self.at(end_day, self.end)?))
        })
    }

    fn at(&self, day: Date, (hour, minute): (i8, i8)) -> Option<Timestamp> {
        day.at(hour, minute, 0, 0).to_zoned(self.zone.clone()).ok().map(|z| z.timestamp())
    }
}

/// `HH:MM`, 00:00 to 23:59.
fn clock(text: &str) -> Result<(i8, i8), String> {
    let bad = || format!("{text:?} is not a time of day as HH:MM (00:00 to 23:59)");
    let (hour, minute) = text.split_once(':').ok_or_else(bad)?;
    if hour.len() != 2 || minute.len() != 2 {
        return Err(bad());
    }
    let hour: i8 = hour.parse().map_err(|_| bad())?;
    let minute: i8 = minute.parse().map_err(|_| bad())?;
    if !(0..24).contains(&hour) || !(0..60).contains(&minute) {
        return Err(bad());
    }
    Ok((hour, minute))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(days: &[&str], start: &str, end: &str, zone: &str) -> Window {
        Window::parse(&RolloutWindow {
            days: days.iter().map(|d| d.to_string()).collect(),
            start: start.into(),
            end: end.into(),
            time_zone: Some(zone.into()),
        })
        .unwrap()
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    /// The window table: (window, instant, inside, next opening when outside).
    #[test]
    fn inside_and_next_opening_table() {
        let weekdays = window(&["Mon", "Tue", "Wed", "Thu", "Fri"], "02:00", "05:00", "UTC");
        let friday_night = window(&["Fri"], "22:00", "02:00", "UTC");
        // Paris is UTC+1 in winter, UTC+2 in summer
        let paris = window(&["Mon", "Tue", "Wed", "Thu", "Fri"], "02:00", "05:00", "Europe/Paris");
        let every_day = window(&[], "12:00", "12:00", "UTC");
        let cases: [(&Window, &str, bool, Option<&str>); 16] = [
            // 2026-11-23 is a Monday
            (&weekdays, "2026-11-23T01:59:59Z", false, Some("2026-11-23T02:00:00Z")),
            (&weekdays, "2026-11-23T02:00:00Z", true, None),
            (&weekdays, "2026-11-23T04:59:59Z", true, None),
            (&weekdays, "2026-11-23T05:00:00Z", false, Some("2026-11-24T02:00:00Z")),
            // Friday after the window: the next is Monday
            (&weekdays, "2026-11-27T06:00:00Z", false, Some("2026-11-30T02:00:00Z")),
            // across midnight: Friday 22:00 to Saturday 02:00 is Friday's
            (&friday_night, "2026-11-27T23:30:00Z", true, None),
            (&friday_night, "2026-11-28T01:59:00Z", true, None),
            (&friday_night, "2026-11-28T02:00:00Z", false, Some("2026-12-04T22:00:00Z")),
            // Saturday night is not a Friday night
            (&friday_night, "2026-11-28T23:00:00Z", false, Some("2026-12-04T22:00:00Z")),
            // the time zone: 02:00 in Paris is 01:00 UTC in winter, 00:00 UTC in summer
            (&paris, "2026-11-23T00:30:00Z", false, Some("2026-11-23T01:00:00Z")),
            (&paris, "2026-11-23T01:00:00Z", true, None),
            (&paris, "2026-11-23T04:00:00Z", false, Some("2026-11-24T01:00:00Z")),
            (&paris, "2026-06-15T00:30:00Z", true, None),
            (&paris, "2026-06-15T03:00:00Z", false, Some("2026-06-16T00:00:00Z")),
            // equal times: the whole day
            (&every_day, "2026-11-23T11:59:00Z", true, None),
            (&every_day, "2026-11-23T12:00:00Z", true, None),
        ];
        for (i, (window, now, inside, next)) in cases.iter().enumerate() {
            let now = at(now);
            assert_eq!(window.contains(now), *inside, "case {i}: {now}");
            if let Some(next) = next {
                assert_eq!(window.next_open(now), Some(at(next)), "case {i}: {now}");
            }
        }
    }

    /// On the spring-forward night (2026-03-29, 02:00 CET becomes 03:00 CEST) a 02:00-05:00
    /// window opens at 03:00 CEST and lasts two hours; on the fall-back night (2026-10-25,
    /// 03:00 CEST becomes 02:00 CET) it opens at the first 02:00 and lasts four.
    #[test]
    fn daylight_saving_nights_shorten_or_lengthen_the_window() {
        let sundays = window(&["Sun"], "02:00", "05:00", "Europe/Paris");
        assert_eq!(sundays.next_open(at("2026-03-28T12:00:00Z")), Some(at("2026-03-29T01:00:00Z")));
        assert!(!sundays.contains(at("2026-03-29T00:59:59Z")));
        assert!(sundays.contains(at("2026-03-29T01:00:00Z")), "03:00 CEST");
        assert!(sundays.contains(at("2026-03-29T02:59:59Z")));
        assert!(!sundays.contains(at("2026-03-29T03:00:00Z")), "05:00 CEST");

        assert_eq!(sundays.next_open(at("2026-10-24T12:00:00Z")), Some(at("2026-10-25T00:00:00Z")));
        assert!(sundays.contains(at("2026-10-25T00:00:00Z")), "02:00 CEST");
        assert!(sundays.contains(at("2026-10-25T03:59:59Z")), "04:59 CET");
        assert!(!sundays.contains(at("2026-10-25T04:00:00Z")), "05:00 CET");
    }

    #[test]
    fn malformed_windows_name_the_field() {
        let bad = |days: &[&str], start: &str, end: &str, zone: Option<&str>| {
            Window::parse(&RolloutWindow {
                days: days.iter().map(|d| d.to_string()).collect(),
                start: start.into(),
                end: end.into(),
                time_zone: zone.map(str::to_string),
            })
            .unwrap_err()
        };
        assert_eq!(
            bad(&["Mon", "monday"], "02:00", "05:00", None),
            "spec.window.days[1]: \"monday\" is not a day (Mon, Tue, Wed, Thu, Fri, Sat, Sun)"
        );
        assert_eq!(
            bad(&[], "2:00", "05:00", None),
            "spec.window.start: \"2:00\" is not a time of day as HH:MM (00:00 to 23:59)"
        );
        assert_eq!(
            bad(&[], "02:00", "24:00", None),
            "spec.window.end: \"24:00\" is not a time of day as HH:MM (00:00 to 23:59)"
        );
        let zone = bad(&[], "02:00", "05:00", Some("Europe/Atlantis"));
        assert!(zone.starts_with("spec.window.timeZone: \"Europe/Atlantis\" is not a time zone"), "{zone}");
        // no time zone is UTC
        let utc =
            Window::parse(&RolloutWindow { days: vec![], start: "02:00".into(), end: "03:00".into(), time_zone: None })
                .unwrap();
        assert!(utc.contains(at("2026-11-23T02:30:00Z")));
    }
}
