//! Where `play` takes its audio from: a file inside `[call_automation] media_dir` (named by file
//! name or relative path) or an http(s) URL whose host `[call_automation] media_hosts` allows.
//!
//! A source is checked when the request arrives ([`MediaLibrary::locate`]: a bad URI is the
//! request's fault, a 400) and read later ([`MediaLibrary::load`]: a missing, oversized or
//! undecodable file is a `PlayFailed` event, as ACS reports it). Decoding runs in
//! `spawn_blocking` (Opus encoding is CPU-bound).

use super::audio::{self, AudioError, Prompt};
use crate::config::CallAutomationSection;
use crate::webhooks::{HostPattern, check_url};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use url::Url;

/// Why a media source cannot be played.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// The URI itself is not acceptable (refused with 400 when the request arrives).
    #[error("{0}")]
    BadSource(String),
    #[error("the media file was not found")]
    NotFound,
    #[error("the media file is larger than {0} bytes")]
    TooLarge(u64),
    #[error("the media file could not be read: {0}")]
    Read(String),
    #[error("the media file could not be downloaded: {0}")]
    Fetch(String),
    #[error("the media file cannot be played: {0}")]
    Audio(#[from] AudioError),
}

impl MediaError {
    /// The ACS `resultInformation` of the `PlayFailed` event (codes of the ACS play
    /// troubleshooting table: 8535 bad format, 8536 could not download, 8565 file not found).
    pub fn acs_code(&self) -> (u16, u32) {
        match self {
            MediaError::Audio(_) => (400, 8535),
            MediaError::Fetch(_) | MediaError::TooLarge(_) => (400, 8536),
            MediaError::NotFound | MediaError::BadSource(_) => (400, 8565),
            MediaError::Read(_) => (500, 9999),
        }
    }
}

/// A checked play source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// A path inside the media directory (not yet checked for symlinks out of it).
    File(PathBuf),
    Url(Url),
}

/// The media sources `play` may use.
pub struct MediaLibrary {
    dir: PathBuf,
    hosts: Vec<HostPattern>,
    max_bytes: u64,
    http: reqwest::Client,
    /// Decoding and Opus encoding run on blocking threads, one file at a time per permit: a
    /// burst of plays over many calls must not take the cores the media workers forward on.
    decoding: tokio::sync::Semaphore,
}

/// Files decoded and encoded at once, over all call connections.
pub const CONCURRENT_DECODES: usize = 2;

impl MediaLibrary {
    pub fn new(config: &CallAutomationSection) -> Self {
        let timeout = Duration::from_millis(config.media_fetch_timeout_ms.get());
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self {
            dir: config.media_dir.clone(),
            hosts: config.media_hosts.clone(),
            max_bytes: config.max_media_bytes.get(),
            http,
            decoding: tokio::sync::Semaphore::new(CONCURRENT_DECODES),
        }
    }

    /// Check a `FileSource.uri`: an http(s) URL on an allowed host, or a relative path of plain
    /// names inside the media directory.
    pub fn locate(&self, uri: &str) -> Result<Located, MediaError> {
        let bad = |m: &str| MediaError::BadSource(m.to_owned());
        if uri.is_empty() {
            return Err(bad("the file source's uri is empty"));
        }
        if let Ok(url) = Url::parse(uri) {
            if matches!(url.scheme(), "http" | "https") {
                if self.hosts.is_empty() {
                    return Err(bad("this server plays no media from URLs (call_automation.media_hosts is empty)"));
                }
                return check_url(&self.hosts, uri)
                    .map(|u| Located::Url(u.url().clone()))
                    .map_err(|e| MediaError::BadSource(format!("media URL refused: {e}")));
            }
            // A scheme of one letter is a Windows drive; anything else (file:, ftp:, ...) is refused.
            if url.scheme().len() > 1 {
                return Err(MediaError::BadSource(format!("the {}: scheme is not supported", url.scheme())));
            }
        }
        if self.dir.as_os_str().is_empty() {
            return Err(bad("this server has no media directory (call_automation.media_dir)"));
        }
        let relative = Path::new(uri);
        let plain = relative.components().all(|c| matches!(c, Component::Normal(_)));
        if !plain || uri.contains('\\') || uri.contains('\0') {
            return Err(bad("a media file is named by a relative path inside the media directory"));
        }
        Ok(Located::File(self.dir.join(relative)))
    }

    /// Read and decode a located source. Blocking work runs off the runtime threads.
    pub async fn load(&self, source: &Located) -> Result<Arc<Prompt>, MediaError> {
        let bytes = match source {
            Located::File(path) => {
                let (dir, path, max) = (self.dir.clone(), path.clone(), self.max_bytes);
                tokio::task::spawn_blocking(move || read_inside(&dir, &path, max))
                    .await
                    .map_err(|e| MediaError::Read(e.to_string()))??
            }
            Located::Url(url) => self.fetch(url).await?,
        };
        // The semaphore is never closed, so acquiring fails only if it were.
        let _permit = self.decoding.acquire().await.map_err(|e| MediaError::Read(e.to_string()))?;
        let prompt = tokio::task::spawn_blocking(move || audio::load(&bytes))
            .await
            .map_err(|e| MediaError::Read(e.to_string()))??;
        Ok(Arc::new(prompt))
    }

    async fn fetch(&self, url: &Url) -> Result<Vec<u8>, MediaError> {
        let fetch = |e: reqwest::Error| MediaError::Fetch(e.without_url().to_string());
        let mut response = self.http.get(url.clone()).send().await.map_err(fetch)?;
        if !response.status().is_success() {
            return Err(MediaError::Fetch(format!("the server answered {}", response.status())));
        }
        if response.content_length().is_some_and(|n| n > self.max_bytes) {
            return Err(MediaError::TooLarge(self.max_bytes));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(fetch)? {
            if body.len() as u64 + chunk.len() as u64 > self.max_bytes {
                return Err(MediaError::TooLarge(self.max_bytes));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// Read `path`, which must resolve (symlinks followed) inside `dir`, up to `max` bytes.
fn read_inside(dir: &Path, path: &Path, max: u64) -> Result<Vec<u8>, MediaError> {
    use std::io::Read as _;
    let not_found = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => MediaError::NotFound,
        _ => MediaError::Read(e.to_string()),
    };
    let root = dir.canonicalize().map_err(not_found)?;
    let real = path.canonicalize().map_err(not_found)?;
    if !real.starts_with(&root) {
        // A symlink out of the media directory: as good as absent.
        return Err(MediaError::NotFound);
    }
    let file = std::fs::File::open(&real).map_err(not_found)?;
    if file.metadata().map_err(not_found)?.len() > max {
        return Err(MediaError::TooLarge(max));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes).map_err(not_found)?;
    if bytes.len() as u64 > max {
        return Err(MediaError::TooLarge(max));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn library(dir: &Path, hosts: &[&str]) -> MediaLibrary {
        let mut config = CallAutomationSection { media_dir: dir.to_path_buf(), ..Default::default() };
        config.media_hosts = hosts.iter().map(|h| HostPattern::parse(h).expect("pattern")).collect();
        MediaLibrary::new(&config)
    }

    #[test]
    fn locates_relative_files_and_allowed_urls_only() {
        let lib = library(Path::new("/media"), &["media.example.com"]);
        assert_eq!(lib.locate("hello.wav").expect("file"), Located::File("/media/hello.wav".into()));
        assert_eq!(lib.locate("prompts/menu.ogg").expect("file"), Located::File("/media/prompts/menu.ogg".into()));
        assert!(matches!(lib.locate("https://media.example.com/a.wav"), Ok(Located::Url(_))));
        for bad in [
            "",
            "../etc/passwd",
            "prompts/../../x.wav",
            "/etc/passwd",
            "./x.wav",
            "a\\..\\b.wav",
            "file:///etc/passwd",
            "ftp://media.example.com/a.wav",
            "https://evil.example.com/a.wav",
            "http://127.0.0.1/a.wav",
        ] {
            assert!(matches!(lib.locate(bad), Err(MediaError::BadSource(_))), "{bad:?} must be refused");
        }
        let no_dir = library(Path::new(""), &[]);
        assert!(matches!(no_dir.locate("hello.wav"), Err(MediaError::BadSource(_))));
        assert!(matches!(no_dir.locate("https://media.example.com/a.wav"), Err(MediaError::BadSource(_))));
    }

    #[test]
    fn reads_inside_the_directory_only_and_up_to_the_cap() {
        let root = tempfile::tempdir().expect("tmp");
        let media = root.path().join("media");
        std::fs::create_dir(&media).expect("mkdir");
        std::fs::write(media.join("ok.bin"), b"12345").expect("write");
        std::fs::write(root.path().join("secret.bin"), b"secret").expect("write");
        assert_eq!(read_inside(&media, &media.join("ok.bin"), 5).expect("read"), b"12345");
        assert!(matches!(read_inside(&media, &media.join("ok.bin"), 4), Err(MediaError::TooLarge(4))));
        assert!(matches!(read_inside(&media, &media.join("none.bin"), 10), Err(MediaError::NotFound)));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.path().join("secret.bin"), media.join("link.bin")).expect("symlink");
            assert!(matches!(read_inside(&media, &media.join("link.bin"), 10), Err(MediaError::NotFound)));
        }
    }
}
