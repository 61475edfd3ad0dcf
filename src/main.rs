//! The `otel-sli` command line: parse arguments, load configuration, run.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// jemalloc, with background threads returning freed memory to the OS within seconds
/// (glibc's malloc may keep it resident indefinitely), so the resident size the memory
/// budget reads falls again once a burst is over.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[derive(Parser, Debug)]
#[command(
    name = "otel-sli",
    version,
    about = "Per-feature SLIs from OpenTelemetry traffic"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(clap::Args, Debug, Clone, Default)]
struct RunArgs {
    /// YAML configuration file. Without it, embedded defaults are used.
    #[arg(long, short = 'c', env = "OTEL_SLI_CONFIG")]
    config: Option<PathBuf>,
    /// OpenSLO v1 file whose SLO documents are added to the configuration's `slos:`.
    #[arg(long, value_name = "FILE")]
    openslo: Option<PathBuf>,
    /// OTLP/gRPC listen address (overrides receivers.otlp_grpc.endpoint).
    #[arg(long, value_name = "ADDR")]
    otlp_grpc: Option<String>,
    /// OTLP/HTTP listen address (overrides receivers.otlp_http.endpoint).
    #[arg(long, value_name = "ADDR")]
    otlp_http: Option<String>,
    /// Admin listen address for /metrics and the API (overrides admin.endpoint).
    #[arg(long, value_name = "ADDR")]
    admin: Option<String>,
    /// Log filter (error, warn, info, debug, trace, or a tracing filter). Overrides log.level;
    /// RUST_LOG overrides both.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the service (the default).
    Run(RunArgs),
    /// Check a configuration file and exit non-zero with the key path and reason on error.
    Validate {
        /// The configuration file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// OpenSLO v1 file to validate with it.
        #[arg(long, value_name = "FILE")]
        openslo: Option<PathBuf>,
    },
    /// Print Prometheus recording and alerting rules that compute the configured SLOs from
    /// the exported `sli_*` series, summed across every agent.
    Rules {
        /// The configuration file.
        #[arg(long, short = 'c')]
        config: PathBuf,
        /// OpenSLO v1 file whose SLOs are included.
        #[arg(long, value_name = "FILE")]
        openslo: Option<PathBuf>,
        /// `prometheus` (a rule file) or `prometheusrule` (a Kubernetes PrometheusRule).
        #[arg(long, value_enum, default_value = "prometheus")]
        format: Format,
    },
    /// GET an admin URL and exit 0 on a 2xx answer, 1 otherwise (for container health
    /// checks in images without a shell).
    Healthcheck {
        /// The URL to check.
        #[arg(long, default_value = "http://127.0.0.1:9464/healthz")]
        url: String,
        /// How long the whole check may take.
        #[arg(long, default_value = "3s", value_parser = parse_duration)]
        timeout: std::time::Duration,
        /// For an `https://` URL: PEM CA certificates to trust (e.g. the `admin.tls`
        /// certificate's CA) instead of the bundled public roots.
        #[arg(long)]
        ca_file: Option<PathBuf>,
        /// For an `https://` URL: accept any certificate (checks that the local process
        /// answers, not who it is).
        #[arg(long)]
        insecure_skip_verify: bool,
    },
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    otel_sli::config::units::parse_duration(s)
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
enum Format {
    Prometheus,
    Prometheusrule,
}

fn load(
    path: Option<&PathBuf>,
    openslo: Option<&PathBuf>,
) -> anyhow::Result<otel_sli::settings::Config> {
    let mut config = match path {
        Some(p) => otel_sli::settings::load(p)
            .with_context(|| format!("invalid configuration {}", p.display()))?,
        None => otel_sli::settings::Config::default(),
    };
    if let Some(f) = openslo {
        let slos = otel_sli::slo::openslo::load(f)
            .with_context(|| format!("invalid OpenSLO file {}", f.display()))?;
        config
            .add_slos(slos, &f.display().to_string())
            .with_context(|| format!("invalid OpenSLO file {}", f.display()))?;
    }
    Ok(config)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let args = match cli.command {
        Some(Command::Validate { config, openslo }) => {
            let c = load(Some(&config), openslo.as_ref())?;
            for w in &c.warnings {
                eprintln!("warning: {w}");
            }
            println!("{}: ok ({} SLOs)", config.display(), c.slos.len());
            return Ok(());
        }
        Some(Command::Rules {
            config,
            openslo,
            format,
        }) => {
            let c = load(Some(&config), openslo.as_ref())?;
            let format = match format {
                Format::Prometheus => otel_sli::slo::rules::RulesFormat::Prometheus,
                Format::Prometheusrule => otel_sli::slo::rules::RulesFormat::PrometheusRule,
            };
            print!("{}", otel_sli::slo::rules::render(&c.slos, &c.slo, format)?);
            return Ok(());
        }
        Some(Command::Healthcheck {
            url,
            timeout,
            ca_file,
            insecure_skip_verify,
        }) => {
            let ca_pem = match ca_file {
                Some(f) => Some(
                    std::fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?,
                ),
                None => None,
            };
            let tls = otel_sli::api::probe::ProbeTls {
                ca_pem,
                insecure_skip_verify,
            };
            let line = otel_sli::api::probe::probe(&url, timeout, &tls)?;
            println!("{line}");
            return Ok(());
        }
        Some(Command::Run(args)) => args,
        None => cli.run,
    };
    let mut config = load(args.config.as_ref(), args.openslo.as_ref())?;
    if let Some(a) = args.otlp_grpc {
        config.grpc.endpoint = a;
    }
    if let Some(a) = args.otlp_http {
        config.http.endpoint = a;
    }
    if let Some(a) = args.admin {
        config.admin = a;
    }
    let filter = std::env::var("RUST_LOG")
        .ok()
        .or(args.log_level)
        .unwrap_or_else(|| config.log_level.clone());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&filter)
                .with_context(|| format!("invalid log filter {filter:?}"))?,
        )
        .init();
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        tracing::warn!(error = %e, "cannot start jemalloc's background threads; freed memory returns to the OS more slowly");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("otel-sli-io")
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(otel_sli::app::run(&config, otel_sli::clock::system()))?;
    Ok(())
}
