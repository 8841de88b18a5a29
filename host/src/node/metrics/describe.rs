//! Writing scrape-time values through `prometheus-client`'s collector
//! interface: a family's `# HELP`/`# TYPE` once, then its samples.

use prometheus_client::encoding::{
    DescriptorEncoder, EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, EncodeMetric as _,
};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// The result of writing into a scrape's text.
pub(crate) type Written = Result<(), std::fmt::Error>;

/// A family of one unlabelled gauge (an integer or a float).
pub(crate) fn gauge<V: EncodeGaugeValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> Written {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

/// A family of one unlabelled counter (an integer, or a float: seconds of
/// CPU). `name` is without `_total`: the encoder adds it.
pub(crate) fn counter<V: EncodeCounterValue>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: V,
) -> Written {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

/// A family of gauges, one per label set.
pub(crate) fn labelled_gauges<S: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (S, u64)>,
) -> Written {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in samples {
        ConstGauge::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A family of counters, one per label set (`name` without `_total`).
pub(crate) fn labelled_counters<S: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (S, u64)>,
) -> Written {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, value) in samples {
        ConstCounter::new(value).encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// An info family (`name` without `_info`): one sample of value 1 whose
/// labels are the information.
pub(crate) fn info<S: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    labels: &S,
) -> Written {
    let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Info)?;
    metric.encode_info(labels)
}
