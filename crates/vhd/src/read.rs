//! The I/O edge: a range reader over a blob (or a file), and [`inspect`], which reads only the
//! last 512 bytes and the first 64 KiB (plus GPT entries if the header puts them elsewhere) and
//! hands them to [`check`](crate::check()). Read failures stay apart from rejections.

use std::future::Future;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;

use crate::check::{Evidence, Expectations, HEAD_LEN, Inspection, check};
use crate::footer::FOOTER_LEN;
use crate::partition;
use crate::problem::Problem;

/// Reads byte ranges of one blob. Implemented by galleon's blob client (HTTP `Range` reads) and by
/// [`FileReader`] / [`BytesReader`] here.
pub trait RangeRead {
    type Error: std::error::Error + Send + Sync + 'static;
    /// Returns the `len` bytes at `offset` (fewer only if the blob is shorter than asked).
    fn read_range(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes, Self::Error>> + Send;
}

/// Why [`inspect`] did not accept the blob: a read failed (retry later) or the blob is bad (reject).
#[derive(Debug, thiserror::Error)]
pub enum InspectError<E: std::error::Error + 'static> {
    /// The reader failed; the blob may be fine. Retry.
    #[error("reading {len} bytes at offset {offset} of the blob failed")]
    Read {
        offset: u64,
        len: u64,
        #[source]
        source: E,
    },
    /// The reader returned fewer bytes than the blob length promised: the blob changed (or is still
    /// being written) while it was read. Retry.
    #[error(
        "asked for {len} bytes at offset {offset} but got {got}: the blob changed while it was read"
    )]
    ShortRead { offset: u64, len: u64, got: u64 },
    /// The blob is not acceptable. Do not retry; tell the uploader.
    #[error(transparent)]
    Rejected(#[from] Problem),
}

impl<E: std::error::Error + 'static> InspectError<E> {
    /// True for read failures, false for rejections.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Rejected(_))
    }

    /// The rejection, if this is one.
    pub fn problem(&self) -> Option<&Problem> {
        match self {
            Self::Rejected(p) => Some(p),
            _ => None,
        }
    }
}

pub(crate) async fn read_exact<R: RangeRead>(
    reader: &R,
    offset: u64,
    len: u64,
) -> Result<Bytes, InspectError<R::Error>> {
    let data = reader
        .read_range(offset, len)
        .await
        .map_err(|source| InspectError::Read {
            offset,
            len,
            source,
        })?;
    if data.len() as u64 != len {
        return Err(InspectError::ShortRead {
            offset,
            len,
            got: data.len() as u64,
        });
    }
    Ok(data)
}

/// Inspects a blob of `blob_len` bytes through `reader` with at most three reads: the last 512
/// bytes, the first 64 KiB (one read when the blob is no bigger than that), and the GPT entries
/// only if the GPT header places them beyond the first 64 KiB.
pub async fn inspect<R: RangeRead>(
    reader: &R,
    blob_len: u64,
    expectations: &Expectations,
) -> Result<Inspection, InspectError<R::Error>> {
    let head_len = blob_len.min(HEAD_LEN);
    let tail_len = blob_len.min(FOOTER_LEN as u64);
    let (head, tail) = if blob_len == 0 {
        (Bytes::new(), Bytes::new())
    } else if blob_len <= HEAD_LEN {
        let all = read_exact(reader, 0, blob_len).await?;
        let tail = all.slice((blob_len - tail_len) as usize..);
        (all, tail)
    } else {
        let tail = read_exact(reader, blob_len - tail_len, tail_len).await?;
        let head = read_exact(reader, 0, head_len).await?;
        (head, tail)
    };
    let disk_end = blob_len.saturating_sub(FOOTER_LEN as u64);
    let gpt_entries = match partition::gpt_entries_location(&head) {
        Some(loc)
            if loc.offset.saturating_add(loc.len) > head_len
                && loc.offset.saturating_add(loc.len) <= disk_end =>
        {
            Some(read_exact(reader, loc.offset, loc.len).await?)
        }
        _ => None,
    };
    let evidence = Evidence {
        blob_len,
        head: &head,
        tail: &tail,
        gpt_entries: gpt_entries.as_deref(),
    };
    Ok(check(&evidence, expectations)?)
}

/// A [`RangeRead`] over a local file (tests, tools).
#[derive(Debug)]
pub struct FileReader {
    file: Mutex<std::fs::File>,
    len: u64,
}

impl FileReader {
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        let file = std::fs::File::open(path)?;
        let len = file.metadata()?.len();
        Ok(Self {
            file: Mutex::new(file),
            len,
        })
    }

    /// The file's length when it was opened.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn read_sync(&self, offset: u64, len: u64) -> std::io::Result<Bytes> {
        let len = usize::try_from(len).map_err(std::io::Error::other)?;
        let mut file = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("file reader lock poisoned"))?;
        file.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        file.by_ref().take(len as u64).read_to_end(&mut buf)?;
        Ok(Bytes::from(buf))
    }
}

impl RangeRead for FileReader {
    type Error = std::io::Error;
    fn read_range(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes, Self::Error>> + Send {
        std::future::ready(self.read_sync(offset, len))
    }
}

/// A [`RangeRead`] over bytes in memory. Reads past the end return what there is (possibly none).
#[derive(Debug, Clone)]
pub struct BytesReader(pub Bytes);

/// Error of [`BytesReader`]: never produced; it only satisfies the trait.
#[derive(Debug, thiserror::Error)]
#[error("unreachable")]
pub struct Never;

impl RangeRead for BytesReader {
    type Error = Never;
    fn read_range(
        &self,
        offset: u64,
        len: u64,
    ) -> impl Future<Output = Result<Bytes, Self::Error>> + Send {
        let total = self.0.len() as u64;
        let start = offset.min(total);
        let end = offset.saturating_add(len).min(total);
        std::future::ready(Ok(self.0.slice(start as usize..end as usize)))
    }
}

/// Wraps a reader and records every range it was asked for and the bytes it returned, so tests
/// can assert that inspection reads only what it needs.
#[derive(Debug)]
pub struct CountingReader<R> {
    inner: R,
    bytes: AtomicU64,
    ranges: Mutex<Vec<(u64, u64)>>,
}

impl<R> CountingReader<R> {
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            bytes: AtomicU64::new(0),
            ranges: Mutex::new(Vec::new()),
        }
    }

    /// Total bytes returned so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    /// The (offset, len) ranges asked for, in order.
    pub fn ranges(&self) -> Vec<(u64, u64)> {
        self.ranges.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Number of reads.
    pub fn reads(&self) -> usize {
        self.ranges().len()
    }

    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: RangeRead + Sync> RangeRead for CountingReader<R> {
    type Error = R::Error;
    async fn read_range(&self, offset: u64, len: u64) -> Result<Bytes, Self::Error> {
        if let Ok(mut r) = self.ranges.lock() {
            r.push((offset, len));
        }
        let result = self.inner.read_range(offset, len).await;
        if let Ok(b) = &result {
            self.bytes.fetch_add(b.len() as u64, Ordering::SeqCst);
        }
        result
    }
}
