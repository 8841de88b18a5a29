//! What a [`NodeHandle`] does for an operator who upgrades: validate a
//! candidate, store it, propose its activation (or a rollback), run a dry
//! run, and read the history.

use crate::limits::{DEFAULT_DRY_RUN_ENTRIES, MAX_COMPONENT_BYTES};
use crate::limits::{PREPARE_ROUND_TIMEOUT, PREPARE_STRAGGLER_GRACE};
use crate::node::upgrade::LimitOverridesExt as _;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::{
    Activation, ActivationKind, ComponentHistory, ComponentRecord, DryRunReport, LimitOverrides,
    UpgradeOptions,
};
use crate::node::applier::{AppliedRecord, Candidate};
use crate::node::{Applied, ClientError, NodeHandle, NodeMsg};
use crate::storage::ComponentStore;
use crate::wasm::{
    ComponentHash, GuestInfo, GuestLimits, LoadedComponent, StateMachine, WasmEngine,
};

/// What a node needs to validate and store candidate components.
#[derive(Debug, Clone)]
pub struct UpgradeEnv {
    pub engine: WasmEngine,
    pub components: ComponentStore,
    /// The node's default guest limits.
    pub limits: GuestLimits,
    /// See [`crate::limits::DEFAULT_COMPILE_BUDGET`].
    pub compile_budget: Duration,
}

/// A candidate that loads: compiled, linked against the deterministic WASI,
/// exporting `state-machine`, and instantiable with an `info()` answer.
#[derive(Debug)]
pub struct ValidatedComponent {
    pub component: LoadedComponent,
    pub info: GuestInfo,
    pub compile_ms: u64,
}

/// Check a candidate before anything is proposed. Blocking (compiles).
pub fn validate_component(
    engine: &WasmEngine,
    bytes: &[u8],
    limits: GuestLimits,
    compile_budget: Duration,
) -> Result<ValidatedComponent, ClientError> {
    if bytes.len() as u64 > MAX_COMPONENT_BYTES {
        return Err(ClientError::InvalidComponent(format!(
            "{} bytes is over the component limit of {MAX_COMPONENT_BYTES} bytes",
            bytes.len()
        )));
    }
    let started = Instant::now();
    let component = engine
        .load(bytes)
        .map_err(|e| ClientError::InvalidComponent(e.to_string()))?;
    let elapsed = started.elapsed();
    if elapsed > compile_budget {
        return Err(ClientError::InvalidComponent(format!(
            "compiling took {} ms, over the budget of {} ms",
            elapsed.as_millis(),
            compile_budget.as_millis()
        )));
    }
    let machine = StateMachine::new(component.clone(), limits)
        .map_err(|e| ClientError::InvalidComponent(e.to_string()))?;
    Ok(ValidatedComponent {
        component,
        info: machine.info().clone(),
        compile_ms: elapsed.as_millis() as u64,
    })
}

impl NodeHandle {
    /// Upgrade the cluster to the component `bytes`: validate it here,
    /// store it, and propose its activation (through the leader). Resolves
    /// with the activation's applied result: the new history record, or
    /// `UpgradeFailed` with the reason the cluster stayed where it was.
    pub async fn upgrade(
        &self,
        bytes: Vec<u8>,
        options: UpgradeOptions,
    ) -> Result<Applied, ClientError> {
        let limits = options.limits;
        let store = self.inner.upgrades.components.clone();
        let (_, bytes) = self.validate(bytes, limits).await?;
        let size_bytes = bytes.len() as u64;
        let hash = tokio::task::spawn_blocking(move || store.put(&bytes))
            .await
            .map_err(|_| ClientError::Stopped)?
            .map_err(|e| ClientError::UpgradeRefused(format!("storing the component: {e}")))?;
        if self.inner.applier.history().active.hash == hash.to_hex() && limits.is_empty() {
            return Err(ClientError::UpgradeRefused(format!(
                "component {hash} is already active"
            )));
        }
        self.activate(Activation {
            hash: hash.to_hex(),
            size_bytes,
            kind: ActivationKind::Upgrade,
            limits,
            source: self.inner.id,
        })
        .await
    }

    /// Go back to the component that was active before the current one,
    /// through the same activation entry (its state migrates the same way).
    pub async fn rollback(&self) -> Result<Applied, ClientError> {
        // Read the history as of everything committed (an upgrade just
        // proposed through another node included): a linearizable read is
        // that barrier; the guest's answer to the empty query is not used.
        self.query_with(Vec::new(), crate::node::Consistency::Linearizable)
            .await?;
        let history = self.inner.applier.history();
        let previous = history.previous().ok_or_else(|| {
            ClientError::UpgradeRefused("there is no earlier component to roll back to".into())
        })?;
        self.activate(Activation {
            hash: previous.hash.clone(),
            size_bytes: previous.size_bytes,
            kind: ActivationKind::Rollback,
            limits: previous.limits,
            source: self.inner.id,
        })
        .await
    }

    /// Have every other member fetch and compile the component before the
    /// activation exists, so it applies without stalling anywhere. Waits
    /// until a majority holds it (so the bytes survive the proposer), then
    /// at most [`PREPARE_STRAGGLER_GRACE`] for the rest: a member that is
    /// down or cut off fetches the component when it applies the activation.
    async fn prepare_members(&self, activation: &Activation) {
        let (Some(forwarder), Some(directory)) = (&self.inner.forwarder, &self.inner.directory)
        else {
            return;
        };
        let started = Instant::now();
        let members = directory.member_ids();
        let needed = members.len() / 2 + 1;
        let mut tasks = tokio::task::JoinSet::new();
        for peer in members.into_iter().filter(|id| *id != self.inner.id) {
            let forwarder = forwarder.clone();
            let activation = activation.clone();
            tasks.spawn(async move {
                let outcome = forwarder.prepare_component(peer, activation).await;
                (peer, outcome)
            });
        }
        let deadline = tokio::time::Instant::now() + PREPARE_ROUND_TIMEOUT;
        let mut majority_at: Option<tokio::time::Instant> = None;
        let mut ready = vec![self.inner.id];
        loop {
            let until =
                majority_at.map_or(deadline, |at| (at + PREPARE_STRAGGLER_GRACE).min(deadline));
            let joined = match tokio::time::timeout_at(until, tasks.join_next()).await {
                Ok(Some(joined)) => joined,
                // Everyone answered, or the time is up.
                Ok(None) | Err(_) => break,
            };
            match joined {
                Ok((peer, Ok(compile_ms))) => {
                    tracing::debug!(peer, compile_ms, "a member prepared the component");
                    ready.push(peer);
                }
                Ok((peer, Err(reason))) => tracing::warn!(peer, %reason,
                    "a member could not prepare the component; it will fetch it when it applies"),
                Err(_) => {}
            }
            if ready.len() >= needed && majority_at.is_none() {
                majority_at = Some(tokio::time::Instant::now());
            }
        }
        tracing::info!(hash = %activation.hash, ready = ?ready,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "members prepared the component");
    }

    /// Get the members ready, then propose the activation here or on the
    /// leader.
    async fn activate(&self, activation: Activation) -> Result<Applied, ClientError> {
        self.prepare_members(&activation).await;
        self.propose_or_forward(activation).await
    }

    /// Run `bytes` as a candidate against this node's current state and its
    /// most recent entries, next to the active component. Changes nothing.
    pub async fn dry_run(
        &self,
        bytes: Vec<u8>,
        options: UpgradeOptions,
    ) -> Result<DryRunReport, ClientError> {
        let limits = options.limits;
        let (validated, _) = self.validate(bytes, limits).await?;
        let candidate = Candidate {
            component: validated.component,
            info: validated.info,
            limits,
            compile_ms: validated.compile_ms,
            entries: options.dry_run_entries.unwrap_or(DEFAULT_DRY_RUN_ENTRIES),
        };
        let (reply, answer) = oneshot::channel();
        self.inner.inbox.try_send(NodeMsg::DryRun {
            candidate: Box::new(candidate),
            reply,
        })?;
        answer
            .await
            .map_err(|_| ClientError::Stopped)?
            .map_err(ClientError::UpgradeRefused)
    }

    /// Check `limits` and validate the component off the async threads
    /// (it compiles); hands the bytes back.
    async fn validate(
        &self,
        bytes: Vec<u8>,
        limits: LimitOverrides,
    ) -> Result<(ValidatedComponent, Vec<u8>), ClientError> {
        check_overrides(&limits)?;
        let env = self.inner.upgrades.clone();
        // Over the cluster's current limits, as the activation will be.
        let current = self
            .inner
            .applier
            .history()
            .active
            .limits
            .resolve(env.limits);
        tokio::task::spawn_blocking(move || {
            let validated = validate_component(
                &env.engine,
                &bytes,
                limits.resolve(current),
                env.compile_budget,
            )?;
            Ok((validated, bytes))
        })
        .await
        .map_err(|_| ClientError::Stopped)?
    }

    /// The active component and every activation this node has applied.
    pub fn components(&self) -> ComponentHistory {
        self.inner.applier.history()
    }

    /// Which component applied each of the recent entries from `since` on,
    /// and a hash of each result (at most `limit`).
    pub fn recent_results(&self, since: u64, limit: usize) -> Vec<AppliedRecord> {
        self.inner.applier.recent_results(since, limit)
    }
}

/// The history record an activation's successful result carries.
pub fn activated_record(applied: &Applied) -> Option<ComponentRecord> {
    applied
        .result
        .as_ref()
        .ok()
        .and_then(|bytes| serde_json::from_slice(bytes).ok())
}

/// Whether `hash` is one of the components in `history`.
pub fn in_history(history: &ComponentHistory, hash: &ComponentHash) -> bool {
    let hex = hash.to_hex();
    history.records.iter().any(|r| r.hash == hex) || history.active.hash == hex
}

/// Overrides are replicated; a node refuses values that make no sense or
/// exceed their bounds ([`crate::limits::MAX_CALL_FUEL`],
/// [`crate::limits::MAX_MEMORY_LIMIT_BYTES`]).
pub fn check_overrides(limits: &LimitOverrides) -> Result<(), ClientError> {
    limits.check().map_err(ClientError::UpgradeRefused)
}
