//! What transformers' chat-template environment adds to Jinja, done as
//! Python does it: `tojson` is `json.dumps` with its options, `strftime_now`
//! is `datetime.now().strftime`, `dict(...)`, `str.format`, Jinja's own
//! `sequence` and `iterable` tests, and Python's `None` where transformers
//! passes it (`tools`, `documents`): a value that is `none` but, as in
//! Python, cannot be looped over (minijinja loops over its `none` as over
//! nothing).

use std::fmt;
use std::sync::Arc;

use minijinja::value::{Kwargs, Object, ObjectRepr, ValueKind};
use minijinja::{Error, ErrorKind, State, Value};

/// Python's `None`, as the value of `tools` and `documents`: `none` to the
/// `none` test, false, printed `None`, `null` to `tojson`, and an error to
/// loop over (`'NoneType' object is not iterable`) or measure.
#[derive(Debug)]
pub struct PyNone;

impl Object for PyNone {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn is_true(self: &Arc<Self>) -> bool {
        false
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("None")
    }
}

/// What minijinja says of looping over a [`PyNone`], and what llmctl says instead.
pub const NOT_ITERABLE: &str = "plain object is not iterable";
pub const NONE_NOT_ITERABLE: &str =
    "'NoneType' object is not iterable (`tools` and `documents` are None: llmctl passes no tools or documents)";

pub fn py_none() -> Value {
    Value::from_object(PyNone)
}

fn is_py_none(value: &Value) -> bool {
    value.downcast_object_ref::<PyNone>().is_some()
}

/// `None` as minijinja's `none`, for the filters that, in Jinja, take a
/// false value as an empty sequence (`select`, `reject`, `selectattr`,
/// `rejectattr`, `map`: `if value: for item in value`).
pub fn none_as_empty(value: Value) -> Value {
    if is_py_none(&value) { Value::from(()) } else { value }
}

/// The `none` test, true of [`PyNone`] too.
pub fn is_none(value: &Value) -> bool {
    value.is_none() || is_py_none(value)
}

/// Jinja's `iterable` test: Python's `iter()` works on it (not on `None`; on undefined it does).
pub fn is_iterable(value: &Value) -> bool {
    !is_none(value) && value.try_iter().is_ok()
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// `x|tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)`:
/// transformers' filter, which is Python's `json.dumps` with these defaults.
pub fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, Error> {
    let ensure_ascii = kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(false);
    let sort_keys = kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(false);
    let indent = match kwargs.get::<Option<Value>>("indent")? {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) if v.kind() == ValueKind::String => Some(v.as_str().unwrap_or_default().to_string()),
        Some(v) => match v.as_i64() {
            Some(n) => Some(" ".repeat(n.max(0) as usize)),
            None => return Err(invalid(format!("tojson: indent must be a number or a string, not {}", v.kind()))),
        },
    };
    let separators = match kwargs.get::<Option<Value>>("separators")? {
        Some(v) if !v.is_none() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [item, key] if item.as_str().is_some() && key.as_str().is_some() => {
                    Some((item.as_str().unwrap_or_default().to_string(), key.as_str().unwrap_or_default().to_string()))
                }
                _ => return Err(invalid("tojson: separators must be two strings, (item_separator, key_separator)")),
            }
        }
        _ => None,
    };
    kwargs.assert_all_used()?;
    let (item_sep, key_sep) =
        separators.unwrap_or_else(|| (if indent.is_some() { "," } else { ", " }.to_string(), ": ".to_string()));
    let dumper = Dumper { ensure_ascii, sort_keys, indent, item_sep, key_sep };
    let mut out = String::new();
    dumper.dump(value, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

struct Dumper {
    ensure_ascii: bool,
    sort_keys: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
}

impl Dumper {
    fn dump(&self, value: &Value, level: usize, out: &mut String) -> Result<(), Error> {
        match value.kind() {
            _ if is_py_none(value) => out.push_str("null"),
            ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => out.push_str(&number(value)),
            ValueKind::String => self.string(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                self.container(('[', ']'), items.len(), level, out, |i, out| self.dump(&items[i], level + 1, out))?;
            }
            ValueKind::Map => {
                let mut entries = Vec::new();
                for key in value.try_iter()? {
                    let item = value.get_item(&key)?;
                    entries.push((self.key(&key)?, item));
                }
                if self.sort_keys {
                    entries.sort_by(|a, b| a.0.cmp(&b.0));
                }
                self.container(('{', '}'), entries.len(), level, out, |i, out| {
                    self.string(&entries[i].0, out);
                    out.push_str(&self.key_sep);
                    self.dump(&entries[i].1, level + 1, out)
                })?;
            }
            ValueKind::Undefined => return Err(invalid("Object of type Undefined is not JSON serializable")),
            other => return Err(invalid(format!("Object of type {other} is not JSON serializable"))),
        }
        Ok(())
    }

    fn container(
        &self,
        (open, close): (char, char),
        len: usize,
        level: usize,
        out: &mut String,
        mut item: impl FnMut(usize, &mut String) -> Result<(), Error>,
    ) -> Result<(), Error> {
        out.push(open);
        if len == 0 {
            out.push(close);
            return Ok(());
        }
        let newline = |out: &mut String, level: usize| {
            if let Some(indent) = &self.indent {
                out.push('\n');
                out.push_str(&indent.repeat(level));
            }
        };
        for i in 0..len {
            if i > 0 {
                out.push_str(&self.item_sep);
            }
            newline(out, level + 1);
            item(i, out)?;
        }
        newline(out, level);
        out.push(close);
        Ok(())
    }

    /// A key as `json.dumps` writes it: strings as they are, numbers, booleans and None as text.
    fn key(&self, key: &Value) -> Result<String, Error> {
        match key.kind() {
            ValueKind::String => Ok(key.as_str().unwrap_or_default().to_string()),
            ValueKind::Number => Ok(number(key)),
            ValueKind::Bool => Ok(if key.is_true() { "true" } else { "false" }.into()),
            ValueKind::None => Ok("null".into()),
            other => Err(invalid(format!("keys must be str, int, float, bool or None, not {other}"))),
        }
    }

    fn string(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 || (self.ensure_ascii && !(' '..='~').contains(&c)) => {
                    let mut units = [0u16; 2];
                    for unit in c.encode_utf16(&mut units) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// A number as Python writes it: integers as they are, floats as `repr(float)`.
fn number(value: &Value) -> String {
    if value.is_integer() {
        return value.to_string();
    }
    let f = f64::try_from(value.clone()).unwrap_or(f64::NAN);
    py_float_repr(f)
}

/// `repr(f)`: the shortest digits that round-trip, positional for exponents
/// from -4 to 15, else scientific with a signed two-digit exponent.
pub fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // `{:e}` gives the shortest round-trip digits: "1.2345e-7".
    let sci = format!("{:e}", f.abs());
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if (-4..16).contains(&exp) {
        let point = exp + 1;
        let text = if point <= 0 {
            format!("0.{}{digits}", "0".repeat((-point) as usize))
        } else if point as usize >= digits.len() {
            format!("{digits}{}.0", "0".repeat(point as usize - digits.len()))
        } else {
            format!("{}.{}", &digits[..point as usize], &digits[point as usize..])
        };
        format!("{sign}{text}")
    } else {
        let rest = if digits.len() > 1 { format!(".{}", &digits[1..]) } else { String::new() };
        let exp_sign = if exp < 0 { '-' } else { '+' };
        format!("{sign}{}{rest}e{exp_sign}{:02}", &digits[..1], exp.abs())
    }
}

/// `dict(mapping_or_pairs, **kwargs)`, as Python's.
pub fn dict(args: &[Value]) -> Result<Value, Error> {
    let mut entries: Vec<(Value, Value)> = Vec::new();
    let mut set = |key: Value, value: Value| match entries.iter_mut().find(|(k, _)| *k == key) {
        Some(entry) => entry.1 = value,
        None => entries.push((key, value)),
    };
    for arg in args {
        if arg.is_kwargs() || arg.kind() == ValueKind::Map {
            for key in arg.try_iter()? {
                let value = arg.get_item(&key)?;
                set(key, value);
            }
        } else if arg.kind() == ValueKind::Seq || arg.kind() == ValueKind::Iterable {
            for pair in arg.try_iter()? {
                let pair: Vec<Value> = pair.try_iter()?.collect();
                let [key, value] = <[Value; 2]>::try_from(pair)
                    .map_err(|_| invalid("dict: each item of the sequence must be a (key, value) pair"))?;
                set(key, value);
            }
        } else {
            return Err(invalid(format!("dict: cannot make a dict of {}", arg.kind())));
        }
    }
    Ok(Value::from_iter(entries))
}

/// Jinja's `sequence` test: anything with a length and items (strings and mappings too).
pub fn is_sequence(value: &Value) -> bool {
    matches!(value.kind(), ValueKind::Seq | ValueKind::String | ValueKind::Map)
}

/// Python methods minijinja-contrib's pycompat lacks, then pycompat's.
pub fn unknown_method(state: &State, value: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    match (value.kind(), method) {
        (ValueKind::String, "format") => str_format(value.as_str().unwrap_or_default(), args),
        _ => minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args),
    }
}

/// `str.format` with `{}`, `{0}` and `{name}` fields and `{{`/`}}`; a
/// conversion or format spec is refused by name.
fn str_format(template: &str, args: &[Value]) -> Result<Value, Error> {
    let (positional, kwargs): (Vec<&Value>, Vec<&Value>) = args.iter().partition(|a| !a.is_kwargs());
    let named =
        |name: &str| kwargs.iter().find_map(|k| k.get_item(&Value::from(name)).ok().filter(|v| !v.is_undefined()));
    let mut out = String::new();
    let (mut next, mut manual) = (0, false);
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                out.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                out.push('}');
            }
            '{' => {
                let field: String = chars.by_ref().take_while(|&c| c != '}').collect();
                if field.contains([':', '!', '.', '[']) {
                    return Err(invalid(format!(
                        "str.format: the field {{{field}}} has a conversion, format spec or lookup, which llmctl \
                         does not support"
                    )));
                }
                if field.is_empty() && manual || field.parse::<usize>().is_ok() && next > 0 {
                    return Err(invalid("str.format: cannot switch between automatic and manual field numbering"));
                }
                manual |= field.parse::<usize>().is_ok();
                let value = if field.is_empty() {
                    next += 1;
                    positional.get(next - 1).map(|v| (*v).clone())
                } else if let Ok(i) = field.parse::<usize>() {
                    positional.get(i).map(|v| (*v).clone())
                } else {
                    named(&field)
                };
                let value = value.ok_or_else(|| invalid(format!("str.format: no argument for {{{field}}}")))?;
                out.push_str(&value.to_string());
            }
            '}' => return Err(invalid("str.format: single '}' encountered in format string")),
            c => out.push(c),
        }
    }
    Ok(Value::from(out))
}

/// `strftime_now(format)`: the time now, or at `SOURCE_DATE_EPOCH` (seconds
/// since 1970, as UTC) when that is set, the reproducible-builds convention.
pub fn strftime_now(format: &str) -> Result<String, Error> {
    let time = match std::env::var(crate::env_vars::SOURCE_DATE_EPOCH) {
        Ok(text) => {
            let secs: i64 = text.trim().parse().map_err(|_| {
                invalid(format!("strftime_now: SOURCE_DATE_EPOCH is `{text}`, not a number of seconds since 1970"))
            })?;
            Civil::utc(secs)
        }
        Err(_) => Civil::local_now(),
    };
    strftime(&time, format)
}

/// A broken-down time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    pub year: i64,
    /// 1 to 12.
    pub month: u32,
    /// 1 to 31.
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    /// 0 (Monday) to 6, as Python's `weekday()`.
    pub weekday: u32,
    /// 1 to 366.
    pub yday: u32,
}

impl Civil {
    /// The UTC time `secs` seconds after 1970-01-01 (Howard Hinnant's days-to-civil).
    pub fn utc(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
        const BEFORE: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
        let yday = BEFORE[month as usize - 1] + day + u32::from(leap && month > 2);
        Civil {
            year,
            month,
            day,
            hour: rem / 3600,
            minute: rem / 60 % 60,
            second: rem % 60,
            // 1970-01-01 was a Thursday (3).
            weekday: (days + 3).rem_euclid(7) as u32,
            yday,
        }
    }

    /// The local time now, as `datetime.now()` gives it.
    #[cfg(unix)]
    fn local_now() -> Civil {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let t = now as libc::time_t;
        // SAFETY: `tm` is plain old data, so all-zero is a valid value for `localtime_r` to overwrite; both
        // pointers are to live locals, and `localtime_r` (unlike `localtime`) writes only to the `tm` it is given.
        let tm = unsafe {
            let mut tm: libc::tm = std::mem::zeroed();
            if libc::localtime_r(&t, &mut tm).is_null() {
                return Civil::utc(now as i64);
            }
            tm
        };
        Civil {
            year: i64::from(tm.tm_year) + 1900,
            month: tm.tm_mon as u32 + 1,
            day: tm.tm_mday as u32,
            hour: tm.tm_hour as u32,
            minute: tm.tm_min as u32,
            second: tm.tm_sec.min(59) as u32,
            weekday: ((tm.tm_wday + 6) % 7) as u32,
            yday: tm.tm_yday as u32 + 1,
        }
    }

    #[cfg(not(unix))]
    fn local_now() -> Civil {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Civil::utc(now as i64)
    }
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];

/// Python's `strftime` in the C locale, for the directives chat templates
/// use; any other is an error naming it.
pub fn strftime(t: &Civil, format: &str) -> Result<String, Error> {
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let month = MONTHS[t.month as usize - 1];
        let day = DAYS[t.weekday as usize];
        let hour12 = if t.hour.is_multiple_of(12) { 12 } else { t.hour % 12 };
        match chars.next() {
            Some('Y') => out.push_str(&t.year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", t.year.rem_euclid(100))),
            Some('m') => out.push_str(&format!("{:02}", t.month)),
            Some('d') => out.push_str(&format!("{:02}", t.day)),
            Some('e') => out.push_str(&format!("{:2}", t.day)),
            Some('j') => out.push_str(&format!("{:03}", t.yday)),
            Some('H') => out.push_str(&format!("{:02}", t.hour)),
            Some('I') => out.push_str(&format!("{hour12:02}")),
            Some('M') => out.push_str(&format!("{:02}", t.minute)),
            Some('S') => out.push_str(&format!("{:02}", t.second)),
            Some('p') => out.push_str(if t.hour < 12 { "AM" } else { "PM" }),
            Some('B') => out.push_str(month),
            Some('b') | Some('h') => out.push_str(&month[..3]),
            Some('A') => out.push_str(day),
            Some('a') => out.push_str(&day[..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                return Err(invalid(format!("strftime_now: llmctl does not support the directive %{other}")));
            }
            None => return Err(invalid("strftime_now: the format ends with a lone %")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_python_repr_writes_them() {
        let cases = [
            (1.0, "1.0"),
            (0.5, "0.5"),
            (-2.25, "-2.25"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345.0, "123456789012345.0"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.2345e-7, "1.2345e-07"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e300, "1e+300"),
        ];
        for (f, repr) in cases {
            assert_eq!(py_float_repr(f), repr, "{f}");
        }
    }

    #[test]
    fn utc_dates_and_strftime_match_python() {
        // datetime.fromtimestamp(1741350896, timezone.utc): 2025-03-07 12:34:56, a Friday, day 66.
        let t = Civil::utc(1_741_350_896);
        assert_eq!(t, Civil { year: 2025, month: 3, day: 7, hour: 12, minute: 34, second: 56, weekday: 4, yday: 66 });
        assert_eq!(
            strftime(&t, "%d %b %Y|%B %d, %Y|%Y-%m-%d|%a %A %j %I%p %H:%M:%S %y %e %%").unwrap(),
            "07 Mar 2025|March 07, 2025|2025-03-07|Fri Friday 066 12PM 12:34:56 25  7 %"
        );
        assert_eq!(Civil::utc(0).weekday, 3);
        assert_eq!(
            Civil::utc(951_782_400),
            Civil { year: 2000, month: 2, day: 29, hour: 0, minute: 0, second: 0, weekday: 1, yday: 60 }
        );
        assert_eq!(Civil::utc(-1).year, 1969);
        assert!(strftime(&t, "%Q").unwrap_err().to_string().contains("does not support the directive %Q"));
    }
}
