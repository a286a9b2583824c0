//! A download's `Range` header, read as S3 reads it, so that a player can seek.

use axum::http::{HeaderMap, header};

/// What a download's `Range` header asks of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Wanted {
    /// No header, one this server does not read (not `bytes=`, malformed), or several ranges:
    /// the whole file with 200, as S3 answers a request for more than one range.
    Whole,
    /// Bytes `start` to `end`, both included.
    Part { start: u64, end: u64 },
    /// A range that starts at or past the end of the file: 416.
    Unsatisfiable,
}

/// Reads `Range: bytes=a-b`, `bytes=a-` and `bytes=-n` (the last `n` bytes), as RFC 9110 and S3
/// read them; `b` past the end is the end.
pub(super) fn wanted_range(headers: &HeaderMap, len: u64) -> Wanted {
    let Some(spec) = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return Wanted::Whole;
    };
    if spec.contains(',') {
        return Wanted::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Wanted::Whole;
    };
    let number = |s: &str| {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<u64>().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => Wanted::Unsatisfiable,
            Some(_) if len == 0 => Wanted::Unsatisfiable,
            Some(n) => Wanted::Part {
                start: len.saturating_sub(n),
                end: len - 1,
            },
            None => Wanted::Whole,
        },
        (start, "") => match number(start) {
            Some(start) if start >= len => Wanted::Unsatisfiable,
            Some(start) => Wanted::Part {
                start,
                end: len - 1,
            },
            None => Wanted::Whole,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(start), Some(end)) if start > end => Wanted::Whole,
            (Some(start), Some(_)) if start >= len => Wanted::Unsatisfiable,
            (Some(start), Some(end)) => Wanted::Part {
                start,
                end: end.min(len - 1),
            },
            _ => Wanted::Whole,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn ranges_are_read_as_s3_reads_them() {
        let ask = |range: &str, len: u64| {
            let mut headers = HeaderMap::new();
            headers.insert(header::RANGE, HeaderValue::from_str(range).unwrap());
            wanted_range(&headers, len)
        };
        let part = |start, end| Wanted::Part { start, end };
        assert_eq!(wanted_range(&HeaderMap::new(), 10), Wanted::Whole);
        assert_eq!(ask("bytes=0-3", 10), part(0, 3));
        assert_eq!(ask("bytes=4-", 10), part(4, 9));
        assert_eq!(ask("bytes=-3", 10), part(7, 9));
        assert_eq!(ask("bytes=-30", 10), part(0, 9));
        assert_eq!(ask("bytes=8-100", 10), part(8, 9));
        assert_eq!(ask("bytes=9-9", 10), part(9, 9));
        for unsatisfiable in ["bytes=10-", "bytes=10-20", "bytes=-0"] {
            assert_eq!(
                ask(unsatisfiable, 10),
                Wanted::Unsatisfiable,
                "{unsatisfiable}"
            );
        }
        assert_eq!(ask("bytes=-1", 0), Wanted::Unsatisfiable);
        assert_eq!(ask("bytes=0-", 0), Wanted::Unsatisfiable);
        // Several ranges, another unit, or what is not a range: the whole file.
        for whole in [
            "bytes=0-1,4-5",
            "items=0-1",
            "bytes=5-2",
            "bytes=a-b",
            "bytes=--1",
            "bytes=+1-2",
            "bytes=",
            "bytes=99999999999999999999999-",
        ] {
            assert_eq!(ask(whole, 10), Wanted::Whole, "{whole}");
        }
    }
}
