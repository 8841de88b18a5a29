//! The simulated network between the nodes: per-message latency (so
//! messages overtake each other), loss, duplication, and cut links
//! (symmetric and one-way partitions). It only decides *when* a message
//! arrives, or that it does not; the event loop delivers it.

use std::collections::BTreeSet;
use std::time::Duration;

use super::rng::SimRng;

/// How links behave at the moment (the same for every link).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Weather {
    pub min_latency_ms: u64,
    pub max_latency_ms: u64,
    /// Probability that a message is lost.
    pub drop: f64,
    /// Probability that a delivered message arrives a second time.
    pub duplicate: f64,
}

impl Weather {
    /// A quiet LAN: 1-5 ms, nothing lost.
    pub const CALM: Weather = Weather {
        min_latency_ms: 1,
        max_latency_ms: 5,
        drop: 0.0,
        duplicate: 0.0,
    };

    /// Random bad weather: up to 20% loss, 10% duplicates, 150 ms jitter.
    pub fn stormy(rng: &mut SimRng) -> Weather {
        let min = rng.range(1, 30);
        Weather {
            min_latency_ms: min,
            max_latency_ms: min + rng.range(1, 150),
            drop: rng.range(0, 21) as f64 / 100.0,
            duplicate: rng.range(0, 11) as f64 / 100.0,
        }
    }
}

/// Counts of what the network did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct NetworkStats {
    pub sent: u64,
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    /// Lost to a cut link.
    pub cut: u64,
}

/// The links and their state.
#[derive(Debug)]
pub struct SimNetwork {
    pub weather: Weather,
    /// Directed links that lose everything: `(from, to)`.
    cut: BTreeSet<(u64, u64)>,
    pub stats: NetworkStats,
}

impl SimNetwork {
    pub fn new() -> Self {
        SimNetwork {
            weather: Weather::CALM,
            cut: BTreeSet::new(),
            stats: NetworkStats::default(),
        }
    }

    /// When a message sent now from `from` to `to` arrives: never (empty),
    /// once, or twice.
    pub fn delays(&mut self, rng: &mut SimRng, from: u64, to: u64) -> Vec<Duration> {
        self.stats.sent += 1;
        if self.cut.contains(&(from, to)) {
            self.stats.cut += 1;
            return Vec::new();
        }
        let w = self.weather;
        if rng.chance(w.drop) {
            self.stats.dropped += 1;
            return Vec::new();
        }
        let mut delays = vec![Duration::from_millis(
            rng.range(w.min_latency_ms, w.max_latency_ms + 1),
        )];
        if rng.chance(w.duplicate) {
            self.stats.duplicated += 1;
            delays.push(Duration::from_millis(
                rng.range(w.min_latency_ms, w.max_latency_ms * 2 + 1),
            ));
        }
        self.stats.delivered += delays.len() as u64;
        delays
    }

    /// Whether `from` can currently reach `to`.
    pub fn reachable(&self, from: u64, to: u64) -> bool {
        !self.cut.contains(&(from, to))
    }

    /// Lose everything from `from` to `to` (one way).
    pub fn cut_one_way(&mut self, from: u64, to: u64) {
        self.cut.insert((from, to));
    }

    /// No traffic between the two sides, either way.
    pub fn split(&mut self, side_a: &[u64], side_b: &[u64]) {
        for &a in side_a {
            for &b in side_b {
                self.cut.insert((a, b));
                self.cut.insert((b, a));
            }
        }
    }

    /// Restore every link.
    pub fn heal(&mut self) {
        self.cut.clear();
    }

    pub fn is_partitioned(&self) -> bool {
        !self.cut.is_empty()
    }
}

impl Default for SimNetwork {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_link_loses_everything_one_way_only() {
        let mut net = SimNetwork::new();
        let mut rng = SimRng::new(3);
        net.cut_one_way(1, 2);
        assert!(net.delays(&mut rng, 1, 2).is_empty());
        assert_eq!(net.delays(&mut rng, 2, 1).len(), 1);
        net.heal();
        assert_eq!(net.delays(&mut rng, 1, 2).len(), 1);
        assert_eq!(net.stats.cut, 1);
    }

    #[test]
    fn weather_drops_and_duplicates_about_as_often_as_asked() {
        let mut net = SimNetwork::new();
        net.weather = Weather {
            min_latency_ms: 1,
            max_latency_ms: 100,
            drop: 0.2,
            duplicate: 0.1,
        };
        let mut rng = SimRng::new(11);
        let mut latencies = BTreeSet::new();
        for _ in 0..10_000 {
            for delay in net.delays(&mut rng, 1, 2) {
                latencies.insert(delay);
            }
        }
        assert!(
            (1_700..2_300).contains(&net.stats.dropped),
            "{:?}",
            net.stats
        );
        assert!(
            (600..1_000).contains(&net.stats.duplicated),
            "{:?}",
            net.stats
        );
        // Jitter: messages overtake each other.
        assert!(latencies.len() > 50);
    }
}
