use std::time::{Duration, Instant};

use super::*;

/// A local recorder, so these tests neither need nor disturb the process-wide one.
fn recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    // Recording is switched on as `install` does; without a local recorder the calls of
    // other tests go to the facade's no-op recorder.
    RECORDING.store(true, Ordering::Relaxed);
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
        .unwrap()
        .build_recorder()
}

fn parse(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|line| Ok(line.to_owned())))
        .unwrap_or_else(|err| panic!("not Prometheus text ({err}):\n{text}"))
}

#[test]
fn recorded_metrics_render_as_prometheus_text_with_their_labels() {
    let recorder = recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        describe();
        let series = RouteSeries::new("/todos/:id", "todos");
        series.record(&http::Method::GET, 200, Instant::now());
        series.record(
            &http::Method::from_bytes(b"BREW").unwrap(),
            404,
            Instant::now(),
        );
        drop(instance_started(&ComponentSeries::new("todos")));
        // The kept handles of a series and a second series of the same labels record
        // into one Prometheus series.
        series.record(&http::Method::GET, 200, Instant::now());
        RouteSeries::new("/todos/:id", "todos").record(&http::Method::GET, 200, Instant::now());
        instance_failed("todos", &wasmtime::Error::new(wasmtime::Trap::Interrupt));
        instance_failed(
            "todos",
            &wasmtime::Error::new(wasmtime::Trap::UnreachableCodeReached),
        );
        let address: Arc<str> = "postgres://db:5432/todo".into();
        pg_pool(&address, 3, 1, 2, 32);
        redis_command(&"redis://cache:6379".into(), false);
        trigger_message("jobs", "notifier", false);
    });
    handle.run_upkeep();
    let scrape = parse(&handle.render());
    let value = |name: &str, labels: &[(&str, &str)]| {
        scrape
            .samples
            .iter()
            .find(|sample| {
                sample.metric == name
                    && labels
                        .iter()
                        .all(|(key, value)| sample.labels.get(key) == Some(*value))
            })
            .map(|sample| match sample.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?} in {:#?}", scrape.samples))
    };
    let route = [
        ("route", "/todos/:id"),
        ("component", "todos"),
        ("method", "GET"),
        ("status", "200"),
    ];
    // Two through one series' kept handles, one through a second series: one series.
    assert_eq!(value(HTTP_REQUESTS, &route), 3.0);
    assert_eq!(
        value(HTTP_REQUESTS, &[("method", "other"), ("status", "404")]),
        1.0
    );
    assert_eq!(value(INSTANCES_CREATED, &[("component", "todos")]), 1.0);
    assert_eq!(value(INSTANCES_IN_FLIGHT, &[("component", "todos")]), 0.0);
    assert_eq!(value(TIMEOUTS, &[("component", "todos")]), 1.0);
    assert_eq!(value(TRAPS, &[("component", "todos")]), 1.0);
    assert_eq!(
        value(PG_POOL_WAITERS, &[("address", "postgres://db:5432/todo")]),
        2.0
    );
    assert_eq!(
        value(REDIS_ERRORS, &[("address", "redis://cache:6379")]),
        1.0
    );
    assert_eq!(value(TRIGGER_FAILURES, &[("channel", "jobs")]), 1.0);
    assert!(
        scrape.samples.iter().any(|s| s.metric == HTTP_DURATION
            && matches!(s.value, prometheus_parse::Value::Histogram(_))),
        "the latency is a histogram"
    );
}

#[test]
fn the_metric_list_names_each_metric_once_with_prometheus_conventions() {
    let mut names: Vec<_> = METRICS.iter().map(|(name, _, _)| *name).collect();
    for (name, kind, _) in METRICS {
        assert!(name.starts_with("edge_host_"), "{name}");
        assert_eq!(
            *kind == "counter",
            name.ends_with("_total"),
            "{name}: counters end in _total"
        );
        if *kind == "histogram" {
            assert!(
                name.ends_with("_seconds"),
                "{name}: histograms here are durations"
            );
        }
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), METRICS.len());
}

/// What recording costs on the request path: one request's calls (a counter and a
/// histogram with four labels, an instance guard, an instantiation timing), measured
/// here with the Prometheus recorder in place. Printed, and bounded loosely so a debug
/// build on a loaded machine passes; the release figure is in host/README.md.
#[test]
fn recording_one_request_is_cheap() {
    let recorder = recorder();
    let rounds = 20_000;
    let elapsed = metrics::with_local_recorder(&recorder, || {
        let component = ComponentSeries::new("todos");
        let route = RouteSeries::new("/todos/:id", "todos");
        let started = Instant::now();
        for _ in 0..rounds {
            let guard = instance_started(&component);
            route.record(&http::Method::GET, 200, started);
            drop(guard);
        }
        started.elapsed()
    });
    let per_request = elapsed / rounds;
    eprintln!("recording one request: {per_request:?}");
    assert!(per_request < Duration::from_micros(50), "{per_request:?}");
}
