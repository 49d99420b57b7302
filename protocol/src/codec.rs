//! A strict binary codec.
//!
//! Every integer is fixed-width big-endian and every variable-length field is
//! preceded by an exact length, so each value has one encoding. Decoding goes
//! through [`Codec::decode_exact`], which also rejects trailing bytes and
//! re-encodes the value to compare it with the input: any field whose decoder
//! accepts more than one byte pattern for a value (a flag byte, an ordering
//! rule) is caught there instead of in every caller.

use crate::error::InvalidMessage;
use std::fmt;
use std::ops::{Deref, Range};
use std::sync::Arc;

/// A type with one canonical byte encoding.
pub trait Codec: Sized {
    /// A name for error messages.
    const NAME: &'static str;

    /// Appends the canonical encoding of `self` to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Reads one value from the front of `r`.
    ///
    /// # Errors
    /// [`InvalidMessage`] if the bytes are not a valid encoding.
    fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage>;

    /// The canonical encoding as a new vector.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }

    /// Decodes exactly one value from `bytes`: no trailing bytes, and the value
    /// must re-encode to `bytes`.
    ///
    /// # Errors
    /// [`InvalidMessage::TrailingBytes`], [`InvalidMessage::NonCanonical`], or
    /// whatever [`Codec::read`] returns.
    fn decode_exact(bytes: &[u8]) -> Result<Self, InvalidMessage> {
        let mut r = Reader::new(bytes);
        let value = Self::read(&mut r)?;
        r.finish()?;
        let mut again = Vec::with_capacity(bytes.len());
        value.encode(&mut again);
        if again != bytes {
            return Err(InvalidMessage::NonCanonical(Self::NAME));
        }
        Ok(value)
    }
}

/// A cursor over received bytes. Every read is bounds-checked and returns
/// [`InvalidMessage::Truncated`] instead of panicking.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `buf`.
    #[must_use]
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    /// How many bytes have been read.
    #[must_use]
    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes read from `start` (an earlier [`Reader::position`]) up to
    /// here.
    #[must_use]
    pub fn read_since(&self, start: usize) -> &'a [u8] {
        &self.buf[start.min(self.pos)..self.pos]
    }

    /// How many bytes are left.
    #[must_use]
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next `n` bytes.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`] if fewer than `n` bytes are left.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], InvalidMessage> {
        if n > self.remaining() {
            return Err(InvalidMessage::Truncated {
                needed: n - self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// The next `N` bytes as an array.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`].
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], InvalidMessage> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`].
    pub fn u8(&mut self) -> Result<u8, InvalidMessage> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian `u16`.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`].
    pub fn u16(&mut self) -> Result<u16, InvalidMessage> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    /// A big-endian `u32`.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`].
    pub fn u32(&mut self) -> Result<u32, InvalidMessage> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    /// A big-endian `u64`.
    ///
    /// # Errors
    /// [`InvalidMessage::Truncated`].
    pub fn u64(&mut self) -> Result<u64, InvalidMessage> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A `u32` length prefix followed by that many bytes, at most `limit`.
    ///
    /// # Errors
    /// [`InvalidMessage::Oversize`] (checked before anything is allocated or
    /// read) or [`InvalidMessage::Truncated`].
    pub fn bytes_u32(
        &mut self,
        what: &'static str,
        limit: usize,
    ) -> Result<&'a [u8], InvalidMessage> {
        let len = usize::try_from(self.u32()?).unwrap_or(usize::MAX);
        if len > limit {
            return Err(InvalidMessage::Oversize { what, len, limit });
        }
        self.take(len)
    }

    /// Succeeds only if every byte has been read.
    ///
    /// # Errors
    /// [`InvalidMessage::TrailingBytes`].
    pub fn finish(&self) -> Result<(), InvalidMessage> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(InvalidMessage::TrailingBytes { count }),
        }
    }
}

/// Appends a `u32` length prefix and the bytes. Callers enforce their limits
/// before encoding, so the length always fits.
pub(crate) fn put_bytes_u32(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u32::try_from(bytes.len()).expect("callers bound lengths far below 4 GiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A part of a shared buffer: what a received message holds (a certificate
/// in its frame) kept past the message without copying it. Many holders of
/// one gossiped message (every node of a simulation, every table of a
/// daemon) then share one allocation.
#[derive(Clone)]
pub struct SharedBytes {
    buf: Arc<[u8]>,
    range: Range<usize>,
}

impl SharedBytes {
    /// `buf[range]`, or `None` if the range does not lie within `buf`.
    #[must_use]
    pub fn new(buf: Arc<[u8]>, range: Range<usize>) -> Option<Self> {
        buf.get(range.clone())?;
        Some(Self { buf, range })
    }

    /// The whole buffer and where this part starts in it.
    #[must_use]
    pub fn parts(&self) -> (&Arc<[u8]>, usize) {
        (&self.buf, self.range.start)
    }
}

impl From<Vec<u8>> for SharedBytes {
    fn from(bytes: Vec<u8>) -> Self {
        let range = 0..bytes.len();
        Self {
            buf: bytes.into(),
            range,
        }
    }
}

impl Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

/// Equal when the bytes are, wherever they lie.
impl PartialEq for SharedBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for SharedBytes {}

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

impl fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SharedBytes({} bytes)", self.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Flagged(bool);

    impl Codec for Flagged {
        const NAME: &'static str = "flagged";
        fn encode(&self, out: &mut Vec<u8>) {
            out.push(u8::from(self.0));
        }
        // Deliberately lax, like a careless decoder: any non-zero byte is true.
        fn read(r: &mut Reader<'_>) -> Result<Self, InvalidMessage> {
            Ok(Self(r.u8()? != 0))
        }
    }

    #[test]
    fn shared_is_its_range_of_the_buffer_and_refuses_one_outside_it() {
        let buf: Arc<[u8]> = Arc::from(&[9u8, 1, 2, 3][..]);
        let part = SharedBytes::new(buf.clone(), 1..4).expect("in range");
        assert_eq!(&*part, &[1, 2, 3]);
        assert_eq!(Arc::strong_count(&buf), 2, "the part shares the buffer");
        assert!(SharedBytes::new(buf.clone(), 2..5).is_none());
        assert_eq!(SharedBytes::from(vec![1, 2, 3]), part);
    }

    #[test]
    fn decode_exact_catches_lax_decoders_and_trailing_bytes() {
        assert_eq!(Flagged::decode_exact(&[1]), Ok(Flagged(true)));
        assert_eq!(
            Flagged::decode_exact(&[2]),
            Err(InvalidMessage::NonCanonical("flagged"))
        );
        assert_eq!(
            Flagged::decode_exact(&[1, 0]),
            Err(InvalidMessage::TrailingBytes { count: 1 })
        );
        assert_eq!(
            Flagged::decode_exact(&[]),
            Err(InvalidMessage::Truncated { needed: 1 })
        );
    }

    #[test]
    fn length_prefix_is_checked_before_reading() {
        let mut buf = Vec::new();
        put_bytes_u32(&mut buf, b"hello");
        assert_eq!(Reader::new(&buf).bytes_u32("x", 5), Ok(&b"hello"[..]));
        assert_eq!(
            Reader::new(&buf).bytes_u32("x", 4),
            Err(InvalidMessage::Oversize {
                what: "x",
                len: 5,
                limit: 4
            })
        );
        // A huge declared length on a short buffer is an oversize error, not
        // an allocation or a panic.
        let huge = [0xff, 0xff, 0xff, 0xff, 1];
        assert!(matches!(
            Reader::new(&huge).bytes_u32("x", 1 << 20),
            Err(InvalidMessage::Oversize { .. })
        ));
    }
}
