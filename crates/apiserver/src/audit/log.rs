//! The log backend: one JSON event per line, to a file rotated by size (upstream's
//! `--audit-log-*` flags, with its rotated names `audit-2026-12-07T18-46-17.123.log`), or to
//! standard output for `-`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// Where and how events are written.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// The file; `-` is standard output.
    pub path: PathBuf,
    /// Rotate once the file would pass this many megabytes (0: never).
    pub max_size_mb: u64,
    /// Keep at most this many rotated files (0: all).
    pub max_backups: usize,
    /// Remove rotated files older than this many days (0: never).
    pub max_age_days: u64,
}

/// The open file and its size.
pub(crate) struct Log {
    opts: LogOptions,
    file: Mutex<Option<(File, u64)>>,
}

impl Log {
    pub(crate) fn new(opts: LogOptions) -> Result<Log, String> {
        let log = Log {
            opts,
            file: Mutex::new(None),
        };
        if !log.stdout() {
            let opened = log
                .open()
                .map_err(|e| format!("{}: {e}", log.opts.path.display()))?;
            *log.file.lock().unwrap_or_else(|e| e.into_inner()) = Some(opened);
        }
        Ok(log)
    }

    fn stdout(&self) -> bool {
        self.opts.path == Path::new("-")
    }

    fn open(&self) -> std::io::Result<(File, u64)> {
        if let Some(dir) = self
            .opts
            .path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&self.opts.path)?;
        let size = file.metadata()?.len();
        Ok((file, size))
    }

    /// Appends `lines`, rotating first if they would make the file too big. A failure is
    /// logged, not returned: the request it records has been served.
    pub(crate) fn write(&self, lines: &[u8]) {
        if self.stdout() {
            let _ = std::io::stdout().lock().write_all(lines);
            return;
        }
        let mut current = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = self.append(&mut current, lines) {
            tracing::warn!(path = %self.opts.path.display(), error = %e, "writing the audit log");
            *current = None;
        }
    }

    fn append(&self, current: &mut Option<(File, u64)>, lines: &[u8]) -> std::io::Result<()> {
        let limit = self.opts.max_size_mb * 1024 * 1024;
        let size = current.as_ref().map_or(0, |(_, s)| *s);
        if limit > 0 && size > 0 && size + lines.len() as u64 > limit {
            *current = None;
            std::fs::rename(&self.opts.path, self.backup_name(SystemTime::now()))?;
            self.prune();
        }
        if current.is_none() {
            *current = Some(self.open()?);
        }
        let (file, size) = current.as_mut().expect("opened above");
        file.write_all(lines)?;
        *size += lines.len() as u64;
        Ok(())
    }

    /// `dir/name-<UTC time with milliseconds>.ext`, as upstream's rotation names backups.
    fn backup_name(&self, at: SystemTime) -> PathBuf {
        let path = &self.opts.path;
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let ext = path
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let at = jiff::Timestamp::try_from(at).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        let stamp = at.strftime("%Y-%m-%dT%H-%M-%S%.3f");
        path.with_file_name(format!("{stem}-{stamp}{ext}"))
    }

    /// The rotated files, newest first.
    fn backups(&self) -> Vec<(SystemTime, PathBuf)> {
        let path = &self.opts.path;
        let stem = path.file_stem().unwrap_or_default().to_string_lossy();
        let prefix = format!("{stem}-");
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
        let entries = std::fs::read_dir(dir.unwrap_or(Path::new(".")));
        let mut found: Vec<(SystemTime, PathBuf)> = entries
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        found.sort_by(|a, b| b.cmp(a));
        found
    }

    /// Removes rotated files beyond the count and age the options allow.
    fn prune(&self) {
        let max_age = Duration::from_secs(self.opts.max_age_days * 24 * 3600);
        let now = SystemTime::now();
        for (i, (modified, path)) in self.backups().into_iter().enumerate() {
            let too_many = self.opts.max_backups > 0 && i >= self.opts.max_backups;
            let too_old = self.opts.max_age_days > 0
                && now.duration_since(modified).unwrap_or_default() > max_age;
            if too_many || too_old {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_is_rotated_and_old_backups_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let log = Log::new(LogOptions {
            path: path.clone(),
            max_size_mb: 1,
            max_backups: 2,
            max_age_days: 0,
        })
        .unwrap();
        let line = vec![b'x'; 400 * 1024];
        for _ in 0..10 {
            log.write(&line);
            // Rotated names have millisecond resolution.
            std::thread::sleep(Duration::from_millis(2));
        }
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(size <= 1024 * 1024, "{size}");
        let backups = log.backups();
        assert_eq!(backups.len(), 2, "{backups:?}");
        let name = backups[0]
            .1
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_string();
        assert!(
            name.starts_with("audit-") && name.ends_with(".log"),
            "{name}"
        );
        assert_eq!(name.len(), "audit-2026-12-07T18-46-17.123.log".len());
    }
}
