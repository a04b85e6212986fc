//! Durations as people write them in workflow files: `500ms`, `30s`, `10m`,
//! `2h`, `1h30m`.

use std::time::Duration;

pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration; write e.g. `30s`, `10m` or `1h30m`".into());
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "`{text}` is not a duration; write e.g. `30s`, `10m` or `1h30m`"
            ));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{text}`: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let step = match unit {
            "ms" => Duration::from_millis(value),
            "s" => Duration::from_secs(value),
            "m" => Duration::from_secs(value.saturating_mul(60)),
            "h" => Duration::from_secs(value.saturating_mul(3600)),
            "" => {
                return Err(format!(
                    "`{text}` has no unit; add one of ms, s, m, h (e.g. `{value}s`)"
                ))
            }
            other => {
                return Err(format!(
                    "`{text}`: unknown unit `{other}`; use ms, s, m or h"
                ))
            }
        };
        total = total.saturating_add(step);
    }
    Ok(total)
}

/// Human form for messages: `1.2s`, `3m04s`.
pub fn display(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1}s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_combinations() {
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert!(parse("10").unwrap_err().contains("no unit"));
        assert!(parse("10d").unwrap_err().contains("unknown unit"));
        assert!(parse("soon").is_err());
    }
}
