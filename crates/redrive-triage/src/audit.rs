//! The audit log: one JSON line per group a pass decided ([`AuditRecord`]), appended by the
//! agent, and read back as the agent's memory between passes ([`Memory`]): which jobs it
//! redrove (a job dead again after that is escalated, never looped) and which deaths it already
//! decided. The memory keeps the newest `TRIAGE_AUDIT_MEMORY_JOBS_COUNT_MAX` jobs of each kind,
//! however long the log grows.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write as _};
use std::path::Path;

use redrive_core::limits;
use redrive_core::model::JobId;
use redrive_core::triage::{Decision, Escalation};
use serde::{Deserialize, Serialize};

use crate::agent::Error;
use crate::policy::Verdict;

/// What a pass did with one group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AuditRecord {
    pub at_ms: u64,
    pub queue: String,
    pub source_queue: String,
    pub signature: String,
    pub shape: String,
    pub job_ids: Vec<JobId>,
    pub provider: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_version: Option<String>,
    /// A hash of the redacted input the provider saw (the input itself is not kept).
    pub input_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_output: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    pub decision: Decision,
    /// Job id → the policy's verdict for it.
    pub verdicts: BTreeMap<String, Verdict>,
    /// Job id → when it died (ms), so a later death of the same job is told apart.
    #[serde(default)]
    pub died_at: BTreeMap<String, u64>,
    /// The proposal stored on the server for the jobs a person decides.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proposal: Option<String>,
    /// The escalation as stored on the server (a proposal to acknowledge).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation_proposal: Option<String>,
    /// Jobs redriven by this pass.
    pub executed: Vec<JobId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalation: Option<Escalation>,
    pub actor: String,
}

/// What earlier passes did, read back from the audit log.
#[derive(Debug, Default)]
pub struct Memory {
    pub redriven: HashSet<JobId>,
    /// Deaths already decided: (job, died at).
    pub settled: HashSet<(JobId, u64)>,
}

impl Memory {
    /// Reads the audit log at `path` (none yet: an empty memory), line by line, keeping the
    /// newest `TRIAGE_AUDIT_MEMORY_JOBS_COUNT_MAX` entries of each kind.
    pub fn read(path: &Path) -> Result<Memory, Error> {
        let io = |source| Error::Audit { path: path.to_owned(), source };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Memory::default()),
            Err(e) => return Err(io(e)),
        };
        let max = limits::TRIAGE_AUDIT_MEMORY_JOBS_COUNT_MAX;
        let mut redriven = VecDeque::new();
        let mut settled = VecDeque::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let r: AuditRecord = serde_json::from_str(&line).map_err(|source| {
                Error::AuditRecord { path: path.to_owned(), line: i + 1, source }
            })?;
            redriven.extend(r.executed.iter().copied());
            for (id, v) in &r.verdicts {
                if let (false, Ok(job), Some(at)) =
                    (*v == Verdict::Execute, id.parse(), r.died_at.get(id))
                {
                    settled.push_back((job, *at));
                }
            }
            // The oldest are forgotten first: the log is in time order.
            redriven.drain(..redriven.len().saturating_sub(max));
            settled.drain(..settled.len().saturating_sub(max));
        }
        Ok(Memory {
            redriven: redriven.into_iter().collect(),
            settled: settled.into_iter().collect(),
        })
    }
}

/// Appends one record to the audit log at `path`.
pub fn append(path: &Path, record: &AuditRecord) -> Result<(), Error> {
    let io = |source| Error::Audit { path: path.to_owned(), source };
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(io)?;
    let line = serde_json::to_string(record).expect("serializes");
    writeln!(f, "{line}").map_err(io)
}
