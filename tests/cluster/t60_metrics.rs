//! `GET /metrics`: a real `raft-host` serves the Prometheus text format with
//! numbers that match what its clients did.

use std::collections::BTreeMap;

use iroh_raft::api::ApiClientError;

use crate::common::{HttpResponse, NodeProcess, http_get};

/// Proposals the guest applies successfully.
const OK_PROPOSALS: u64 = 4;

/// Every sample, keyed by its series (`name{labels}`). Also checks the
/// format: each sample follows the `# TYPE` line of its family.
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut family = String::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            family = rest.split(' ').next().expect("a name").to_string();
            continue;
        }
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("`series value`");
        let name = series.split('{').next().expect("a name");
        assert!(
            name == family
                || name
                    .strip_prefix(family.as_str())
                    .is_some_and(|suffix| { ["_bucket", "_sum", "_count"].contains(&suffix) }),
            "sample {name} outside its family {family}"
        );
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

#[test]
fn t60_metrics_report_raft_state_proposals_and_guest_counters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = NodeProcess::start(dir.path(), &[]);
    let client = node.client();
    for n in 1..=OK_PROPOSALS {
        client
            .propose(format!("add {n}").as_bytes())
            .expect("propose");
    }
    // Applied, with an error result from the guest.
    match client.propose(b"bogus") {
        Err(ApiClientError::Api(info)) => assert_eq!(info.code, "guest_rejected", "{info:?}"),
        other => panic!("expected a guest error, got {other:?}"),
    }
    // Refused by the node before the log: a client error.
    match client.propose(b"") {
        Err(ApiClientError::Api(info)) => assert_eq!(info.code, "empty_command", "{info:?}"),
        other => panic!("expected empty_command, got {other:?}"),
    }

    let HttpResponse {
        status,
        content_type,
        body: text,
        ..
    } = http_get(&format!("{}/metrics", node.api_url));
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let m = parse(&text);
    let value = |series: &str| -> f64 {
        *m.get(series)
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
    };

    // Raft state of a single-node cluster.
    assert_eq!(value("iroh_raft_role{role=\"leader\"}"), 1.0);
    assert_eq!(value("iroh_raft_role{role=\"follower\"}"), 0.0);
    assert_eq!(value("iroh_raft_leader_id"), 1.0);
    assert_eq!(value("iroh_raft_voters"), 1.0);
    assert!(value("iroh_raft_term") >= 1.0);
    let applied = value("iroh_raft_applied_index");
    let commit = value("iroh_raft_commit_index");
    let last = value("iroh_raft_last_log_index");
    // The guest error is a log entry too.
    assert!(applied >= (OK_PROPOSALS + 1) as f64, "applied {applied}");
    assert!(
        applied <= commit && commit <= last,
        "{applied} {commit} {last}"
    );

    // Proposals, by outcome, and the latency of the applied ones.
    assert_eq!(
        value("iroh_raft_proposals_total{outcome=\"ok\"}"),
        OK_PROPOSALS as f64
    );
    assert_eq!(
        value("iroh_raft_proposals_total{outcome=\"guest_error\"}"),
        1.0
    );
    assert_eq!(
        value("iroh_raft_proposals_total{outcome=\"empty_command\"}"),
        1.0
    );
    let histogram = "iroh_raft_proposal_duration_seconds";
    let applied_proposals = (OK_PROPOSALS + 1) as f64;
    assert_eq!(value(&format!("{histogram}_count")), applied_proposals);
    assert_eq!(
        value(&format!("{histogram}_bucket{{le=\"+Inf\"}}")),
        applied_proposals
    );
    assert!(value(&format!("{histogram}_sum")) > 0.0);
    // Cumulative: counts never fall as the bound grows.
    let mut buckets: Vec<(f64, f64)> = m
        .iter()
        .filter_map(|(series, count)| {
            let le = series
                .strip_prefix(&format!("{histogram}_bucket{{le=\""))?
                .strip_suffix("\"}")?;
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().expect("a bound")
            };
            Some((bound, *count))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert_eq!(buckets.len(), 17, "16 bounds and +Inf: {buckets:?}");
    assert_eq!(buckets[0].0, 0.0001);
    assert_eq!(buckets[15].0, 10.0);
    assert!(buckets.windows(2).all(|w| w[0].1 <= w[1].1), "{buckets:?}");

    // The guest's counters.
    assert!(value("iroh_raft_guest_applied_entries_total") >= applied_proposals);
    assert_eq!(value("iroh_raft_guest_failed_entries_total"), 1.0);
    assert_eq!(value("iroh_raft_guest_instance_rebuilds_total"), 0.0);
    assert!(value("iroh_raft_guest_apply_fuel_total") > 0.0);
    assert!(value("iroh_raft_storage_size_bytes") > 0.0);
    let info: Vec<f64> = m
        .iter()
        .filter(|(series, _)| series.starts_with("iroh_raft_node_info{id=\"1\",guest=\"counter\","))
        .map(|(_, v)| *v)
        .collect();
    assert_eq!(info, [1.0], "{text}");

    // What etcd operators look for. The proposal refused before the log
    // failed; the guest's error did not (it applied).
    assert_eq!(value("iroh_raft_proposals_failed_total"), 1.0);
    assert_eq!(value("iroh_raft_has_leader"), 1.0);
    // A single node elected itself once.
    assert_eq!(value("iroh_raft_leader_changes_seen_total"), 1.0);
    // Every write was made durable by at least one fsync; every command
    // was one guest apply.
    assert!(value("iroh_raft_disk_fsync_duration_seconds_count") >= 1.0);
    assert!(value("iroh_raft_disk_fsync_duration_seconds_sum") > 0.0);
    assert!(value("iroh_raft_apply_duration_seconds_count") >= applied_proposals);
    assert_eq!(
        value("iroh_raft_snapshot_duration_seconds_count{phase=\"create\"}"),
        0.0
    );
    assert!(value("process_resident_memory_bytes") > 0.0);
    assert!(value("process_cpu_seconds_total") > 0.0);
    assert!(value("process_open_fds") > 0.0);
    assert!(
        m.keys()
            .any(|series| series.starts_with("iroh_raft_build_info{version=\"")),
        "{text}"
    );

    // A single node has no peers.
    assert!(!text.contains("iroh_raft_peer_"), "{text}");
}

/// Every `iroh_raft_*` and `process_*` metric name in `text`.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for prefix in ["iroh_raft_", "process_"] {
        let mut rest = text;
        while let Some(at) = rest.find(prefix) {
            let name: String = rest[at..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            rest = &rest[at + name.len()..];
            names.insert(name);
        }
    }
    names
}

#[test]
fn t60_the_monitoring_examples_use_only_metrics_a_node_exports() {
    let docs = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/monitoring");
    let dashboard = std::fs::read_to_string(format!("{docs}/grafana-dashboard.json"))
        .expect("the Grafana dashboard");
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let panels = dashboard["panels"].as_array().expect("panels");
    assert!(!panels.is_empty());
    let alerts =
        std::fs::read_to_string(format!("{docs}/prometheus-alerts.yml")).expect("the alert rules");
    assert!(alerts.matches("- alert: ").count() >= 5, "alert rules");

    // A cluster, so the per-peer families are exported too.
    let cluster = crate::common::cluster::Cluster::start(3, "counter", &[]);
    let leader = cluster.leader();
    cluster
        .member(leader)
        .client()
        .propose(b"add 1")
        .expect("a write");
    let metrics = http_get(&format!(
        "{}/metrics",
        cluster.member(leader).process().api_url
    ));
    let samples = parse(&metrics.body);
    let exported: std::collections::BTreeSet<&str> = samples
        .keys()
        .map(|series| series.split('{').next().unwrap_or_default())
        .collect();
    let used = metric_names(&dashboard.to_string())
        .into_iter()
        .chain(metric_names(&alerts));
    for name in used {
        assert!(
            exported.contains(name.as_str()),
            "docs/monitoring uses {name}, which a node does not export"
        );
    }
}
