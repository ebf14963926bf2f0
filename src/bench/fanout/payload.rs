//! What the fan-out bench publishes: a phase letter, a sequence number and
//! the send time, as fixed-width hex, then padding up to `--size`. Text, so
//! every server (and an HTTP body with `text/plain`) carries it unchanged.
//!
//! `m00000000000000070000000001c9c380abcdef...` is measured publication 7,
//! sent 30 ms after the run's origin. The subscriber checks the padding too:
//! a delivery must hold exactly the published data.

/// Bytes before the padding: the phase letter and two 16-digit hex numbers.
pub(crate) const HEADER: usize = 1 + 16 + 16;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Which part of the run a publication belongs to. Only `Measured` ones are
/// counted; the others exist to find out when every subscriber listens
/// (`Probe`) and to warm the server up (`Warmup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Probe,
    Warmup,
    Measured,
}

impl Phase {
    fn letter(self) -> u8 {
        match self {
            Phase::Probe => b'p',
            Phase::Warmup => b'w',
            Phase::Measured => b'm',
        }
    }

    fn from_letter(letter: u8) -> Option<Phase> {
        match letter {
            b'p' => Some(Phase::Probe),
            b'w' => Some(Phase::Warmup),
            b'm' => Some(Phase::Measured),
            _ => None,
        }
    }
}

/// The header of one publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) phase: Phase,
    /// 0, 1, 2, ... within the phase.
    pub(crate) seq: u64,
    /// Nanoseconds from the run's origin to the moment it was handed to the
    /// socket (one process, one monotonic clock for publisher and subscribers).
    pub(crate) sent_ns: u64,
}

/// A delivery that is not a publication of this run, as it was published.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Malformed {
    #[error("{got} bytes where {want} were published")]
    Length { got: usize, want: usize },
    #[error("no phase/sequence/time header: {0:?}")]
    Header(String),
    #[error("the padding after the header differs from what was published")]
    Padding,
}

/// Writes `stamp` over the first [`HEADER`] bytes of `message` (a
/// `load::template` of at least that size).
pub(crate) fn write(message: &mut [u8], stamp: Stamp) {
    message[0] = stamp.phase.letter();
    put_hex(&mut message[1..17], stamp.seq);
    put_hex(&mut message[17..33], stamp.sent_ns);
}

/// Reads the stamp of `delivery`, checking it against the `template` every
/// publication was made from.
pub(crate) fn read(delivery: &[u8], template: &[u8]) -> Result<Stamp, Malformed> {
    if delivery.len() != template.len() {
        return Err(Malformed::Length {
            got: delivery.len(),
            want: template.len(),
        });
    }
    let header = || {
        Malformed::Header(String::from_utf8_lossy(&delivery[..HEADER.min(delivery.len())]).into())
    };
    let phase = Phase::from_letter(delivery[0]).ok_or_else(header)?;
    let seq = get_hex(&delivery[1..17]).ok_or_else(header)?;
    let sent_ns = get_hex(&delivery[17..33]).ok_or_else(header)?;
    if delivery[HEADER..] != template[HEADER..] {
        return Err(Malformed::Padding);
    }
    Ok(Stamp {
        phase,
        seq,
        sent_ns,
    })
}

/// Most significant digit first, so a publication reads naturally in a dump.
fn put_hex(out: &mut [u8], value: u64) {
    for (i, b) in out.iter_mut().enumerate() {
        *b = HEX[((value >> (4 * (15 - i))) & 0xF) as usize];
    }
}

fn get_hex(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |acc, &d| {
        let nibble = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => return None,
        };
        Some(acc << 4 | u64::from(nibble))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::load::template;

    #[test]
    fn a_stamp_reads_back_as_written_and_stays_text() {
        let template = template(64);
        let mut message = template.clone();
        let stamp = Stamp {
            phase: Phase::Measured,
            seq: 7,
            sent_ns: 30_000_000,
        };
        write(&mut message, stamp);
        assert!(message.starts_with(b"m00000000000000070000000001c9c380"));
        assert!(std::str::from_utf8(&message).is_ok());
        assert_eq!(read(&message, &template), Ok(stamp));
        let max = Stamp {
            phase: Phase::Probe,
            seq: u64::MAX,
            sent_ns: u64::MAX,
        };
        write(&mut message, max);
        assert_eq!(read(&message, &template), Ok(max));
    }

    #[test]
    fn anything_but_the_published_bytes_is_malformed() {
        let template = template(40);
        let mut message = template.clone();
        write(
            &mut message,
            Stamp {
                phase: Phase::Warmup,
                seq: 1,
                sent_ns: 2,
            },
        );
        assert!(matches!(
            read(&message[..39], &template),
            Err(Malformed::Length { got: 39, want: 40 })
        ));
        let mut bad = message.clone();
        bad[0] = b'x';
        assert!(matches!(read(&bad, &template), Err(Malformed::Header(_))));
        let mut bad = message.clone();
        bad[5] = b'G';
        assert!(matches!(read(&bad, &template), Err(Malformed::Header(_))));
        let mut bad = message.clone();
        bad[39] ^= 1;
        assert_eq!(read(&bad, &template), Err(Malformed::Padding));
    }
}
