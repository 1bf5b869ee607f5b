//! runc-compatible logging: `--log FILE` with `--log-format text|json`. containerd reads the
//! last JSON line's `msg` when a command fails, so errors are written there as well as stderr.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

struct Sink {
    file: Option<File>,
    format: Format,
    debug: bool,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    file: None,
    format: Format::Text,
    debug: false,
});

/// `--log PATH` could not be opened: like runc, the command fails before doing anything.
#[derive(Debug, thiserror::Error)]
#[error("open {path}: {reason}")]
pub struct LogOpenError {
    path: String,
    /// strerror in lower case, as Go prints it ("no such file or directory").
    reason: String,
}

/// Set where log lines go (from the global flags). The log file is opened here, once, for
/// appending; an unopenable one is an error (a silently lost log hides every later error).
pub fn init(path: Option<&Path>, format: Format, debug: bool) -> Result<(), LogOpenError> {
    let file = match path {
        None => None,
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| LogOpenError {
                    path: p.display().to_string(),
                    reason: match e.raw_os_error() {
                        Some(n) => nix::errno::Errno::from_raw(n).desc().to_lowercase(),
                        None => e.to_string(),
                    },
                })?,
        ),
    };
    if let Ok(mut s) = SINK.lock() {
        *s = Sink {
            file,
            format,
            debug,
        };
    }
    Ok(())
}

/// One line whatever the message quotes: control characters (a newline in a config string,
/// say) are escaped, so engines reading the last line or parsing `--log` see the whole error.
pub fn one_line(msg: &str) -> String {
    msg.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn line(level: &str, msg: &str, format: Format) -> String {
    let msg = &one_line(msg);
    let time = crate::state::now_rfc3339();
    match format {
        Format::Json => format!(
            "{}\n",
            serde_json::json!({"level": level, "msg": msg, "time": time})
        ),
        Format::Text => format!("time={time:?} level={level} msg={msg:?}\n"),
    }
}

fn write(level: &str, msg: &str) {
    let Ok(mut s) = SINK.lock() else { return };
    if level == "debug" && !s.debug {
        return;
    }
    let l = line(level, msg, s.format);
    match &mut s.file {
        Some(f) => {
            let _ = f.write_all(l.as_bytes());
        }
        // Without --log, warnings and debug lines go to stderr (errors are printed by main).
        None if level != "error" => {
            let _ = std::io::stderr().write_all(l.as_bytes());
        }
        None => {}
    }
}

/// The error that ends a command, as runc reports it: with `--log`, a log line there and the
/// plain message on stderr; without, on stderr in the log format (a JSON line with
/// `--log-format json`, which engines parse; the plain message with text).
pub fn fatal(msg: &str) {
    let msg = one_line(msg);
    let (to_file, format) = match SINK.lock() {
        Ok(s) => (s.file.is_some(), s.format),
        Err(_) => (false, Format::Text),
    };
    if to_file {
        write("error", &msg);
    }
    let out = match format {
        Format::Json if !to_file => line("error", &msg, Format::Json),
        _ => format!("{msg}\n"),
    };
    let _ = std::io::stderr().write_all(out.as_bytes());
}

/// Whether `--debug` is on (to skip building debug messages otherwise).
pub fn debug_enabled() -> bool {
    SINK.lock().map(|s| s.debug).unwrap_or(false)
}

pub fn error(msg: &str) {
    write("error", msg);
}

pub fn warn(msg: &str) {
    write("warning", msg);
}

pub fn debug(msg: &str) {
    write("debug", msg);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_line_has_level_msg_time() {
        let l = line("error", "container x does not exist", Format::Json);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "container x does not exist");
        assert!(v["time"].is_string());
    }

    #[test]
    fn messages_stay_on_one_line() {
        assert_eq!(
            one_line("unknown variant `a\nb`"),
            "unknown variant `a\\nb`"
        );
        assert!(!line("error", "x\ny\r", Format::Text)
            .trim_end()
            .contains('\n'));
    }

    #[test]
    fn an_unopenable_log_is_an_error() {
        let e = init(
            Some(Path::new("/nonexistent/husk-log-test/x.log")),
            Format::Json,
            false,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "open /nonexistent/husk-log-test/x.log: no such file or directory"
        );
    }

    #[test]
    fn text_line_quotes_msg() {
        let l = line("warning", "a \"b\"", Format::Text);
        assert!(l.contains("level=warning msg=\"a \\\"b\\\"\""), "{l}");
    }
}
