//! Structured JSON logs through `tracing` only, with a scrubbing writer as the last line of
//! defence: every line is passed through `domain::pan::scrub` (card numbers, secret-shaped
//! tokens) before it reaches stdout or a file. Nothing can turn body logging on: no handler
//! logs bodies, and there is no setting for it.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Writes scrubbed lines to stdout and, optionally, to a log file.
#[derive(Clone)]
pub struct ScrubbingWriter {
    file: Option<Arc<Mutex<std::fs::File>>>,
}

impl Write for ScrubbingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        let clean = domain::pan::scrub(&text);
        io::stdout().write_all(clean.as_bytes())?;
        if let Some(f) = &self.file {
            if let Ok(mut f) = f.lock() {
                f.write_all(clean.as_bytes())?;
            }
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

impl<'a> MakeWriter<'a> for ScrubbingWriter {
    type Writer = ScrubbingWriter;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The first directive of a filter (`RUST_LOG` syntax) that would turn on debug or trace
/// output: a level word or number (`debug`, `trace`, `4`, `5`), or a bare target (which
/// `tracing` reads as "everything from that target").
pub fn verbose_directive(filter: &str) -> Option<String> {
    filter
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .find(|d| {
            let level = d
                .rsplit('=')
                .next()
                .unwrap_or(d)
                .trim()
                .to_ascii_lowercase();
            let level = level.trim_end_matches(']').to_owned();
            match level.as_str() {
                "off" | "error" | "warn" | "info" | "0" | "1" | "2" | "3" => false,
                // A directive with no level is a target at full verbosity.
                _ => true,
            }
        })
        .map(str::to_owned)
}

/// Installs the global subscriber. `STRONGROOM_LOG` (not `RUST_LOG`) picks levels; the
/// default is `info`. Returns an error if a subscriber was already installed.
pub fn init(log_file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let file = match log_file {
        Some(p) => {
            if let Some(dir) = p.parent() {
                std::fs::create_dir_all(dir)?;
            }
            Some(Arc::new(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            )))
        }
        None => None,
    };
    let filter =
        EnvFilter::try_from_env("STRONGROOM_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_env_filter(filter)
        .with_writer(ScrubbingWriter { file })
        .try_init()
        .map_err(|e| anyhow::anyhow!("logging already initialised: {e}"))
}

#[cfg(test)]
mod tests {
    use super::verbose_directive;

    #[test]
    fn verbose_levels_in_any_spelling_are_found() {
        for bad in [
            "debug",
            "TRACE",
            "5",
            "4",
            "hyper=5",
            "info,web=debug",
            "tower_http",
            "web[span]=trace",
            "warn,sqlx",
        ] {
            assert!(verbose_directive(bad).is_some(), "{bad}");
        }
        for ok in ["info", "warn", "error,web=info", "off", "3", "access=warn"] {
            assert_eq!(verbose_directive(ok), None, "{ok}");
        }
    }
}
