//! File-system helpers: nothing is ever half-written, no input name leaves the output folder, and
//! nothing that is not a regular file is ever opened for reading.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// The temporary sibling a file is written to before the rename.
fn temp_name(path: &Path) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("out");
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Write all of `bytes` to `w` and flush it: every error of the writer is returned, none is left
/// to a `Drop` that cannot report it (a full disk must fail the run, not leave a short file).
pub fn write_checked<W: Write>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    w.write_all(bytes)?;
    w.flush()
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, fsync, rename. On any
/// error (a full disk included) the temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if path.as_os_str().to_string_lossy().ends_with('/') || path.is_dir() {
        bail!("{}: is a folder, expected a file name", path.display());
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder {}", dir.display()))?;
    }
    let tmp = temp_name(path);
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        write_checked(&mut f, bytes)?;
        f.sync_all()?;
        let written = f.metadata()?.len();
        if written != bytes.len() as u64 {
            return Err(std::io::Error::other(format!(
                "short write: {written} of {} bytes",
                bytes.len()
            )));
        }
        drop(f);
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Check that creating files in `dir` works (create it if missing), with a probe file that is
/// removed again: an unwritable output fails before any long work starts.
pub fn probe_writable(dir: &Path, flag: &str) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("{flag} {}: cannot create the folder", dir.display()))?;
    let probe = dir.join(format!(".d3hr-probe-{}", std::process::id()));
    let r = std::fs::File::create(&probe).and_then(|mut f| write_checked(&mut f, b"probe"));
    let _ = std::fs::remove_file(&probe);
    r.with_context(|| format!("{flag} {}: cannot write there", dir.display()))
}

/// Check that `name` (from an input file: a class name, a folder name) is safe as one component
/// of an output path: not empty, not `.` or `..`, no path separator, no NUL or control
/// character, not hidden (a leading `.`: d3hr's own `.d3hr/`), not one of the output's own file
/// names, at most 255 bytes. `what` names the source for the message.
pub fn safe_name<'a>(name: &'a str, what: &str) -> Result<&'a str> {
    let why = if name.is_empty() {
        Some("it is empty")
    } else if name == "." || name == ".." {
        Some("it names a folder, not a name inside one")
    } else if name.contains(['/', '\\']) {
        Some("it contains a path separator")
    } else if name.chars().any(char::is_control) {
        Some("it contains a control character")
    } else if name.starts_with('.') {
        Some("it starts with `.` (hidden names are reserved)")
    } else if name.len() > 255 {
        Some("it is longer than 255 bytes")
    } else if RESERVED.contains(&name) {
        Some("it is the name of one of the output's own files")
    } else {
        None
    };
    match why {
        Some(why) => bail!("{what}: class name {name:?} cannot be used as a folder name: {why}"),
        None => Ok(name),
    }
}

/// Files d3hr writes at the top of an output folder.
pub const RESERVED: [&str; 2] = ["manifest.json", "stats.safetensors"];

/// `out.join(name)` for a name that passed [`safe_name`]; the result is always directly inside
/// `out`.
pub fn child(out: &Path, name: &str, what: &str) -> Result<PathBuf> {
    let name = safe_name(name, what)?;
    let p = out.join(name);
    debug_assert_eq!(p.parent(), Some(out));
    Ok(p)
}

/// Read a whole input file, refusing anything that is not a regular file (a FIFO would block the
/// run forever, a device would never end, a folder has no bytes) and anything over `max` bytes.
pub fn read_regular(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("{what} {}: cannot read", path.display()))?;
    if meta.is_dir() {
        bail!("{what} {}: is a folder, not a file", path.display());
    }
    if !meta.is_file() {
        bail!(
            "{what} {}: is not a regular file (a pipe, socket or device)",
            path.display()
        );
    }
    if meta.len() > max {
        bail!(
            "{what} {}: {} bytes, more than the {max} accepted",
            path.display(),
            meta.len()
        );
    }
    let mut f = std::fs::File::open(path)
        .with_context(|| format!("{what} {}: cannot open", path.display()))?;
    let mut buf = Vec::with_capacity(meta.len() as usize);
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, max + 1), &mut buf)
        .with_context(|| format!("{what} {}: cannot read", path.display()))?;
    if buf.len() as u64 > max {
        bail!("{what} {}: more than {max} bytes", path.display());
    }
    Ok(buf)
}

/// `path` made absolute and free of `.`/`..` and symbolic links as far as it exists (the rest is
/// appended lexically), to compare paths that may not exist yet.
pub fn resolve(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(path)
    };
    let mut base = abs.clone();
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = base.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return lexical(&out);
        }
        match (base.file_name().map(|n| n.to_os_string()), base.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                base = parent.to_path_buf();
            }
            _ => return lexical(&abs),
        }
    }
}

fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Refuse an output folder that is, contains or lies inside one of the `inputs` (flag, path):
/// writing or cleaning it could destroy the input.
pub fn check_apart(out: &Path, out_flag: &str, inputs: &[(&str, &Path)]) -> Result<()> {
    let o = resolve(out);
    for (flag, input) in inputs {
        let i = resolve(input);
        if o == i {
            bail!("{out_flag} {} is the same as {flag}", out.display());
        }
        if i.starts_with(&o) {
            bail!(
                "{out_flag} {} contains {flag} {}: refusing to write over an input",
                out.display(),
                input.display()
            );
        }
        if o.starts_with(&i) {
            bail!(
                "{out_flag} {} lies inside {flag} {}: refusing to write into an input",
                out.display(),
                input.display()
            );
        }
    }
    Ok(())
}

/// SHA-256 of a file, hex.
pub fn sha256(path: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot open {}", path.display()))?;
    if !meta.is_file() {
        bail!("{}: not a regular file", path.display());
    }
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

/// SHA-256 of bytes, hex.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex(&Sha256::digest(bytes))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// Memory available to a new allocation (MemAvailable of /proc/meminfo), in bytes; `None`
/// where unknown.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb.saturating_mul(1024))
}

/// True when `dir` exists and holds anything.
pub fn non_empty_dir(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .map(|mut r| r.next().is_some())
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that accepts `room` bytes and then fails like a full disk.
    struct FullDisk {
        room: usize,
    }

    impl Write for FullDisk {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if self.room == 0 {
                return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_short_file() {
        let e = write_checked(&mut FullDisk { room: 10 }, &[0u8; 100]).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(28));
        // Through a BufWriter, the error surfaces at the checked flush, not at a silent drop.
        let mut w = std::io::BufWriter::new(FullDisk { room: 10 });
        assert!(write_checked(&mut w, &[0u8; 100]).is_err());
    }

    #[test]
    fn write_atomic_to_dev_full_fails_and_leaves_nothing() {
        // /dev/full is not a folder we can write a temp into, so check the writer on it directly.
        if let Ok(mut f) = std::fs::OpenOptions::new().write(true).open("/dev/full") {
            assert!(write_checked(&mut f, &[1u8; 4096]).is_err());
        }
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc",
            "a/b",
            "a\\b",
            "a\0b",
            "a\nb",
            ".d3hr",
            ".hidden",
            "manifest.json",
            "stats.safetensors",
            &"x".repeat(256),
        ] {
            assert!(safe_name(bad, "test").is_err(), "{bad:?} accepted");
        }
        for good in ["n01440764", "0", "tabby cat", "château", "a.b"] {
            assert_eq!(safe_name(good, "test").unwrap(), good);
        }
        assert_eq!(
            child(Path::new("/o"), "cat", "t").unwrap(),
            Path::new("/o/cat")
        );
    }

    #[test]
    fn overlapping_paths_are_refused() {
        let d = std::env::temp_dir().join(format!("d3hr-apart-{}", std::process::id()));
        std::fs::create_dir_all(d.join("data")).unwrap();
        let data = d.join("data");
        assert!(check_apart(&data, "--out", &[("--data", &data)]).is_err());
        assert!(check_apart(&data.join("out"), "--out", &[("--data", &data)]).is_err());
        assert!(check_apart(&d, "--out", &[("--data", &data)]).is_err());
        assert!(check_apart(&d.join("x/../data/"), "--out", &[("--data", &data)]).is_err());
        assert!(check_apart(&d.join("out"), "--out", &[("--data", &data)]).is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn non_regular_files_are_not_opened() {
        let d = std::env::temp_dir().join(format!("d3hr-regular-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let e = read_regular(&d, "--stats", 1 << 20).unwrap_err();
        assert!(format!("{e:#}").contains("is a folder"), "{e:#}");
        let fifo = d.join("x.png");
        if std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .is_ok_and(|s| s.success())
        {
            let e = read_regular(&fifo, "image", 1 << 20).unwrap_err();
            assert!(format!("{e:#}").contains("not a regular file"), "{e:#}");
        }
        let _ = std::fs::remove_dir_all(&d);
    }
}
