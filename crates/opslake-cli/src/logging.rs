//! Logging and progress: what the user watches while a command works.
//!
//! Results (tables, query output) go to stdout; everything else goes to stderr through
//! `tracing`: warnings and step summaries. On a terminal a progress bar shows the files or
//! models done, with log lines printed above it; anywhere else nothing is animated.
//! `--log-format json` makes every event one JSON object per line for a scheduler to parse,
//! with one event per file read and per model or test finished (`-v` shows those as lines).

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Args, ValueEnum};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::fmt;

use tracing::Level;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{FormatEvent, FormatFields, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The target of per-item events (a file read, a model built): in JSON logs and with `-v`;
/// people otherwise read the same in the tables a command prints.
pub const PROGRESS: &str = "opslake::progress";

/// How log events are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum LogFormat {
    /// Lines for people.
    #[default]
    Human,
    /// One JSON object per line, for schedulers and log collectors.
    Json,
}

/// The logging options every command takes.
#[derive(Debug, Clone, Args, Default)]
pub struct LogArgs {
    /// How to write log events on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Human, env = "OPSLAKE_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// Only warnings and errors; no progress, no summaries (results of query, runs and inspect
    /// are still printed).
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// More detail: -v for debug events of opslake, -vv also of the libraries it uses.
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

static QUIET: AtomicBool = AtomicBool::new(false);
static BARS: OnceLock<Option<MultiProgress>> = OnceLock::new();

/// Whether `--quiet` was given: summaries are not printed.
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Prints a summary line on stdout unless `--quiet`.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::logging::quiet() {
            println!($($arg)*);
        }
    };
}

/// Sets up logging once per process; later calls (a command run by `demo`, tests running
/// several commands) keep the first setup. `RUST_LOG` overrides the levels.
pub fn init(args: &LogArgs) {
    QUIET.store(args.quiet, Ordering::Relaxed);
    let animated = args.log_format == LogFormat::Human && !args.quiet && std::io::stderr().is_terminal();
    BARS.get_or_init(|| animated.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())));
    let ours = match (args.quiet, args.verbose) {
        (true, _) => "warn",
        (false, 0) => "info",
        (false, 1) => "debug",
        (false, _) => "trace",
    };
    // The Delta kernel logs an ERROR for every table it is asked about that does not exist
    // yet, which opslake asks on purpose; its real failures come back to opslake as errors.
    let others = if args.verbose >= 2 { "debug" } else { "warn,buoyant_kernel=off,delta_kernel=off" };
    // People read the tables on stdout and the bar; a scheduler reads one event per item.
    let progress = if args.log_format == LogFormat::Json || args.verbose > 0 { ours } else { "off" };
    let directives = format!(
        "{others},opslake_cli={ours},opslake_lake={ours},opslake_models={ours},opslake_tools={ours},\
         opslake_schema={ours},{PROGRESS}={progress}"
    );
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|env| EnvFilter::try_new(env).ok())
        .unwrap_or_else(|| EnvFilter::new(directives));
    let writer = BarSafeStderr;
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match args.log_format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(writer),
            )
            .try_init(),
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .event_format(HumanLine { targets: args.verbose > 0 })
                    .with_writer(writer),
            )
            .try_init(),
    };
}

/// A bar counting `len` items (files, models), shown on a terminal only; hidden otherwise.
pub fn progress_bar(len: usize, unit: &str) -> ProgressBar {
    let Some(Some(multi)) = BARS.get() else {
        return ProgressBar::hidden();
    };
    let template = format!("{{spinner}} [{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit}  {{msg}}");
    let style = ProgressStyle::with_template(&template).unwrap_or_else(|_| ProgressStyle::default_bar());
    let bar = multi.add(ProgressBar::new(len as u64));
    bar.set_style(style);
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}

/// Stderr that lifts the progress bars out of the way of each log line.
#[derive(Clone, Copy)]
struct BarSafeStderr;

impl Write for BarSafeStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match BARS.get() {
            Some(Some(multi)) => multi.suspend(|| std::io::stderr().write(buf)),
            _ => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for BarSafeStderr {
    type Writer = Self;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}

/// `warning: message key=value`, as compilers print; the level word only where it adds
/// something, the target with `-v`.
struct HumanLine {
    targets: bool,
}

impl<S, N> FormatEvent<S, N> for HumanLine
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        match *meta.level() {
            Level::ERROR => write!(writer, "error: ")?,
            Level::WARN => write!(writer, "warning: ")?,
            Level::INFO => {}
            Level::DEBUG => write!(writer, "debug: ")?,
            Level::TRACE => write!(writer, "trace: ")?,
        }
        if self.targets {
            write!(writer, "[{}] ", meta.target())?;
        }
        ctx.format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Says which conversions `fx_convert` found no rate for: their results are null.
pub(crate) fn warn_missing_rates(missing: impl IntoIterator<Item = impl fmt::Display>) {
    for m in missing {
        tracing::warn!("fx_convert: {m} in ref.fx_rates; the converted amount is null");
    }
}
