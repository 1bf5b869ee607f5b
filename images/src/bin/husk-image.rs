//! `husk-image` (run as `husk image`): images to bundles and back, without an engine.
//!
//! A binary of its own so that the `husk` runtime binary doesn't carry the tar, gzip, zstd and
//! sha2 code: a bigger static binary costs page faults (and resident memory) on every
//! `husk run`. `husk image ARGS` execs this binary from husk's own directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use std::io::IsTerminal;

use husk_images::layer::LayerError;
use husk_images::layout::Compression;
use husk_images::unpack::LayerFailure;
use husk_images::{Bounds, PackOptions, UnpackOptions};

#[path = "husk-image/progress.rs"]
mod progress;

#[derive(Parser, Debug)]
#[command(
    name = "husk image",
    bin_name = "husk image",
    version,
    about = "OCI images to bundles and back"
)]
struct Cli {
    #[command(subcommand)]
    command: ImageCommand,
}

/// musl's malloc is slow for an unpack's many small allocations (see Cargo.toml): dlmalloc, as
/// the `husk` binary has.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    match dispatch(&cli.command) {
        Ok(code) => std::process::ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            let msg: String = format!("{e:#}")
                .chars()
                .map(|c| {
                    if c.is_control() {
                        c.escape_debug().to_string()
                    } else {
                        c.to_string()
                    }
                })
                .collect();
            eprintln!("{msg}");
            std::process::ExitCode::from(1)
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum ImageCommand {
    /// Unpack an image into BUNDLE (rootfs/ and config.json); arguments after -- replace its Cmd.
    ///
    /// By default an image may unpack to at most 8 GiB of file data and 90,000 entries (a few
    /// times the largest common base images); past a bound the unpack stops and removes what it
    /// wrote. On a terminal, progress per layer and a summary are shown (not with --quiet).
    Unpack {
        /// An OCI layout directory, an oci-archive or a docker-archive, optionally :REF.
        src: String,
        bundle: PathBuf,
        /// Set process.terminal in config.json (and TERM in its environment).
        #[arg(long)]
        tty: bool,
        /// Keep the files owned by the caller instead of the image's owners.
        #[arg(long = "no-chown")]
        no_chown: bool,
        /// Write a config.json a non-root user can run: a user namespace mapping the caller to
        /// root, no network namespace, no cgroup limits (as `husk spec --rootless`); files stay
        /// owned by the caller.
        #[arg(long)]
        rootless: bool,
        /// Stop when the files unpack to more than SIZE bytes: a number with an optional suffix
        /// K, M, G or T (powers of 1024; "100M", "2GiB"). Default 8G.
        #[arg(long = "max-size", value_name = "SIZE", value_parser = parse_size, conflicts_with = "no_limit")]
        max_size: Option<u64>,
        /// Stop when the image has more than N entries (files, directories, links, whiteouts).
        /// Default 90000.
        #[arg(long = "max-files", value_name = "N", conflicts_with = "no_limit")]
        max_files: Option<u64>,
        /// No bound on size or entries: only for images you trust.
        #[arg(long = "no-limit")]
        no_limit: bool,
        /// No progress and no summary, even on a terminal.
        #[arg(long, short)]
        quiet: bool,
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// Print an image's format, manifest, config and layers as JSON (verified, not unpacked).
    Inspect { src: String },
    /// Pack the directory ROOTFS as a one-layer OCI image: a layout directory, or an oci-archive
    /// if OUT ends in .tar.
    Pack {
        rootfs: PathBuf,
        out: PathBuf,
        /// The image's name in the index (org.opencontainers.image.ref.name).
        #[arg(long = "ref", default_value = "latest")]
        reference: String,
        #[arg(long, value_enum, default_value = "gzip")]
        compression: PackCompression,
        /// The Cmd, as a JSON array or words split on spaces.
        #[arg(long, allow_hyphen_values = true)]
        cmd: Option<String>,
        /// The Entrypoint, as a JSON array or words split on spaces.
        #[arg(long, allow_hyphen_values = true)]
        entrypoint: Option<String>,
        /// NAME=VALUE, repeatable (PATH is set by default).
        #[arg(long)]
        env: Vec<String>,
        #[arg(long)]
        workdir: Option<String>,
        #[arg(long)]
        user: Option<String>,
    },
    /// Write the man pages into DIR (packaging only: feature `gendoc`, see scripts/package).
    #[cfg(feature = "gendoc")]
    #[command(name = "__gendoc", hide = true)]
    Gendoc { dir: PathBuf },
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PackCompression {
    Gzip,
    Zstd,
    None,
}

/// "100M", "2GiB", "4096": bytes, suffixes in powers of 1024.
fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected a number of bytes with an optional K, M, G or T"))?;
    let shift = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        u if u.starts_with('.') => {
            return Err(format!(
                "{s:?}: a whole number please (e.g. 1536M for 1.5G)"
            ))
        }
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (expected K, M, G or T, powers of 1024)"
            ))
        }
    };
    n.checked_mul(1u64 << shift)
        .ok_or_else(|| format!("{s:?} is more than 2^64 bytes"))
}

fn words(s: &str) -> Result<Vec<String>> {
    if s.trim_start().starts_with('[') {
        serde_json::from_str(s).with_context(|| format!("parse {s:?} as a JSON array of strings"))
    } else {
        Ok(s.split_whitespace().map(str::to_string).collect())
    }
}

/// A [`LayerFailure`] in an error chain, boxed or not.
fn failure<'a>(c: &'a (dyn std::error::Error + 'static)) -> Option<&'a LayerFailure> {
    c.downcast_ref::<LayerFailure>()
        .or_else(|| c.downcast_ref::<Box<LayerFailure>>().map(|b| &**b))
}

/// A bound that stopped the unpack: say which flag moves it.
fn bound_hint(e: husk_images::UnpackError) -> anyhow::Error {
    let e = anyhow::Error::new(e);
    let hint = e.chain().find_map(|c| match failure(c) {
        Some(LayerFailure::Apply(LayerError::TooLarge { .. })) => {
            Some("raise the size bound with --max-size SIZE, or lift all bounds with --no-limit")
        }
        Some(LayerFailure::Apply(LayerError::TooManyEntries { .. })) => {
            Some("raise the entry bound with --max-files N, or lift all bounds with --no-limit")
        }
        _ => None,
    });
    match hint {
        Some(h) => anyhow::anyhow!("{e:#}; {h} (nothing was left behind)"),
        None => e,
    }
}

pub fn dispatch(cmd: &ImageCommand) -> Result<i32> {
    match cmd {
        ImageCommand::Unpack {
            src,
            bundle,
            tty,
            no_chown,
            rootless,
            max_size,
            max_files,
            no_limit,
            quiet,
            args,
        } => {
            let image = husk_images::open(src).with_context(|| format!("open image {src}"))?;
            let bounds = if *no_limit {
                Bounds::NONE
            } else {
                Bounds {
                    bytes: Some(max_size.unwrap_or(Bounds::DEFAULT_BYTES)),
                    entries: Some(max_files.unwrap_or(Bounds::DEFAULT_ENTRIES)),
                }
            };
            let opts = UnpackOptions {
                default_spec: husk_runtime::spec::default::generate(*rootless),
                args: (!args.is_empty()).then(|| args.clone()),
                terminal: *tty,
                // A rootless bundle maps only the caller: the image's other owners would not exist.
                chown: (*no_chown || *rootless).then_some(false),
                bounds,
            };
            let show = !quiet && std::io::stdout().is_terminal() && std::io::stderr().is_terminal();
            let mut bars = progress::Bars::new(show);
            let result = husk_images::unpack_with(&image, bundle, &opts, &mut |e| bars.event(e));
            bars.clear();
            let done = result
                .map_err(bound_hint)
                .with_context(|| format!("unpack {src} into {}", bundle.display()))?;
            for w in &done.warnings {
                eprintln!("husk: warning: {w}");
            }
            // SAFETY: geteuid has no preconditions and cannot fail.
            let uid = unsafe { libc::geteuid() };
            if uid != 0 && !rootless {
                eprintln!(
                    "husk: warning: unpacked as uid {uid} without --rootless: config.json asks for \
                     namespaces and cgroups only root can set up, so `husk run` as this user fails; \
                     unpack with --rootless for a bundle this user can run"
                );
            }
            if show {
                bars.summary(&done, bundle);
            }
        }
        ImageCommand::Inspect { src } => {
            let image = husk_images::open(src).with_context(|| format!("open image {src}"))?;
            println!(
                "{}",
                serde_json::to_string_pretty(&husk_images::inspect(&image))?
            );
        }
        ImageCommand::Pack {
            rootfs,
            out,
            reference,
            compression,
            cmd,
            entrypoint,
            env,
            workdir,
            user,
        } => {
            let mut opts = PackOptions {
                reference: reference.clone(),
                compression: match compression {
                    PackCompression::Gzip => Compression::Gzip,
                    PackCompression::Zstd => Compression::Zstd,
                    PackCompression::None => Compression::None,
                },
                workdir: workdir.clone(),
                user: user.clone(),
                ..PackOptions::default()
            };
            if let Some(c) = cmd {
                opts.cmd = Some(words(c)?);
            }
            if let Some(e) = entrypoint {
                opts.entrypoint = Some(words(e)?);
            }
            opts.env.extend(env.iter().cloned());
            let desc = husk_images::pack(rootfs, out, &opts)
                .with_context(|| format!("pack {} into {}", rootfs.display(), out.display()))?;
            println!("{}", serde_json::to_string(&desc)?);
        }
        #[cfg(feature = "gendoc")]
        ImageCommand::Gendoc { dir } => gendoc(dir)?,
    }
    Ok(0)
}

/// DIR/man8/husk-image.8 and husk-image-COMMAND.8, from the clap definitions above (so they
/// cannot drift from the parser). husk's own pages come from `husk __gendoc`.
#[cfg(feature = "gendoc")]
fn gendoc(dir: &std::path::Path) -> Result<()> {
    use clap::CommandFactory;
    use std::io::Write;
    let man = dir.join("man8");
    std::fs::create_dir_all(&man).with_context(|| format!("create {}", man.display()))?;
    let mut cmd = Cli::command()
        .display_name("husk-image")
        .bin_name("husk image")
        .disable_help_subcommand(true);
    cmd.build();
    let source = format!("husk {}", env!("CARGO_PKG_VERSION"));
    let pages = std::iter::once(cmd.clone()).chain(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set())
            .cloned()
            .collect::<Vec<_>>(),
    );
    for page in pages {
        let name = page
            .get_display_name()
            .unwrap_or(page.get_name())
            .to_string();
        let mut out = Vec::new();
        clap_mangen::Man::new(page)
            .title(name.to_uppercase())
            .section("8")
            .source(source.as_str())
            .manual("husk manual")
            .render(&mut out)
            .with_context(|| format!("render {name}(8)"))?;
        let see_also = if name == "husk-image" {
            "husk(8)"
        } else {
            "husk-image(8)"
        };
        writeln!(out, ".SH \"SEE ALSO\"\n{}", see_also.replace('-', "\\-"))?;
        let path = man.join(format!("{name}.8"));
        std::fs::write(&path, out).with_context(|| format!("write {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_size;

    #[test]
    fn sizes_take_suffixes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1k"), Ok(1024));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("10X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
