//! Progress of a long operator command: a bar on a terminal, otherwise a
//! line on stderr every [`LINE_EVERY`] (and at the end), so a rebuild run by
//! a script or under systemd still shows it is moving. Stdout stays for the
//! command's result.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

const LINE_EVERY: Duration = Duration::from_secs(5);

pub struct Progress {
    /// What is counted, as it reads in a line: "archived events folded".
    what: &'static str,
    bar: Option<ProgressBar>,
    last_line: Instant,
}

impl Progress {
    pub fn new(what: &'static str) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} {msg} ({eta} left)")
                    .expect("a valid template"),
            );
            bar.set_message(what);
            bar
        });
        Progress {
            what,
            bar,
            last_line: Instant::now(),
        }
    }

    pub fn update(&mut self, done: u64, total: u64) {
        match &self.bar {
            Some(bar) => {
                bar.set_length(total);
                bar.set_position(done);
                if done >= total {
                    bar.finish();
                }
            }
            None if done >= total || self.last_line.elapsed() >= LINE_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{} of {total} {}", done, self.what);
            }
            None => {}
        }
    }
}
