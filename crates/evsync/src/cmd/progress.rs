//! Progress bars for long transfers, drawn on stderr only when it is a
//! terminal (indicatif hides them otherwise, so logs and CI stay clean).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::{Read, Write};

/// A bar over `total` bytes (a spinner with a byte count when unknown).
pub fn bytes_bar(what: &str, total: Option<u64>) -> ProgressBar {
    let bar = match total {
        Some(total) => ProgressBar::new(total).with_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_message(what.to_owned());
    bar
}

/// Copies `from` to `to`, advancing `bar` by the bytes copied.
pub fn copy_with(
    bar: &ProgressBar,
    from: &mut impl Read,
    to: &mut impl Write,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
        bar.inc(n as u64);
    }
    Ok(total)
}
