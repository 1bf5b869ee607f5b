//! The commands on a live container's cgroup: pause, resume, ps, events, update.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use husk_runtime::container;
use oci_spec::runtime::LinuxResources;

#[derive(Args, Debug)]
pub struct PsArgs {
    #[arg(short, long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
    id: String,
    /// Options for ps(1) (default -ef).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    ps_args: Vec<String>,
}

#[derive(Args, Debug)]
pub struct EventsArgs {
    /// Print the container's stats once and exit.
    #[arg(long)]
    stats: bool,
    /// Interval between stats records (e.g. 5s, 500ms).
    #[arg(long, default_value = "5s")]
    interval: String,
    id: String,
}

#[derive(Args, Debug)]
#[command(allow_negative_numbers = true)]
pub struct UpdateArgs {
    /// Resources as JSON (linux.resources); "-" reads stdin.
    #[arg(short = 'r', long)]
    resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    #[arg(long = "cpu-share")]
    cpu_share: Option<u64>,
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    #[arg(long = "cpu-rt-runtime")]
    cpu_rt_runtime: Option<i64>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long)]
    memory: Option<String>,
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    #[arg(long = "kernel-memory")]
    kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp")]
    kernel_memory_tcp: Option<String>,
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    id: String,
}

pub fn ps(root: &Path, a: &PsArgs) -> Result<()> {
    let pids = container::pids(root, &a.id)?;
    if a.format == "json" {
        println!("{}", serde_json::to_string(&pids)?);
        return Ok(());
    }
    let args = if a.ps_args.is_empty() {
        vec!["-ef".to_string()]
    } else {
        a.ps_args.clone()
    };
    let out = std::process::Command::new("ps")
        .args(&args)
        .output()
        .context("run ps")?;
    if !out.status.success() {
        bail!(
            "ps {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header = lines.next().unwrap_or_default();
    let Some(col) = header.split_whitespace().position(|h| h == "PID") else {
        bail!("ps {}: its output has no PID column", args.join(" "));
    };
    println!("{header}");
    for l in lines {
        if l.split_whitespace()
            .nth(col)
            .and_then(|p| p.parse::<i32>().ok())
            .is_some_and(|p| pids.contains(&p))
        {
            println!("{l}");
        }
    }
    Ok(())
}

pub fn events(root: &Path, a: &EventsArgs) -> Result<()> {
    let interval = duration(&a.interval).with_context(|| format!("--interval {:?}", a.interval))?;
    container::events(root, &a.id, interval, a.stats, &mut std::io::stdout())?;
    Ok(())
}

/// Go-style durations as runc takes them: 5s, 500ms, 1m, 1h30m.
fn duration(s: &str) -> Result<Duration> {
    let mut total = 0f64;
    let mut num = String::new();
    let mut rest = s;
    if s.is_empty() {
        bail!("expected a duration like 5s");
    }
    while !rest.is_empty() {
        let c = rest.chars().next().unwrap_or('x');
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            rest = &rest[1..];
            continue;
        }
        let unit_len = rest
            .find(|ch: char| ch.is_ascii_digit() || ch == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            u => bail!("unknown unit {u:?} (expected ns, us, ms, s, m or h)"),
        };
        total += num
            .parse::<f64>()
            .context("expected a number before the unit")?
            * scale;
        num.clear();
        rest = &rest[unit_len..];
    }
    if !num.is_empty() || total <= 0.0 {
        bail!("expected a positive duration with a unit, like 5s");
    }
    Ok(Duration::from_secs_f64(total))
}

/// Sizes as runc's --memory takes them: bytes, or with k/m/g/t (powers of 1024); -1 = unlimited.
fn bytes(flag: &str, s: &str) -> Result<i64> {
    if s == "-1" {
        return Ok(-1);
    }
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (n, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let v: f64 = n
        .parse()
        .with_context(|| format!("{flag}: expected a size like 512m, found {s:?}"))?;
    Ok((v * mult as f64) as i64)
}

pub fn update(root: &Path, a: &UpdateArgs) -> Result<()> {
    let resources: LinuxResources = match &a.resources {
        Some(p) if p == Path::new("-") => {
            // A pipe is fine here; the bound still applies.
            let stdin = std::os::fd::AsFd::as_fd(&std::io::stdin())
                .try_clone_to_owned()
                .context("read resources from stdin")?;
            let buf = husk_runtime::spec::read_open(
                std::fs::File::from(stdin),
                Path::new("<stdin>"),
                husk_runtime::spec::INPUT_LIMIT,
                false,
            )?;
            husk_runtime::spec::parse_bytes(&buf, Path::new("<stdin>"))?
        }
        Some(p) => husk_runtime::spec::parse_file(p)?,
        None => {
            let mut v = serde_json::json!({});
            let mut set = |path: &[&str], val: serde_json::Value| {
                let mut cur = &mut v;
                for k in &path[..path.len() - 1] {
                    cur = &mut cur[*k];
                }
                cur[path[path.len() - 1]] = val;
            };
            use serde_json::json;
            if let Some(w) = a.blkio_weight {
                set(&["blockIO", "weight"], json!(w));
            }
            if let Some(x) = a.cpu_period {
                set(&["cpu", "period"], json!(x));
            }
            if let Some(x) = a.cpu_quota {
                set(&["cpu", "quota"], json!(x));
            }
            if let Some(x) = a.cpu_share {
                set(&["cpu", "shares"], json!(x));
            }
            if let Some(x) = a.cpu_rt_period {
                set(&["cpu", "realtimePeriod"], json!(x));
            }
            if let Some(x) = a.cpu_rt_runtime {
                set(&["cpu", "realtimeRuntime"], json!(x));
            }
            if let Some(x) = &a.cpuset_cpus {
                set(&["cpu", "cpus"], json!(x));
            }
            if let Some(x) = &a.cpuset_mems {
                set(&["cpu", "mems"], json!(x));
            }
            for (flag, val, key) in [
                ("--memory", &a.memory, "limit"),
                ("--memory-reservation", &a.memory_reservation, "reservation"),
                ("--memory-swap", &a.memory_swap, "swap"),
                ("--kernel-memory", &a.kernel_memory, "kernel"),
                ("--kernel-memory-tcp", &a.kernel_memory_tcp, "kernelTCP"),
            ] {
                if let Some(s) = val {
                    set(&["memory", key], json!(bytes(flag, s)?));
                }
            }
            if let Some(x) = a.pids_limit {
                set(&["pids", "limit"], json!(x));
            }
            serde_json::from_value(v).context("build resources from flags")?
        }
    };
    container::update(root, &a.id, &resources)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes() {
        assert_eq!(duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(duration("5").is_err() && duration("xs").is_err());
        assert_eq!(bytes("--memory", "512m").unwrap(), 512 << 20);
        assert_eq!(bytes("--memory", "1G").unwrap(), 1 << 30);
        assert_eq!(bytes("--memory", "-1").unwrap(), -1);
        assert!(bytes("--memory", "lots").is_err());
    }
}
