//! The verdict of one run and its three renderings: one JSON object (`--meta`, batch lines),
//! isolate's `key:value` meta file (`--meta-format isolate`), and one human line on stderr.

use serde::{Deserialize, Serialize};

/// What happened, most specific first: a limit that was hit names the verdict even when the
/// program died of the kill that enforced it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Status {
    /// Exited with status 0.
    OK,
    /// Exited with a non-zero status.
    RE,
    /// Killed by a signal not caused by a limit.
    SG,
    /// CPU time limit exceeded.
    TLE,
    /// Wall-clock time limit exceeded.
    WLE,
    /// Memory limit exceeded (the cgroup's OOM killer ran).
    MLE,
    /// Output (file size) limit exceeded.
    OLE,
    /// The sandbox failed; the program's outcome is unknown.
    XX,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::OK => "OK",
            Status::RE => "RE",
            Status::SG => "SG",
            Status::TLE => "TLE",
            Status::WLE => "WLE",
            Status::MLE => "MLE",
            Status::OLE => "OLE",
            Status::XX => "XX",
        }
    }
}

/// Facts measured about one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Position in a batch (absent for a single run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub cpu_time_s: f64,
    pub wall_time_s: f64,
    /// The program's peak resident set (rusage; isolate's `max-rss`).
    pub max_rss_kb: u64,
    /// The cgroup's peak (what `--memory` limits: it counts page cache and tmpfs too;
    /// isolate's `cg-mem`), when measured.
    pub cg_mem_kb: Option<u64>,
    pub oom_killed: bool,
    pub csw_voluntary: u64,
    pub csw_forced: u64,
    pub message: String,
    /// The run was killed by the sandbox (a limit).
    #[serde(default)]
    pub killed: bool,
}

impl Verdict {
    /// An internal error before or while running.
    pub fn internal(message: impl Into<String>) -> Self {
        Verdict {
            index: None,
            status: Status::XX,
            exit_code: None,
            signal: None,
            cpu_time_s: 0.0,
            wall_time_s: 0.0,
            max_rss_kb: 0,
            oom_killed: false,
            csw_voluntary: 0,
            csw_forced: 0,
            message: message.into(),
            cg_mem_kb: None,
            killed: false,
        }
    }

    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or(serde_json::Value::Null);
        // Three decimals (ms) are what the clocks give; more digits are noise.
        for k in ["cpu_time_s", "wall_time_s"] {
            if let Some(x) = v.get(k).and_then(|x| x.as_f64()) {
                v[k] = serde_json::json!((x * 1000.0).round() / 1000.0);
            }
        }
        v.to_string()
    }

    /// isolate's meta file: the same facts under isolate's names and wording, as isolate 1.10
    /// writes them, so a judge that parses isolate's output reads husk's unchanged. A time
    /// limit is `TO` with `killed:1` and no exit facts (isolate checks its timers first); a
    /// memory or output limit is what isolate sees of it, the signal: `SG` with `exitsig:9`
    /// (and `cg-oom-killed:1`) or `exitsig:25` (SIGXFSZ).
    pub fn to_isolate(&self) -> String {
        let mut out = String::new();
        let mut kv = |k: &str, v: String| {
            out.push_str(k);
            out.push(':');
            out.push_str(&v);
            out.push('\n');
        };
        let timed_out = matches!(self.status, Status::TLE | Status::WLE);
        if let Some(m) = self.cg_mem_kb {
            kv("cg-mem", m.to_string());
        }
        if self.oom_killed {
            kv("cg-oom-killed", "1".into());
        }
        kv("csw-forced", self.csw_forced.to_string());
        kv("csw-voluntary", self.csw_voluntary.to_string());
        if !timed_out {
            if let Some(c) = self.exit_code {
                kv("exitcode", c.to_string());
            }
            if let Some(s) = self.signal {
                kv("exitsig", s.to_string());
            }
        } else {
            kv("killed", "1".into());
        }
        kv("max-rss", self.max_rss_kb.to_string());
        let (status, message) = match (self.status, self.signal, self.exit_code) {
            (Status::TLE, _, _) => (Some("TO"), Some("Time limit exceeded".to_string())),
            (Status::WLE, _, _) => (
                Some("TO"),
                Some("Time limit exceeded (wall clock)".to_string()),
            ),
            (Status::XX, _, _) => (Some("XX"), Some(self.message.clone())),
            (Status::OK, _, _) => (None, None),
            (_, Some(sig), _) => (Some("SG"), Some(format!("Caught fatal signal {sig}"))),
            (_, None, Some(c)) if c != 0 => {
                (Some("RE"), Some(format!("Exited with error status {c}")))
            }
            _ => (None, None),
        };
        if let Some(m) = message {
            kv("message", m.replace('\n', " "));
        }
        if let Some(s) = status {
            kv("status", s.into());
        }
        kv("time", format!("{:.3}", self.cpu_time_s));
        kv("time-wall", format!("{:.3}", self.wall_time_s));
        out
    }

    /// One line for a person reading stderr.
    pub fn human(&self) -> String {
        let what = match (self.status, self.exit_code, self.signal) {
            (Status::RE, Some(c), _) => format!("RE (exit code {c})"),
            (Status::SG, _, Some(s)) => format!("SG (signal {s})"),
            (s, _, _) => s.as_str().to_string(),
        };
        let mut line = format!(
            "husk sandbox: {what}: cpu {:.3}s, wall {:.3}s, memory {} KiB",
            self.cpu_time_s, self.wall_time_s, self.max_rss_kb
        );
        if !self.message.is_empty() {
            line.push_str(" (");
            line.push_str(&self.message);
            line.push(')');
        }
        line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Verdict {
        let mut v = Verdict::internal("");
        v.status = Status::TLE;
        v.signal = Some(9);
        v.cpu_time_s = 1.0123456;
        v.wall_time_s = 1.1;
        v.max_rss_kb = 1900;
        v.cg_mem_kb = Some(2048);
        v.killed = true;
        v
    }

    #[test]
    fn json_fields() {
        let v: serde_json::Value = serde_json::from_str(&sample().to_json()).unwrap();
        assert_eq!(v["status"], "TLE");
        assert_eq!(v["signal"], 9);
        assert_eq!(v["exit_code"], serde_json::Value::Null);
        assert_eq!(v["cpu_time_s"], 1.012);
        assert_eq!(v["max_rss_kb"], 1900);
        assert_eq!(v["cg_mem_kb"], 2048);
        assert!(v.get("index").is_none());
    }

    #[test]
    fn isolate_format() {
        let text = sample().to_isolate();
        let kv: std::collections::HashMap<&str, &str> =
            text.lines().filter_map(|l| l.split_once(':')).collect();
        assert_eq!(kv["status"], "TO");
        assert_eq!(kv["time"], "1.012");
        assert_eq!(kv["time-wall"], "1.100");
        assert_eq!(kv["killed"], "1");
        assert!(!kv.contains_key("exitsig"));
        assert_eq!(kv["max-rss"], "1900");
        assert_eq!(kv["cg-mem"], "2048");
        assert!(!kv.contains_key("exitcode"));
        let mut ok = Verdict::internal("");
        ok.status = Status::OK;
        ok.exit_code = Some(0);
        assert!(!ok.to_isolate().contains("status:"));
    }
}
