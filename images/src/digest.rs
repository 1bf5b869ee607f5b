//! Content digests: every blob is checked against the digest and size its descriptor names
//! before husk trusts it (sha256, sha384, sha512; anything else is refused, not skipped).
//!
//! Hashing is streaming ([`Verify`] wraps any reader), so a layer is never held in memory.

use std::io::{self, Read};

use oci_spec::image::{Digest, DigestAlgorithm};

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DigestError {
    #[error("unsupported digest algorithm {algorithm:?} in {digest} (husk verifies sha256, sha384 and sha512)")]
    Unsupported { digest: String, algorithm: String },
    #[error("digest mismatch: expected {expected}, content hashes to {actual}")]
    Mismatch { expected: String, actual: String },
    #[error(
        "size mismatch for {digest}: the descriptor says {expected} bytes, the blob has {actual}"
    )]
    Size {
        digest: String,
        expected: u64,
        /// What was read before the mismatch was noticed (more than `expected` means "at least").
        actual: u64,
    },
}

/// A running hash in the algorithm of one digest.
///
/// ring's assembly (SHA-NI where the CPU has it): hashing every layer twice (the blob, then the
/// uncompressed tar against its diff_id) took a third of `husk image unpack`'s CPU time with the
/// sha2 crate built at the workspace's opt-level "s".
#[derive(Clone)]
pub struct Hasher {
    ctx: ring::digest::Context,
    name: &'static str,
}

impl Hasher {
    /// A hasher for `digest`'s algorithm; unknown algorithms are an error, so nothing goes unchecked.
    pub fn for_digest(digest: &Digest) -> Result<Hasher, DigestError> {
        match digest.algorithm() {
            DigestAlgorithm::Sha256 => Ok(Hasher::new(&ring::digest::SHA256, "sha256")),
            DigestAlgorithm::Sha384 => Ok(Hasher::new(&ring::digest::SHA384, "sha384")),
            DigestAlgorithm::Sha512 => Ok(Hasher::new(&ring::digest::SHA512, "sha512")),
            other => Err(DigestError::Unsupported {
                digest: digest.to_string(),
                algorithm: other.to_string(),
            }),
        }
    }

    fn new(alg: &'static ring::digest::Algorithm, name: &'static str) -> Hasher {
        Hasher {
            ctx: ring::digest::Context::new(alg),
            name,
        }
    }

    pub fn sha256() -> Hasher {
        Hasher::new(&ring::digest::SHA256, "sha256")
    }

    pub fn sha512() -> Hasher {
        Hasher::new(&ring::digest::SHA512, "sha512")
    }

    pub fn update(&mut self, data: &[u8]) {
        self.ctx.update(data);
    }

    /// The digest as `algorithm:hex`.
    pub fn finish(self) -> String {
        format!("{}:{}", self.name, hex(self.ctx.finish().as_ref()))
    }
}

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// The sha256 digest of `data` as `sha256:hex`.
pub fn sha256_of(data: &[u8]) -> String {
    let mut h = Hasher::sha256();
    h.update(data);
    h.finish()
}

/// Check `data` (a small document already in memory) against a digest and size.
pub fn check(data: &[u8], digest: &Digest, size: Option<u64>) -> Result<(), DigestError> {
    if let Some(expected) = size {
        if data.len() as u64 != expected {
            return Err(DigestError::Size {
                digest: digest.to_string(),
                expected,
                actual: data.len() as u64,
            });
        }
    }
    let mut h = Hasher::for_digest(digest)?;
    h.update(data);
    compare(digest, h.finish())
}

/// `actual` (as `algorithm:hex`) against `expected`.
pub fn compare(expected: &Digest, actual: String) -> Result<(), DigestError> {
    if actual == expected.as_ref() {
        Ok(())
    } else {
        Err(DigestError::Mismatch {
            expected: expected.to_string(),
            actual,
        })
    }
}

/// A reader that hashes and counts what passes through and, at end of stream, fails with a
/// [`DigestError`] (inside an `io::Error` of kind `InvalidData`) unless digest and size match.
/// It also fails as soon as more than `size` bytes arrive, so an oversized blob is never read whole.
pub struct Verify<R> {
    inner: R,
    hasher: Option<Hasher>,
    expected: Digest,
    size: Option<u64>,
    count: u64,
}

impl<R: Read> Verify<R> {
    pub fn new(inner: R, expected: &Digest, size: Option<u64>) -> Result<Verify<R>, DigestError> {
        Ok(Verify {
            inner,
            hasher: Some(Hasher::for_digest(expected)?),
            expected: expected.clone(),
            size,
            count: 0,
        })
    }

    fn fail(e: DigestError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, e)
    }
}

impl<R: Read> Read for Verify<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(hasher) = self.hasher.as_mut() else {
            return Ok(0); // verified already: stay at end of stream
        };
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if let Some(expected) = self.size {
            if self.count > expected {
                return Err(Self::fail(DigestError::Size {
                    digest: self.expected.to_string(),
                    expected,
                    actual: self.count,
                }));
            }
        }
        if n > 0 {
            hasher.update(&buf[..n]);
            return Ok(n);
        }
        if let Some(expected) = self.size {
            if self.count != expected {
                return Err(Self::fail(DigestError::Size {
                    digest: self.expected.to_string(),
                    expected,
                    actual: self.count,
                }));
            }
        }
        let Some(hasher) = self.hasher.take() else {
            return Ok(0);
        };
        compare(&self.expected, hasher.finish()).map_err(Self::fail)?;
        Ok(0)
    }
}

/// The [`DigestError`] inside an I/O error from [`Verify`], if that is what it carries.
pub fn from_io(e: &io::Error) -> Option<DigestError> {
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>())
        .cloned()
}

/// Read `r` to the end through a [`Verify`]: the whole-blob check done before a layer is
/// decompressed, so no decoder ever sees unverified bytes.
pub fn verify_stream<R: Read>(r: R, digest: &Digest, size: u64) -> io::Result<()> {
    let mut v = Verify::new(r, digest, Some(size)).map_err(Verify::<R>::fail)?;
    let mut buf = vec![0u8; 1 << 20];
    while v.read(&mut buf)? > 0 {}
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Digest {
        Digest::from_str(s).unwrap()
    }

    const HELLO256: &str =
        "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn checks_sha256_and_size() {
        assert_eq!(sha256_of(b"hello"), HELLO256);
        check(b"hello", &d(HELLO256), Some(5)).unwrap();
        assert!(matches!(
            check(b"hello", &d(HELLO256), Some(6)),
            Err(DigestError::Size { expected: 6, .. })
        ));
        assert!(matches!(
            check(b"hellO", &d(HELLO256), None),
            Err(DigestError::Mismatch { .. })
        ));
    }

    #[test]
    fn checks_sha512() {
        let mut h = Hasher::sha512();
        h.update(b"hello");
        let dg = h.finish();
        assert!(dg.starts_with("sha512:9b71d224bd62f378"));
        check(b"hello", &d(&dg), Some(5)).unwrap();
        assert!(check(b"hell", &d(&dg), None).is_err());
    }

    #[test]
    fn refuses_unknown_algorithm() {
        let e = check(b"x", &d("md5+x:abcd"), None).unwrap_err();
        assert!(matches!(e, DigestError::Unsupported { .. }), "{e}");
    }

    #[test]
    fn verify_reader_fails_at_end_on_mismatch_and_early_on_oversize() {
        let mut out = Vec::new();
        let mut v = Verify::new(&b"hello"[..], &d(HELLO256), Some(5)).unwrap();
        v.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");

        let mut v = Verify::new(&b"hellO"[..], &d(HELLO256), Some(5)).unwrap();
        let e = v.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(from_io(&e), Some(DigestError::Mismatch { .. })));

        let big = [0u8; 100];
        let mut v = Verify::new(&big[..], &d(HELLO256), Some(5)).unwrap();
        let e = v.read_to_end(&mut Vec::new()).unwrap_err();
        assert!(matches!(from_io(&e), Some(DigestError::Size { .. })), "{e}");
    }
}
