//! `husk __gendoc DIR` (feature `gendoc`, off in the shipped binary): the man pages and shell
//! completions, rendered from the same clap definitions that parse husk's command line, so they
//! cannot drift from it. scripts/package builds a husk with this feature only to run it.
//!
//! Writes DIR/man8/husk.8, DIR/man8/husk-COMMAND.8 for every command (husk-sandbox.8 from the
//! sandbox's own parser; husk-image.8 comes from `husk-image __gendoc`), and
//! DIR/completions/{husk.bash,_husk,husk.fish}.

use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;

const SECTION: &str = "8";
const MANUAL: &str = "husk manual";

/// The commands whose page is not rendered from husk's own parser: `sandbox` has a parser of
/// its own (its exit codes differ), `image` is the husk-image binary.
const OWN_PARSER: [&str; 2] = ["sandbox", "image"];

pub fn write(dir: &Path) -> Result<()> {
    let man = dir.join("man8");
    let completions = dir.join("completions");
    for d in [&man, &completions] {
        fs::create_dir_all(d).with_context(|| format!("create {}", d.display()))?;
    }
    let mut cli = crate::Cli::command().disable_help_subcommand(true);
    cli.build();
    let source = format!("husk {}", env!("CARGO_PKG_VERSION"));

    page(&man, "husk", cli.clone(), &source, SEE_ALSO_HUSK)?;
    for sub in cli.get_subcommands().filter(|s| !s.is_hide_set()) {
        if OWN_PARSER.contains(&sub.get_name()) {
            continue;
        }
        let name = format!("husk-{}", sub.get_name());
        page(&man, &name, sub.clone(), &source, "husk(8)")?;
    }
    // NAME says husk-sandbox (whatis needs one word); SYNOPSIS says `husk sandbox`.
    let mut sandbox = crate::sandbox::command()
        .display_name("husk-sandbox")
        .bin_name("husk sandbox");
    sandbox.build();
    page(&man, "husk-sandbox", sandbox, &source, "husk(8)")?;

    // Completions see the sandbox's real options, not the pass-through argument list, and none
    // of the hidden arguments or commands (clap_complete would offer those too).
    let cli = crate::Cli::command()
        .mut_subcommand("sandbox", |_| crate::sandbox::command().name("sandbox"));
    let mut cli = visible(&cli).disable_help_subcommand(true);
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cli, "husk", &completions).with_context(|| {
            format!(
                "write the {shell} completion into {}",
                completions.display()
            )
        })?;
    }
    Ok(())
}

/// `cmd` rebuilt from its visible arguments and subcommands only.
fn visible(cmd: &clap::Command) -> clap::Command {
    // A one-shot generator: leaking the two strings is simpler than clap's `string` feature.
    let mut out = clap::Command::new(&*cmd.get_name().to_string().leak());
    if let Some(v) = cmd.get_version() {
        out = out.version(&*v.to_string().leak());
    }
    if let Some(a) = cmd.get_about() {
        out = out.about(a.clone());
    }
    out.args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(
            cmd.get_subcommands()
                .filter(|s| !s.is_hide_set())
                .map(visible),
        )
}

const SEE_ALSO_HUSK: &str = "husk-image(8), husk-sandbox(8), containerd-shim-husk-v2(8), runc(8)";

/// Renders `cmd` as DIR/NAME.8 with a SEE ALSO section.
fn page(dir: &Path, name: &str, cmd: clap::Command, source: &str, see_also: &str) -> Result<()> {
    let path = dir.join(format!("{name}.{SECTION}"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .title(name.to_uppercase())
        .section(SECTION)
        .source(source)
        .manual(MANUAL)
        .render(&mut out)
        .with_context(|| format!("render {name}({SECTION})"))?;
    writeln!(out, ".SH \"SEE ALSO\"\n{}", roman(see_also))?;
    fs::write(&path, out).with_context(|| format!("write {}", path.display()))
}

/// Text as a roff line: a leading `.` or `'` would be read as a request; `-` is a hyphen.
fn roman(s: &str) -> String {
    let s = s.replace('\\', "\\\\").replace('-', "\\-");
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s
    }
}
