//! Batch mode: the jobs of a JSON-lines file through a warm [`super::pool::Pool`], verdicts
//! out as JSON lines in input order. A job whose mounts or network differ from the pool's
//! runs as a single run instead.

use std::io::{BufRead, Write};
use std::path::Path;

use super::limits::Options;
use super::pool::{Ordered, Pool};
use super::verdict::Verdict;

/// Why a batch could not run (a job that fails is a verdict, not this).
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error(
        "--batch needs root (its warm pool keeps a cgroup per slot); as a user, run one \
         `husk sandbox` per job"
    )]
    NotRoot,
    #[error("{what} --batch {path:?}: {source}")]
    File {
        what: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pool(#[from] super::pool::PoolError),
}

/// What a batch did.
pub struct Summary {
    pub jobs: usize,
    pub bad_lines: usize,
    /// Jobs whose verdict was not OK.
    pub not_ok: usize,
}

/// One line: a job, or why it isn't one.
enum Line {
    Job(Box<Options>),
    Bad(String),
}

/// The lines of `path` (blank ones skipped), each parsed over `base`.
fn read(path: &Path, base: &Options) -> Result<Vec<Line>, BatchError> {
    let err = |what| {
        move |source| BatchError::File {
            what,
            path: path.to_path_buf(),
            source,
        }
    };
    let file = std::fs::File::open(path).map_err(err("open"))?;
    let mut lines = Vec::new();
    for (i, l) in std::io::BufReader::new(file).lines().enumerate() {
        let l = l.map_err(err("read"))?;
        if l.trim().is_empty() {
            continue;
        }
        let parsed = Options::from_json(base, &l).and_then(|o| o.check().map(|()| o));
        lines.push(match parsed {
            Ok(o) => Line::Job(Box::new(o)),
            Err(e) => Line::Bad(format!("{}: line {}: {e}", path.display(), i + 1)),
        });
    }
    Ok(lines)
}

/// Read the jobs, run them `n` at a time, print verdicts in input order.
pub fn run_file(path: &Path, base: &Options, n: usize) -> Result<Summary, BatchError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(BatchError::NotRoot);
    }
    super::cleanup::stale_cgroups();
    let lines = read(path, base)?;
    let mut pool = Pool::new(base, n.min(lines.len()).max(1))?;
    let mut out = std::io::stdout().lock();
    let mut ordered = Ordered::default();
    let mut summary = Summary {
        jobs: lines.len(),
        bad_lines: 0,
        not_ok: 0,
    };
    let mut emit = |ordered: &mut Ordered, summary: &mut Summary| {
        for v in ordered.ready() {
            if v.status != super::Status::OK {
                summary.not_ok += 1;
            }
            let _ = writeln!(out, "{}", v.to_json());
        }
        let _ = out.flush();
    };
    for (index, line) in lines.iter().enumerate() {
        match line {
            Line::Bad(m) => {
                eprintln!("husk sandbox: {m}");
                summary.bad_lines += 1;
                ordered.insert(index, Verdict::internal(m.clone()));
            }
            Line::Job(o) if o.same_layout(base) => {
                while !pool.has_room_for(o) {
                    if let Some((i, v)) = pool.wait_one() {
                        ordered.insert(i, v);
                    }
                }
                if let Err(v) = pool.submit(index, o) {
                    ordered.insert(index, v);
                }
            }
            Line::Job(o) => {
                let seq = 1_000_000 + index as u64;
                let v = super::run::run(
                    o,
                    &super::profile::judge_filter(),
                    seq,
                    super::run::Then::Continue,
                )
                .unwrap_or_else(|e| Verdict::internal(e.to_string()));
                ordered.insert(index, v);
            }
        }
        emit(&mut ordered, &mut summary);
    }
    while let Some((i, v)) = pool.wait_one() {
        ordered.insert(i, v);
        emit(&mut ordered, &mut summary);
    }
    pool.shutdown();
    emit(&mut ordered, &mut summary);
    Ok(summary)
}
