//! Cross-checks `bakery::model::version::compare` against the real systemd: for every pair of a
//! deterministic set of version strings, `systemd-analyze compare-versions A B` is the reference
//! (its exit status is 0 for `==`, 11 for `>`, 12 for `<`). Where `systemd-analyze` is missing or
//! lacks `compare-versions` (systemd < 252), the test says so and passes without checking.

use std::cmp::Ordering;
use std::process::Command;
use std::time::Instant;

use bakery::model::version::compare;

use crate::support::rng::Rng;

/// Random pairs on top of the hand-picked ones.
const RANDOM_PAIRS: usize = 2000;
/// `systemd-analyze` processes running at once (they spend most of their time starting up).
const WORKERS: usize = 8;

/// A number of 1 to 25 digits, sometimes with leading zeros.
fn number(rng: &mut Rng) -> String {
    let digits = match rng.below(10) {
        0..=5 => 1,
        6 | 7 => 2,
        8 => 3 + rng.below(3),
        _ => 10 + rng.below(16),
    };
    let mut s: String = (0..digits).map(|_| char::from(b'0' + rng.below(10) as u8)).collect();
    if rng.below(6) == 0 {
        s.insert_str(0, &"0".repeat(1 + rng.below(2)));
    }
    s
}

fn word(rng: &mut Rng) -> String {
    rng.pick(&["a", "b", "rc", "alpha", "beta", "pre", "git", "B", "Z", "fc38", "el9", "x"]).to_string()
}

/// A version built from a prefix, numbers and words joined by separators, and maybe a suffix.
fn version(rng: &mut Rng) -> String {
    let mut s = rng.pick(&["", "", "", "v", "v", "V", "release-", "_"]).to_string();
    for i in 0..1 + rng.below(4) {
        if i > 0 {
            s += rng.pick(&[".", ".", ".", ".", "-", "~", "^", "_", "+", ""]);
        }
        if rng.below(5) == 0 { s += &word(rng) } else { s += &number(rng) }
    }
    match rng.below(8) {
        0 => s += &format!("-rc.{}", number(rng)),
        1 => s += &format!("~rc{}", number(rng)),
        2 => s += &format!("^{}{}", word(rng), number(rng)),
        3 => s += rng.pick(&["-", "~", "^", ".", "_", "+build_2", "-1", ".0", "a", "~~", "^^"]),
        _ => {}
    }
    s
}

/// `a` changed in one place, so that the pair shares a prefix and differs where it matters.
fn mutate(rng: &mut Rng, a: &str) -> String {
    let cut = rng.below(a.len() + 1);
    let (head, tail) = (&a[..cut], &a[cut..]);
    let piece = match rng.below(3) {
        0 => number(rng),
        1 => word(rng),
        _ => rng.pick(&[".", "-", "~", "^", "_", "0", "-rc.1", "~rc1", "^p1", ".0"]).to_string(),
    };
    match rng.below(5) {
        0 => a.to_string() + &piece,                           // append
        1 => format!("{head}{piece}{tail}"),                   // insert
        2 => head.to_string(),                                 // truncate
        3 => format!("{head}{piece}"),                         // replace the rest
        _ => format!("{head}{}", tail.get(1..).unwrap_or("")), // drop a character
    }
}

fn pairs() -> Vec<(String, String)> {
    let fixed = [
        ("", ""),
        ("", "0"),
        ("", "~"),
        ("", "!_+"),
        ("v1.33.0-rc.1", "v1.33.0"),
        ("1.0~rc1", "1.0"),
        ("1.0^patch", "1.0"),
        ("1.0^patch", "1.0.1"),
        ("1.01", "1.1"),
        ("123a", "123.a"),
        ("v1.32.10", "v1.32.9"),
        ("1_2", "12"),
        ("1.~", "1."),
        ("1-.2", "1.-2"),
        ("-1", "1"),
        ("99999999999999999999999", "100000000000000000000000"),
    ];
    let mut pairs: Vec<_> = fixed.iter().map(|&(a, b)| (a.to_string(), b.to_string())).collect();
    let mut rng = Rng(0x5eed_1e55_c0ff_ee42);
    for i in 0..RANDOM_PAIRS {
        let a = version(&mut rng);
        let b = match i % 10 {
            0 => a.clone(),             // identical
            1..=3 => version(&mut rng), // unrelated
            _ => mutate(&mut rng, &a),  // mixed: a close relative of `a`
        };
        pairs.push(if rng.below(2) == 0 { (a, b) } else { (b, a) });
    }
    pairs
}

/// systemd's answer, or what went wrong asking.
fn systemd(a: &str, b: &str) -> Result<Ordering, String> {
    // `--`: versions may start with `-`, which would be taken for an option.
    let out = Command::new("systemd-analyze")
        .args(["compare-versions", "--", a, b])
        .output()
        .map_err(|e| format!("cannot run systemd-analyze: {e}"))?;
    match out.status.code() {
        Some(0) => Ok(Ordering::Equal),
        Some(11) => Ok(Ordering::Greater),
        Some(12) => Ok(Ordering::Less),
        _ => Err(format!("systemd-analyze {}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim())),
    }
}

#[test]
fn compare_agrees_with_systemd_analyze() {
    match systemd("1.2", "1.3") {
        Ok(Ordering::Less) => {}
        other => {
            let why = format!("systemd-analyze compare-versions is not usable here ({other:?})");
            assert!(std::env::var_os("CI").is_none(), "{why}: CI must compare with systemd");
            eprintln!("skipped: {why}");
            return;
        }
    }

    let pairs = pairs();
    let started = Instant::now();
    let chunk = pairs.len().div_ceil(WORKERS);
    let mismatches: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = pairs
            .chunks(chunk)
            .map(|pairs| {
                scope.spawn(move || {
                    let mut mismatches = Vec::new();
                    for (a, b) in pairs {
                        let ours = compare(a, b);
                        let theirs = systemd(a, b);
                        if theirs != Ok(ours) {
                            mismatches.push(format!("{a:?} vs {b:?}: compare says {ours:?}, systemd {theirs:?}"));
                        }
                    }
                    mismatches
                })
            })
            .collect();
        workers.into_iter().flat_map(|worker| worker.join().unwrap()).collect()
    });
    eprintln!("checked {} pairs against systemd-analyze in {:.1?}", pairs.len(), started.elapsed());

    assert!(
        mismatches.is_empty(),
        "{} of {} pairs disagree with systemd (first 20):\n{}",
        mismatches.len(),
        pairs.len(),
        mismatches.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn the_pairs_cover_what_they_should() {
    let pairs = pairs();
    assert!(pairs.len() >= 1000);
    let any = |f: &dyn Fn(&str) -> bool| pairs.iter().any(|(a, b)| f(a) || f(b));
    for needle in ["v", "-rc.", "~", "^", ".", "_", "+", "alpha", "00"] {
        assert!(any(&|s| s.contains(needle)), "no version with {needle:?}");
    }
    assert!(any(&|s| s.len() > 20), "no long numbers");
    assert!(pairs.iter().filter(|(a, b)| a == b).count() >= 100, "too few identical pairs");
    let orders = |o| pairs.iter().filter(|(a, b)| a != b && compare(a, b) == o).count();
    assert!(orders(Ordering::Equal) > 0 && orders(Ordering::Less) > 300 && orders(Ordering::Greater) > 300);
}
