//! Dead letters by the run they belong to, so `hubsync run` and `hubsync status` name a run
//! that waits on one and say what to do, instead of waiting silently for its lease.

use std::collections::BTreeMap;

use common::messages::{self, Body};
use common::pipeline::Pipeline;

/// One run's dead letters, by queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub requests: usize,
    pub pages: usize,
    pub merges: usize,
}

impl Counts {
    pub fn total(&self) -> usize {
        self.requests + self.pages + self.merges
    }

    /// `2 page job(s) and 1 merge task(s)`.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (n, what) in [
            (self.requests, "sync request(s)"),
            (self.pages, "page job(s)"),
            (self.merges, "merge task(s)"),
        ] {
            if n > 0 {
                parts.push(format!("{n} {what}"));
            }
        }
        parts.join(" and ")
    }

    /// The `hubsync replay` commands that move them back.
    pub fn replay_commands(&self, lake: &str) -> Vec<String> {
        [
            (self.requests, "requests"),
            (self.pages, "pages"),
            (self.merges, "merge"),
        ]
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(_, q)| format!("hubsync replay --queue {q} --lake {lake}"))
        .collect()
    }
}

/// Every dead letter, by run id (messages that do not decode under `unreadable`).
#[derive(Debug, Clone, Default)]
pub struct DeadLetters {
    pub by_run: BTreeMap<String, Counts>,
    pub unreadable: usize,
}

/// Reads the dead-letter queues without moving anything.
pub async fn dead_letters(p: &Pipeline) -> anyhow::Result<DeadLetters> {
    let mut out = DeadLetters::default();
    for (queue, slot) in [(&p.requests, 0usize), (&p.pages, 1), (&p.merges, 2)] {
        for body in queue.replay_dead_letters(None, true).await? {
            let run_id = match messages::decode(&body) {
                Ok(Body::SyncRequest(r)) => producer::worker::run_id_for(&r),
                Ok(Body::PageJob(j)) => j.run_id,
                Ok(Body::MergeTask(t)) => t.run_id,
                Err(_) => {
                    out.unreadable += 1;
                    continue;
                }
            };
            let counts = out.by_run.entry(run_id).or_default();
            match slot {
                0 => counts.requests += 1,
                1 => counts.pages += 1,
                _ => counts.merges += 1,
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_say_what_and_how_to_replay() {
        let c = Counts {
            requests: 0,
            pages: 2,
            merges: 1,
        };
        assert_eq!(c.describe(), "2 page job(s) and 1 merge task(s)");
        assert_eq!(
            c.replay_commands("lake"),
            [
                "hubsync replay --queue pages --lake lake",
                "hubsync replay --queue merge --lake lake"
            ]
        );
        assert_eq!(c.total(), 3);
    }
}
