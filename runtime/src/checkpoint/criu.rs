//! Finding a CRIU that works here: `--criu PATH` (runc's flag), then `$HUSK_CRIU`, then `criu`
//! on `$PATH`, then the private prefix `scripts/setup` installs to (`/opt/criu/sbin/criu`).
//!
//! The minimum is 4.1: older CRIUs (Debian 12 ships 3.17.1) can't parse the vDSO layout of
//! kernels with the `[vvar_vclock]` mapping (6.13 and later) and fail every dump with
//! "Unexpected rt vDSO area bounds". An explicit path that is too old is an error; a search
//! skips old ones in favour of a newer one further on, and names every one it saw if none fits.

use std::path::{Path, PathBuf};

use rust_criu::rust_criu_protobuf::rpc::{Criu_features, Criu_req_type};

use super::rpc::{Fds, RpcError, Swrk};

/// 4.1.0, as CRIU's RPC encodes versions (major*10000 + minor*100 + sublevel).
pub const MIN_VERSION: u32 = 40100;
pub const ENV: &str = "HUSK_CRIU";
/// Where `scripts/setup` (scripts/build-criu) installs CRIU when the host has none that works.
pub const SETUP_PATH: &str = "/opt/criu/sbin/criu";

#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    #[error(
        "no CRIU found (looked for {searched}); checkpoint/restore needs CRIU {} or newer: \
         run scripts/setup (it builds one into /opt/criu) or pass --criu PATH",
        show(MIN_VERSION)
    )]
    NotFound { searched: String },
    #[error(
        "CRIU {path:?} is version {}, and husk needs {} or newer (older ones can't dump on this \
         kernel); pass --criu PATH or set {ENV} to a newer one",
        show(*found),
        show(MIN_VERSION)
    )]
    TooOld { path: PathBuf, found: u32 },
    #[error("none of the CRIUs found is new enough ({seen}); husk needs {} or newer: run scripts/setup or pass --criu PATH", show(MIN_VERSION))]
    AllTooOld { seen: String },
    #[error("ask {path:?} for its version: {source}")]
    Version {
        path: PathBuf,
        #[source]
        source: RpcError,
    },
}

/// A CRIU binary and its version.
#[derive(Debug, Clone)]
pub struct Criu {
    pub path: PathBuf,
    pub version: u32,
}

/// `40200` → `4.2`, `40201` → `4.2.1`.
pub fn show(v: u32) -> String {
    let (major, minor, sub) = (v / 10000, v / 100 % 100, v % 100);
    if sub == 0 {
        format!("{major}.{minor}")
    } else {
        format!("{major}.{minor}.{sub}")
    }
}

/// Find CRIU as the module doc says. `explicit` is `--criu`.
pub fn locate(explicit: Option<&Path>) -> Result<Criu, CriuError> {
    let chosen = explicit.map(Path::to_path_buf).or_else(|| {
        std::env::var_os(ENV)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    });
    if let Some(path) = chosen {
        let path = if path.components().count() == 1 {
            // A bare name, as runc's default "criu": look it up on PATH.
            on_path(&path).unwrap_or(path)
        } else {
            path
        };
        let version = version(&path)?;
        if version < MIN_VERSION {
            return Err(CriuError::TooOld {
                path,
                found: version,
            });
        }
        return Ok(Criu { path, version });
    }
    let mut candidates: Vec<PathBuf> = on_path(Path::new("criu")).into_iter().collect();
    let setup = PathBuf::from(SETUP_PATH);
    if !candidates.contains(&setup) {
        candidates.push(setup);
    }
    let mut seen = Vec::new();
    for path in candidates {
        if !is_executable(&path) {
            continue;
        }
        match version(&path) {
            Ok(v) if v >= MIN_VERSION => return Ok(Criu { path, version: v }),
            Ok(v) => seen.push(format!("{} is {}", path.display(), show(v))),
            Err(e) => seen.push(format!("{}: {e}", path.display())),
        }
    }
    if seen.is_empty() {
        Err(CriuError::NotFound {
            searched: format!("--criu, ${ENV}, criu on $PATH, {SETUP_PATH}"),
        })
    } else {
        Err(CriuError::AllTooOld {
            seen: seen.join("; "),
        })
    }
}

fn on_path(name: &Path) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// CRIU's version through its RPC. A git build counts as the next minor release (runc's rule:
/// it has everything of the release it was cut from).
pub fn version(path: &Path) -> Result<u32, CriuError> {
    let err = |source| CriuError::Version {
        path: path.to_path_buf(),
        source,
    };
    let swrk = Swrk::start(path, Fds::default()).map_err(err)?;
    let resp = swrk
        .call(Criu_req_type::VERSION, None, None, |_| Ok(()))
        .map_err(err)?;
    let v = &resp.version;
    let clamp = |n: i32| n.clamp(0, 99) as u32;
    let mut version =
        v.major_number().clamp(0, 4000) as u32 * 10000 + clamp(v.minor_number()) * 100;
    version += clamp(v.sublevel());
    if v.has_gitid() {
        version -= version % 100;
        version += 100;
    }
    Ok(version)
}

/// Whether CRIU and the kernel can track memory changes between dumps (soft-dirty bits), which
/// `--pre-dump` and `--parent-path` need.
pub fn has_mem_track(criu: &Criu) -> Result<bool, RpcError> {
    let mut want = Criu_features::new();
    want.set_mem_track(true);
    let swrk = Swrk::start(&criu.path, Fds::default())?;
    let resp = swrk.call(Criu_req_type::FEATURE_CHECK, None, Some(want), |_| Ok(()))?;
    Ok(resp.features.mem_track())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_print_as_criu_does() {
        assert_eq!(show(40200), "4.2");
        assert_eq!(show(31701), "3.17.1");
        assert_eq!(show(MIN_VERSION), "4.1");
    }

    /// A stand-in `criu swrk` that answers VERSION with 3.17.1 (Debian 12's), in protobuf.
    fn fake_criu(dir: &Path) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = dir.join("criu");
        std::fs::write(
            &p,
            "#!/usr/bin/python3\nimport os\nos.read(3, 4096)\n\
             os.write(3, bytes([8, 10, 16, 1, 0x52, 6, 8, 3, 16, 17, 32, 1]))\n",
        )
        .expect("write fake criu");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        p
    }

    #[test]
    fn too_old_criu_names_version_found_and_minimum() {
        if !Path::new("/usr/bin/python3").exists() {
            println!("SKIP: no /usr/bin/python3 for the stand-in criu");
            return;
        }
        let dir = crate::testutil::TempDir::new("criu-old");
        let fake = fake_criu(&dir.0);
        assert_eq!(version(&fake).expect("version"), 31701);
        let e = locate(Some(&fake)).unwrap_err().to_string();
        assert!(e.contains("3.17.1") && e.contains("4.1"), "{e}");
    }

    #[test]
    fn a_binary_that_is_not_criu_is_an_error() {
        let e = locate(Some(Path::new("/bin/true")))
            .unwrap_err()
            .to_string();
        assert!(e.contains("/bin/true"), "{e}");
    }

    #[test]
    fn explicit_missing_path_names_it() {
        let e = locate(Some(Path::new("/nonexistent/criu"))).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/criu"), "{e}");
    }
}
