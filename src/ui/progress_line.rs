//! One download's progress line, laid out to fit a terminal width: pure
//! functions of the numbers, so that widths are tested without a terminal.

use std::time::Duration;

use super::format;

/// Where the progress draws when no width can be read (the classic terminal).
pub const DEFAULT_WIDTH: usize = 80;
/// The name column's widest, so that bars on wide terminals keep room.
const MAX_NAME: usize = 50;
/// Below this many cells a bar says nothing; it is dropped.
const MIN_BAR: usize = 10;
const MAX_BAR: usize = 60;

/// What one line shows. `rate` is bytes per second over the wire, if known.
#[derive(Debug, Clone, Copy)]
pub struct Transfer {
    pub done: u64,
    pub total: u64,
    pub rate: Option<f64>,
}

/// `name ███░░ 12.0 MB/98.4 MB  5.0 MB/s eta 17s`, never wider than `width`
/// (counted in characters): the name is shortened in the middle, the bar
/// takes what is left, and on narrow terminals the bar, then the numbers, go.
pub fn fit_line(width: usize, name: &str, t: Transfer) -> String {
    let numbers = format!(" {:>8}/{:<8}", format::bytes(t.done), format::bytes(t.total));
    let speed = format!(" {:>10} eta {:<7}", rate_text(t.rate), eta_text(t));
    for right in [format!("{numbers}{speed}"), numbers, String::new()] {
        let room = width.saturating_sub(right.chars().count());
        // Name, a space, then a bar of at least MIN_BAR cells.
        let name_room = room.saturating_sub(MIN_BAR + 1).min(MAX_NAME);
        if name_room >= 8 {
            let shown = pad(&shorten_middle(name, name_room), name_room);
            let bar_width = (room - name_room - 1).min(MAX_BAR);
            return format!("{shown} {}{right}", bar(bar_width, t));
        }
        if right.is_empty() {
            break;
        }
    }
    shorten_middle(name, width)
}

/// `name` in at most `max` characters: the start and the end (extension
/// included) kept, the middle replaced by `…`.
pub fn shorten_middle(name: &str, max: usize) -> String {
    let chars: Vec<char> = name.chars().collect();
    if chars.len() <= max {
        return name.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let keep = max - 1;
    // The end names the file's kind and shard (`-00002-of-00004.safetensors`):
    // up to six characters before the extension, at least half the room, and
    // four characters left for the start.
    let extension = name.rfind('.').map_or(0, |i| name[i..].chars().count());
    let tail = (extension + 6).min(keep.saturating_sub(4)).max(keep / 2);
    let head = keep - tail;
    let mut out: String = chars[..head].iter().collect();
    out.push('…');
    out.extend(&chars[chars.len() - tail..]);
    out
}

/// Bytes per second counted from `base`, the bytes already on disk when the
/// transfer (re)started: a resumed download's offset came over no wire now.
pub fn wire_rate(position: u64, base: u64, elapsed: Duration) -> Option<f64> {
    let secs = elapsed.as_secs_f64();
    // Under a fifth of a second the rate is noise.
    (secs >= 0.2).then(|| position.saturating_sub(base) as f64 / secs)
}

fn rate_text(rate: Option<f64>) -> String {
    match rate {
        Some(r) => format!("{}/s", format::bytes(r as u64)),
        None => "–".into(),
    }
}

/// `17s`, `3m 20s`, `1h 05m`; `–` while the rate is unknown.
fn eta_text(t: Transfer) -> String {
    let left = t.total.saturating_sub(t.done);
    if left == 0 {
        return "0s".into();
    }
    let Some(rate) = t.rate.filter(|r| *r > 0.0) else { return "–".into() };
    let secs = (left as f64 / rate).ceil() as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m {:02}s", secs / 60, secs % 60),
        3600..360_000 => format!("{}h {:02}m", secs / 3600, secs % 3600 / 60),
        _ => "∞".into(),
    }
}

fn bar(width: usize, t: Transfer) -> String {
    let filled =
        if t.total == 0 { 0 } else { (width as u128 * t.done.min(t.total) as u128 / t.total as u128) as usize };
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

fn pad(text: &str, width: usize) -> String {
    format!("{text}{}", " ".repeat(width.saturating_sub(text.chars().count())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LONG: &str = "model-00001-of-00004-with-a-long-descriptive-name.safetensors";
    const MID: Transfer = Transfer { done: 12_000_000, total: 98_362_432, rate: Some(5_000_000.0) };

    fn width(line: &str) -> usize {
        line.chars().count()
    }

    #[test]
    fn lines_fit_80_and_200_columns() {
        for name in ["config.json", LONG, "SmolLM2-135M-Instruct.Q4_1.gguf"] {
            for columns in [80, 200] {
                let line = fit_line(columns, name, MID);
                assert!(width(&line) <= columns, "{columns}: {line}");
                assert!(line.contains("12.0 MB/98.4 MB") && line.contains("5.0 MB/s eta 18s"), "{line}");
            }
        }
        // The bar takes the room that is left, up to its widest.
        let bar_cells = |l: &str| l.chars().filter(|c| *c == '█' || *c == '░').count();
        assert_eq!(width(&fit_line(80, "config.json", MID)), 80);
        assert!(bar_cells(&fit_line(200, LONG, MID)) > bar_cells(&fit_line(80, LONG, MID)));
        assert!(fit_line(200, "SmolLM2-135M-Instruct.Q4_1.gguf", MID).starts_with("SmolLM2-135M-Instruct.Q4_1.gguf "));
        assert_eq!(width(&shorten_middle(LONG, MAX_NAME)), MAX_NAME);
    }

    #[test]
    fn narrow_terminals_lose_the_bar_then_the_numbers() {
        for columns in [0, 5, 20, 30, 40, 60] {
            let line = fit_line(columns, LONG, MID);
            assert!(width(&line) <= columns, "{columns}: {line}");
        }
        assert!(!fit_line(40, LONG, MID).contains("eta"));
    }

    #[test]
    fn names_are_shortened_in_the_middle_keeping_the_extension() {
        assert_eq!(shorten_middle("config.json", 30), "config.json");
        assert_eq!(shorten_middle(LONG, 28), "model-000…e-name.safetensors");
        assert_eq!(width(&shorten_middle(LONG, 28)), 28);
        assert_eq!(shorten_middle("SmolLM2-135M-Instruct-very-long.Q4_1.gguf", 20), "SmolLM2-…g.Q4_1.gguf");
        assert_eq!(shorten_middle("abcdef", 1), "…");
    }

    #[test]
    fn a_resumed_download_rates_only_the_bytes_it_received() {
        // 900 MB were on disk; 10 MB more came in 2 s (a fake clock: elapsed is given).
        let rate = wire_rate(910_000_000, 900_000_000, Duration::from_secs(2));
        assert_eq!(rate, Some(5_000_000.0));
        let line = fit_line(80, "m.gguf", Transfer { done: 910_000_000, total: 1_000_000_000, rate });
        assert!(line.contains("5.0 MB/s eta 18s"), "{line}");
        assert_eq!(wire_rate(5, 0, Duration::from_millis(10)), None);
    }
}
