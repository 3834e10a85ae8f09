//! The proposals and policies as the store keeps them: documents ([`DocKind`]) written through
//! the store's group commit and bounded, with a copy in memory that every read and decision
//! refreshes from the store first ([`load`]), so servers sharing one database see each other's
//! writes. Every write goes to the store first, then to the copy, so the copy never shows what
//! the store refused. Deciding a proposal claims it with a compare-and-set in the store, so two
//! servers deciding one proposal at the same instant cannot both run it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use redrive_core::broker::DocKind;
use redrive_core::triage::{Policy, Proposal, Status};
use redrive_core::{limits, Broker, Error};

/// The proposals in the store, as last written through [`Proposals::put`] (or loaded).
#[derive(Default)]
pub struct Proposals {
    all: Mutex<Vec<Proposal>>,
}

impl Proposals {
    /// Takes a pending (or failed) proposal for deciding, in the store: a compare-and-set from
    /// the stored text, so of two decisions racing for one proposal, on one server or on two
    /// sharing a database, exactly one runs it; the other is told it is already decided.
    pub(super) async fn claim(
        &self,
        broker: &impl Broker,
        id: &str,
        by: &str,
        status: Status,
    ) -> Result<Proposal, Error> {
        let decided =
            |st: Status| Error::invalid("status", format!("the proposal is already {st:?}"));
        let raw = broker
            .get_doc(DocKind::TriageProposal, id.to_owned())
            .await?
            .ok_or_else(|| Error::ProposalNotFound(id.to_owned()))?;
        let mut p: Proposal = serde_json::from_str(&raw)
            .map_err(|e| Error::Internal(format!("stored proposal {id} is malformed: {e}")))?;
        // A proposal whose execution failed may be decided again.
        if !matches!(p.status, Status::Pending | Status::Failed) {
            return Err(decided(p.status));
        }
        p.status = status;
        p.decided_by = Some(by.to_owned());
        let text = serde_json::to_string(&p).expect("serializes");
        if !broker.put_doc_if(DocKind::TriageProposal, id.to_owned(), Some(raw), Some(text)).await?
        {
            return Err(decided(status));
        }
        let mut all = self.all.lock().expect("not poisoned");
        match all.iter_mut().find(|x| x.id == p.id) {
            Some(x) => *x = p.clone(),
            None => all.push(p.clone()),
        }
        Ok(p)
    }

    /// Proposals by status, for `/metrics`.
    pub fn counts(&self) -> Vec<(String, u64)> {
        let all = self.all.lock().expect("not poisoned");
        let of = |st: Status| all.iter().filter(|p| p.status == st).count() as u64;
        Status::ALL.into_iter().map(|st| (st.to_string(), of(st))).collect()
    }

    pub(super) fn get(&self, id: &str) -> Result<Proposal, Error> {
        let all = self.all.lock().expect("not poisoned");
        all.iter()
            .find(|p| p.id == id)
            .cloned()
            .ok_or_else(|| Error::ProposalNotFound(id.to_owned()))
    }

    /// The proposals with `status` (all if `None`), oldest first.
    pub(super) fn list(&self, status: Option<Status>) -> Vec<Proposal> {
        let all = self.all.lock().expect("not poisoned");
        all.iter().filter(|p| status.is_none_or(|st| p.status == st)).cloned().collect()
    }

    /// Stores `p` (replacing the proposal with its id), then updates the copy in memory.
    pub(super) async fn put(&self, broker: &impl Broker, p: Proposal) -> Result<Proposal, Error> {
        let text = serde_json::to_string(&p).expect("serializes");
        broker.put_doc(DocKind::TriageProposal, p.id.clone(), Some(text)).await?;
        let mut all = self.all.lock().expect("not poisoned");
        match all.iter_mut().find(|x| x.id == p.id) {
            Some(x) => *x = p.clone(),
            None => all.push(p.clone()),
        }
        Ok(p)
    }

    /// Makes room for one more proposal: at `TRIAGE_PROPOSALS_COUNT_MAX`, the oldest decided
    /// one is forgotten; when every proposal still waits for a person, nothing is.
    pub(super) async fn make_room(&self, broker: &impl Broker) -> Result<(), Error> {
        let oldest_decided = {
            let all = self.all.lock().expect("not poisoned");
            if all.len() < limits::TRIAGE_PROPOSALS_COUNT_MAX {
                return Ok(());
            }
            let decided = |p: &&Proposal| matches!(p.status, Status::Approved | Status::Rejected);
            all.iter().find(decided).map(|p| p.id.clone())
        };
        let Some(id) = oldest_decided else {
            return Err(Error::LimitExceeded {
                limit: "TRIAGE_PROPOSALS_COUNT_MAX",
                max: limits::TRIAGE_PROPOSALS_COUNT_MAX as u64,
            });
        };
        broker.put_doc(DocKind::TriageProposal, id.clone(), None).await?;
        self.all.lock().expect("not poisoned").retain(|p| p.id != id);
        Ok(())
    }
}

/// Triage policies by queue, set by a person through the API (the store's, as last written).
#[derive(Default)]
pub struct Policies {
    all: Mutex<BTreeMap<String, Policy>>,
}

impl Policies {
    pub(super) fn all(&self) -> BTreeMap<String, Policy> {
        self.all.lock().expect("not poisoned").clone()
    }

    pub(super) fn get(&self, queue: &str) -> Option<Policy> {
        self.all.lock().expect("not poisoned").get(queue).cloned()
    }

    /// Stores `queue`'s policy (`None` removes it), then updates the copy in memory.
    pub(super) async fn put(
        &self,
        broker: &impl Broker,
        queue: String,
        policy: Option<Policy>,
    ) -> Result<(), Error> {
        let text = policy.as_ref().map(|p| serde_json::to_string(p).expect("serializes"));
        broker.put_doc(DocKind::TriagePolicy, queue.clone(), text).await?;
        let mut all = self.all.lock().expect("not poisoned");
        match policy {
            Some(p) => all.insert(queue, p),
            None => all.remove(&queue),
        };
        Ok(())
    }
}

/// Fills the copies in memory from the store's documents (at start-up).
pub async fn load<B: Broker>(state: &crate::AppState<B>) -> Result<(), Error> {
    let mut proposals = Vec::new();
    for (id, text) in state.broker.list_docs(DocKind::TriageProposal).await? {
        let p: Proposal = serde_json::from_str(&text)
            .map_err(|e| Error::Internal(format!("stored triage proposal {id}: {e}")))?;
        proposals.push(p);
    }
    // Ids are UUIDv7: in creation order once sorted.
    proposals.sort_by(|a, b| a.id.cmp(&b.id));
    *state.proposals.all.lock().expect("not poisoned") = proposals;
    let mut policies = BTreeMap::new();
    for (queue, text) in state.broker.list_docs(DocKind::TriagePolicy).await? {
        let p: Policy = serde_json::from_str(&text)
            .map_err(|e| Error::Internal(format!("stored triage policy of {queue}: {e}")))?;
        policies.insert(queue, p);
    }
    *state.policies.all.lock().expect("not poisoned") = policies;
    Ok(())
}

/// Moves proposals and policies that an older version kept in JSON files beside the log into
/// the store, then renames each file to `*.imported`. Returns how many documents it moved.
pub async fn import_files<B: Broker>(
    state: &crate::AppState<B>,
    proposals: &Path,
    policies: &Path,
) -> Result<usize, Error> {
    let mut moved = 0;
    for p in read_json::<Vec<Proposal>>(proposals)?.into_iter().flatten() {
        state.proposals.make_room(&state.broker).await?;
        state.proposals.put(&state.broker, p).await?;
        moved += 1;
    }
    for (queue, p) in read_json::<BTreeMap<String, Policy>>(policies)?.into_iter().flatten() {
        state.policies.put(&state.broker, queue, Some(p)).await?;
        moved += 1;
    }
    for file in [proposals, policies] {
        if file.exists() {
            std::fs::rename(file, file.with_extension("json.imported"))
                .map_err(|e| Error::Internal(format!("renaming {}: {e}", file.display())))?;
        }
    }
    Ok(moved)
}

/// A JSON file, or `None` if it does not exist.
fn read_json<T: serde::de::DeserializeOwned>(file: &Path) -> Result<Option<T>, Error> {
    let bad =
        |e: &dyn std::fmt::Display| Error::Internal(format!("reading {}: {e}", file.display()));
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| bad(&e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(bad(&e)),
    }
}
