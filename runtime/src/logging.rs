//! runc-compatible logging: `--log FILE` with `--log-format text|json`. containerd reads the
//! last JSON line's `msg` when a command fails, so errors are written there as well as stderr.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

struct Sink {
    path: Option<PathBuf>,
    format: Format,
    debug: bool,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    path: None,
    format: Format::Text,
    debug: false,
});

/// Set where log lines go (from the global flags).
pub fn init(path: Option<PathBuf>, format: Format, debug: bool) {
    if let Ok(mut s) = SINK.lock() {
        *s = Sink {
            path,
            format,
            debug,
        };
    }
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
    let Ok(s) = SINK.lock() else { return };
    if level == "debug" && !s.debug {
        return;
    }
    match &s.path {
        Some(p) => {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
            {
                let _ = f.write_all(line(level, msg, s.format).as_bytes());
            }
        }
        // Without --log, warnings and debug lines go to stderr (errors are printed by main).
        None if level != "error" => {
            let _ = std::io::stderr().write_all(line(level, msg, s.format).as_bytes());
        }
        None => {}
    }
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
    fn text_line_quotes_msg() {
        let l = line("warning", "a \"b\"", Format::Text);
        assert!(l.contains("level=warning msg=\"a \\\"b\\\"\""), "{l}");
    }
}
