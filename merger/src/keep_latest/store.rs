//! The storing side of phase 2: encoded row groups spliced into the file and handed to the
//! store, on a thread of their own so the encoders go on with the next row group meanwhile.

use std::io::Write;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::buffered::BufWriter;
use parquet::arrow::arrow_writer::ArrowColumnChunk;
use parquet::file::writer::SerializedFileWriter;
use tokio::io::AsyncWriteExt;
use tokio::runtime::Handle;

use crate::MergerError;

/// Bytes handed to the store at once: the file never sits whole in memory.
const PUT_BYTES: usize = 8 << 20;

/// What the encoders send the storing thread.
pub(super) enum Stored {
    /// The next row group's column chunks, in schema order.
    RowGroup(Vec<ArrowColumnChunk>),
    /// Every row group was sent: write the footer and complete the upload. Without it (the
    /// encoders failed) the upload is left incomplete, never finished as a shorter file.
    Done,
}

/// `Write` into the store, [`PUT_BYTES`] at a time.
pub(super) struct StoreSink<'a> {
    buffer: Vec<u8>,
    out: &'a mut BufWriter,
    handle: &'a Handle,
}

impl<'a> StoreSink<'a> {
    pub(super) fn new(out: &'a mut BufWriter, handle: &'a Handle) -> Self {
        StoreSink {
            // Grown as written: a small merge's file is a few kilobytes, and reserving
            // PUT_BYTES up front costs each of them fresh pages.
            buffer: Vec::new(),
            out,
            handle,
        }
    }

    /// Hands over the buffer, replaced by `next`.
    fn put(&mut self, next: Vec<u8>) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let full = std::mem::replace(&mut self.buffer, next);
        self.handle
            .block_on(self.out.put(Bytes::from(full)))
            .map_err(std::io::Error::other)
    }

    /// Hands over what is left and completes the upload.
    fn complete(mut self) -> std::io::Result<()> {
        self.put(Vec::new())?;
        self.handle.block_on(self.out.shutdown())
    }
}

impl Write for StoreSink<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        if self.buffer.len() >= PUT_BYTES {
            // A file that filled one buffer is a large one: the next starts at full size
            // rather than growing again from empty, copying itself at every doubling.
            self.put(Vec::with_capacity(PUT_BYTES))?;
        }
        Ok(buf.len())
    }

    /// Nothing: the Parquet writer flushes after every row group, and [`PUT_BYTES`] decides.
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes the row groups `received` into `file` until [`Stored::Done`]; returns the time spent.
pub(super) fn store(
    mut file: SerializedFileWriter<StoreSink<'_>>,
    received: Receiver<Stored>,
) -> Result<Duration, MergerError> {
    let failed = |e: &dyn std::fmt::Display| MergerError::Merge(format!("writing: {e}"));
    let mut storing = Duration::ZERO;
    for stored in received {
        let started = Instant::now();
        match stored {
            Stored::RowGroup(chunks) => {
                let mut row_group = file.next_row_group().map_err(|e| failed(&e))?;
                for chunk in chunks {
                    chunk
                        .append_to_row_group(&mut row_group)
                        .map_err(|e| failed(&e))?;
                }
                row_group.close().map_err(|e| failed(&e))?;
            }
            Stored::Done => {
                file.into_inner()
                    .map_err(|e| failed(&e))?
                    .complete()
                    .map_err(|e| failed(&e))?;
                return Ok(storing + started.elapsed());
            }
        }
        storing += started.elapsed();
    }
    Err(MergerError::Merge(
        "writing stopped before the last row group".into(),
    ))
}
