//! CPU lists like `0-3,7` (cpusets and `execCPUAffinity`).

/// Parse a CPU list into CPU numbers.
pub fn parse(list: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("expected a CPU list like \"0-3,7\", found {list:?}");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b || b >= 8192 {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => {
                let c: usize = part.parse().map_err(|_| bad())?;
                if c >= 8192 {
                    return Err(bad());
                }
                cpus.push(c);
            }
        }
    }
    if cpus.is_empty() {
        return Err(format!(
            "expected a CPU list like \"0-3,7\", found {list:?}"
        ));
    }
    Ok(cpus)
}

/// Pin the calling process to `cpus`.
pub fn apply(cpus: &[usize]) -> Result<(), nix::Error> {
    let mut set = nix::sched::CpuSet::new();
    for &c in cpus {
        set.set(c)?;
    }
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), &set)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn parses_ranges_and_singles() {
        assert_eq!(parse("0-2,5").unwrap(), vec![0, 1, 2, 5]);
        assert!(parse("3-1").is_err());
        assert!(parse("x").is_err());
        assert!(parse("").is_err());
    }
}
