//! An input's bytes for the synchronous Parquet reader, which runs on blocking threads.
//!
//! A small input is fetched whole, once, and shared by every column reader. A large one is read
//! through windows: each column reader owns one window over its own column chunks, so readers of
//! different columns never evict each other's bytes and memory stays at about one window per
//! reader however large the file is. Fetches go through the lake's `ObjectStore` by blocking on
//! the runtime's handle, which is allowed on the blocking and scoped threads the merge runs on.

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::errors::ParquetError;
use parquet::file::reader::{ChunkReader, Length};
use tokio::runtime::Handle;

/// Bytes a ranged reader fetches at once (fewer, larger requests; one window per reader).
pub(super) const WINDOW_BYTES: u64 = 1 << 20;

/// Bytes a page header may need; `get_read` refetches when less than this is left in the window.
const HEADER_ROOM: u64 = 64 << 10;

/// Where one input's bytes live.
#[derive(Clone)]
pub(super) enum InputBytes {
    /// The whole file, fetched once.
    Whole(Bytes),
    /// Read on demand, in windows.
    Ranged(Arc<RangedFile>),
}

/// A file in the store, read by range.
pub(super) struct RangedFile {
    pub store: Arc<dyn ObjectStore>,
    pub path: Path,
    pub size: u64,
    pub handle: Handle,
}

impl InputBytes {
    /// A reader for the column chunks at `chunks` (file byte ranges, in file order).
    pub(super) fn reader(&self, chunks: Vec<Range<u64>>) -> InputReader {
        InputReader {
            bytes: self.clone(),
            chunks,
            window: Mutex::new(Window {
                start: 0,
                bytes: Bytes::new(),
            }),
        }
    }
}

/// The bytes a reader holds: file offsets `start..start + bytes.len()`.
struct Window {
    start: u64,
    bytes: Bytes,
}

/// One column reader's view of an input (see the module doc).
pub(super) struct InputReader {
    bytes: InputBytes,
    /// The byte ranges this reader reads; a window never runs past the end of the one it is in.
    chunks: Vec<Range<u64>>,
    window: Mutex<Window>,
}

impl InputReader {
    /// `len` bytes at `start`, fetching a new window unless the current one holds `min_len`.
    fn bytes_at(&self, start: u64, min_len: u64, len: u64) -> parquet::errors::Result<Bytes> {
        let file = match &self.bytes {
            InputBytes::Whole(bytes) => {
                let end = (start + len).min(bytes.len() as u64);
                if start > end {
                    return Err(ParquetError::EOF(format!(
                        "offset {start} past the end of the file"
                    )));
                }
                return Ok(bytes.slice(start as usize..end as usize));
            }
            InputBytes::Ranged(file) => file,
        };
        let mut window = self
            .window
            .lock()
            .map_err(|_| ParquetError::General("poisoned".into()))?;
        let held = window.start..window.start + window.bytes.len() as u64;
        if !(held.start <= start && start + min_len <= held.end) {
            let chunk_end = self
                .chunks
                .iter()
                .find(|c| c.start <= start && start < c.end)
                .map_or(file.size, |c| c.end);
            let end = (start + WINDOW_BYTES.max(min_len)).min(chunk_end.max(start + min_len));
            let end = end.min(file.size);
            let fetched = file
                .handle
                .block_on(file.store.get_range(&file.path, start..end))
                .map_err(|e| ParquetError::External(Box::new(e)))?;
            *window = Window {
                start,
                bytes: fetched,
            };
        }
        let from = (start - window.start) as usize;
        let to = (from + len as usize).min(window.bytes.len());
        Ok(window.bytes.slice(from..to))
    }
}

impl Length for InputReader {
    fn len(&self) -> u64 {
        match &self.bytes {
            InputBytes::Whole(bytes) => bytes.len() as u64,
            InputBytes::Ranged(file) => file.size,
        }
    }
}

impl ChunkReader for InputReader {
    type T = bytes::buf::Reader<Bytes>;

    /// The reader sees the rest of the window: enough for a page header, which is all the
    /// Parquet reader reads through it (page data comes from `get_bytes`).
    fn get_read(&self, start: u64) -> parquet::errors::Result<Self::T> {
        let left = Length::len(self).saturating_sub(start);
        let room = HEADER_ROOM.min(left);
        let bytes = self.bytes_at(start, room, WINDOW_BYTES.max(room))?;
        Ok(bytes::Buf::reader(bytes))
    }

    fn get_bytes(&self, start: u64, length: usize) -> parquet::errors::Result<Bytes> {
        let bytes = self.bytes_at(start, length as u64, length as u64)?;
        if bytes.len() != length {
            return Err(ParquetError::EOF(format!(
                "expected {length} bytes at offset {start}, got {}",
                bytes.len()
            )));
        }
        Ok(bytes)
    }
}

/// Reads everything a reader returns (for tests of the windows).
#[cfg(test)]
fn read_all(mut read: impl std::io::Read) -> Vec<u8> {
    let mut out = Vec::new();
    read.read_to_end(&mut out).expect("in-memory read");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn windows_stay_inside_their_chunk_and_serve_reads_across_refetches() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let path = Path::from("f.parquet");
        store.put(&path, data.clone().into()).await.unwrap();
        let file = InputBytes::Ranged(Arc::new(RangedFile {
            store,
            path,
            size: data.len() as u64,
            handle: Handle::current(),
        }));
        let got = tokio::task::spawn_blocking(move || {
            let reader = file.reader(vec![100..1_500_000, 2_000_000..3_000_000]);
            let a = reader.get_bytes(100, 10).unwrap();
            // Within the first window: no refetch; then past it, then in the second chunk.
            let b = reader.get_bytes(1_000_000, 100_000).unwrap();
            let c = reader.get_bytes(1_400_000, 100_000).unwrap();
            let d = read_all(reader.get_read(2_999_990).unwrap());
            let held = reader.window.lock().unwrap().bytes.len();
            (a, b, c, d, held)
        })
        .await
        .unwrap();
        assert_eq!(&got.0[..], &data[100..110]);
        assert_eq!(&got.1[..], &data[1_000_000..1_100_000]);
        assert_eq!(&got.2[..], &data[1_400_000..1_500_000]);
        assert_eq!(&got.3[..], &data[2_999_990..]);
        assert_eq!(got.4, 10, "the last window ends at its chunk's end");
    }
}
