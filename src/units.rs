//! Human units, parsed in one place: sizes (`64`, `16KiB`, `1 MB`) and
//! durations (`250ms`, `5s`, `1m 30s`), for the config file, `wsc`'s flags
//! and `wsc bench`'s flags alike, so that a value accepted by one is accepted
//! by all and every rejection reads the same.

use std::time::Duration;

/// Why a size or a duration was rejected. Each message quotes the input and
/// says what would have been accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnitError {
    #[error(
        "invalid size {0:?}: expected a number of bytes, optionally with a unit \
         (B, KB, MB, GB, KiB, MiB, GiB), e.g. 64, 16KiB or 1MB"
    )]
    Size(String),
    #[error("invalid size {0:?}: too large")]
    SizeOverflow(String),
    #[error("invalid duration {text:?}: {reason}; expected e.g. 5s, 250ms or 1m 30s")]
    Duration { text: String, reason: String },
}

/// Size units, matched case-insensitively. The decimal ones are powers of
/// 1000, as on disk labels; the binary ones powers of 1024.
const SIZE_UNITS: [(&str, u64); 7] = [
    ("b", 1),
    ("kb", 1_000),
    ("mb", 1_000_000),
    ("gb", 1_000_000_000),
    ("kib", 1 << 10),
    ("mib", 1 << 20),
    ("gib", 1 << 30),
];

/// Parses a size in bytes: digits, then optionally a space and a unit from
/// [`SIZE_UNITS`] (`512`, `512B`, `64 KiB`, `16kib`, `10MB`). Zero is a
/// valid size; callers that need at least one byte say so themselves.
pub fn parse_size(text: &str) -> Result<usize, UnitError> {
    let bad = || UnitError::Size(text.to_owned());
    let trimmed = text.trim();
    let split = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(trimmed.len());
    let (digits, unit) = trimmed.split_at(split);
    if digits.is_empty() {
        return Err(bad());
    }
    let unit = unit.trim_start();
    let factor = if unit.is_empty() {
        1
    } else {
        SIZE_UNITS
            .iter()
            .find(|(name, _)| unit.eq_ignore_ascii_case(name))
            .map(|(_, factor)| *factor)
            .ok_or_else(bad)?
    };
    // Digits only, so the one way this parse fails is a number too large.
    let overflow = || UnitError::SizeOverflow(text.to_owned());
    let n: u64 = digits.parse().map_err(|_| overflow())?;
    n.checked_mul(factor)
        .and_then(|bytes| usize::try_from(bytes).ok())
        .ok_or_else(overflow)
}

/// The inverse of [`parse_size`]: the largest binary unit that divides
/// `bytes` exactly (`1MiB`, `1536KiB`), else bytes (`1000B`).
pub fn format_size(bytes: usize) -> String {
    for (unit, factor) in [("GiB", 1usize << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= factor && bytes.is_multiple_of(factor) {
            return format!("{}{unit}", bytes / factor);
        }
    }
    format!("{bytes}B")
}

/// Parses a duration in humantime's syntax: `250ms`, `5s`, `1m 30s`, `2h`.
/// A unit is required (a bare `0` excepted, which humantime allows).
pub fn parse_duration(text: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(text.trim()).map_err(|e| UnitError::Duration {
        text: text.to_owned(),
        reason: e.to_string(),
    })
}

/// [`parse_duration`], or a bare number of seconds (`3`, `0.5`): `wsc`'s
/// flags took plain seconds before they took units, and still do.
pub fn parse_duration_or_secs(text: &str) -> Result<Duration, UnitError> {
    let trimmed = text.trim();
    let number = !trimmed.is_empty() && trimmed.bytes().all(|b| b.is_ascii_digit() || b == b'.');
    if !number {
        return parse_duration(text);
    }
    trimmed
        .parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| UnitError::Duration {
            text: text.to_owned(),
            reason: "not a number of seconds".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_bytes_and_decimal_or_binary_units_in_any_case() {
        for (text, bytes) in [
            ("0", 0),
            ("512", 512),
            ("512B", 512),
            ("512 b", 512),
            ("2KB", 2000),
            ("2kB", 2000),
            ("10MB", 10_000_000),
            ("1GB", 1_000_000_000),
            ("16KiB", 16 << 10),
            ("16kib", 16 << 10),
            ("16 KIB", 16 << 10),
            ("  64 MiB ", 64 << 20),
            ("1mib", 1 << 20),
            ("3GiB", 3 << 30),
        ] {
            assert_eq!(parse_size(text), Ok(bytes), "{text:?}");
        }
    }

    #[test]
    fn garbage_sizes_are_rejected_naming_the_input_and_the_units() {
        for text in [
            "",
            " ",
            "lots",
            "KiB",
            "-1KiB",
            "+1",
            "1.5MiB",
            "3 parsecs",
            "16 K",
            "1e3",
            "0x10",
            "16 KiB B",
            "١٢",
        ] {
            let err = parse_size(text).expect_err(text);
            assert_eq!(err, UnitError::Size(text.to_owned()), "{text:?}");
            let message = err.to_string();
            assert!(message.contains(&format!("{text:?}")), "{message}");
            assert!(message.contains("KiB"), "{message}");
        }
    }

    #[test]
    fn sizes_that_do_not_fit_are_too_large_not_garbage() {
        for text in [
            "18446744073709551616",
            "99999999999999999999999",
            "20000000000GiB",
        ] {
            assert_eq!(
                parse_size(text),
                Err(UnitError::SizeOverflow(text.to_owned()))
            );
        }
        // 2^34 GiB is 2^64 bytes, one more than a u64 holds.
        assert!(parse_size("17179869184GiB").is_err());
    }

    #[test]
    fn formatted_sizes_parse_back() {
        for n in [0, 1, 1000, 1023, 1024, 1536, 1 << 20, 3 << 30, 1_500_000] {
            assert_eq!(parse_size(&format_size(n)), Ok(n), "{n}");
        }
        assert_eq!(format_size(1 << 20), "1MiB");
        assert_eq!(format_size(1000), "1000B");
    }

    #[test]
    fn durations_use_humantime_syntax() {
        for (text, d) in [
            ("250ms", Duration::from_millis(250)),
            ("5s", Duration::from_secs(5)),
            ("1m 30s", Duration::from_secs(90)),
            (" 2h ", Duration::from_secs(7200)),
            ("0", Duration::ZERO),
        ] {
            assert_eq!(parse_duration(text), Ok(d), "{text:?}");
        }
        for text in ["5", "0.5", "soon", "10 parsecs", "", "-1s"] {
            let message = parse_duration(text).expect_err(text).to_string();
            assert!(
                message.starts_with(&format!("invalid duration {text:?}: ")),
                "{message}"
            );
        }
    }

    #[test]
    fn wsc_durations_also_take_bare_seconds() {
        for (text, d) in [
            ("0", Duration::ZERO),
            ("3", Duration::from_secs(3)),
            ("0.5", Duration::from_millis(500)),
            ("250ms", Duration::from_millis(250)),
            ("1m 30s", Duration::from_secs(90)),
        ] {
            assert_eq!(parse_duration_or_secs(text), Ok(d), "{text:?}");
        }
        for text in ["-1", "1.2.3", ".", "soon", "", "1e99999"] {
            assert!(parse_duration_or_secs(text).is_err(), "{text:?}");
        }
    }
}
