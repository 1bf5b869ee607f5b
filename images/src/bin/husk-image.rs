//! `husk-image` (run as `husk image`): images to bundles and back, without an engine.
//!
//! A binary of its own so that the `husk` runtime binary doesn't carry the tar, gzip, zstd and
//! sha2 code: a bigger static binary costs page faults (and resident memory) on every
//! `husk run`. `husk image ARGS` execs this binary from husk's own directory.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use husk_images::layout::Compression;
use husk_images::{PackOptions, UnpackOptions};

#[derive(Parser, Debug)]
#[command(name = "husk image", version, about = "OCI images to bundles and back")]
struct Cli {
    #[command(subcommand)]
    command: ImageCommand,
}

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
    Unpack {
        /// An OCI layout directory, an oci-archive or a docker-archive, optionally :REF.
        src: String,
        bundle: PathBuf,
        /// Set process.terminal in config.json.
        #[arg(long)]
        tty: bool,
        /// Keep the files owned by the caller instead of the image's owners.
        #[arg(long = "no-chown")]
        no_chown: bool,
        /// Refuse images that unpack to more than this many bytes.
        #[arg(long = "max-size")]
        max_size: Option<u64>,
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
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum PackCompression {
    Gzip,
    Zstd,
    None,
}

fn words(s: &str) -> Result<Vec<String>> {
    if s.trim_start().starts_with('[') {
        serde_json::from_str(s).with_context(|| format!("parse {s:?} as a JSON array of strings"))
    } else {
        Ok(s.split_whitespace().map(str::to_string).collect())
    }
}

pub fn dispatch(cmd: &ImageCommand) -> Result<i32> {
    match cmd {
        ImageCommand::Unpack {
            src,
            bundle,
            tty,
            no_chown,
            max_size,
            args,
        } => {
            let image = husk_images::open(src).with_context(|| format!("open image {src}"))?;
            let opts = UnpackOptions {
                default_spec: husk_runtime::spec::default::generate(false),
                args: (!args.is_empty()).then(|| args.clone()),
                terminal: *tty,
                chown: no_chown.then_some(false),
                bounds: husk_images::Bounds::default(),
            };
            let done = husk_images::unpack(&image, bundle, &opts)
                .with_context(|| format!("unpack {src} into {}", bundle.display()))?;
            for w in &done.warnings {
                eprintln!("husk: warning: {w}");
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
    }
    Ok(0)
}
