//! A fixed set of tasks on a few scoped threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::Mutex;

use crate::MergerError;

/// The threads to use: the machine's cores.
pub(super) fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Runs `task(i)` for every `i` of `order` (a permutation of `0..n`, started in that order) on
/// up to `threads` threads; returns the results indexed by `i`, or the first error (the tasks
/// not yet started are then skipped).
pub(super) fn map<T: Send, E: Send + From<MergerError>>(
    n: usize,
    order: &[usize],
    threads: usize,
    task: impl Fn(usize) -> Result<T, E> + Sync,
) -> Result<Vec<T>, E> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Vec<Mutex<Option<Result<T, E>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let work = || {
        while !failed.load(Relaxed) {
            let Some(&i) = order.get(next.fetch_add(1, Relaxed)) else {
                break;
            };
            let result = task(i);
            failed.fetch_or(result.is_err(), Relaxed);
            if let Ok(mut slot) = results[i].lock() {
                *slot = Some(result);
            }
        }
    };
    std::thread::scope(|s| {
        for _ in 1..threads.clamp(1, order.len().max(1)) {
            s.spawn(work);
        }
        // This thread works too.
        work();
    });
    let mut out = Vec::with_capacity(n);
    let mut missing = false;
    for slot in results {
        match slot.into_inner().ok().flatten() {
            Some(Ok(t)) => out.push(t),
            Some(Err(e)) => return Err(e),
            None => missing = true,
        }
    }
    if missing {
        return Err(MergerError::Merge("a parallel task did not run".into()).into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_by_index_whatever_the_start_order() {
        let got = map(5, &[4, 2, 0, 1, 3], 2, |i| Ok::<_, MergerError>(i * 10)).unwrap();
        assert_eq!(got, [0, 10, 20, 30, 40]);
        assert_eq!(map(0, &[], 2, Ok::<_, MergerError>).unwrap(), Vec::<usize>::new());
    }

    #[test]
    fn an_error_is_returned() {
        let got = map(3, &[0, 1, 2], 2, |i| {
            if i == 1 {
                Err(MergerError::Merge("boom".into()))
            } else {
                Ok(i)
            }
        });
        assert!(matches!(got, Err(MergerError::Merge(m)) if m == "boom"));
    }
}
