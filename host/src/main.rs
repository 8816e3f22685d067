//! `edge-host`: runs Spin applications (`spin.toml`, manifest version 2) on wasmtime.
//!
//! The commands and flags follow `spin up` and `spin build`, so the same manifest, the
//! same variables and the same habits work with this host and with Spin itself.

use edge_host::routes::Router;
use edge_host::triggers::reuse::{parse_duration_value, Range, ReuseConfig};
use edge_host::{app, engine, logs, manifest, runtime_config, triggers, variables};

use std::collections::HashMap;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand};

/// A Spin-compatible WebAssembly host with pooled Postgres and Redis.
#[derive(Parser)]
#[command(name = "edge-host", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the application: serve its HTTP routes and its Redis subscriptions.
    Up(Box<UpArgs>),
    /// Run each component's `[component.X.build] command`, like `spin build`.
    Build(BuildArgs),
    /// Show the HTTP routing table in the order requests are matched (most specific
    /// first), or which route each given path goes to. Tools that need to know where a
    /// path lands (manifest checks, API-description tests) ask the host instead of
    /// re-implementing its precedence rules.
    Routes(RoutesArgs),
    /// List the metrics `--metrics-listen` exports: `name type labels`, one a line
    /// (`scripts/validate-k8s` checks the Grafana dashboard's queries against it).
    Metrics,
}

#[derive(clap::Args)]
struct UpArgs {
    /// The application manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    from: PathBuf,
    /// Run only this component and its triggers (repeatable; default: all), as Spin's
    /// `spin up --component-id`: e.g. the HTTP API in one deployment and the
    /// Redis-triggered notifier in another, from the same manifest.
    #[arg(short = 'c', long = "component-id", value_name = "ID")]
    components: Vec<String>,
    /// Address to listen on; port 0 picks a free port (printed as `Serving http://...`).
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: SocketAddr,
    /// Runtime configuration file (TOML).
    #[arg(long)]
    runtime_config_file: Option<PathBuf>,
    /// Set an application variable (repeatable); overrides SPIN_VARIABLE_<NAME>.
    #[arg(long = "variable", value_name = "NAME=VALUE")]
    variables: Vec<String>,
    /// SQL to run before serving, as Spin's `--sqlite` (repeatable, in order): a statement
    /// runs on the `default` database, `@FILE` runs a file's statements on it and
    /// `@FILE:LABEL` on that label's.
    #[arg(long = "sqlite", value_name = "STATEMENT|@FILE[:LABEL]")]
    sqlite_statements: Vec<String>,
    /// Host log format.
    #[arg(long, value_enum, default_value = "text")]
    log_format: logs::LogFormat,
    /// Directory for compiled components (default: $XDG_CACHE_HOME/edge-host).
    #[arg(long)]
    cache_dir: Option<PathBuf>,
    /// Always compile; neither read nor write the compile cache.
    #[arg(long)]
    no_cache: bool,
    /// Memory one instance may use, in MiB: all its linear memories and tables together
    /// (Spin counts each memory separately, spin#3705).
    #[arg(long, default_value_t = 128)]
    max_instance_memory_mb: usize,
    /// Instances that may exist at once (pooling allocator slots); requests and messages
    /// beyond it wait for a free slot.
    #[arg(long, default_value_t = 1000)]
    max_instances: u32,
    /// Largest request body accepted, in MiB; larger ones get 413.
    #[arg(long, default_value_t = 10)]
    max_request_body_mb: u64,
    /// Longest a client may take to send a request's head, in seconds; the connection is
    /// closed after it (slow-header clients). Spin has no such flag.
    #[arg(long, default_value_t = 10)]
    header_read_timeout_secs: u64,
    /// Longest a request body may stall (no new bytes), in seconds; the request gets 408.
    #[arg(long, default_value_t = 30)]
    body_read_timeout_secs: u64,
    /// Most header lines in one request; more get 431.
    #[arg(long, default_value_t = 100)]
    max_headers: usize,
    /// Largest request head, in KiB; larger get 431.
    #[arg(long, default_value_t = 64)]
    max_header_kb: usize,
    /// Longest a request or message may run, in seconds (default 60). Kept as an alias of
    /// `--request-timeout`, which takes Spin's duration syntax.
    #[arg(long, conflicts_with = "request_timeout")]
    execution_timeout_secs: Option<u64>,
    /// Requests one instance may serve before it is dropped: a number, or a range `A..B`
    /// from which each new instance draws its own. 1 (the default) gives every request a
    /// fresh instance, as Spin does for WASI 0.2 components; more reuses an instance that
    /// answered cleanly for the next request to its component (much faster; the
    /// component must keep no request state in statics; see host/README.md).
    #[arg(long, value_name = "N|A..B", default_value = "1", value_parser = Range::parse_count)]
    max_instance_reuse_count: Range<usize>,
    /// Requests one instance may serve at once, as in Spin. WASI 0.2 components cannot
    /// be entered twice at once, so for them this has no effect.
    #[arg(long, value_name = "N|A..B", default_value = "1", value_parser = Range::parse_count)]
    max_instance_concurrent_reuse_count: Range<usize>,
    /// How long an idle instance is kept for reuse: seconds, or a number with `s`, `ms`,
    /// `us` or `ns`, or a range of them, as in Spin.
    #[arg(long, env = "SPIN_HTTP_IDLE_INSTANCE_TIMEOUT_SECS", value_name = "DURATION", default_value = "1s", value_parser = Range::parse_duration)]
    idle_instance_timeout: Range<std::time::Duration>,
    /// Once serving, write `{"url": "http://ADDR" | null, "pid": N}` to this file
    /// (atomically: written aside, then renamed), so scripts and tests know the host is
    /// ready and where it listens without parsing the banner.
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Longest a request waits for its component's turn and an instance slot, in
    /// milliseconds; then 503 with Retry-After. Spin has no such flag (it has no queue).
    #[arg(long, default_value_t = 1000)]
    max_queue_wait_ms: u64,
    /// Requests of one component that may run at once (default: three quarters of
    /// --max-instances), so one component's flood leaves slots to the others; per
    /// component in the runtime config's `[edge_host.admission.component.<id>]`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    max_component_concurrency: Option<u32>,
    /// Requests from one client address in flight at once (body upload included); more
    /// get 429 with Retry-After. 0 turns it off (behind a proxy every client shares its address).
    #[arg(long, default_value_t = 256)]
    max_client_in_flight: usize,
    /// Connections the kernel queues for accept (the listen backlog), for bursts.
    #[arg(long, default_value_t = 1024)]
    listen_backlog: u32,
    /// Serve Prometheus metrics (`GET /metrics`) and per-dependency readiness details
    /// (`GET /ready`) on this address, a listener of its own (never the app's port).
    /// Off by default; port 0 picks a free port (in the ready file as `metrics_url`).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// On SIGTERM or SIGINT, how long in-flight requests and Redis message handlers may
    /// take to finish (the listener is already closed) before the host exits anyway:
    /// seconds, or a number with `s`, `ms`, `us` or `ns`. Match the pod's
    /// `terminationGracePeriodSeconds` (less `--shutdown-delay`). Spin has no such flag:
    /// it stops at once.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_duration_value)]
    shutdown_timeout: Duration,
    /// On SIGTERM or SIGINT, keep serving (and accepting) this long before the drain
    /// starts, so load balancers and Kubernetes endpoints stop sending new connections
    /// first. Same syntax as `--shutdown-timeout`; 0 (the default) drains at once.
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration_value)]
    shutdown_delay: Duration,
    /// Longest a request or Redis message may run (default 60s): seconds, or a number with
    /// `s`, `ms`, `us` or `ns`, as Spin 4's `--request-timeout`. Cut off at the deadline
    /// even in a CPU loop (within one 10 ms epoch tick); an HTTP request gets 504
    /// problem+json. Unlike Spin's (WASI 0.3 only), it applies to WASI 0.2 components too.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration_value)]
    request_timeout: Option<Duration>,
}

#[derive(clap::Args)]
struct RoutesArgs {
    /// The application manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    from: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Request paths to resolve; without any, the whole table is printed.
    paths: Vec<String>,
}

#[derive(clap::Args)]
struct BuildArgs {
    /// The application manifest.
    #[arg(short = 'f', long = "from", default_value = "spin.toml")]
    from: PathBuf,
    /// Build only these components (repeatable).
    #[arg(short = 'c', long = "component-id")]
    components: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up(args) => up(*args),
        Command::Build(args) => build(&args),
        Command::Routes(args) => routes(&args),
        Command::Metrics => {
            for (name, kind, labels) in edge_host::metrics::METRICS {
                println!("{name} {kind} {labels}");
            }
            for name in edge_host::metrics::PROCESS_METRICS {
                println!("{name} gauge -");
            }
            Ok(())
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("Error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `--request-timeout` when neither it nor `--execution-timeout-secs` is given.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

fn up(args: UpArgs) -> anyhow::Result<()> {
    logs::init(args.log_format);
    let mut manifest = manifest::load(&args.from)?;
    manifest.retain_components(&args.components).context(
        "failed to resolve application with only components selected with --component-id",
    )?;
    let env: HashMap<String, String> = std::env::vars().collect();
    let variables =
        variables::ResolvedVariables::resolve(&manifest.manifest, &args.variables, &env)?;
    let runtime_config = runtime_config::RuntimeConfig::load(args.runtime_config_file.as_deref())?;
    let admission_config = runtime_config.edge_host.admission.clone();
    let cache_dir = if args.no_cache {
        None
    } else {
        args.cache_dir.clone().or_else(engine::default_cache_dir)
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let options = app::AppOptions {
            manifest,
            variables,
            runtime_config,
            limits: engine::EngineLimits {
                max_instance_memory: args.max_instance_memory_mb << 20,
                max_instances: args.max_instances,
                ..engine::EngineLimits::default()
            },
            cache_dir,
            execution_timeout: args
                .request_timeout
                .or(args.execution_timeout_secs.map(Duration::from_secs))
                .unwrap_or(DEFAULT_REQUEST_TIMEOUT),
        };
        let metrics = match args.metrics_listen {
            Some(addr) => Some(edge_host::metrics::bind(addr).await?),
            None => None,
        };
        let app = Arc::new(tokio::task::block_in_place(|| {
            let app = app::App::load(options)?;
            (app.capabilities.sqlite).run_startup_statements(&args.sqlite_statements)?;
            anyhow::Ok(app)
        })?);
        let reuse = ReuseConfig {
            max_instance_reuse_count: args.max_instance_reuse_count,
            max_instance_concurrent_reuse_count: args.max_instance_concurrent_reuse_count,
            idle_instance_timeout: args.idle_instance_timeout,
        };
        let limits = triggers::http::ClientLimits {
            header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
            body_read_timeout: Duration::from_secs(args.body_read_timeout_secs),
            max_headers: args.max_headers,
            max_header_bytes: args.max_header_kb << 10,
        };
        let admission = Admission {
            limits: edge_host::admission::AdmissionLimits {
                max_queue_wait: Duration::from_millis(args.max_queue_wait_ms),
                max_component_concurrency: args.max_component_concurrency.map(|n| n as usize),
                max_client_in_flight: args.max_client_in_flight,
            },
            config: admission_config,
            max_instances: args.max_instances,
            listen_backlog: args.listen_backlog,
        };
        let drain = Drain {
            delay: args.shutdown_delay,
            timeout: args.shutdown_timeout,
        };
        let http = HttpSettings {
            listen: args.listen,
            admission,
            max_request_body: args.max_request_body_mb << 20,
            limits,
            reuse,
        };
        serve(app, http, args.ready_file.as_deref(), metrics, drain).await
    })
}

/// The HTTP trigger's admission settings from the flags and the runtime config.
struct Admission {
    limits: edge_host::admission::AdmissionLimits,
    config: edge_host::admission::AdmissionConfig,
    max_instances: u32,
    listen_backlog: u32,
}

/// The HTTP trigger's settings from the flags.
struct HttpSettings {
    listen: SocketAddr,
    admission: Admission,
    max_request_body: u64,
    limits: triggers::http::ClientLimits,
    reuse: ReuseConfig,
}

async fn serve(
    app: Arc<app::App>,
    settings: HttpSettings,
    ready_file: Option<&Path>,
    metrics: Option<edge_host::metrics::MetricsServer>,
    drain: Drain,
) -> anyhow::Result<()> {
    let HttpSettings {
        listen,
        admission,
        max_request_body,
        limits,
        reuse,
    } = settings;
    let http = Arc::new(
        triggers::http::HttpTrigger::new(app.clone(), max_request_body, reuse)?
            .with_client_limits(limits)
            .with_admission(admission.limits, &admission.config, admission.max_instances)?,
    );
    let redis = Arc::new(triggers::redis::RedisTrigger::new(app.clone())?);
    if !http.has_routes() && !redis.has_subscriptions() {
        bail!("the manifest has no [[trigger.http]] or [[trigger.redis]] to run");
    }
    let mut banner = String::new();
    let mut url = None;
    let listener = if http.has_routes() {
        let listener = triggers::http::bind(listen, admission.listen_backlog)
            .with_context(|| format!("binding {listen}"))?;
        let local = listener.local_addr()?;
        url = Some(format!("http://{local}"));
        banner.push_str(&format!("Serving http://{local}\nAvailable Routes:\n"));
        for (route, component) in http.describe_routes() {
            banner.push_str(&format!("  {component}: http://{local}{route}\n"));
        }
        Some(listener)
    } else {
        None
    };
    for (channel, component) in redis.describe() {
        banner.push_str(&format!("Redis channel `{channel}` -> {component}\n"));
    }
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(banner.as_bytes())?;
    stdout.flush()?;
    drop(stdout);
    let metrics_url = serve_metrics(metrics, &app)?;
    if let Some(path) = ready_file {
        let ready = serde_json::json!({ "url": url, "pid": std::process::id(), "metrics_url": metrics_url });
        engine::write_atomically(path, ready.to_string().as_bytes())
            .with_context(|| format!("writing the ready file {}", path.display()))?;
    }

    let stop = tokio_util::sync::CancellationToken::new();
    let mut serve_http = tokio::spawn({
        let (http, stop) = (http.clone(), stop.clone());
        async move {
            match listener {
                Some(listener) => http.serve_until(listener, stop).await,
                None => {
                    stop.cancelled().await;
                    Ok(())
                }
            }
        }
    });
    let mut serve_redis = tokio::spawn(redis.clone().run_until(stop.clone()));
    let mut signals = Signals::new()?;
    let first = tokio::select! {
        result = &mut serve_http => return result.context("the HTTP trigger panicked")?,
        _ = &mut serve_redis => bail!("the Redis trigger stopped"),
        signal = signals.next() => signal,
    };
    tracing::info!(
        signal = first.name(),
        delay_ms = drain.delay.as_millis() as u64,
        timeout_ms = drain.timeout.as_millis() as u64,
        "shutting down: draining (a second signal stops at once)"
    );
    let drained = async {
        tokio::time::sleep(drain.delay).await;
        stop.cancel();
        let (http_done, _) = tokio::join!(&mut serve_http, &mut serve_redis);
        http_done.context("the HTTP trigger panicked")?
    };
    tokio::select! {
        result = tokio::time::timeout(drain.delay + drain.timeout, drained) => match result {
            Ok(done) => {
                done?;
                tracing::info!("drained; exiting");
                Ok(())
            }
            Err(_) => {
                tracing::warn!(
                    connections = http.open_connections(),
                    redis_handlers = redis.handlers_in_progress(),
                    "shutdown timeout passed with {} HTTP connection(s) and {} Redis handler(s) still in progress; exiting anyway",
                    http.open_connections(),
                    redis.handlers_in_progress(),
                );
                std::process::exit(1)
            }
        },
        second = signals.next() => {
            tracing::warn!(signal = second.name(), "second signal: exiting without waiting");
            std::process::exit(128 + second.number())
        }
    }
}

/// Starts the metrics listener, if any, with the app's readiness details behind its
/// `GET /ready`; returns its URL for the ready file.
fn serve_metrics(
    metrics: Option<edge_host::metrics::MetricsServer>,
    app: &Arc<app::App>,
) -> anyhow::Result<Option<String>> {
    let Some(metrics) = metrics else {
        return Ok(None);
    };
    let url = format!("http://{}", metrics.local_addr()?);
    println!("Metrics at {url}/metrics");
    let capabilities = app.capabilities.clone();
    let readiness: edge_host::metrics::Readiness = Arc::new(move || {
        let capabilities = capabilities.clone();
        Box::pin(async move { capabilities.readiness().await })
    });
    tokio::spawn(metrics.serve(readiness));
    Ok(Some(url))
}

/// What `up` does on SIGTERM or SIGINT.
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// Keep serving this long first (`--shutdown-delay`).
    delay: Duration,
    /// Then wait at most this long for in-flight work (`--shutdown-timeout`).
    timeout: Duration,
}

/// The stop signals: SIGTERM (Kubernetes, systemd, `docker stop`) and SIGINT (Ctrl-C).
struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

#[derive(Debug, Clone, Copy)]
enum StopSignal {
    Term,
    Int,
}

impl StopSignal {
    fn name(self) -> &'static str {
        match self {
            Self::Term => "SIGTERM",
            Self::Int => "SIGINT",
        }
    }

    /// The signal number, for the conventional `128 + N` exit status.
    fn number(self) -> i32 {
        match self {
            Self::Term => 15,
            Self::Int => 2,
        }
    }
}

impl Signals {
    /// Installs the handlers now, so a signal that arrives early is not lost.
    fn new() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
                int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(Self {})
        }
    }

    /// The next stop signal.
    async fn next(&mut self) -> StopSignal {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => StopSignal::Term,
                _ = self.int.recv() => StopSignal::Int,
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            StopSignal::Int
        }
    }
}

/// `edge-host routes`: the table from the same parser and [`Router`] the HTTP trigger
/// uses, so the answer is the host's own precedence.
fn routes(args: &RoutesArgs) -> anyhow::Result<()> {
    let loaded = manifest::load(&args.from)?;
    let table = loaded
        .http_triggers
        .iter()
        .filter_map(|trigger| Some((trigger.route.clone()?, trigger.component.clone())))
        .collect();
    let router = Router::new(table)?;
    let mut out = String::new();
    if args.paths.is_empty() {
        if args.json {
            let rows: Vec<_> = router
                .routes()
                .map(|(pattern, component)| {
                    serde_json::json!({ "route": pattern.raw(), "component": component })
                })
                .collect();
            out = serde_json::to_string_pretty(&rows)?;
        } else {
            for (pattern, component) in router.routes() {
                out.push_str(&format!("{}  ->  {component}\n", pattern.raw()));
            }
        }
    } else {
        let rows: Vec<_> = args
            .paths
            .iter()
            .map(|path| match router.route(path) {
                Some((pattern, component, found)) => serde_json::json!({
                    "path": path,
                    "route": pattern.raw(),
                    "component": component,
                    "params": found
                        .params
                        .iter()
                        .map(|(name, value)| (name.clone(), serde_json::Value::from(value.as_str())))
                        .collect::<serde_json::Map<_, _>>(),
                    "path_info": found.path_info,
                }),
                None => serde_json::json!({
                    "path": path, "route": null, "component": null,
                    "params": {}, "path_info": null,
                }),
            })
            .collect();
        if args.json {
            out = serde_json::to_string_pretty(&rows)?;
        } else {
            for row in rows {
                out.push_str(&format!(
                    "{}  ->  {}\n",
                    row["path"].as_str().unwrap_or_default(),
                    row["route"]
                        .as_str()
                        .map_or("(no route: 404)".to_owned(), |route| {
                            format!(
                                "{route} ({})",
                                row["component"].as_str().unwrap_or_default()
                            )
                        })
                ));
            }
        }
    }
    println!("{}", out.trim_end());
    Ok(())
}

fn build(args: &BuildArgs) -> anyhow::Result<()> {
    let loaded = manifest::load(&args.from)?;
    for wanted in &args.components {
        if !loaded.manifest.component.contains_key(wanted) {
            bail!("no component named `{wanted}` in {}", args.from.display());
        }
    }
    for (id, component) in &loaded.manifest.component {
        if !args.components.is_empty() && !args.components.contains(id) {
            continue;
        }
        let Some(build) = &component.get_ref().build else {
            println!("Component `{id}` has no build command: skipped");
            continue;
        };
        let workdir = build.workdir.as_deref().map_or_else(
            || loaded.base_dir().to_owned(),
            |dir| loaded.base_dir().join(dir),
        );
        for line in build.command.lines() {
            println!("Building component `{id}` with `{line}`");
            run_build_line(line, &workdir, &build.environment)
                .with_context(|| format!("building component `{id}`"))?;
        }
    }
    println!("Finished building all components");
    Ok(())
}

fn run_build_line(
    line: &str,
    workdir: &Path,
    environment: &std::collections::BTreeMap<String, String>,
) -> anyhow::Result<()> {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(line)
        .current_dir(workdir)
        .envs(environment)
        .status()
        .with_context(|| format!("running `{line}` in {}", workdir.display()))?;
    if !status.success() {
        bail!("`{line}` failed with {status}");
    }
    Ok(())
}
