//! Human formats for sizes, counts and ages.

use std::time::{Duration, SystemTime};

/// Decimal units, as download tools and `ollama list` show sizes.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{n} B") } else { format!("{value:.1} {}", UNITS[unit]) }
}

/// `1 file`, `2 files`: a count with its noun, singular for one.
pub fn counted(n: u64, noun: &str) -> String {
    if n == 1 { format!("1 {noun}") } else { format!("{n} {noun}s") }
}

/// The one word text output (`list`, `show`, `pull`) uses for a model
/// without quantization. `none` is the spelling users already type for it
/// (`bench --kv none`); JSON keeps `null`, the scripting convention for "no value".
pub const UNQUANTIZED: &str = "none";

/// A model's quantization for people: its tag, or [`UNQUANTIZED`].
pub fn quantization(quant: Option<&str>) -> &str {
    quant.unwrap_or(UNQUANTIZED)
}

/// `134.5M`, `8.0B`: parameter counts as model cards write them.
pub fn count(n: u64) -> String {
    match n {
        0..1_000 => n.to_string(),
        1_000..1_000_000 => format!("{:.1}K", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1}M", n as f64 / 1e6),
        _ => format!("{:.1}B", n as f64 / 1e9),
    }
}

/// `0.84 ms`, `12.3 ms`, `840 ms`, `1.52 s`, `61.0 s`: a time with three
/// significant figures (two below 1 ms), in seconds from 1 s on.
pub fn millis(ms: f64) -> String {
    match ms {
        ..10.0 => format!("{ms:.2} ms"),
        10.0..100.0 => format!("{ms:.1} ms"),
        100.0..1000.0 => format!("{ms:.0} ms"),
        _ if ms < 10_000.0 => format!("{:.2} s", ms / 1e3),
        _ => format!("{:.1} s", ms / 1e3),
    }
}

/// `5 minutes ago`, relative to `now`.
pub fn age(then: SystemTime, now: SystemTime) -> String {
    let secs = now.duration_since(then).unwrap_or(Duration::ZERO).as_secs();
    let (n, unit) = match secs {
        0..60 => return "just now".into(),
        60..3600 => (secs / 60, "minute"),
        3600..86400 => (secs / 3600, "hour"),
        86400..2_592_000 => (secs / 86400, "day"),
        2_592_000..31_536_000 => (secs / 2_592_000, "month"),
        _ => (secs / 31_536_000, "year"),
    };
    format!("{n} {unit}{} ago", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_stable() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(98_362_432), "98.4 MB");
        assert_eq!(count(134_515_008), "134.5M");
        assert_eq!(
            (counted(1, "file"), counted(0, "file"), counted(3, "token")),
            ("1 file".into(), "0 files".into(), "3 tokens".into())
        );
        let times = [0.8412, 12.34, 840.2, 1520.0, 61_000.0].map(millis);
        assert_eq!(times, ["0.84 ms", "12.3 ms", "840 ms", "1.52 s", "61.0 s"]);
        let now = SystemTime::now();
        assert_eq!(age(now - Duration::from_secs(7200), now), "2 hours ago");
        assert_eq!(age(now - Duration::from_secs(61), now), "1 minute ago");
    }
}
