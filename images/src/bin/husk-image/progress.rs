//! Progress on a terminal: one bar per layer (the share of its blob read; entries and bytes
//! written), replaced by a line when the layer is done, and a one-line summary at the end.
//! Short enough for an 80-column terminal.

use std::path::Path;
use std::time::{Duration, Instant};

use husk_images::layer::human_bytes;
use husk_images::{Event, Unpacked};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Bars {
    show: bool,
    bar: Option<ProgressBar>,
    started: Instant,
    layer_started: Instant,
}

impl Bars {
    /// `show`: draw at all (a terminal and no --quiet).
    pub fn new(show: bool) -> Bars {
        Bars {
            show,
            bar: None,
            started: Instant::now(),
            layer_started: Instant::now(),
        }
    }

    pub fn event(&mut self, e: Event<'_>) {
        if !self.show {
            return;
        }
        match e {
            Event::LayerStart {
                index,
                count,
                name,
                size,
            } => {
                let bar = ProgressBar::with_draw_target(Some(size), ProgressDrawTarget::stderr());
                let style = ProgressStyle::with_template("{prefix} [{bar:16}] {percent:>3}% {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> ");
                bar.set_style(style);
                bar.set_prefix(format!("layer {}/{count} {}", index + 1, short(name)));
                bar.enable_steady_tick(Duration::from_millis(200));
                self.bar = Some(bar);
                self.layer_started = Instant::now();
            }
            Event::Progress {
                read,
                entries,
                bytes,
                ..
            } => {
                if let Some(b) = &self.bar {
                    b.set_position(read);
                    b.set_message(format!("{entries} entries, {}", human_bytes(bytes)));
                }
            }
            Event::LayerDone { index, stats } => {
                if let Some(b) = self.bar.take() {
                    let name = b.prefix();
                    b.finish_and_clear();
                    let _ = index;
                    eprintln!(
                        "{name}: {} entries, {} in {:.2} s",
                        stats.entries,
                        human_bytes(stats.bytes),
                        self.layer_started.elapsed().as_secs_f64()
                    );
                }
            }
        }
    }

    /// Remove a bar still drawn (the unpack failed mid-layer).
    pub fn clear(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }

    pub fn summary(&self, done: &Unpacked, bundle: &Path) {
        let entries: u64 = done.layers.iter().map(|l| l.entries).sum();
        let bytes: u64 = done.layers.iter().map(|l| l.bytes).sum();
        let n = done.layers.len();
        eprintln!(
            "unpacked {n} layer{}, {entries} entries, {} in {:.2} s into {}",
            if n == 1 { "" } else { "s" },
            human_bytes(bytes),
            self.started.elapsed().as_secs_f64(),
            bundle.display()
        );
    }
}

/// The first 12 hex digits of a digest (as `docker images` shows IDs), the name as is otherwise.
fn short(name: &str) -> String {
    match name.split_once(':') {
        Some((_, hex)) if hex.len() > 12 => hex[..12].to_string(),
        _ => name.to_string(),
    }
}
