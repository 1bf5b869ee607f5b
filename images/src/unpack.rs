//! Image → bundle: the layer pipeline and the bundle's lifecycle.
//!
//! One thread per layer in flight reads the blob, verifies it against its digest and size, then
//! decompresses it, hashing the output against the config's diff_id, and streams it in 256 KiB
//! chunks over a bounded channel; the calling thread applies the layers in order. So layer N+1
//! is verified and decompressed while layer N is written, and memory stays bounded (a few MiB per
//! layer in flight) whatever the layer sizes. A layer whose stream fails verification at its end
//! fails the unpack, and a failed unpack removes everything it wrote.

use std::fs;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use oci_spec::image::Digest;
use serde_json::Value;

use crate::config::{self, ConfigError};
use crate::confine::{ConfineError, Root};
use crate::digest::{self, DigestError, Hasher};
use crate::layer::{Applier, Bounds, LayerError, LayerStats};
use crate::layout::{Compression, Image, Layer, SourceError, Store};

const CHUNK: usize = 256 * 1024;
/// Chunks buffered per layer in flight.
const CHANNEL_DEPTH: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("bundle {path:?} already has {what}; remove it first")]
    BundleInUse { path: PathBuf, what: &'static str },
    #[error("create {path:?}")]
    Create {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Confine(#[from] ConfineError),
    #[error("layer {index} ({name})")]
    Layer {
        index: usize,
        name: String,
        #[source]
        source: Box<LayerFailure>,
    },
    #[error(transparent)]
    Config(#[from] ConfigError),
}

#[derive(Debug, thiserror::Error)]
pub enum LayerFailure {
    #[error(transparent)]
    Blob(#[from] BlobError),
    #[error(transparent)]
    Apply(#[from] LayerError),
}

/// What went wrong reading a layer blob (in its thread).
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error(transparent)]
    Source(#[from] SourceError),
    #[error("verify the blob")]
    Verify(#[source] DigestError),
    #[error("read the blob")]
    Read(#[source] io::Error),
    #[error("verify the uncompressed layer against the config's diff_id")]
    DiffId(#[source] DigestError),
    #[error("decompress the layer ({compression:?})")]
    Decode {
        compression: Compression,
        #[source]
        source: io::Error,
    },
    #[error("the layer's reading thread stopped")]
    Stopped,
}

/// How to unpack.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// The spec to start `config.json` from (`husk spec`'s default, from the runtime).
    pub default_spec: Value,
    /// Replace the image's Cmd with these arguments (the Entrypoint stays).
    pub args: Option<Vec<String>>,
    pub terminal: bool,
    /// Apply owners from the image (default: when running as root).
    pub chown: Option<bool>,
    /// Stop (and remove everything) when the layers unpack to more than these.
    pub bounds: Bounds,
}

/// What [`unpack_with`] reports while it works.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// Layer `index` (of `count`) starts; `size` is its blob's size.
    LayerStart {
        index: usize,
        count: usize,
        name: &'a str,
        size: u64,
    },
    /// After each entry: the blob bytes read so far, the entries and file bytes written.
    Progress {
        index: usize,
        read: u64,
        entries: u64,
        bytes: u64,
    },
    LayerDone {
        index: usize,
        stats: LayerStats,
    },
}

#[derive(Debug, Default, serde::Serialize)]
pub struct Unpacked {
    pub layers: Vec<LayerSummary>,
    pub warnings: Vec<String>,
}

#[derive(Debug, serde::Serialize)]
pub struct LayerSummary {
    pub name: String,
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
}

enum Msg {
    /// Hash what follows against the config's diff_id (sent before any data when needed). The
    /// applying thread hashes: it waits on the disk and has the time, while the reading thread's
    /// decompression is what bounds the pipeline.
    DiffId(Box<(Hasher, Digest)>),
    Data(Vec<u8>),
    Done(Result<(), BlobError>),
}

/// Unpack `image` into `bundle` (`rootfs/` and `config.json`). The bundle must not exist or be
/// an empty directory; on failure everything written is removed again.
pub fn unpack(image: &Image, bundle: &Path, opts: &UnpackOptions) -> Result<Unpacked, UnpackError> {
    unpack_with(image, bundle, opts, &mut |_| {})
}

/// [`unpack`], reporting progress to `progress`.
pub fn unpack_with(
    image: &Image,
    bundle: &Path,
    opts: &UnpackOptions,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Unpacked, UnpackError> {
    let created = prepare_bundle(bundle)?;
    let rootfs = bundle.join("rootfs");
    let result = fs::DirBuilder::new()
        .mode(0o755)
        .create(&rootfs)
        .map_err(|source| UnpackError::Create {
            path: rootfs.clone(),
            source,
        })
        .and_then(|()| fill(image, bundle, &rootfs, opts, progress));
    if result.is_err() {
        // Leave nothing behind. remove_dir_all never follows symlinks out of the tree.
        let _ = fs::remove_dir_all(&rootfs);
        let _ = fs::remove_file(bundle.join("config.json"));
        if created {
            let _ = fs::remove_dir(bundle);
        }
    }
    result
}

/// Make the bundle directory (0700, as umoci: the rootfs holds set-id binaries owned by image
/// users) or check the existing one is free; true if created.
fn prepare_bundle(bundle: &Path) -> Result<bool, UnpackError> {
    match fs::DirBuilder::new().mode(0o700).create(bundle) {
        Ok(()) => return Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(source) => {
            return Err(UnpackError::Create {
                path: bundle.to_path_buf(),
                source,
            })
        }
    }
    for what in ["rootfs", "config.json"] {
        if fs::symlink_metadata(bundle.join(what)).is_ok() {
            return Err(UnpackError::BundleInUse {
                path: bundle.to_path_buf(),
                what,
            });
        }
    }
    Ok(false)
}

fn fill(
    image: &Image,
    bundle: &Path,
    rootfs: &Path,
    opts: &UnpackOptions,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Unpacked, UnpackError> {
    let root = Root::open(rootfs)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let chown = opts
        .chown
        .unwrap_or_else(|| unsafe { libc::geteuid() } == 0);
    let mut applier = Applier::new(&root, chown, opts.bounds);
    let mut out = Unpacked::default();
    let store = image.store.as_ref();
    let in_flight = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4));
    // Blob bytes read per layer, for progress.
    let read: Vec<AtomicU64> = image.layers.iter().map(|_| AtomicU64::new(0)).collect();
    let read = &read;
    std::thread::scope(|s| -> Result<(), UnpackError> {
        let mut pipes: Vec<Option<Receiver<Msg>>> = Vec::new();
        let spawn = |i: usize, pipes: &mut Vec<Option<Receiver<Msg>>>| {
            if i < image.layers.len() && pipes.len() == i {
                let (tx, rx) = sync_channel(CHANNEL_DEPTH);
                let layer = &image.layers[i];
                s.spawn(move || produce(store, layer, &read[i], tx));
                pipes.push(Some(rx));
            }
        };
        for i in 0..in_flight {
            spawn(i, &mut pipes);
        }
        for (i, layer) in image.layers.iter().enumerate() {
            spawn(i + in_flight - 1, &mut pipes);
            let rx = pipes[i].take().ok_or(UnpackError::Layer {
                index: i,
                name: layer.name(),
                source: Box::new(BlobError::Stopped.into()),
            })?;
            let name = layer.name();
            progress(Event::LayerStart {
                index: i,
                count: image.layers.len(),
                name: &name,
                size: layer.size,
            });
            let mut report = |st: &LayerStats| {
                progress(Event::Progress {
                    index: i,
                    read: read[i].load(Ordering::Relaxed),
                    entries: st.entries,
                    bytes: st.bytes,
                })
            };
            let stats =
                apply_one(&mut applier, rx, &mut report).map_err(|source| UnpackError::Layer {
                    index: i,
                    name: layer.name(),
                    source: Box::new(source),
                })?;
            progress(Event::LayerDone { index: i, stats });
            out.layers.push(LayerSummary {
                name: layer.name(),
                entries: stats.entries,
                bytes: stats.bytes,
                whiteouts: stats.whiteouts,
            });
        }
        Ok(())
    })?;
    out.warnings = applier.finish()?;
    let spec = config::runtime_spec(image, &root, opts, &mut out.warnings)?;
    config::write(bundle, &spec)?;
    Ok(out)
}

fn apply_one(
    applier: &mut Applier<'_>,
    rx: Receiver<Msg>,
    report: &mut dyn FnMut(&LayerStats),
) -> Result<LayerStats, LayerFailure> {
    let mut pipe = Pipe {
        rx,
        cur: Vec::new(),
        pos: 0,
        failure: None,
        done: false,
        diff_id: None,
    };
    let applied = applier.apply_with(&mut pipe, report);
    // A stream that failed (digest, decompression) is the cause of whatever apply then saw.
    if let Some(e) = pipe.failure.take() {
        return Err(e.into());
    }
    // On an apply error, stop: dropping the channel stops the reading thread.
    let stats = applied?;
    // Read to the end of the stream, so its digests are checked even past the tar's end marker.
    let drained = io::copy(&mut pipe, &mut io::sink());
    if let Some(e) = pipe.failure.take() {
        return Err(e.into());
    }
    drained.map_err(|e| LayerFailure::Blob(BlobError::Read(e)))?;
    Ok(stats)
}

/// The consuming end of a layer's channel, as a reader.
struct Pipe {
    rx: Receiver<Msg>,
    cur: Vec<u8>,
    pos: usize,
    failure: Option<BlobError>,
    done: bool,
    diff_id: Option<(Hasher, Digest)>,
}

impl Pipe {
    /// At the end of the stream: the diff_id check, if one was asked for.
    fn verify(&mut self) -> Result<(), BlobError> {
        match self.diff_id.take() {
            Some((hasher, expected)) => {
                digest::compare(&expected, hasher.finish()).map_err(BlobError::DiffId)
            }
            None => Ok(()),
        }
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            if self.done {
                return Ok(0);
            }
            match self.rx.recv() {
                Ok(Msg::DiffId(check)) => self.diff_id = Some(*check),
                Ok(Msg::Data(v)) => {
                    if let Some((h, _)) = &mut self.diff_id {
                        h.update(&v);
                    }
                    self.cur = v;
                    self.pos = 0;
                }
                Ok(Msg::Done(Ok(()))) => {
                    self.done = true;
                    if let Err(e) = self.verify() {
                        let msg = e.to_string();
                        self.failure = Some(e);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
                    }
                }
                Ok(Msg::Done(Err(e))) => {
                    self.done = true;
                    let msg = e.to_string();
                    self.failure = Some(e);
                    return Err(io::Error::new(io::ErrorKind::InvalidData, msg));
                }
                Err(_) => {
                    self.done = true;
                    self.failure = Some(BlobError::Stopped);
                    return Err(io::Error::other("the layer's reading thread stopped"));
                }
            }
        }
        let n = buf.len().min(self.cur.len() - self.pos);
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The producing thread of one layer: verify, decompress, hash, send.
fn produce(store: &dyn Store, layer: &Layer, read: &AtomicU64, tx: SyncSender<Msg>) {
    let result = stream(store, layer, read, &tx);
    let _ = tx.send(Msg::Done(result));
}

fn stream(
    store: &dyn Store,
    layer: &Layer,
    read: &AtomicU64,
    tx: &SyncSender<Msg>,
) -> Result<(), BlobError> {
    let size_err = |actual| {
        BlobError::Verify(DigestError::Size {
            digest: layer.name(),
            expected: layer.size,
            actual,
        })
    };
    // 1. The blob as stored: its size, then (when it has a digest) a full hash before any
    //    decoder sees it.
    let (blob, actual) = store.open(&layer.path)?;
    if actual != layer.size {
        return Err(size_err(actual));
    }
    let blob = if let Some(d) = &layer.digest {
        digest::verify_stream(blob, d, layer.size).map_err(|e| match digest::from_io(&e) {
            Some(de) => BlobError::Verify(de),
            None => BlobError::Read(e),
        })?;
        store.open(&layer.path)?.0
    } else {
        blob
    };
    let mut blob = BufReader::with_capacity(
        CHUNK,
        Counting {
            inner: blob.take(layer.size),
            read,
        },
    );
    // 2. Decompress; a docker-archive does not declare compression, so look at the magic.
    let compression = match layer.compression {
        Compression::Detect => {
            let head = blob.fill_buf().map_err(BlobError::Read)?;
            if head.starts_with(&[0x1f, 0x8b]) {
                Compression::Gzip
            } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
                Compression::Zstd
            } else {
                Compression::None
            }
        }
        c => c,
    };
    let decoded: Box<dyn Read> = match compression {
        // With a diff_id to check, the gzip CRC is redundant (see crate::gzip).
        Compression::Gzip if layer.diff_id.is_some() => Box::new(crate::gzip::MultiGz::new(blob)),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(blob).map_err(
            |source| BlobError::Decode {
                compression,
                source,
            },
        )?),
        Compression::None | Compression::Detect => Box::new(blob),
    };
    // 3. The uncompressed stream against the diff_id, unless step 1 already hashed these bytes
    //    (the applying thread hashes, see Msg::DiffId).
    let already = compression == Compression::None && layer.digest == layer.diff_id;
    if let (Some(d), false) = (&layer.diff_id, already) {
        let hasher = Hasher::for_digest(d).map_err(BlobError::DiffId)?;
        if tx.send(Msg::DiffId(Box::new((hasher, d.clone())))).is_err() {
            return Ok(());
        }
    }
    let mut out = decoded;
    loop {
        let mut chunk = vec![0u8; CHUNK];
        let mut n = 0;
        while n < CHUNK {
            match out.read(&mut chunk[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(match digest::from_io(&e) {
                        Some(de) => BlobError::DiffId(de),
                        None if compression == Compression::None => BlobError::Read(e),
                        None => BlobError::Decode {
                            compression,
                            source: e,
                        },
                    })
                }
            }
        }
        if n == 0 {
            return Ok(());
        }
        chunk.truncate(n);
        if tx.send(Msg::Data(chunk)).is_err() {
            return Ok(()); // the applier gave up; it reports why
        }
    }
}

/// A reader that adds what it reads to a counter (progress of a layer's blob).
struct Counting<'a, R> {
    inner: R,
    read: &'a AtomicU64,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}
