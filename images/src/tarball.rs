//! A tar stream reader that reads what Go's `archive/tar` reads (the library behind umoci,
//! containerd, docker and podman), so that every layer those tools unpack unpacks here too.
//!
//! Formats: V7, ustar, star, GNU (long names `L`/`K`, old sparse `S` with extension blocks) and
//! PAX (`x` records for path, linkpath, size, uid, gid, mtime, `SCHILY.xattr.*`, and the GNU
//! sparse formats 0.0, 0.1 and 1.0). Global `g` headers are skipped, as containerd does.
//!
//! Ends as Go's reader does: at a zero block, or when the stream ends at a member boundary or
//! inside the padding after a member's data (umoci 0.4.7 writes layers that end right after
//! the last file's data). A stream that ends inside a header or a member's data is an error.
//!
//! Every buffer is bounded: the data of `x`, `L` and `K` members is read only up to
//! [`MAX_META`], a sparse map only up to [`MAX_FRAGMENTS`] fragments.

use std::io::{self, Read};

/// Largest PAX header or GNU long name/link member read (Go's `maxSpecialFileSize`).
pub const MAX_META: u64 = 1 << 20;
/// Most fragments a sparse map may have.
pub const MAX_FRAGMENTS: usize = 1 << 20;

const BLOCK: usize = 512;

/// PAX records (key, value), in order.
type Records = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, thiserror::Error)]
pub enum TarError {
    #[error("read the stream")]
    Io(#[source] io::Error),
    #[error(
        "not a tar archive: the first 512 bytes are not a tar header ({why}); the data starts with {start}"
    )]
    NotTar { why: &'static str, start: String },
    #[error("bad tar header at byte {offset}: {why}")]
    BadHeader { offset: u64, why: String },
    #[error("the stream ends inside the header at byte {offset}")]
    TruncatedHeader { offset: u64 },
    #[error(
        "the stream ends inside a member's data: {missing} of its {declared} bytes are missing"
    )]
    TruncatedData { declared: u64, missing: u64 },
    #[error("a {what} member of {size} bytes is larger than the limit of {MAX_META}")]
    MetaTooLarge { what: &'static str, size: u64 },
    #[error("PAX record {record:?}: {why}")]
    BadPax { record: String, why: &'static str },
    #[error(
        "sparse file: unsupported GNU sparse format {major:?}.{minor:?} (known: 0.0, 0.1, 1.0)"
    )]
    SparseVersion { major: String, minor: String },
    #[error("sparse file: bad sparse map: {why}")]
    SparseMap { why: String },
    #[error("entry {name:?}")]
    Named {
        name: String,
        #[source]
        source: Box<TarError>,
    },
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
    /// A type this reader does not unpack (GNU dump dir, volume label, ...): its byte.
    Other(u8),
}

/// One member, with the PAX and GNU extensions that preceded it applied.
#[derive(Debug, Clone)]
pub struct Header {
    /// The name as stored (not cleaned).
    pub name: Vec<u8>,
    pub link: Vec<u8>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    /// Seconds and nanoseconds.
    pub mtime: (i64, i64),
    /// The file's size: for a sparse file its logical size, holes included.
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// For a sparse file: its data fragments (offset, length), sorted, not overlapping, within
    /// `size`; the entry's data is these fragments one after the other.
    pub sparse: Option<Vec<(u64, u64)>>,
    /// Where the header starts in the stream.
    pub offset: u64,
}

/// Reads members one by one: [`Reader::next_header`], then [`Reader::read_data`] for its data.
pub struct Reader<R> {
    r: R,
    /// Bytes consumed from `r`.
    pos: u64,
    /// Data bytes of the current member not yet read, and the padding after them.
    remaining: u64,
    declared: u64,
    pad: u64,
    done: bool,
    block: [u8; BLOCK],
}

impl<R: Read> Reader<R> {
    pub fn new(r: R) -> Reader<R> {
        Reader {
            r,
            pos: 0,
            remaining: 0,
            declared: 0,
            pad: 0,
            done: false,
            block: [0; BLOCK],
        }
    }

    /// The underlying reader (after the end of the archive once `next_header` gave None).
    pub fn into_inner(self) -> R {
        self.r
    }

    /// Bytes of the stream consumed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Read the current member's (remaining) data into `buf`; 0 at its end. A stream that ends
    /// before the declared size is [`TarError::TruncatedData`].
    pub fn read_data(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        loop {
            match self.r.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(TarError::TruncatedData {
                        declared: self.declared,
                        missing: self.remaining,
                    })
                }
                Ok(n) => {
                    self.remaining -= n as u64;
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
    }

    /// Skip the rest of the current member's data without reading it: `seek(r, n)` moves `r`
    /// on by `n` bytes, or returns how many of them the stream lacks.
    pub fn skip_data_by(
        &mut self,
        seek: impl FnOnce(&mut R, u64) -> Result<(), u64>,
    ) -> Result<(), TarError> {
        let n = self.remaining;
        if n == 0 {
            return Ok(());
        }
        seek(&mut self.r, n).map_err(|missing| TarError::TruncatedData {
            declared: self.declared,
            missing,
        })?;
        self.pos += n;
        self.remaining = 0;
        Ok(())
    }

    /// Skip the rest of the current member's data (it must all be there).
    fn skip_data(&mut self) -> Result<(), TarError> {
        let mut buf = [0u8; 8192];
        while self.remaining > 0 {
            self.read_data(&mut buf)?;
        }
        Ok(())
    }

    /// Read up to `buf.len()` bytes; fewer only at the end of the stream.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let mut n = 0;
        while n < buf.len() {
            match self.r.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
        self.pos += n as u64;
        Ok(n)
    }

    /// The next block; None at a clean end of stream.
    fn read_block(&mut self) -> Result<Option<[u8; BLOCK]>, TarError> {
        let offset = self.pos;
        let mut b = self.block;
        match self.fill(&mut b)? {
            0 => Ok(None),
            BLOCK => Ok(Some(b)),
            _ => Err(TarError::TruncatedHeader { offset }),
        }
    }

    /// Start a member's data: `size` bytes then padding to the next block.
    fn begin_data(&mut self, size: u64) {
        self.remaining = size;
        self.declared = size;
        self.pad = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
    }

    /// Finish the current member: its data must be complete; its padding may be cut short,
    /// which ends the archive (as in Go's reader).
    fn finish_member(&mut self) -> Result<bool, TarError> {
        self.skip_data()?;
        let mut pad = [0u8; BLOCK];
        let want = usize::try_from(self.pad).unwrap_or(0);
        self.pad = 0;
        Ok(self.fill(&mut pad[..want])? == want)
    }

    /// The data of a metadata member (PAX, long name), bounded.
    fn meta_data(&mut self, what: &'static str, size: u64) -> Result<Vec<u8>, TarError> {
        if size > MAX_META {
            return Err(TarError::MetaTooLarge { what, size });
        }
        self.begin_data(size);
        let mut v = vec![0u8; size as usize];
        let mut n = 0;
        while n < v.len() {
            n += self.read_data(&mut v[n..])?;
        }
        Ok(v)
    }

    /// The next member, or None at the end of the archive.
    pub fn next_header(&mut self) -> Result<Option<Header>, TarError> {
        if self.done {
            return Ok(None);
        }
        let mut pax: Option<Records> = None;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        loop {
            if !self.finish_member()? {
                return self.end(pax.is_some() || long_name.is_some() || long_link.is_some());
            }
            let offset = self.pos;
            let Some(b) = self.read_block()? else {
                return self.end(pax.is_some() || long_name.is_some() || long_link.is_some());
            };
            if b.iter().all(|&c| c == 0) {
                return self.end(pax.is_some() || long_name.is_some() || long_link.is_some());
            }
            check_sum(&b, offset)?;
            let bad = |why: String| TarError::BadHeader { offset, why };
            let size = numeric(&b[124..136]).map_err(|w| bad(format!("size: {w}")))?;
            match b[156] {
                b'x' => {
                    let data = self.meta_data("PAX header", size)?;
                    pax = Some(parse_pax(&data)?);
                    continue;
                }
                b'g' => {
                    // Global PAX headers: skipped (containerd ignores them too).
                    self.begin_data(size);
                    continue;
                }
                b'L' => {
                    long_name = Some(cstr(&self.meta_data("GNU long name", size)?).to_vec());
                    continue;
                }
                b'K' => {
                    long_link = Some(cstr(&self.meta_data("GNU long link", size)?).to_vec());
                    continue;
                }
                _ => {}
            }
            return self
                .header(&b, offset, size, pax, long_name, long_link)
                .map(Some);
        }
    }

    fn end(&mut self, pending: bool) -> Result<Option<Header>, TarError> {
        self.done = true;
        if pending {
            return Err(TarError::BadHeader {
                offset: self.pos,
                why: "the archive ends after an extended header, before the member it describes"
                    .into(),
            });
        }
        Ok(None)
    }

    fn header(
        &mut self,
        b: &[u8; BLOCK],
        offset: u64,
        size: u64,
        pax: Option<Records>,
        long_name: Option<Vec<u8>>,
        long_link: Option<Vec<u8>>,
    ) -> Result<Header, TarError> {
        let bad = |why: String| TarError::BadHeader { offset, why };
        let num = |field: &'static str, r: std::ops::Range<usize>| {
            numeric(&b[r]).map_err(|w| TarError::BadHeader {
                offset,
                why: format!("{field}: {w}"),
            })
        };
        let magic = &b[257..265];
        let ustar = &magic[..6] == b"ustar\0";
        let gnu = magic == b"ustar  \0";
        let star = ustar && &b[508..512] == b"tar\0";
        let mut name = cstr(&b[0..100]).to_vec();
        if ustar {
            let prefix = if star {
                cstr(&b[345..476])
            } else {
                cstr(&b[345..500])
            };
            if !prefix.is_empty() {
                let mut p = prefix.to_vec();
                p.push(b'/');
                p.extend_from_slice(&name);
                name = p;
            }
        }
        let mut h = Header {
            name,
            link: cstr(&b[157..257]).to_vec(),
            kind: Kind::File,
            mode: (num("mode", 100..108)? & 0o7777) as u32,
            uid: num("uid", 108..116)?,
            gid: num("gid", 116..124)?,
            mtime: (
                i64::try_from(num("mtime", 136..148)?).unwrap_or(i64::MAX),
                0,
            ),
            size,
            dev_major: 0,
            dev_minor: 0,
            xattrs: Vec::new(),
            sparse: None,
            offset,
        };
        let flag = b[156];
        h.kind = match flag {
            b'0' | b'7' | 0 => Kind::File,
            b'1' => Kind::HardLink,
            b'2' => Kind::Symlink,
            b'3' => Kind::Char,
            b'4' => Kind::Block,
            b'5' => Kind::Dir,
            b'6' => Kind::Fifo,
            b'S' => Kind::File,
            other => Kind::Other(other),
        };
        if matches!(h.kind, Kind::Char | Kind::Block) && (ustar || gnu) {
            let dev = |r| {
                u32::try_from(num("device number", r)?)
                    .map_err(|_| bad("device number out of range".into()))
            };
            h.dev_major = dev(329..337)?;
            h.dev_minor = dev(337..345)?;
        }
        if let Some(n) = long_name {
            h.name = n;
        }
        if let Some(l) = long_link {
            h.link = l;
        }
        // The physical data that follows: none for types that carry none, whatever the size
        // field says (as Go's reader).
        let header_only = matches!(
            h.kind,
            Kind::HardLink | Kind::Symlink | Kind::Char | Kind::Block | Kind::Dir | Kind::Fifo
        );
        let mut physical = if header_only { 0 } else { size };
        if flag == b'S' {
            let mut map = Vec::new();
            old_gnu_sparse(&b[386..482], &mut map, offset)?;
            let mut more = b[482] != 0;
            while more {
                let ext_offset = self.pos;
                let Some(ext) = self.read_block()? else {
                    return Err(TarError::TruncatedHeader { offset: ext_offset });
                };
                old_gnu_sparse(&ext[..504], &mut map, ext_offset)?;
                more = ext[504] != 0;
                if map.len() > MAX_FRAGMENTS {
                    return Err(TarError::SparseMap {
                        why: format!("more than {MAX_FRAGMENTS} fragments"),
                    });
                }
            }
            h.size = numeric(&b[483..495]).map_err(|w| bad(format!("sparse real size: {w}")))?;
            h.sparse = Some(map);
        }
        let mut sparse_pax = SparsePax::default();
        if let Some(records) = pax {
            for (k, v) in records {
                let parse = |v: &[u8]| -> Result<u64, TarError> {
                    std::str::from_utf8(v)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| TarError::BadPax {
                            record: format!(
                                "{}={}",
                                String::from_utf8_lossy(&k),
                                String::from_utf8_lossy(v)
                            ),
                            why: "not a decimal number",
                        })
                };
                match k.as_slice() {
                    b"path" => h.name = v,
                    b"linkpath" => h.link = v,
                    b"size" => {
                        h.size = parse(&v)?;
                        if !header_only {
                            physical = h.size;
                        }
                    }
                    b"uid" => h.uid = parse(&v)?,
                    b"gid" => h.gid = parse(&v)?,
                    b"mtime" => {
                        h.mtime = parse_time(&v).ok_or_else(|| TarError::BadPax {
                            record: format!("mtime={}", String::from_utf8_lossy(&v)),
                            why: "not a time",
                        })?
                    }
                    b"GNU.sparse.major" => sparse_pax.major = Some(v),
                    b"GNU.sparse.minor" => sparse_pax.minor = Some(v),
                    b"GNU.sparse.name" => sparse_pax.name = Some(v),
                    b"GNU.sparse.size" | b"GNU.sparse.realsize" => {
                        sparse_pax.size = Some(parse(&v)?)
                    }
                    b"GNU.sparse.map" => sparse_pax.map = Some(v),
                    b"GNU.sparse.offset" | b"GNU.sparse.numbytes" => {
                        sparse_pax.pairs.push((k.clone(), v))
                    }
                    _ => {
                        if let Some(x) = k.strip_prefix(b"SCHILY.xattr.") {
                            h.xattrs.push((x.to_vec(), v));
                        }
                    }
                }
            }
        }
        // An old-style regular file named with a trailing slash is a directory (as Go's reader,
        // after the PAX and GNU names are applied).
        if flag == 0 && h.name.ends_with(b"/") {
            h.kind = Kind::Dir;
            physical = 0;
        }
        self.begin_data(physical);
        self.sparse(&mut h, sparse_pax)
            .map_err(|source| TarError::Named {
                name: String::from_utf8_lossy(&h.name).into_owned(),
                source: Box::new(source),
            })?;
        Ok(h)
    }

    /// Apply a PAX sparse map (read from the data for format 1.0) and check any sparse map.
    fn sparse(&mut self, h: &mut Header, mut sp: SparsePax) -> Result<(), TarError> {
        if let Some(version) = sp.version()? {
            if let Some(n) = sp.name.take() {
                h.name = n;
            }
            if let Some(s) = sp.size {
                h.size = s;
            }
            h.sparse = Some(match version {
                Version::V1 => self.sparse_map_1x0()?,
                Version::V0 => sp.map_0x()?,
            });
        }
        if let Some(map) = &h.sparse {
            if h.kind != Kind::File {
                return Err(TarError::SparseMap {
                    why: "a sparse map on an entry that is not a regular file".into(),
                });
            }
            validate_sparse(map, h.size, self.remaining)?;
        }
        Ok(())
    }

    /// A PAX 1.0 sparse map, at the start of the data: decimal numbers, one a line, the count
    /// first, padded to a block.
    fn sparse_map_1x0(&mut self) -> Result<Vec<(u64, u64)>, TarError> {
        let mut text: Vec<u8> = Vec::new();
        let mut at = 0usize;
        let mut next_number = |this: &mut Self, text: &mut Vec<u8>| -> Result<u64, TarError> {
            loop {
                if let Some(nl) = text[at..].iter().position(|&c| c == b'\n') {
                    let s = &text[at..at + nl];
                    at += nl + 1;
                    return std::str::from_utf8(s)
                        .ok()
                        .filter(|s| !s.is_empty() && s.len() <= 20)
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| TarError::SparseMap {
                            why: format!("{:?} is not a number", String::from_utf8_lossy(s)),
                        });
                }
                if this.remaining < BLOCK as u64 {
                    return Err(TarError::SparseMap {
                        why: "the map runs past the entry's data".into(),
                    });
                }
                let mut blk = [0u8; BLOCK];
                let mut n = 0;
                while n < BLOCK {
                    n += this.read_data(&mut blk[n..])?;
                }
                text.extend_from_slice(&blk);
            }
        };
        let count = next_number(self, &mut text)?;
        if count > MAX_FRAGMENTS as u64 {
            return Err(TarError::SparseMap {
                why: format!("{count} fragments, more than {MAX_FRAGMENTS}"),
            });
        }
        // The count is the archive's word: grow as fragments arrive, not up front.
        let mut map = Vec::with_capacity((count as usize).min(1024));
        for _ in 0..count {
            let off = next_number(self, &mut text)?;
            let len = next_number(self, &mut text)?;
            map.push((off, len));
        }
        // What is left of the last block read is padding.
        Ok(map)
    }
}

#[derive(Default)]
struct SparsePax {
    major: Option<Vec<u8>>,
    minor: Option<Vec<u8>>,
    name: Option<Vec<u8>>,
    size: Option<u64>,
    map: Option<Vec<u8>>,
    pairs: Vec<(Vec<u8>, Vec<u8>)>,
}

enum Version {
    V0,
    V1,
}

impl SparsePax {
    /// Which GNU sparse format the records describe, if any (as Go's reader decides).
    fn version(&self) -> Result<Option<Version>, TarError> {
        let s = |v: &Option<Vec<u8>>| {
            v.as_deref()
                .map(|b| String::from_utf8_lossy(b).into_owned())
        };
        match (s(&self.major).as_deref(), s(&self.minor).as_deref()) {
            (Some("0"), Some("0" | "1")) => Ok(Some(Version::V0)),
            (Some("1"), Some("0")) => Ok(Some(Version::V1)),
            (None, None) if self.map.is_some() || !self.pairs.is_empty() => Ok(Some(Version::V0)),
            (None, None) => Ok(None),
            (major, minor) => Err(TarError::SparseVersion {
                major: major.unwrap_or("").into(),
                minor: minor.unwrap_or("").into(),
            }),
        }
    }

    /// The map of formats 0.0 (offset/numbytes records in turn) and 0.1 (GNU.sparse.map).
    fn map_0x(&self) -> Result<Vec<(u64, u64)>, TarError> {
        let bad = |why: String| TarError::SparseMap { why };
        let num = |v: &[u8]| -> Result<u64, TarError> {
            std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .ok_or_else(|| bad(format!("{:?} is not a number", String::from_utf8_lossy(v))))
        };
        let mut numbers = Vec::new();
        if let Some(m) = &self.map {
            if !m.is_empty() {
                for part in m.split(|&c| c == b',') {
                    numbers.push(num(part)?);
                    if numbers.len() > 2 * MAX_FRAGMENTS {
                        return Err(bad(format!("more than {MAX_FRAGMENTS} fragments")));
                    }
                }
            }
        } else {
            for (i, (k, v)) in self.pairs.iter().enumerate() {
                let want: &[u8] = if i % 2 == 0 {
                    b"GNU.sparse.offset"
                } else {
                    b"GNU.sparse.numbytes"
                };
                if k != want {
                    return Err(bad(
                        "GNU.sparse.offset and GNU.sparse.numbytes records do not alternate".into(),
                    ));
                }
                numbers.push(num(v)?);
            }
        }
        if numbers.len() % 2 != 0 {
            return Err(bad("an odd count of numbers".into()));
        }
        Ok(numbers.chunks(2).map(|c| (c[0], c[1])).collect())
    }
}

/// Fragments in order, not overlapping, inside the file, and exactly as many data bytes as
/// the entry carries.
fn validate_sparse(map: &[(u64, u64)], size: u64, physical: u64) -> Result<(), TarError> {
    let bad = |why: String| Err(TarError::SparseMap { why });
    let mut end = 0u64;
    let mut data = 0u64;
    for &(off, len) in map {
        let Some(e) = off.checked_add(len) else {
            return bad(format!("fragment {off}+{len} overflows"));
        };
        if off < end {
            return bad(format!(
                "fragment at {off} overlaps or precedes the one before"
            ));
        }
        if e > size {
            return bad(format!(
                "fragment {off}+{len} ends past the file's size {size}"
            ));
        }
        end = e;
        data += len;
    }
    if data != physical {
        return bad(format!(
            "the fragments hold {data} bytes but the entry carries {physical}"
        ));
    }
    Ok(())
}

/// Entries of an old GNU sparse map (24 bytes each: offset, length), up to the first empty one.
fn old_gnu_sparse(area: &[u8], map: &mut Vec<(u64, u64)>, offset: u64) -> Result<(), TarError> {
    for e in area.chunks_exact(24) {
        if e[0] == 0 {
            return Ok(());
        }
        let bad = |w: String| TarError::BadHeader {
            offset,
            why: format!("sparse map: {w}"),
        };
        let off = numeric(&e[..12]).map_err(bad)?;
        let len = numeric(&e[12..]).map_err(bad)?;
        map.push((off, len));
    }
    Ok(())
}

/// Header checksum: unsigned or (as some old tars wrote) signed sum, with the field as spaces.
fn check_sum(b: &[u8; BLOCK], offset: u64) -> Result<(), TarError> {
    let mut unsigned = 0u64;
    let mut signed = 0i64;
    for (i, &c) in b.iter().enumerate() {
        let c = if (148..156).contains(&i) { b' ' } else { c };
        unsigned += u64::from(c);
        signed += i64::from(c as i8);
    }
    let stored = numeric(&b[148..156]).ok();
    if stored == Some(unsigned) || stored.and_then(|s| i64::try_from(s).ok()) == Some(signed) {
        return Ok(());
    }
    let why = if stored.is_none() {
        "the checksum field is not a number"
    } else {
        "checksum mismatch"
    };
    if offset == 0 {
        return Err(TarError::NotTar {
            why,
            start: describe_start(b),
        });
    }
    Err(TarError::BadHeader {
        offset,
        why: why.into(),
    })
}

/// The first bytes of a non-tar stream, named when recognized.
fn describe_start(b: &[u8]) -> String {
    let known: &[(&[u8], &str)] = &[
        (b"\x7fELF", "an ELF executable"),
        (
            b"\x1f\x8b",
            "gzip (a compressed layer declared as uncompressed?)",
        ),
        (
            b"\x28\xb5\x2f\xfd",
            "zstd (a compressed layer declared as uncompressed?)",
        ),
        (b"PK\x03\x04", "a zip archive"),
        (b"BZh", "bzip2 (not an OCI layer compression)"),
        (b"\xfd7zXZ\0", "xz (not an OCI layer compression)"),
        (b"{", "JSON"),
    ];
    for (magic, what) in known {
        if b.starts_with(magic) {
            return (*what).to_string();
        }
    }
    let head: String = b[..16]
        .iter()
        .flat_map(|&c| std::ascii::escape_default(c))
        .map(char::from)
        .collect();
    format!("\"{head}\"")
}

/// The bytes of a NUL-terminated field.
fn cstr(f: &[u8]) -> &[u8] {
    match f.iter().position(|&c| c == 0) {
        Some(n) => &f[..n],
        None => f,
    }
}

/// A numeric field: octal (spaces and NULs around it allowed) or base-256 (high bit set).
fn numeric(f: &[u8]) -> Result<u64, String> {
    if f.first().is_some_and(|&c| c & 0x80 != 0) {
        if f[0] & 0x40 != 0 {
            return Err("negative base-256 number".into());
        }
        let mut v: u64 = u64::from(f[0] & 0x3f);
        for &c in &f[1..] {
            v = v
                .checked_mul(256)
                .and_then(|v| v.checked_add(u64::from(c)))
                .ok_or("base-256 number out of range")?;
        }
        return Ok(v);
    }
    // As Go's parseOctal: spaces and NULs around the digits, nothing else.
    let pad = |c: &u8| *c == b' ' || *c == 0;
    let start = f.iter().position(|c| !pad(c)).unwrap_or(f.len());
    let end = f.iter().rposition(|c| !pad(c)).map_or(start, |e| e + 1);
    let t = &f[start..end];
    if t.is_empty() {
        return Ok(0);
    }
    if !t.iter().all(|c| (b'0'..=b'7').contains(c)) {
        return Err(format!(
            "{:?} is not an octal number",
            String::from_utf8_lossy(&f[..f.len().min(12)])
        ));
    }
    u64::from_str_radix(std::str::from_utf8(t).unwrap_or("x"), 8)
        .map_err(|_| "octal number out of range".into())
}

/// PAX records: "LEN KEY=VALUE\n", LEN counting the whole record.
fn parse_pax(mut data: &[u8]) -> Result<Records, TarError> {
    let mut out = Vec::new();
    let bad = |r: &[u8], why| TarError::BadPax {
        record: String::from_utf8_lossy(&r[..r.len().min(64)]).into_owned(),
        why,
    };
    // Trailing NULs pad some writers' records.
    data = &data[..data.iter().rposition(|&c| c != 0).map_or(0, |e| e + 1)];
    while !data.is_empty() {
        let sp = data
            .iter()
            .position(|&c| c == b' ')
            .ok_or_else(|| bad(data, "no length"))?;
        let len: usize = std::str::from_utf8(&data[..sp])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(data, "the length is not a number"))?;
        if len <= sp + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err(bad(data, "the length does not match the record"));
        }
        let rec = &data[sp + 1..len - 1];
        let eq = rec
            .iter()
            .position(|&c| c == b'=')
            .ok_or_else(|| bad(rec, "no '='"))?;
        let key = rec[..eq].to_vec();
        let value = rec[eq + 1..].to_vec();
        if key == b"GNU.sparse.offset" || key == b"GNU.sparse.numbytes" {
            // Repeated in turn (format 0.0): keep them all, in order.
            out.push((key, value));
        } else if let Some(slot) = out.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        } else {
            out.push((key, value));
        }
        data = &data[len..];
    }
    Ok(out)
}

/// A PAX time, "[-]seconds[.fraction]".
pub fn parse_time(v: &[u8]) -> Option<(i64, i64)> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let digits: String = frac.chars().take(9).collect();
    let mut nanos = if digits.is_empty() {
        0
    } else {
        digits.parse::<i64>().ok()? * 10i64.pow(9 - digits.len() as u32)
    };
    let mut secs = secs;
    if s.starts_with('-') && nanos > 0 {
        secs -= 1;
        nanos = 1_000_000_000 - nanos;
    }
    Some((secs, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(data: &[u8]) -> Result<Vec<(Header, Vec<u8>)>, TarError> {
        let mut r = Reader::new(data);
        let mut out = Vec::new();
        while let Some(h) = r.next_header()? {
            let mut d = Vec::new();
            let mut buf = [0u8; 100];
            loop {
                let n = r.read_data(&mut buf)?;
                if n == 0 {
                    break;
                }
                d.extend_from_slice(&buf[..n]);
            }
            out.push((h, d));
        }
        Ok(out)
    }

    fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(5);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn reads_members_and_ends_at_boundaries() {
        let t = tar_of(&[("a", b"hello"), ("b/c", &[7u8; 600])]);
        let got = all(&t).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].0.name, b"a");
        assert_eq!(got[0].1, b"hello");
        assert_eq!(got[1].1, vec![7u8; 600]);
        // Without end blocks, without padding, or cut inside the padding: a clean end.
        let data_end = 512 + 512 + 512 + 600;
        for cut in [data_end, data_end + 100, 2048 + 1024] {
            assert_eq!(all(&t[..cut]).unwrap().len(), 2, "cut at {cut}");
        }
        // Cut inside the data or a header: an error.
        assert!(matches!(
            all(&t[..data_end - 1]),
            Err(TarError::TruncatedData { missing: 1, .. })
        ));
        assert!(matches!(
            all(&t[..1024 + 100]),
            Err(TarError::TruncatedHeader { .. })
        ));
    }

    #[test]
    fn not_a_tar_says_so() {
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(4096, 1);
        let e = all(&elf).unwrap_err().to_string();
        assert!(e.contains("not a tar archive") && e.contains("ELF"), "{e}");
    }

    #[test]
    fn numeric_fields() {
        assert_eq!(numeric(b"0000644\0"), Ok(0o644));
        assert_eq!(numeric(b"  644 \0"), Ok(0o644));
        assert_eq!(numeric(b"\0\0\0"), Ok(0));
        assert_eq!(numeric(&[0x80, 0, 0, 1, 0]), Ok(256));
        assert!(numeric(b"12x").is_err());
    }

    #[test]
    fn pax_records_and_times() {
        let r = parse_pax(b"11 path=ab\n17 uid=123456789\n").unwrap();
        assert_eq!(r[0], (b"path".to_vec(), b"ab".to_vec()));
        assert!(parse_pax(b"99 path=ab\n").is_err());
        assert_eq!(parse_time(b"12.5"), Some((12, 500_000_000)));
        assert_eq!(parse_time(b"-1.25"), Some((-2, 750_000_000)));
        assert_eq!(parse_time(b"x"), None);
    }

    #[test]
    fn sparse_maps_are_checked() {
        assert!(validate_sparse(&[(0, 5), (10, 5)], 20, 10).is_ok());
        assert!(validate_sparse(&[(10, 5), (0, 5)], 20, 10).is_err());
        assert!(validate_sparse(&[(0, 5), (18, 5)], 20, 10).is_err());
        assert!(validate_sparse(&[(0, 5)], 20, 10).is_err());
        assert!(validate_sparse(&[(u64::MAX, 5)], 20, 5).is_err());
    }

    /// Mutated archives (headers re-checksummed so the mutation is parsed, not just refused)
    /// give an error or entries, never a panic or an endless loop.
    #[test]
    fn mutations_never_panic() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "a/".to_string() + &"n".repeat(150), &b"abc"[..])
            .unwrap();
        b.append_pax_extensions([
            ("GNU.sparse.major", &b"1"[..]),
            ("GNU.sparse.minor", &b"0"[..]),
            ("GNU.sparse.name", &b"sp"[..]),
            ("GNU.sparse.realsize", &b"100"[..]),
        ])
        .unwrap();
        let mut h = tar::Header::new_ustar();
        let data = [b"1\n10\n5\n".as_slice(), &[0u8; 505], b"hello"].concat();
        h.set_size(data.len() as u64);
        b.append_data(&mut h, "GNUSparseFile.0/sp", &data[..])
            .unwrap();
        let base = b.into_inner().unwrap();
        let got = all(&base).unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0.name, b"sp");
        assert_eq!(got[1].0.sparse, Some(vec![(10, 5)]));
        assert_eq!(got[1].1, b"hello");
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..10_000 {
            let mut t = base.clone();
            for _ in 0..1 + rand() % 4 {
                let at = (rand() as usize) % t.len();
                t[at] = match rand() % 4 {
                    0 => 0,
                    1 => b'7',
                    2 => 0xff,
                    _ => rand() as u8,
                };
            }
            // Re-seal every block that has a checksum field that parsed before.
            for blk in t.chunks_mut(BLOCK) {
                if blk.len() == BLOCK && blk[257..262] == *b"ustar" {
                    blk[148..156].copy_from_slice(b"        ");
                    let sum: u64 = blk.iter().map(|&c| u64::from(c)).sum();
                    blk[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
                }
            }
            let cut = (rand() as usize) % (t.len() + 1);
            let _ = all(&t);
            let _ = all(&t[..cut]);
        }
    }
}
