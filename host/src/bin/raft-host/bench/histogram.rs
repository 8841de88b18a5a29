//! A latency histogram of fixed size: log-linear buckets (HdrHistogram's
//! layout with two significant digits), so a run of any length costs the
//! same memory and a percentile is within 1/64 (`RELATIVE_ERROR`) of the
//! truth.
//!
//! Values below [`LINEAR_LIMIT`] µs have a bucket each; above, each power of
//! two is cut into `LINEAR_LIMIT / 2` equal buckets. A value is reported as
//! its bucket's upper bound (a percentile errs on the slow side), the
//! maximum exactly.

/// Values below this (µs) are counted exactly: one bucket per microsecond.
const LINEAR_LIMIT: u64 = 128;
/// Buckets per power of two above [`LINEAR_LIMIT`].
const SUB_BUCKETS: u64 = LINEAR_LIMIT / 2;
/// log2 of [`SUB_BUCKETS`].
const SUB_BUCKET_BITS: u32 = SUB_BUCKETS.trailing_zeros();
/// The largest latency tracked, in µs (2^36 µs, about 19 hours); longer
/// ones are counted as this. Bounds the bucket count.
pub const MAX_TRACKED_US: u64 = (1 << 36) - 1;
/// How far a reported percentile may be above the true value (1/64).
#[cfg(test)]
const RELATIVE_ERROR: f64 = 1.0 / SUB_BUCKETS as f64;
/// Buckets: the index of [`MAX_TRACKED_US`] plus one.
const BUCKETS: usize = bucket_of(MAX_TRACKED_US) + 1;

/// Latencies in microseconds.
#[derive(Debug, Clone)]
pub struct Histogram {
    counts: Box<[u64]>,
    total: u64,
    max_us: u64,
    sum_us: u128,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: vec![0; BUCKETS].into_boxed_slice(),
            total: 0,
            max_us: 0,
            sum_us: 0,
        }
    }
}

const fn bucket_of(value_us: u64) -> usize {
    if value_us < LINEAR_LIMIT {
        return value_us as usize;
    }
    // 63 - leading zeros = log2; the shift keeps SUB_BUCKET_BITS + 1 bits,
    // so `value >> shift` lies in [SUB_BUCKETS, 2 * SUB_BUCKETS).
    let shift = 63 - value_us.leading_zeros() - SUB_BUCKET_BITS;
    (shift as u64 * SUB_BUCKETS + (value_us >> shift)) as usize
}

/// The largest value that falls into `bucket`.
fn upper_bound_of(bucket: usize) -> u64 {
    let bucket = bucket as u64;
    if bucket < LINEAR_LIMIT {
        return bucket;
    }
    let shift = bucket / SUB_BUCKETS - 1;
    let mantissa = bucket - shift * SUB_BUCKETS;
    ((mantissa + 1) << shift) - 1
}

impl Histogram {
    pub fn record(&mut self, value_us: u64) {
        let value_us = value_us.min(MAX_TRACKED_US);
        self.counts[bucket_of(value_us)] += 1;
        self.total += 1;
        self.max_us = self.max_us.max(value_us);
        self.sum_us += u128::from(value_us);
    }

    pub fn merge(&mut self, other: &Histogram) {
        for (mine, theirs) in self.counts.iter_mut().zip(other.counts.iter()) {
            *mine += theirs;
        }
        self.total += other.total;
        self.max_us = self.max_us.max(other.max_us);
        self.sum_us += other.sum_us;
    }

    pub fn count(&self) -> u64 {
        self.total
    }

    pub fn max_us(&self) -> u64 {
        self.max_us
    }

    pub fn mean_us(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        self.sum_us as f64 / self.total as f64
    }

    /// The value at or below which `percent` of the values lie (0 when
    /// empty); never above the maximum.
    pub fn percentile_us(&self, percent: f64) -> u64 {
        if self.total == 0 {
            return 0;
        }
        let rank = ((percent / 100.0 * self.total as f64).ceil() as u64).clamp(1, self.total);
        let mut seen = 0;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return upper_bound_of(bucket).min(self.max_us);
            }
        }
        self.max_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bound_their_values() {
        let mut previous = 0;
        for value in (0..100_000).chain([MAX_TRACKED_US - 1, MAX_TRACKED_US]) {
            let bucket = bucket_of(value);
            assert!(bucket == previous || bucket == previous + 1 || value > 100_000);
            assert!(upper_bound_of(bucket) >= value, "{value} above its bucket");
            let error = (upper_bound_of(bucket) - value) as f64 / value.max(1) as f64;
            assert!(error <= RELATIVE_ERROR, "{value}: error {error}");
            previous = bucket;
        }
        assert_eq!(bucket_of(MAX_TRACKED_US), BUCKETS - 1);
    }

    #[test]
    fn percentiles_of_a_uniform_run() {
        let mut histogram = Histogram::default();
        for value in 1..=10_000 {
            histogram.record(value);
        }
        assert_eq!(histogram.count(), 10_000);
        assert_eq!(histogram.max_us(), 10_000);
        for (percent, exact) in [(50.0, 5_000), (99.0, 9_900), (100.0, 10_000)] {
            let reported = histogram.percentile_us(percent);
            assert!(reported >= exact, "p{percent}: {reported} < {exact}");
            assert!(reported as f64 <= exact as f64 * (1.0 + RELATIVE_ERROR));
        }
        let mut other = Histogram::default();
        other.record(u64::MAX);
        histogram.merge(&other);
        assert_eq!(histogram.max_us(), MAX_TRACKED_US);
        assert_eq!(Histogram::default().percentile_us(50.0), 0);
    }
}
