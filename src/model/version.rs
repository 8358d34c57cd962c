//! Extension versions as they appear in image file names (`v1.32.0`).
//!
//! Only characters systemd-sysupdate can match in a file name are allowed (letters, digits,
//! `.`, `_`, `+`, `-`); recipes add their own format on top (see `recipe::VersionSpec`).
//!
//! Versions are ordered the way systemd-sysupdate picks the newest image: [`compare`].

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A version string safe to put in an image file name.
///
/// Ordered by [`compare`] (systemd's version order). Strings that order as equal there but differ
/// (`1.01` and `1.1`, `1_2` and `12`) are then ordered bytewise, so `Ord` stays consistent with `Eq`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ExtVersion(String);

impl ExtVersion {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
#[error("malformed version {0:?}: {1}")]
pub struct MalformedVersion(pub String, pub &'static str);

impl FromStr for ExtVersion {
    type Err = MalformedVersion;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |why| MalformedVersion(s.to_string(), why);
        if s.is_empty() || s.len() > 128 {
            return Err(err("a version has 1 to 128 characters"));
        }
        if !s.starts_with(|c: char| c.is_ascii_alphanumeric()) {
            return Err(err("a version starts with a letter or digit"));
        }
        if !s.chars().all(|c| c.is_ascii_alphanumeric() || ".-_+".contains(c)) {
            return Err(err("a version may only contain letters, digits and . _ + - (what systemd-sysupdate matches)"));
        }
        Ok(Self(s.to_string()))
    }
}

impl fmt::Display for ExtVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Ord for ExtVersion {
    fn cmp(&self, other: &Self) -> Ordering {
        compare(&self.0, &other.0).then_with(|| self.0.cmp(&other.0))
    }
}

impl PartialOrd for ExtVersion {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Serialize for ExtVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ExtVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer)?.parse().map_err(serde::de::Error::custom)
    }
}

/// Compares two version strings the way systemd 252 does (`strverscmp_improved()`, the UAPI
/// Version Format Specification, `systemd-analyze compare-versions`); `Greater` means `a` is newer.
///
/// Both strings are walked segment by segment. At the start of each step, characters other than
/// ASCII letters, digits and `~-^.` are skipped (`1_2` is the segments `1` and `2`). Where the two
/// differ in what comes next, the order is `~` < end of string < `-` < `^` < `.` < letters < digits:
/// - `~` sorts before anything, even the end of the string (`1.0~rc1 < 1.0`);
/// - past the end of one string, the longer is newer: `1.0-rc.1 > 1.0`, `1.0^patch > 1.0`;
/// - `-`, `^` and `.`, checked in that order, make the side that has one older: `123-9 < 123.1`,
///   `1.0^patch < 1.0.1`, `123.a < 123a`;
/// - a run of digits is compared by value, leading zeros ignored (`1.01 == 1.1`), and is newer than
///   letters (`1.0 > 1.a`, so `v1.2 < 1.3`);
/// - a run of letters is compared bytewise (case-sensitive, `B < a`), the longer newer if one is a
///   prefix of the other.
///
/// Like systemd built where `char` is signed (x86-64, the reference the tests run against), a
/// non-ASCII byte right after a `~` that the other side follows with the end of the string counts
/// as older than that end (`~é < ~`); systemd on unsigned-`char` targets says the opposite.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        a = skip_invalid(a);
        b = skip_invalid(b);

        // `~`, before the end-of-string check: `1~rc` is older than `1`.
        if let Some(order) = separator(&mut a, &mut b, b'~') {
            return order;
        }
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(&c)) => return 0.cmp(&signed(c)),
            (Some(&c), None) => return signed(c).cmp(&0),
            (Some(_), Some(_)) => {}
        }
        for mark in [b'-', b'^', b'.'] {
            if let Some(order) = separator(&mut a, &mut b, mark) {
                return order;
            }
        }

        let order;
        let (len_a, len_b);
        if starts_with(a, u8::is_ascii_digit) || starts_with(b, u8::is_ascii_digit) {
            (len_a, len_b) = (run(a, u8::is_ascii_digit), run(b, u8::is_ascii_digit));
            let (num_a, num_b) = (trim_zeros(&a[..len_a]), trim_zeros(&b[..len_b]));
            // Some digits beat none; then more significant digits, then the digits themselves.
            order = (len_a > 0).cmp(&(len_b > 0)).then(num_a.len().cmp(&num_b.len())).then_with(|| num_a.cmp(num_b));
        } else {
            // Letters, possibly none (`1.~` at the `~`: the next step deals with it).
            (len_a, len_b) = (run(a, u8::is_ascii_alphabetic), run(b, u8::is_ascii_alphabetic));
            let common = len_a.min(len_b);
            order = a[..common].cmp(&b[..common]).then(len_a.cmp(&len_b));
        }
        if order != Ordering::Equal {
            return order;
        }
        a = &a[len_a..];
        b = &b[len_b..];
    }
}

/// The newest of `versions` in systemd's order (ties broken bytewise, as for [`ExtVersion`]).
pub fn newest<'a>(versions: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    versions.into_iter().max_by(|a, b| compare(a, b).then_with(|| a.cmp(b)))
}

fn skip_invalid(s: &[u8]) -> &[u8] {
    let valid = |c: &u8| c.is_ascii_alphanumeric() || b"~-^.".contains(c);
    &s[s.iter().position(valid).unwrap_or(s.len())..]
}

/// If only one side starts with `mark`, that side is older; if both do, consumes it on both.
fn separator(a: &mut &[u8], b: &mut &[u8], mark: u8) -> Option<Ordering> {
    match (a.first() == Some(&mark), b.first() == Some(&mark)) {
        (true, true) => {
            *a = &a[1..];
            *b = &b[1..];
            None
        }
        (true, false) => Some(Ordering::Less),
        (false, true) => Some(Ordering::Greater),
        (false, false) => None,
    }
}

/// The byte as a signed `char` (see [`compare`] on non-ASCII bytes).
fn signed(c: u8) -> i8 {
    c as i8
}

fn starts_with(s: &[u8], class: fn(&u8) -> bool) -> bool {
    s.first().is_some_and(class)
}

fn run(s: &[u8], class: fn(&u8) -> bool) -> usize {
    s.iter().position(|c| !class(c)).unwrap_or(s.len())
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    &digits[digits.iter().position(|&c| c != b'0').unwrap_or(digits.len())..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_release_versions() {
        for ok in ["v1.32.0", "1.7.24", "v1.33.0-rc.1", "3.5.17+build_2"] {
            assert_eq!(ok.parse::<ExtVersion>().unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_what_sysupdate_cannot_match_or_paths() {
        for bad in ["", "v1.32.0~rc1", "v1^2", "../v1", "v1/2", "v 1", ".v1"] {
            assert!(bad.parse::<ExtVersion>().is_err(), "{bad}");
        }
    }

    #[track_caller]
    fn assert_order(a: &str, expected: Ordering, b: &str) {
        assert_eq!(compare(a, b), expected, "{a:?} vs {b:?}");
        assert_eq!(compare(b, a), expected.reverse(), "{b:?} vs {a:?}");
    }

    #[test]
    fn release_candidates_with_a_dash_sort_above_the_release() {
        // systemd's order, not semver's: after the common prefix the longer string is newer and
        // `-` only loses against a side that goes on with something else. Use `~rc.1` for a
        // pre-release that sorts below.
        assert_order("v1.33.0-rc.1", Ordering::Greater, "v1.33.0");
        assert_order("v1.33.0-rc.1", Ordering::Less, "v1.33.1");
        assert_order("v1.33.0-rc.1", Ordering::Less, "v1.33.0-rc.2");
        assert_order("123-9", Ordering::Less, "123.1-1");
    }

    #[test]
    fn tilde_sorts_before_everything_caret_only_after_the_end() {
        assert_order("1.0~rc1", Ordering::Less, "1.0");
        assert_order("1.0~rc1", Ordering::Less, "1.0~rc2");
        assert_order("1.0~", Ordering::Less, "1.0");
        assert_order("~1", Ordering::Less, "");
        // `^` only wins against the end of the string; against `.` or a letter it loses.
        assert_order("1.0^patch", Ordering::Greater, "1.0");
        assert_order("1.0^patch", Ordering::Less, "1.0.1");
        assert_order("1.0^patch", Ordering::Less, "1.0a");
        assert_order("1.0^patch", Ordering::Greater, "1.0-patch");
        assert_order("1.0^patch1", Ordering::Less, "1.0^patch2");
    }

    #[test]
    fn numbers_by_value_letters_bytewise() {
        assert_order("v1.32.10", Ordering::Greater, "v1.32.9");
        assert_order("1.01", Ordering::Equal, "1.1");
        assert_order("00123", Ordering::Equal, "123");
        assert_order("1.0", Ordering::Greater, "1.a");
        assert_order("v1.2", Ordering::Less, "1.3");
        assert_order("123a", Ordering::Greater, "123.a");
        assert_order("1.abc", Ordering::Less, "1.abcd");
        assert_order("1.B", Ordering::Less, "1.a");
        assert_order("1.2", Ordering::Less, "1.2.0");
    }

    #[test]
    fn empty_and_invalid_characters() {
        assert_order("", Ordering::Equal, "");
        assert_order("", Ordering::Less, "0");
        assert_order("", Ordering::Equal, "!_+");
        assert_order("1.2_", Ordering::Equal, "1.2");
        assert_order("1_2", Ordering::Less, "12");
        assert_order("1_2", Ordering::Greater, "1.2");
        assert_order("3.5.17+build_2", Ordering::Greater, "3.5.17");
        assert_order("~\u{e9}", Ordering::Less, "~");
    }

    #[test]
    fn ext_version_order_is_total_and_agrees_with_eq() {
        let v = |s: &str| s.parse::<ExtVersion>().unwrap();
        assert!(v("v1.32.10") > v("v1.32.9"));
        assert!(v("1.01") != v("1.1"));
        assert_eq!(v("1.01").cmp(&v("1.1")), Ordering::Less, "bytewise tie-break");
        assert_eq!(v("1.1").cmp(&v("1.1")), Ordering::Equal);
        let mut sorted = ["v1.33.0-rc.1", "v1.32.10", "v1.33.0", "v1.32.9"].map(v);
        sorted.sort();
        assert_eq!(sorted.map(|v| v.0), ["v1.32.9", "v1.32.10", "v1.33.0", "v1.33.0-rc.1"]);
    }

    #[test]
    fn newest_picks_the_maximum() {
        assert_eq!(newest(["v1.32.9", "v1.32.10", "v1.33.0~rc1"]), Some("v1.33.0~rc1"));
        assert_eq!(newest(["1.1", "1.01"]), Some("1.1"));
        assert_eq!(newest([]), None);
    }
}
